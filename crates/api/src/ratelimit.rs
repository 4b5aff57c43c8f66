//! Rate limits: GCRA (the generic cell rate algorithm), per API key, per user, and per
//! username and client address at login.
//!
//! GCRA keeps one number per bucket, the *theoretical arrival time* (TAT) of the next
//! request. With a limit of `n` per minute, each request moves the TAT `T = 60 s / n`
//! later; a request is refused when that would put the TAT more than `n × T` (one minute)
//! ahead of now, and the caller is told how long until it would fit (`Retry-After`). So a
//! bucket idle for a minute may spend its whole minute at once, then gets one request per
//! `T` — the same as a token bucket of `n` tokens refilled at `n` per minute, in one value.
//!
//! Where the state lives:
//! - embedded default (no `REDIS_URL`): in this process, a map of TATs;
//! - with `REDIS_URL`: in Redis, updated by one Lua script (one round trip, atomic), so every
//!   instance shares the bucket and N instances allow the limit, not N times it. The script
//!   reads Redis's own clock (`TIME`), so instances with skewed clocks still agree.
//!
//! When Redis fails (down, slow beyond [`REDIS_TIMEOUT`]): API requests are let through
//! (fail open) and the failure is logged — the caller was authenticated and authorised,
//! and rate limiting protects capacity, so a Redis outage should not also stop scoring.
//! Login attempts are refused with 503 instead (fail closed): the login limit is what
//! stops password guessing, and a login can wait.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deadpool_redis::redis::Script;
use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::{Connection, Pool};

/// How long a Redis check may take before the request goes on without it.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

const MICROS_PER_MINUTE: u64 = 60_000_000;

/// The GCRA step in Lua: KEYS[1] the bucket, ARGV[1] the emission interval (µs), ARGV[2]
/// the burst (requests). Returns `{allowed (0/1), retry_after_us}`.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, 0}
";

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Allowed,
    /// Refused; retry after this many seconds (at least 1).
    Limited {
        retry_after_s: u64,
    },
}

/// Why a check could not be made (Redis failed); the caller decides open or closed.
#[derive(Debug, thiserror::Error)]
#[error("the rate-limit store is unavailable: {0}")]
pub(crate) struct LimiterUnavailable(String);

/// Where the buckets live.
enum Backend {
    Local(Mutex<HashMap<String, u64>>),
    Redis {
        pool: Pool,
        /// One multiplexed connection taken from the pool and shared by every request:
        /// concurrent checks are pipelined on it instead of each holding a pooled
        /// connection for a round trip (measured: that made predict latency-bound on
        /// Redis). Dropped on an error, so the next check takes a fresh one.
        shared: Mutex<Option<MultiplexedConnection>>,
        script: Script,
        prefix: String,
    },
}

/// GCRA buckets, in this process or in Redis.
pub(crate) struct RateLimiter {
    backend: Backend,
    /// For rate-limited logs of Redis failures.
    last_failure_log: AtomicU64,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.backend {
            Backend::Local(_) => "local",
            Backend::Redis { .. } => "redis",
        };
        f.debug_struct("RateLimiter")
            .field("backend", &kind)
            .finish_non_exhaustive()
    }
}

/// Buckets kept in process before idle ones are dropped.
const MAX_LOCAL_BUCKETS: usize = 100_000;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn interval_us(per_minute: u32) -> u64 {
    (MICROS_PER_MINUTE / u64::from(per_minute.max(1))).max(1)
}

fn retry_after_s(us: u64) -> u64 {
    us.div_ceil(1_000_000).max(1)
}

/// One GCRA step on a TAT held in memory; returns the decision and the new TAT.
fn gcra(tat: Option<u64>, now: u64, per_minute: u32) -> (Decision, Option<u64>) {
    let interval = interval_us(per_minute);
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat + interval;
    let allow_at = new_tat.saturating_sub(interval * u64::from(per_minute));
    if now < allow_at {
        (
            Decision::Limited {
                retry_after_s: retry_after_s(allow_at - now),
            },
            None,
        )
    } else {
        (Decision::Allowed, Some(new_tat))
    }
}

impl RateLimiter {
    /// Buckets in this process (the embedded default).
    pub(crate) fn local() -> Self {
        Self {
            backend: Backend::Local(Mutex::new(HashMap::new())),
            last_failure_log: AtomicU64::new(0),
        }
    }

    /// Buckets in Redis, under `<prefix>:ratelimit:`, shared by every instance.
    pub(crate) fn redis(pool: Pool, prefix: &str) -> Self {
        Self {
            backend: Backend::Redis {
                pool,
                shared: Mutex::new(None),
                script: Script::new(GCRA_SCRIPT),
                prefix: format!("{prefix}:ratelimit:"),
            },
            last_failure_log: AtomicU64::new(0),
        }
    }

