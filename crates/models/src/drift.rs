//! Drift monitoring on this instance: what each model version sees, in time windows.
//!
//! A [`ModelDrift`] holds one model version's reference profile (written beside its artifact
//! at training, see [`reference_path`]) and its windows. Windows are aligned on multiples of
//! the window length since the Unix epoch, so every instance's windows start together.
//! Each instance keeps the current window and the last one that had data, **in memory**:
//! a restart starts them empty, and several instances each see their own share of the
//! traffic (Prometheus sums nothing here: each instance reports its own PSI).
//!
//! Hot path: a predict adds its rows to one of several shards under that shard's mutex: it
//! tries its thread's own shard, then the others, without waiting, and blocks only if every
//! shard is busy. No global lock, no atomic shared by every request, and a thread that is
//! preempted while holding a shard (a busy machine) does not hold up the others. Per row and feature it is a binary search over at most
//! 99 edges and four additions. Reading a window (the drift endpoint, a metrics scrape)
//! locks each shard in turn and merges.
//!
//! [`DriftMonitor`] owns the windows of every model version seen, keyed by (tenant, name,
//! version), so a model evicted from the model cache and loaded again keeps its windows;
//! deleting a model forgets them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use detect_core::drift::{DriftThresholds, ReferenceProfile, WindowStats};
use ndarray::ArrayView2;

/// How drift is watched.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftConfig {
    /// Off: no reference is loaded for predicts and nothing is accumulated (references are
    /// still written at training, so switching it on later works for every model).
    pub enabled: bool,
    /// Length of a window.
    pub window: Duration,
    pub thresholds: DriftThresholds,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(300),
            thresholds: DriftThresholds::default(),
        }
    }
}

