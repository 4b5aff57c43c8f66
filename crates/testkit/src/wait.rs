//! Polling with a deadline: a test waits for a state (a process answering, a job ending,
//! a count reached) by checking it again and again, and fails with the last state it saw
//! when the deadline passes. A fixed sleep either wastes time or, on a loaded machine, is
//! too short; a test sleeps only where time itself has to pass (a lease expiring, a rate
//! of traffic), and says so where it does.

use std::time::{Duration, Instant};

/// How often a check is repeated unless [`Wait::every`] says otherwise.
pub const POLL: Duration = Duration::from_millis(100);

/// A wait for `what`, up to a deadline; see [`wait`].
#[derive(Debug, Clone)]
pub struct Wait<'a> {
    what: &'a str,
    timeout: Duration,
    every: Duration,
}

/// A wait for `what` (words that complete "timed out waiting until …"), for at most
/// `timeout`.
pub fn wait(what: &str, timeout: Duration) -> Wait<'_> {
    Wait {
        what,
        timeout,
        every: POLL,
    }
}

impl Wait<'_> {
    /// Checks every `every` instead of every [`POLL`].
    #[must_use]
    pub fn every(mut self, every: Duration) -> Self {
        self.every = every;
        self
    }

    /// Runs `check` until it returns `Ok`, and returns its value. `Err` carries the state
    /// seen, for the failure message.
    ///
    /// # Panics
    /// The deadline passed; the message names what was awaited and the last state.
    pub async fn until<T>(self, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
        let deadline = Instant::now() + self.timeout;
        loop {
            match check().await {
                Ok(value) => return value,
                Err(state) => self.give_up_after(deadline, &state),
            }
            tokio::time::sleep(self.every).await;
        }
    }

    /// [`Wait::until`] for a test without an async runtime: blocks the thread.
    ///
    /// # Panics
    /// The deadline passed.
    pub fn until_blocking<T>(self, mut check: impl FnMut() -> Result<T, String>) -> T {
        let deadline = Instant::now() + self.timeout;
        loop {
            match check() {
                Ok(value) => return value,
                Err(state) => self.give_up_after(deadline, &state),
            }
            std::thread::sleep(self.every);
        }
    }

    fn give_up_after(&self, deadline: Instant, state: &str) {
        assert!(
            Instant::now() < deadline,
            "timed out after {:?} waiting until {}; last seen: {state}",
            self.timeout,
            self.what
        );
    }
}

/// Polls `check` every [`POLL`] until it returns `Ok`; see [`Wait::until`].
///
/// # Panics
/// `timeout` passed first.
pub async fn eventually<T>(
    what: &str,
    timeout: Duration,
    check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    wait(what, timeout).until(check).await
}

/// Blocks until `check` holds, polling every [`POLL`].
///
/// # Panics
/// `timeout` passed first.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    wait(what, timeout).until_blocking(|| {
        if check() {
            Ok(())
        } else {
            Err("not yet".into())
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_check_that_comes_true_returns_its_value() {
        let mut tries = 0;
        let value = eventually("the third try", Duration::from_secs(5), async || {
            tries += 1;
            if tries == 3 {
                Ok(tries * 10)
            } else {
                Err(format!("try {tries}"))
            }
        })
        .await;
        assert_eq!((value, tries), (30, 3));
    }

    #[test]
    #[should_panic(expected = "waiting until never; last seen: still no")]
    fn a_check_that_stays_false_fails_with_the_last_state_seen() {
        wait("never", Duration::from_millis(250))
            .every(Duration::from_millis(10))
            .until_blocking(|| Err::<(), _>("still no".to_string()));
    }
}
