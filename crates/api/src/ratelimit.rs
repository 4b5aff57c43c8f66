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
//!   reads Redis's own clock (`TIME`), so instances with skewed clocks still agree. Its one
//!   key is the bucket, so on a Redis Cluster it runs on the node owning that bucket's slot,
//!   and buckets spread over the nodes (no hash tag ties them together). A
//!   round trip per request would cost the hot path a third of its throughput, so for
//!   limits above 240 a minute an instance takes a small *lease* of requests at once
//!   (up to [`MAX_LEASE`], at most half a second's worth of the limit) and admits them
//!   locally for at most [`LEASE_TTL`]. Leased requests are spent in Redis when taken, so
//!   the instances together never exceed the limit; a lease left unused when it expires only
//!   makes the limit slightly stricter. Small limits (the ones a test or a login guard
//!   uses) take one request at a time and stay exact.
//!
//! When Redis fails (down, slow beyond [`REDIS_TIMEOUT`]): API requests are let through
//! (fail open) and the failure is logged — the caller was authenticated and authorised,
//! and rate limiting protects capacity, so a Redis outage should not also stop scoring.
//! Login attempts are refused with 503 instead (fail closed): the login limit is what
//! stops password guessing, and a login can wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deadpool_redis::redis::Script;
use pynomaly_redis::{RedisConnection, RedisPool, SharedConnection};

/// How long a Redis check may take before the request goes on without it.
pub(crate) const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

const MICROS_PER_MINUTE: u64 = 60_000_000;

/// The GCRA step in Lua, for up to `want` requests at once: KEYS[1] the bucket, ARGV[1]
/// the emission interval (µs), ARGV[2] the burst (requests), ARGV[3] how many requests the
/// caller would like (a lease; 1 for a single request). One key: any Redis Cluster slot. Grants as many as fit now (at
/// least one, else none) and returns `{granted, retry_after_us}`.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local room = math.floor((now + burst * interval - tat) / interval)
if room < 1 then
  return {0, tat + interval - burst * interval - now}
end
local granted = math.min(want, room)
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {granted, 0}
";

/// Most requests one Redis round trip may lease for an instance.
pub(crate) const MAX_LEASE: u32 = 10_000;
/// How long leased requests may be admitted locally.
pub(crate) const LEASE_TTL: Duration = Duration::from_millis(500);

/// Requests to lease per round trip for a limit: half a second's worth, 1 up to 240 a
/// minute, at most [`MAX_LEASE`] (one key admitted at tens of thousands of requests a
/// second must not wait for Redis every few dozen).
fn lease_size(per_minute: u32) -> u32 {
    (per_minute / 120).clamp(1, MAX_LEASE)
}

/// One bucket's lease: the requests an instance took from Redis and has not admitted yet,
/// and until when they may be admitted, in one atomic word (taking one is a compare and
/// swap, no lock); plus the lock that lets one request at a time refill it: without it,
/// every request in flight when a lease runs out would go to Redis at once.
#[derive(Debug)]
struct LeaseSlot {
    /// `left << DEADLINE_BITS | deadline`, the deadline in milliseconds after the
    /// limiter's `epoch` (0 left: no lease).
    state: AtomicU64,
    refill: tokio::sync::Mutex<()>,
}

/// Bits of [`LeaseSlot::state`] holding the deadline (ms: 34 years); the rest hold the
/// requests left (at most [`MAX_LEASE`]).
const DEADLINE_BITS: u32 = 40;
const DEADLINE_MASK: u64 = (1 << DEADLINE_BITS) - 1;

impl LeaseSlot {
    fn new() -> Self {
        Self {
            state: AtomicU64::new(0),
            refill: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether it holds requests still valid at `now_ms` (idle slots are dropped when the
    /// map is full).
    fn live(&self, now_ms: u64) -> bool {
        let s = self.state.load(Ordering::Acquire);
        s >> DEADLINE_BITS > 0 && s & DEADLINE_MASK > now_ms
    }

    /// Takes one leased request, if any is left and the lease is still valid at `now_ms`.
    fn take(&self, now_ms: u64) -> bool {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s >> DEADLINE_BITS > 0 && s & DEADLINE_MASK > now_ms)
                    .then(|| s - (1 << DEADLINE_BITS))
            })
            .is_ok()
    }

    /// Replaces the lease with `left` requests admissible until `deadline_ms`.
    fn grant(&self, left: u32, deadline_ms: u64) {
        let left = u64::from(left.min(MAX_LEASE));
        self.state.store(
            left << DEADLINE_BITS | (deadline_ms & DEADLINE_MASK),
            Ordering::Release,
        );
    }
}

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
    Redis(RedisBuckets),
}