/// Where the reference profile of the model stored at `artifact_path` lives: beside it.
pub fn reference_path(artifact_path: &str) -> String {
    let stem = artifact_path.strip_suffix(".pnmy").unwrap_or(artifact_path);
    format!("{stem}.reference")
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[derive(Debug, Default)]
struct Shard {
    /// (window index, stats) of the newest window this shard has seen.
    current: Option<(u64, WindowStats)>,
    /// The one before it.
    previous: Option<(u64, WindowStats)>,
}

/// A window read back: its bounds (Unix seconds) and what was seen.
#[derive(Debug, Clone)]
pub struct WindowView {
    pub start: u64,
    pub end: u64,
    /// `false` for the window still running.
    pub complete: bool,
    pub stats: WindowStats,
}

/// One model version's reference and windows on this instance.
#[derive(Debug)]
pub struct ModelDrift {
    reference: Arc<ReferenceProfile>,
    /// The training columns' names, or `x0`, `x1`, … (scikit-learn's default names).
    feature_names: Vec<String>,
    window_secs: u64,
    shards: Box<[Padded]>,
    /// Request sampling for [`ModelDrift::observe`]: the window the counts below are for,
    /// the rows it has taken in full, and the requests seen since.
    sampled_window: AtomicU64,
    full_rows: AtomicU64,
    requests: AtomicU64,
}

/// Rows a window takes from every request before [`ModelDrift::observe`] samples.
pub const FULL_ROWS_PER_WINDOW: u64 = 20_000;
/// After [`FULL_ROWS_PER_WINDOW`] rows, one request in this many is counted.
pub const SAMPLE_EVERY: u64 = 8;

/// A shard on cache lines of its own, so threads working on neighbouring shards do not
/// contend for the same line.
#[derive(Debug)]
#[repr(align(128))]
struct Padded(Mutex<Shard>);

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static THREAD_SLOT: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

impl ModelDrift {
    fn new(
        reference: Arc<ReferenceProfile>,
        feature_names: Option<&[String]>,
        window: Duration,
    ) -> Self {
        let n = reference.n_features();
        let feature_names = match feature_names {
            Some(names) if names.len() == n => names.to_vec(),
            _ => (0..n).map(|i| format!("x{i}")).collect(),
        };
        let shards = std::thread::available_parallelism()
            .map_or(8, |n| 2 * n.get())
            .clamp(4, 32);
        Self {
            reference,
            feature_names,
            window_secs: window.as_secs().max(1),
            shards: (0..shards)
                .map(|_| Padded(Mutex::new(Shard::default())))
                .collect(),
            sampled_window: AtomicU64::new(u64::MAX),
            full_rows: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    /// The training reference.
    pub fn reference(&self) -> &Arc<ReferenceProfile> {
        &self.reference
    }

    /// Feature names, in column order.
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// The window length in seconds.
    pub fn window_seconds(&self) -> u64 {
        self.window_secs
    }

    fn shard(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A panic while holding it leaves plain counts: keep counting.
        self.shards[i].0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds scored rows (`anomalies` of them labelled `-1`) to the window of `now`.
    /// Rows of the wrong width are not counted (the model refused them anyway).
    ///
    /// A window takes every request until it holds [`FULL_ROWS_PER_WINDOW`] rows, then one
    /// request in [`SAMPLE_EVERY`], counted [`SAMPLE_EVERY`] times: a busy model's
    /// statistics come from tens of thousands of rows either way, the per-request cost on
    /// the predict path drops by that factor, and the window still weighs its later traffic
    /// as much as its first (a shift that starts mid-window is not diluted). A quiet model
    /// has every row counted once.
    pub fn observe(&self, x: ArrayView2<'_, f64>, anomalies: usize, now: u64) {
        if x.ncols() != self.reference.n_features() || x.nrows() == 0 {
            return;
        }
        let Some(weight) = self.sampled(x.nrows() as u64, now) else {
            return;
        };
        if weight == 1 {
            let mut shard = self.free_shard();
            let stats = self.window_of(&mut shard, now);
            stats.add_rows(&self.reference, x, anomalies);
        } else {
            let mut sample = WindowStats::new(&self.reference);
            sample.add_rows(&self.reference, x, anomalies);
            let mut shard = self.free_shard();
            self.window_of(&mut shard, now)
                .merge_weighted(&sample, weight);
        }
    }

    /// How many times a request of `rows` rows at `now` counts (see
    /// [`ModelDrift::observe`]): 1 while the window fills, then [`SAMPLE_EVERY`] for one
    /// request in [`SAMPLE_EVERY`], `None` for the others. The counters are approximate
    /// across threads (a reset may race with an increment), which only moves where
    /// sampling starts by a request or two.
    fn sampled(&self, rows: u64, now: u64) -> Option<u64> {
        let index = now / self.window_secs;
        if self.sampled_window.load(Ordering::Relaxed) != index {
            self.sampled_window.store(index, Ordering::Relaxed);
            self.full_rows.store(0, Ordering::Relaxed);
            self.requests.store(0, Ordering::Relaxed);
        }
        if self.full_rows.load(Ordering::Relaxed) < FULL_ROWS_PER_WINDOW {
            self.full_rows.fetch_add(rows, Ordering::Relaxed);
            return Some(1);
        }
        self.requests
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SAMPLE_EVERY)
            .then_some(SAMPLE_EVERY)
    }

    /// Adds a window accumulated elsewhere (a batch chunk) to the window of `now`.
    pub fn merge(&self, stats: &WindowStats, now: u64) {
        if stats.features.len() != self.reference.n_features() {
            return;
        }
        let mut shard = self.free_shard();
        self.window_of(&mut shard, now).merge(stats);
    }

    /// The calling thread's shard if free, else the first free one, else (all busy) wait
    /// for the thread's own.
    fn free_shard(&self) -> MutexGuard<'_, Shard> {
        let n = self.shards.len();
        let home = THREAD_SLOT.with(|s| *s) % n;
        for k in 0..n {
            match self.shards[(home + k) % n].0.try_lock() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        self.shard(home)
    }

    fn window_of<'a>(&self, shard: &'a mut Shard, now: u64) -> &'a mut WindowStats {
        let index = now / self.window_secs;
        let stale = shard.current.as_ref().is_some_and(|(i, _)| *i < index);
        if stale {
            shard.previous = shard.current.take();
        }
        // (If the clock stepped back, rows count into the newer window rather than be lost.)
        &mut shard
            .current
            .get_or_insert_with(|| (index, WindowStats::new(&self.reference)))
            .1
    }

    /// The window being filled at `now`, and the last earlier window that had data.
    pub fn windows(&self, now: u64) -> (WindowView, Option<WindowView>) {
        let index = now / self.window_secs;
        let mut current = WindowStats::new(&self.reference);
        let mut earlier: Vec<(u64, WindowStats)> = Vec::new();
        for i in 0..self.shards.len() {
            let shard = self.shard(i);
            for (idx, stats) in shard.current.iter().chain(shard.previous.iter()) {
                if *idx >= index {
                    current.merge(stats);
                } else {
                    earlier.push((*idx, stats.clone()));
                }
            }
        }
        let last = earlier.iter().map(|(i, _)| *i).max();
        let previous = last.map(|last| {
            let mut stats = WindowStats::new(&self.reference);
            for (_, s) in earlier.iter().filter(|(i, _)| *i == last) {
                stats.merge(s);
            }
            WindowView {
                start: last * self.window_secs,
                end: (last + 1) * self.window_secs,
                complete: true,
                stats,
            }
        });
        let current = WindowView {
            start: index * self.window_secs,
            end: (index + 1) * self.window_secs,
            complete: false,
            stats: current,
        };
        (current, previous)
    }

    /// The window a verdict is given on: the running one once it has `min_samples` rows,
    /// else the last complete one if it has them, else the running one (not enough data).
    pub fn reported_window(&self, now: u64, min_samples: u64) -> WindowView {
        let (current, previous) = self.windows(now);
        if current.stats.rows >= min_samples {
            return current;
        }
        match previous {
            Some(p) if p.stats.rows >= min_samples => p,
            _ => current,
        }
    }
}

type Key = (String, String, i64);

/// The windows of every model version this instance has served.
#[derive(Debug)]
pub struct DriftMonitor {
    config: DriftConfig,
    models: Mutex<HashMap<Key, Arc<ModelDrift>>>,
}

impl DriftMonitor {
    /// A monitor with these settings.
    pub fn new(config: DriftConfig) -> Self {
        Self {
            config,
            models: Mutex::new(HashMap::new()),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &DriftConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Arc<ModelDrift>>> {
        self.models.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The windows of a model version (created on first use; `None` when monitoring is
    /// off). Called when a model is loaded, not per request.
    pub fn attach(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
        reference: Arc<ReferenceProfile>,
        feature_names: Option<&[String]>,
    ) -> Option<Arc<ModelDrift>> {
        if !self.config.enabled {
            return None;
        }
        let key = (tenant.to_string(), name.to_string(), version);
        let mut models = self.lock();
        let entry = models.entry(key).or_insert_with(|| {
            Arc::new(ModelDrift::new(
                reference,
                feature_names,
                self.config.window,
            ))
        });
        Some(Arc::clone(entry))
    }

    /// Forgets every version of a model (deleted).
    pub fn forget(&self, tenant: &str, name: &str) {
        self.lock()
            .retain(|(t, n, _), _| !(t == tenant && n == name));
    }

    /// Every monitored model version: ((tenant, name, version), windows).
    pub fn models(&self) -> Vec<(Key, Arc<ModelDrift>)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn reference() -> Arc<ReferenceProfile> {
        let x = Array2::from_shape_fn((1000, 2), |(i, j)| (i * (j + 1)) as f64);
        Arc::new(ReferenceProfile::from_matrix(x.view(), 0.1))
    }

    #[test]
    fn rows_land_in_the_window_of_their_time_and_the_last_one_is_kept() {
        let drift = ModelDrift::new(reference(), None, Duration::from_secs(60));
        let rows = Array2::from_elem((3, 2), 5.0);
        drift.observe(rows.view(), 1, 600);
        drift.observe(rows.view(), 0, 659);
        let (current, previous) = drift.windows(659);
        assert_eq!(
            (current.start, current.end, current.stats.rows),
            (600, 660, 6)
        );
        assert!(previous.is_none());
        drift.observe(rows.view(), 2, 700);
        let (current, previous) = drift.windows(700);
        assert_eq!(
            (current.start, current.stats.rows, current.stats.anomalies),
            (660, 3, 2)
        );
        let previous = previous.unwrap();
        assert_eq!(
            (previous.start, previous.stats.rows, previous.complete),
            (600, 6, true)
        );
        // Reported: the running window has too few rows, the complete one has enough.
        assert_eq!(drift.reported_window(700, 5).start, 600);
        assert_eq!(drift.reported_window(700, 3).start, 660);
        // Much later, with nothing new: the last window with data is still reported.
        let (current, previous) = drift.windows(10_000);
        assert_eq!(current.stats.rows, 0);
        assert_eq!(previous.unwrap().start, 660);
    }

    #[test]
    fn a_busy_window_samples_one_request_in_eight_after_its_full_rows() {
        let drift = ModelDrift::new(reference(), None, Duration::from_secs(60));
        let block = Array2::from_elem((1000, 2), 5.0);
        // 20 requests of 1000 rows fill the window's full share...
        for _ in 0..20 {
            drift.observe(block.view(), 10, 600);
        }
        assert_eq!(drift.windows(600).0.stats.rows, FULL_ROWS_PER_WINDOW);
        // ...then 80 more are sampled, 10 of them...
        let row = Array2::from_elem((1, 2), 5.0);
        for _ in 0..80 {
            drift.observe(row.view(), 1, 600);
        }
        // ...each counted SAMPLE_EVERY times: the window estimates all 80.
        let stats = drift.windows(600).0.stats;
        assert_eq!(stats.rows, FULL_ROWS_PER_WINDOW + 80);
        assert_eq!(stats.anomalies, 200 + 80);
        // A new window starts in full again.
        drift.observe(row.view(), 0, 660);
        assert_eq!(drift.windows(660).0.stats.rows, 1);
    }

    /// `rows` × 3 roughly normal values (sums of four uniforms from a fixed linear
    /// congruential generator), the stream `seed` picks.
    fn normal_rows(rows: usize, seed: u64) -> Array2<f64> {
        let mut state = seed;
        let mut uniform = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        Array2::from_shape_fn((rows, 3), |_| (0..4).map(|_| uniform()).sum::<f64>() - 2.0)
    }

    #[test]
    fn a_shift_that_starts_mid_window_is_reported_as_drift_on_its_feature_alone() {
        use detect_core::drift::{Verdict, compare};
        let reference = Arc::new(ReferenceProfile::from_matrix(
            normal_rows(10_000, 1).view(),
            0.1,
        ));
        let drift = ModelDrift::new(Arc::clone(&reference), None, Duration::from_secs(300));
        // 20 requests of 1,000 rows as in training, then 20 with x2 shifted (x*3+2), all
        // in one window: past the window's full rows, only one request in eight is counted.
        for i in 0..20 {
            drift.observe(normal_rows(1000, 100 + i).view(), 0, 600);
        }
        for i in 0..20 {
            let mut shifted = normal_rows(1000, 200 + i);
            shifted.column_mut(1).mapv_inplace(|x| x * 3.0 + 2.0);
            drift.observe(shifted.view(), 0, 600);
        }
        let window = drift.windows(600).0.stats;
        // 20,000 rows counted once, then the 1st, 9th and 17th shifted requests eight times
        // each: the shifted traffic weighs about what it was (24,000 for 20,000).
        assert_eq!(window.rows, 20_000 + 3 * 8 * 1000);
        let report = compare(&reference, &window, &DriftThresholds::default());
        let verdicts: Vec<Verdict> = report.features.iter().map(|f| f.verdict).collect();
        assert_eq!(
            verdicts,
            [Verdict::Stable, Verdict::Drift, Verdict::Stable],
            "{report:?}"
        );
    }

    #[test]
    fn rows_of_the_wrong_width_are_not_counted() {
        let drift = ModelDrift::new(reference(), None, Duration::from_secs(60));
        drift.observe(Array2::from_elem((3, 5), 1.0).view(), 0, 10);
        assert_eq!(drift.windows(10).0.stats.rows, 0);
    }

    #[test]
    fn windows_outlive_the_model_cache_and_die_with_the_model() {
        let monitor = DriftMonitor::new(DriftConfig::default());
        let a = monitor.attach("t", "m", 1, reference(), None).unwrap();
        a.observe(Array2::from_elem((2, 2), 1.0).view(), 0, 10);
        let again = monitor.attach("t", "m", 1, reference(), None).unwrap();
        assert!(Arc::ptr_eq(&a, &again));
        monitor.attach("t", "other", 1, reference(), None);
        monitor.forget("t", "m");
        let left: Vec<_> = monitor.models().into_iter().map(|(k, _)| k.1).collect();
        assert_eq!(left, vec!["other".to_string()]);
        let off = DriftMonitor::new(DriftConfig {
            enabled: false,
            ..DriftConfig::default()
        });
        assert!(off.attach("t", "m", 1, reference(), None).is_none());
    }

    #[test]
    fn features_are_named_by_their_columns_or_by_position() {
        let names = vec!["a".to_string(), "b".to_string()];
        let named = ModelDrift::new(reference(), Some(&names), Duration::from_secs(60));
        assert_eq!(named.feature_names(), ["a", "b"]);
        let wrong = vec!["a".to_string()];
        let unnamed = ModelDrift::new(reference(), Some(&wrong), Duration::from_secs(60));
        assert_eq!(unnamed.feature_names(), ["x0", "x1"]);
    }

    #[test]
    fn reference_sits_beside_the_artifact() {
        assert_eq!(
            reference_path("models/t/abc.pnmy"),
            "models/t/abc.reference"
        );
    }
}
