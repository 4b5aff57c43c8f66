//! Throw-away Postgres databases.
//!
//! Tests read the server from `PYNOMALY_TEST_DATABASE_URL` (CI sets it; a server with
//! trust auth on loopback is enough). Each test gets a database of its own, created from
//! `template0` and dropped afterwards — also when the test fails — so tests run in
//! parallel without seeing each other's rows, and nothing is left behind. Without the
//! variable, [`TestDatabase::create`] returns `None` after printing why the test skips.

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::current_test;
use crate::env::{DATABASE_URL_VAR, service};

/// A database created for one test.
#[derive(Debug)]
pub struct TestDatabase {
    admin: PgConnectOptions,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates an empty database on the server of `PYNOMALY_TEST_DATABASE_URL`; `None`
    /// (with a line on stderr saying the test skips, and why) when the variable is unset.
    ///
    /// # Panics
    /// The variable is set but the server refuses: a test environment that claims to have
    /// Postgres and does not should fail loudly, not skip.
    pub async fn create() -> Option<TestDatabase> {
        let base = service(DATABASE_URL_VAR)?;
        let admin: PgConnectOptions = base
            .parse()
            .unwrap_or_else(|e| panic!("{DATABASE_URL_VAR} is not a Postgres URL: {e}"));
        let name = format!("pynomaly_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin
            .connect()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {DATABASE_URL_VAR}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE template0"
        )))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        let _ = conn.close().await;
        let url = replace_database(&base, &name);
        Some(TestDatabase { admin, name, url })
    }

    /// The URL of this test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database (closing whatever connections are left to it).
    ///
    /// # Errors
    /// The server refused.
    pub async fn drop_database(self) -> Result<(), sqlx::Error> {
        let mut conn = self.admin.connect().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await?;
        let _ = conn.close().await;
        Ok(())
    }

    /// Runs `test` with a fresh database's URL and drops the database afterwards, whether
    /// the test passed or panicked (the panic is then resumed). Skips (returns at once,
    /// having said so) when `PYNOMALY_TEST_DATABASE_URL` is unset.
    pub async fn run(test: impl AsyncFnOnce(String)) {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let url = db.url.clone();
        crate::with_cleanup(test(url), async {
            if let Err(e) = db.drop_database().await {
                eprintln!(
                    "warning: could not drop the test database of {}: {e}",
                    current_test()
                );
            }
        })
        .await;
    }
}

