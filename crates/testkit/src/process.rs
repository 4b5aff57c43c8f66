//! A child process of an integration test, its output in a log file, killed when dropped
//! so that a failing test leaves nothing running.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::wait::wait;

/// How long a process gets to answer [`wait_ready`].
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running child process.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with no stdin and its stdout and stderr in the file `log`.
    ///
    /// # Panics
    /// The log file cannot be created or the command cannot be started.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let file = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("a second handle on the log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// The name it was started under, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id (0 once it has been stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether it has exited (a child not yet waited for stays a zombie, state `Z` in
    /// `/proc`); false once stopped through this handle.
    pub fn exited(&self) -> bool {
        let Some(c) = &self.child else {
            return false;
        };
        std::fs::read_to_string(format!("/proc/{}/stat", c.id())).map_or(true, |stat| {
            // The state follows the command name, which is in parentheses.
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'))
        })
    }

    /// Panics, with the log's tail, if the process has exited: for a wait that would
    /// otherwise run to its deadline for nothing.
    pub fn assert_running(&self, waiting_for: &str) {
        assert!(
            !self.exited(),
            "{} exited while waiting for {waiting_for}:\n{}",
            self.name,
            self.log_tail()
        );
    }

    /// SIGKILL, to the process and to every process it started (a SIGKILLed nginx
    /// master cannot stop its workers, which would outlive the test): nothing gets a
    /// chance to clean up.
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let family = descendants(c.id());
            let _ = c.kill();
            let _ = c.wait();
            if !family.is_empty() {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .args(family.iter().map(u32::to_string))
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    /// SIGTERM, then its exit status once it has stopped (a graceful stop: drains,
    /// flushes); `None` if it was SIGKILLed after `grace` instead, or already stopped.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            // The standard library has no wait with a timeout: poll until the grace ends.
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop within {grace:?}: killing it", self.name);
        self.child = Some(c);
        self.kill_hard();
        None
    }

    /// [`Proc::stop`] for a process that must stop by itself on SIGTERM.
    ///
    /// # Panics
    /// It did not stop within `grace` (the log's tail is in the message).
    pub fn terminate(&mut self, grace: Duration) -> ExitStatus {
        let status = self.stop(grace);
        status.unwrap_or_else(|| {
            panic!(
                "{} did not stop on SIGTERM within {grace:?}:\n{}",
                self.name,
                self.log_tail()
            )
        })
    }

    /// Everything it has written so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its last 40 lines, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// The processes `pid` started and theirs, from `/proc` (empty where it lists none).
fn descendants(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(child);
                queue.push(child);
            }
        }
    }
    found
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// The path of `program`, found on PATH or in one of `also_in` (directories where a package
/// installs it off PATH, e.g. `/usr/lib/postgresql/*/bin`; a `*` matches any one name, the
/// highest sorting first).
///
/// # Panics
/// It is nowhere to be found; the message says what to install (`install`): the tests
/// that need it are the ones CI runs on purpose, so a missing tool fails them.
pub fn require_program(program: &str, also_in: &[&str], install: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut dirs = on_path;
    for pattern in also_in {
        dirs.extend(expand(Path::new(pattern)));
    }
    dirs.into_iter()
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{}: `{program}` is not installed (not on PATH{}): install {install}",
                crate::current_test(),
                if also_in.is_empty() {
                    String::new()
                } else {
                    format!(" nor in {also_in:?}")
                }
            )
        })
}

/// The directories `pattern` names, a `*` component matching any one name (highest first).
fn expand(pattern: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for part in pattern.components() {
        let part = part.as_os_str();
        if part == "*" {
            found = found
                .iter()
                .flat_map(|dir| {
                    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
                        .map(|entries| entries.flatten().map(|e| e.path()).collect())
                        .unwrap_or_default();
                    names.sort();
                    names.reverse();
                    names
                })
                .collect();
        } else {
            for dir in &mut found {
                dir.push(part);
            }
        }
    }
    found.into_iter().filter(|d| d.is_dir()).collect()
}

/// A port free on 127.0.0.1 at the time of asking.
///
/// # Panics
/// No port can be bound.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits for `url` to answer 200; fails at once, with the log's tail, if `proc` exits
/// first, and after [`READY_TIMEOUT`].
pub async fn wait_ready(url: &str, proc: &Proc) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    let what = format!("{} answers 200 at {url}", proc.name());
    wait(&what, READY_TIMEOUT)
        .until(async || {
            proc.assert_running(url);
            match client.get(url).send().await {
                Ok(r) if r.status() == reqwest::StatusCode::OK => Ok(()),
                Ok(r) => Err(format!("{}\n{}", r.status(), proc.log_tail())),
                Err(e) => Err(format!("{e}\n{}", proc.log_tail())),
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_off_path_is_found_through_a_wildcard_directory() {
        let root = tempfile::tempdir().unwrap();
        for version in ["14", "15"] {
            let bin = root.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("pynomaly-test-tool"), "").unwrap();
        }
        let pattern = format!("{}/*/bin", root.path().display());
        let found = require_program("pynomaly-test-tool", &[&pattern], "nothing");
        assert_eq!(
            found,
            root.path().join("15/bin/pynomaly-test-tool"),
            "the highest"
        );
    }

    #[test]
    fn a_hard_kill_takes_the_processes_it_started_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("child.pid");
        // A shell that starts a sleeper, writes its pid and waits (as nginx's master
        // waits on its workers).
        let mut shell = Proc::spawn(
            "sh",
            Command::new("sh").arg("-c").arg(format!(
                "sleep 300 & echo $! > {}; wait",
                pid_file.display()
            )),
            &dir.path().join("sh.log"),
        );
        let child = wait("the sleeper's pid", Duration::from_secs(10)).until_blocking(|| {
            std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
                .ok_or_else(|| "not yet".to_string())
        });
        let alive = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(") ")
                    .is_some_and(|(_, r)| !r.starts_with('Z'))
            })
        };
        assert!(alive(child));
        shell.kill_hard();
        wait("the sleeper gone", Duration::from_secs(10)).until_blocking(|| {
            if alive(child) {
                Err("alive".to_string())
            } else {
                Ok(())
            }
        });
    }

    #[test]
    #[should_panic(
        expected = "`pynomaly-no-such-tool` is not installed (not on PATH nor in \
                               [\"/nonexistent/*/bin\"]): install the no-such-tool package"
    )]
    fn a_missing_program_fails_saying_what_to_install() {
        require_program(
            "pynomaly-no-such-tool",
            &["/nonexistent/*/bin"],
            "the no-such-tool package",
        );
    }
}