    /// One request against `bucket`, limited to `per_minute` (0: no limit).
    ///
    /// # Errors
    /// Redis failed or did not answer within [`REDIS_TIMEOUT`].
    pub(crate) async fn check(
        &self,
        bucket: &str,
        per_minute: u32,
    ) -> Result<Decision, LimiterUnavailable> {
        if per_minute == 0 {
            return Ok(Decision::Allowed);
        }
        match &self.backend {
            Backend::Local(buckets) => {
                let now = now_us();
                let mut buckets = buckets.lock().unwrap_or_else(|e| e.into_inner());
                let (decision, new_tat) = gcra(buckets.get(bucket).copied(), now, per_minute);
                if let Some(t) = new_tat {
                    if let Some(tat) = buckets.get_mut(bucket) {
                        *tat = t;
                    } else {
                        if buckets.len() >= MAX_LOCAL_BUCKETS {
                            // A bucket whose TAT has passed is full again: forgetting it
                            // changes nothing.
                            buckets.retain(|_, tat| *tat > now);
                        }
                        buckets.insert(bucket.to_string(), t);
                    }
                }
                Ok(decision)
            }
            Backend::Redis {
                pool,
                shared,
                script,
                prefix,
            } => {
                let run = async {
                    let cached = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let mut conn = match cached {
                        Some(c) => c,
                        None => {
                            let c = Connection::take(
                                pool.get()
                                    .await
                                    .map_err(|e| LimiterUnavailable(e.to_string()))?,
                            );
                            *shared.lock().unwrap_or_else(|e| e.into_inner()) = Some(c.clone());
                            c
                        }
                    };
                    let answer: Result<(i64, i64), _> = script
                        .key(format!("{prefix}{bucket}"))
                        .arg(interval_us(per_minute))
                        .arg(per_minute)
                        .invoke_async(&mut conn)
                        .await;
                    let (allowed, retry_us) = answer.map_err(|e| {
                        *shared.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        LimiterUnavailable(e.to_string())
                    })?;
                    Ok(if allowed == 1 {
                        Decision::Allowed
                    } else {
                        Decision::Limited {
                            retry_after_s: retry_after_s(u64::try_from(retry_us).unwrap_or(0)),
                        }
                    })
                };
                match tokio::time::timeout(REDIS_TIMEOUT, run).await {
                    Ok(result) => result,
                    Err(_) => Err({
                        // A connection that hangs is replaced too.
                        *shared.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        LimiterUnavailable(format!(
                            "no answer within {} ms",
                            REDIS_TIMEOUT.as_millis()
                        ))
                    }),
                }
            }
        }
    }

    /// Logs a Redis failure at most once every 10 s (an outage would otherwise log once per
    /// request).
    pub(crate) fn log_failure(&self, e: &LimiterUnavailable, policy: &str) {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let now_s = START.get_or_init(Instant::now).elapsed().as_secs() + 10;
        let last = self.last_failure_log.load(Ordering::Relaxed);
        if now_s >= last + 10
            && self
                .last_failure_log
                .compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(error = %e, policy, "rate limiting could not reach Redis");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_the_burst_then_one_request_per_interval() {
        let per_minute = 6; // one every 10 s, six at once
        let mut tat = None;
        let t0 = 1_000_000_000;
        for i in 0..6 {
            let (d, next) = gcra(tat, t0, per_minute);
            assert_eq!(d, Decision::Allowed, "request {i} of the burst");
            tat = next;
        }
        let (d, next) = gcra(tat, t0, per_minute);
        assert_eq!(d, Decision::Limited { retry_after_s: 10 });
        assert!(next.is_none(), "a refused request does not move the TAT");
        let (d, _) = gcra(tat, t0 + 9_000_000, per_minute);
        assert_eq!(d, Decision::Limited { retry_after_s: 1 });
        let (d, next) = gcra(tat, t0 + 10_000_000, per_minute);
        assert_eq!(d, Decision::Allowed);
        let (d, _) = gcra(next, t0 + 10_000_000, per_minute);
        assert!(matches!(d, Decision::Limited { .. }));
        // Idle for a minute: the whole burst again.
        let mut tat = next;
        for _ in 0..6 {
            let (d, next) = gcra(tat, t0 + 80_000_000, per_minute);
            assert_eq!(d, Decision::Allowed);
            tat = next;
        }
    }

    #[tokio::test]
    async fn a_limit_of_zero_never_limits_and_buckets_are_separate() {
        let limiter = RateLimiter::local();
        for _ in 0..1000 {
            assert_eq!(limiter.check("a", 0).await.unwrap(), Decision::Allowed);
        }
        assert_eq!(limiter.check("b", 1).await.unwrap(), Decision::Allowed);
        assert!(matches!(
            limiter.check("b", 1).await.unwrap(),
            Decision::Limited { retry_after_s: 60 }
        ));
        assert_eq!(limiter.check("c", 1).await.unwrap(), Decision::Allowed);
    }
}