/// `base` with its database (the URL's path) replaced by `name`, query string kept.
fn replace_database(base: &str, name: &str) -> String {
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (base, None),
    };
    let after_scheme = head.find("://").map_or(0, |i| i + 3);
    let host_end = head[after_scheme..]
        .find('/')
        .map_or(head.len(), |i| after_scheme + i);
    let mut url = format!("{}/{name}", &head[..host_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// Where Debian's and the PGDG packages install the server's programs, off PATH.
const PG_BIN_DIRS: &[&str] = &["/usr/lib/postgresql/*/bin"];

/// What to install when a server program is missing.
const PG_INSTALL: &str = "the Postgres server (Debian: `apt-get install postgresql`)";

/// A Postgres cluster of a test's own: `initdb` into a temporary directory, `postgres` on
/// a free loopback port with trust auth, the `postgres` database; run as the `postgres`
/// OS user when the test runs as root (the server refuses to run as root), else as the
/// test's user. What a chaos test stops and starts again: [`PostgresServer::stop`] is a
/// fast shutdown (sessions ended, as in a restart), [`PostgresServer::start_again`] the same
/// port and data. Killed, and its directory removed, when dropped.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    bin: std::path::PathBuf,
    /// `(uid, gid)` to run as, when not the test's own.
    user: Option<(u32, u32)>,
    // Killed (dropped) before the directory it runs in is removed.
    server: Option<crate::Proc>,
    starts: usize,
    dir: tempfile::TempDir,
}

impl PostgresServer {
    /// Creates the cluster, starts it, and waits until it accepts connections.
    ///
    /// # Panics
    /// `initdb` or `postgres` is missing (the message says what to install), the
    /// `postgres` OS user is missing where the test runs as root, or the server does not
    /// start within 60 s.
    pub async fn start() -> Self {
        let initdb = crate::process::require_program("initdb", PG_BIN_DIRS, PG_INSTALL);
        let bin = initdb.parent().expect("initdb's directory").to_path_buf();
        let dir = tempfile::tempdir().expect("a directory for the Postgres cluster");
        let user = if running_as_root() {
            let ids = os_user("postgres").unwrap_or_else(|| {
                panic!(
                    "{}: the tests run as root and there is no `postgres` OS user to run the \
                     server as: install {PG_INSTALL}, or add the user",
                    current_test()
                )
            });
            std::os::unix::fs::chown(dir.path(), Some(ids.0), Some(ids.1))
                .expect("the cluster's directory handed to the postgres user");
            Some(ids)
        } else {
            None
        };
        let mut server = Self {
            port: crate::free_port(),
            bin,
            user,
            server: None,
            starts: 0,
            dir,
        };
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(server.data())
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        server.start_again().await;
        server
    }

    /// A command running `program` of the server's as its user, in its directory.
    fn command(&self, program: &str) -> std::process::Command {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(self.bin.join(program));
        cmd.current_dir(self.dir.path())
            .env("LC_ALL", "C.UTF-8")
            .env_remove("PGDATA");
        if let Some((uid, gid)) = self.user {
            // The server itself is the child (no `su` in between), so signals and kills
            // reach it.
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server (again, after [`PostgresServer::stop`]) on its port and data
    /// directory, and waits until it accepts connections.
    ///
    /// # Panics
    /// It is running, or does not accept connections within 60 s.
    pub async fn start_again(&mut self) {
        assert!(self.server.is_none(), "postgres :{} is running", self.port);
        self.starts += 1;
        let mut cmd = self.command("postgres");
        cmd.arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "fsync=off", "-c", "max_connections=200"]);
        let log = self
            .dir
            .path()
            .join(format!("postgres-{}.log", self.starts));
        let name = format!("postgres :{}", self.port);
        self.server = Some(crate::Proc::spawn(&name, &mut cmd, &log));
        let server = self.server.as_ref().expect("just started");
        let url = self.url();
        crate::wait::wait(
            "postgres accepts connections",
            std::time::Duration::from_secs(60),
        )
        .until(async || {
            server.assert_running("connections");
            let options: PgConnectOptions = url.parse().map_err(|e| format!("{e}"))?;
            match options.connect().await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    Ok(())
                }
                Err(e) => Err(format!("{e}\n{}", server.log_tail())),
            }
        })
        .await;
    }

    /// Stops it with a fast shutdown (`SIGINT`: sessions are ended, what a restart does),
    /// until [`PostgresServer::start_again`].
    ///
    /// # Panics
    /// It has not exited 30 s later.
    pub async fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &server.pid().to_string()])
                .status();
            crate::wait::wait("postgres stops", std::time::Duration::from_secs(30))
                .until(async || {
                    if server.exited() {
                        Ok(())
                    } else {
                        Err(server.log_tail())
                    }
                })
                .await;
            // Reaps it.
            server.stop(std::time::Duration::from_secs(1));
        }
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Whether this process runs as root (the owner of its `/proc/self`).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The uid and gid of the OS user `name`, from `/etc/passwd`.
fn os_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&name) && fields.len() > 3 {
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// `database_url` reached through a [`crate::Relay`] on `port` instead: the URL to give
/// the client, and the server's port (the relay's target, on loopback).
///
/// # Panics
/// `database_url` is not a Postgres URL.
pub fn through_port(database_url: &str, port: u16) -> (String, u16) {
    let options: PgConnectOptions = database_url
        .parse()
        .unwrap_or_else(|e| panic!("not a Postgres URL: {database_url}: {e}"));
    let server = options.get_port();
    let relayed = options.host("127.0.0.1").port(port).to_url_lossy();
    (relayed.to_string(), server)
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn the_database_of_a_url_is_replaced_and_the_rest_kept() {
        assert_eq!(
            replace_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            replace_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