/// Buckets in Redis, shared by every instance.
struct RedisBuckets {
    pool: RedisPool,
    /// One multiplexed connection taken from the pool and shared by every request:
    /// concurrent checks are pipelined on it instead of each holding a pooled
    /// connection for a round trip (measured: that made predict latency-bound on
    /// Redis). Dropped on an error, so the next check takes a fresh one.
    shared: Mutex<Option<SharedConnection>>,
    script: Script,
    prefix: String,
    /// Leased requests per bucket (see the module docs). Looked up under a read lock
    /// by `&str` (no allocation on the hot path); written only for a new bucket.
    leases: RwLock<HashMap<Box<str>, Arc<LeaseSlot>>>,
    /// Lease deadlines count milliseconds from here.
    epoch: Instant,
}

impl RedisBuckets {
    /// The slow path of [`RateLimiter::check`] on Redis: one refill of `bucket`'s lease at
    /// a time (`slot`, for leased limits), or the single request of a small limit.
    async fn check_slow(
        &self,
        bucket: &str,
        per_minute: u32,
        want: u32,
        slot: Option<Arc<LeaseSlot>>,
    ) -> Result<Decision, LimiterUnavailable> {
        let Self {
            pool,
            shared,
            script,
            prefix,
            epoch,
            ..
        } = self;
        let now_ms = || ms_since(*epoch);
        // One refill at a time per bucket; whoever waited checks the new lease first.
        let _refilling = match &slot {
            Some(slot) => {
                let guard = slot.refill.lock().await;
                if slot.take(now_ms()) {
                    return Ok(Decision::Allowed);
                }
                Some(guard)
            }
            None => None,
        };
        let run = async {
            let cached = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let mut conn = match cached {
                Some(c) => c,
                None => {
                    let c = RedisConnection::take(
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
                .arg(want)
                .invoke_async(&mut conn)
                .await;
            let (granted, retry_us) = answer.map_err(|e| {
                *shared.lock().unwrap_or_else(|e| e.into_inner()) = None;
                LimiterUnavailable(e.to_string())
            })?;
            Ok(if granted >= 1 {
                if granted > 1
                    && let Some(slot) = &slot
                {
                    // This request takes the first.
                    let ttl = u64::try_from(LEASE_TTL.as_millis()).unwrap_or(500);
                    slot.grant(
                        u32::try_from(granted - 1).unwrap_or(0),
                        now_ms().saturating_add(ttl),
                    );
                }
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
                LimiterUnavailable(format!("no answer within {} ms", REDIS_TIMEOUT.as_millis()))
            }),
        }
    }
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
            Backend::Redis(_) => "redis",
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

/// Milliseconds since `epoch` (lease deadlines count from the limiter's creation).
fn ms_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The lease slot of `bucket`, made on first use. Found under the read lock without
/// allocating; the write lock is taken only for a bucket seen for the first time.
fn lease_slot(
    leases: &RwLock<HashMap<Box<str>, Arc<LeaseSlot>>>,
    bucket: &str,
    now_ms: u64,
) -> Arc<LeaseSlot> {
    if let Some(slot) = leases.read().unwrap_or_else(|e| e.into_inner()).get(bucket) {
        return Arc::clone(slot);
    }
    let mut leases = leases.write().unwrap_or_else(|e| e.into_inner());
    if leases.len() >= MAX_LOCAL_BUCKETS {
        leases.retain(|_, s| Arc::strong_count(s) > 1 || s.live(now_ms));
    }
    Arc::clone(
        leases
            .entry(Box::from(bucket))
            .or_insert_with(|| Arc::new(LeaseSlot::new())),
    )
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
    pub(crate) fn redis(pool: RedisPool, prefix: &str) -> Self {
        Self {
            backend: Backend::Redis(RedisBuckets {
                pool,
                shared: Mutex::new(None),
                script: Script::new(GCRA_SCRIPT),
                prefix: format!("{prefix}:ratelimit:"),
                leases: RwLock::new(HashMap::new()),
                epoch: Instant::now(),
            }),
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
            Backend::Redis(redis) => {
                let want = lease_size(per_minute);
                let slot =
                    (want > 1).then(|| lease_slot(&redis.leases, bucket, ms_since(redis.epoch)));
                if let Some(slot) = &slot
                    && slot.take(ms_since(redis.epoch))
                {
                    return Ok(Decision::Allowed);
                }
                // Boxed: the round trip's state stays out of every request's future, which
                // takes the fast path above all but once per lease.
                Box::pin(redis.check_slow(bucket, per_minute, want, slot)).await
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

    #[test]
    fn small_limits_lease_one_request_at_a_time_large_ones_half_a_second() {
        assert_eq!(lease_size(1), 1);
        assert_eq!(lease_size(4), 1);
        assert_eq!(lease_size(239), 1);
        assert_eq!(lease_size(600), 5);
        assert_eq!(lease_size(6000), 50);
        assert_eq!(lease_size(1_200_000), MAX_LEASE);
        assert_eq!(lease_size(u32::MAX), MAX_LEASE);
    }

    #[test]
    fn a_lease_admits_what_it_holds_until_its_deadline_and_no_more() {
        let slot = LeaseSlot::new();
        assert!(!slot.take(0), "no lease yet");
        slot.grant(3, 1_000);
        assert!(slot.live(999));
        assert!(!slot.live(1_000));
        for i in 0..3 {
            assert!(slot.take(500), "leased request {i}");
        }
        assert!(!slot.take(500), "all three taken");
        assert!(!slot.live(500));
        slot.grant(2, 1_000);
        assert!(!slot.take(1_000), "expired at its deadline");
        assert!(slot.take(999));
        // Deadlines far from the epoch keep their requests apart from the deadline bits.
        let far = DEADLINE_MASK - 1;
        slot.grant(MAX_LEASE, far);
        assert!(slot.take(far - 1));
        assert_eq!(
            slot.state.load(Ordering::Relaxed) >> DEADLINE_BITS,
            u64::from(MAX_LEASE - 1)
        );
        assert_eq!(slot.state.load(Ordering::Relaxed) & DEADLINE_MASK, far);
    }

    #[test]
    fn concurrent_takes_never_admit_more_than_the_lease() {
        let slot = Arc::new(LeaseSlot::new());
        slot.grant(10_000, 1 << 30);
        let taken: u32 = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    let slot = Arc::clone(&slot);
                    s.spawn(move || (0..5_000).filter(|_| slot.take(1)).count() as u32)
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(taken, 10_000);
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

#[cfg(test)]
mod redis_tests {
    use super::*;

    fn redis_pool(url: &str) -> RedisPool {
        pynomaly_redis::RedisTarget::parse(url, false)
            .map(|t| t.pool(Duration::from_secs(5), 8))
            .expect("a Redis URL")
            .expect("a pool")
    }

    /// What a leased check costs on the hot path (no Redis round trip), in ns; printed.
    /// `cargo test --release -p pynomaly-api --lib leased_check_cost -- --ignored --nocapture`
    /// with `PYNOMALY_TEST_REDIS_URL` set. A measurement, not a pass/fail check.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement, not a test"]
    async fn leased_check_cost() {
        let Ok(url) = std::env::var("PYNOMALY_TEST_REDIS_URL") else {
            eprintln!("SKIPPED leased_check_cost: PYNOMALY_TEST_REDIS_URL is unset");
            return;
        };
        let pool = redis_pool(&url);
        let prefix = format!("pynomaly-test-{}", uuid::Uuid::new_v4().simple());
        let limiter = RateLimiter::redis(pool, &prefix);
        let per_minute = 100_000_000; // leases of MAX_LEASE
        let n = 1_000_000u32;
        let t = Instant::now();
        for _ in 0..n {
            assert_eq!(
                limiter.check("key:k", per_minute).await.expect("redis"),
                Decision::Allowed
            );
        }
        let elapsed = t.elapsed();
        println!(
            "Redis-backed GCRA check with leases: {} ns per request on average, round \
             trips for new leases included ({n} requests; a lease holds up to {MAX_LEASE})",
            elapsed.as_nanos() / u128::from(n)
        );
    }

    /// Two limiters (two instances) on one Redis: with leases, together they admit the
    /// limit and not more, and lose at most the leases left unused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leased_requests_never_exceed_the_shared_limit() {
        let Ok(url) = std::env::var("PYNOMALY_TEST_REDIS_URL") else {
            eprintln!(
                "SKIPPED leased_requests_never_exceed_the_shared_limit: PYNOMALY_TEST_REDIS_URL is unset"
            );
            return;
        };
        let prefix = format!("pynomaly-test-{}", uuid::Uuid::new_v4().simple());
        let a = RateLimiter::redis(redis_pool(&url), &prefix);
        let b = RateLimiter::redis(redis_pool(&url), &prefix);
        let per_minute = 1200; // leases of 10; refills 20 a second
        let started = Instant::now();
        let mut allowed = 0u32;
        for i in 0..1500 {
            let limiter = if i % 3 == 0 { &a } else { &b };
            if limiter.check("key:k", per_minute).await.expect("redis") == Decision::Allowed {
                allowed += 1;
            }
        }
        let refilled = (started.elapsed().as_secs_f64() * 20.0).ceil() as u32;
        assert!(
            allowed <= per_minute + refilled,
            "{allowed} admitted, limit {per_minute} + {refilled} refilled"
        );
        assert!(
            allowed + 2 * (lease_size(per_minute) - 1) >= per_minute,
            "{allowed} admitted of {per_minute}"
        );
    }
}
