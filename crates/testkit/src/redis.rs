//! A Postgres database and a Redis key prefix of one test's own: what the scale-out tests
//! (API instances, workers and queues sharing both) run on; on the test Redis, or on a
//! Redis Cluster of the test's own ([`RedisCluster`], [`with_postgres_and`]).

use std::process::Command;
use std::time::Duration;

use deadpool_redis::redis;

use crate::current_test;
use crate::env::redis_url;
use crate::postgres::TestDatabase;
use crate::process::{Proc, free_port};

/// Where a scale-out test's deployment keeps its state.
#[derive(Debug, Clone)]
pub struct ScaleOut {
    /// A database of this test's own.
    pub database_url: String,
    /// The test Redis.
    pub redis_url: String,
    /// A prefix unique to this test: every Redis key the test makes starts with it.
    pub redis_prefix: String,
}

/// Runs `test` on a fresh database and a fresh Redis key prefix; afterwards, whether the
/// test passed or panicked, deletes every key under the prefix and drops the database.
/// Skips (returns at once, having said why) when `PYNOMALY_TEST_REDIS_URL` or
/// `PYNOMALY_TEST_DATABASE_URL` is unset.
pub async fn with_postgres_and_redis(test: impl AsyncFnOnce(ScaleOut)) {
    let Some(redis_url) = redis_url() else {
        return;
    };
    TestDatabase::run(async |database_url| {
        let env = ScaleOut {
            database_url,
            redis_prefix: format!("pynomaly-test-{}", uuid::Uuid::new_v4().simple()),
            redis_url,
        };
        let (url, prefix) = (env.redis_url.clone(), env.redis_prefix.clone());
        crate::with_cleanup(test(env), delete_keys(url, prefix)).await;
    })
    .await;
}

/// Deletes every key under `prefix`; failures are reported, not raised.
async fn delete_keys(url: String, prefix: String) {
    let deleted: redis::RedisResult<()> = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = deleted {
        eprintln!(
            "warning: could not delete the Redis keys of {}: {e}",
            current_test()
        );
    }
}

/// Which Redis a scale-out test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisKind {
    /// The test Redis of [`crate::env::REDIS_URL_VAR`] (skipped without it).
    Single,
    /// A 3-master Redis Cluster the test starts ([`RedisCluster`]), on loopback.
    Cluster,
}

/// [`with_postgres_and_redis`] on either kind of Redis. On a cluster the test's own
/// cluster holds nothing else, and goes away with the test; such tests are the ones CI
/// runs on purpose (`--ignored`), so a missing Postgres fails them rather than skipping.
pub async fn with_postgres_and(redis: RedisKind, test: impl AsyncFnOnce(ScaleOut)) {
    match redis {
        RedisKind::Single => with_postgres_and_redis(test).await,
        RedisKind::Cluster => {
            crate::env::require(&[crate::env::DATABASE_URL_VAR]);
            let cluster = RedisCluster::start().await;
            TestDatabase::run(async |database_url| {
                test(ScaleOut {
                    database_url,
                    redis_url: cluster.url(),
                    redis_prefix: format!("pynomaly-test-{}", uuid::Uuid::new_v4().simple()),
                })
                .await;
            })
            .await;
        }
    }
}

/// `Ok` when `command` (words) sent to the Redis on 127.0.0.1:`port` answers with text
/// containing `expect`; else what it answered, or why it did not.
async fn answers(port: u16, command: &str, expect: &str) -> Result<(), String> {
    let answer: redis::RedisResult<String> = async {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let mut cmd = redis::cmd(command.split(' ').next().unwrap_or(command));
        for arg in command.split(' ').skip(1) {
            cmd.arg(arg);
        }
        cmd.query_async(&mut conn).await
    }
    .await;
    match answer {
        Ok(text) if text.contains(expect) => Ok(()),
        Ok(text) => Err(format!(":{port} answered {text}")),
        Err(e) => Err(format!(":{port}: {e}")),
    }
}

/// The `redis-server` binary.
///
/// # Panics
/// It is not installed (the message says what to install).
fn redis_server() -> std::path::PathBuf {
    crate::process::require_program(
        "redis-server",
        &[],
        "redis-server (Debian: `apt-get install redis-server`)",
    )
}

/// One `redis-server` of a test's own on a free loopback port, without persistence
/// (`--save '' --appendonly no`), in a temporary directory: what a chaos test stops,
/// crashes and starts again. A restart is on the same port and starts empty, as a Redis
/// without persistence does after a crash. Killed, and its directory removed, when dropped.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    // Killed (dropped) before the directory it runs in is removed.
    node: Option<Proc>,
    starts: usize,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts it and waits until it answers `PING`.
    ///
    /// # Panics
    /// `redis-server` is missing, or does not answer within 30 s.
    pub async fn start() -> Self {
        let mut server = Self {
            port: free_port(),
            node: None,
            starts: 0,
            dir: tempfile::tempdir().expect("a directory for redis-server"),
        };
        server.start_again().await;
        server
    }

    /// Starts it again on the same port (after [`RedisServer::stop`] or
    /// [`RedisServer::shutdown_nosave`]), empty, and waits until it answers `PING`.
    ///
    /// # Panics
    /// It is running, or does not answer within 30 s.
    pub async fn start_again(&mut self) {
        assert!(
            self.node.is_none(),
            "redis-server :{} is running",
            self.port
        );
        self.starts += 1;
        let p = self.port.to_string();
        let mut cmd = Command::new(redis_server());
        cmd.args(["--port", &p, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        let log = self.dir.path().join(format!("redis-{}.log", self.starts));
        self.node = Some(Proc::spawn(&format!("redis-server :{p}"), &mut cmd, &log));
        let node = self.node.as_ref().expect("just started");
        crate::wait::wait("redis-server answers PING", Duration::from_secs(30))
            .until(async || {
                node.assert_running("PING");
                answers(self.port, "PING", "PONG").await
            })
            .await;
    }

    /// `SHUTDOWN NOSAVE`: Redis exits at once and its data is gone (what a crash of a
    /// Redis without persistence, or a failover that lost recent writes, leaves).
    ///
    /// # Panics
    /// It is not running, or has not exited 10 s after the command.
    pub async fn shutdown_nosave(&mut self) {
        let mut node = self.node.take().expect("redis-server is running");
        // The connection drops as Redis exits: the command gets no answer, by design.
        let _ = answers(self.port, "SHUTDOWN NOSAVE", "").await;
        crate::wait::wait(
            "redis-server exits after SHUTDOWN NOSAVE",
            Duration::from_secs(10),
        )
        .until(async || {
            if node.exited() {
                Ok(())
            } else {
                Err(node.log_tail())
            }
        })
        .await;
        node.stop(Duration::from_secs(1));
    }

    /// Stops it (SIGTERM; without persistence it saves nothing), until
    /// [`RedisServer::start_again`].
    pub fn stop(&mut self) {
        if let Some(mut node) = self.node.take() {
            node.stop(Duration::from_secs(10));
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A Redis Cluster of three masters (no replicas) on free loopback ports, each a
/// `redis-server --cluster-enabled yes` in a temporary directory, joined by
/// `redis-cli --cluster create`; killed, and its directory removed, when dropped.
#[derive(Debug)]
pub struct RedisCluster {
    ports: Vec<u16>,
    // Killed (dropped) before the directory they write to is removed.
    nodes: Vec<Proc>,
    #[allow(dead_code, reason = "kept until the nodes are stopped, then removed")]
    dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts the nodes, creates the cluster and waits until every node reports
    /// `cluster_state:ok`.
    ///
    /// # Panics
    /// `redis-server` or `redis-cli` is missing, or the cluster does not form within 30 s
    /// (the nodes' logs are in the message).
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("a directory for the cluster");
        // Each node's port and its cluster bus's, six distinct free ports: the bus's
        // default, the port plus 10000, may be taken (or above 65535).
        let mut picked: Vec<u16> = Vec::with_capacity(6);
        while picked.len() < 6 {
            let port = free_port();
            if !picked.contains(&port) {
                picked.push(port);
            }
        }
        let buses = picked.split_off(3);
        let ports = picked;
        let nodes = ports
            .iter()
            .zip(&buses)
            .map(|(port, bus)| {
                let p = port.to_string();
                let bus = bus.to_string();
                let mut cmd = Command::new(redis_server());
                cmd.args([
                    "--port",
                    &p,
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                ])
                .args(["--cluster-config-file", &format!("nodes-{p}.conf")])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(dir.path());
                Proc::spawn(
                    &format!("redis-server :{p}"),
                    &mut cmd,
                    &dir.path().join(format!("redis-{p}.log")),
                )
            })
            .collect();
        let cluster = Self { ports, nodes, dir };
        cluster
            .wait_all("the nodes answer PING", "PING", "PONG")
            .await;
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs (install redis-tools)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}\n{}\n{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr),
            cluster.logs()
        );
        cluster
            .wait_all(
                "every node reports cluster_state:ok",
                "CLUSTER INFO",
                "cluster_state:ok",
            )
            .await;
        cluster
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The nodes' ports.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The nodes' log tails, for a failure message.
    fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("--- {}:\n{}", n.name(), n.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until `command` (words) answers with text containing `expect` on every node.
    async fn wait_all(&self, what: &str, command: &str, expect: &str) {
        crate::wait::wait(what, Duration::from_secs(30))
            .until(async || {
                for (node, port) in self.nodes.iter().zip(&self.ports) {
                    node.assert_running(what);
                    answers(*port, command, expect).await?;
                }
                Ok(())
            })
            .await;
    }
}
