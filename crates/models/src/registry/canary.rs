//! Canary and shadow rollouts: a candidate version beside production, its live comparison
//! with production, and the guards that end it when it misbehaves.
//!
//! - **Canary**: `traffic_percent` of the predicts that name no version are scored by the
//!   candidate instead of production. Which ones is decided by the request's routing key
//!   (`X-Routing-Key`, a `routing_key` field, else the request id): the first 8 bytes of
//!   its SHA-256, as a number, modulo 10,000, below `traffic_percent × 100` — so one entity
//!   always sees one version, on every instance.
//! - **Shadow**: every such predict is answered by production; the candidate scores the same
//!   rows off the response path, and the two are compared (agreement of the labels, rank
//!   correlation of the scores, anomaly rates).
//!
//! - **Bake**: for `bake_seconds` after a promotion that asked for one, the new production
//!   version is watched by the same guards, its live anomaly rate held to the rate of its
//!   own training rows (there is no other version to compare it with). A breach puts the
//!   version it replaced back in production; when the time is up the bake ends and the
//!   version stays.
//!
//! Each instance keeps the comparison of what it served since the rollout started (or since
//! it learnt of it), and the same counts over a sliding window (`guards.window_seconds`,
//! in [`WINDOW_BUCKETS`] buckets: figures drop out a bucket at a time). After each
//! candidate observation the guards are checked on the window's counts; a breach
//! ends the rollout for every instance (the policy is removed from the metadata store and
//! the change announced), with an audit row naming the guard and its figures, and is
//! counted in `pynomaly_model_rollbacks_total{model,guard}`. The `drift` guard, when asked
//! for, ends it when the candidate's own drift windows give the verdict `drift`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use detect_core::drift::{DriftThresholds, Verdict, compare};
use pynomaly_store::{NewAuditEntry, NewStage, PRODUCTION, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{ModelRegistry, RegistryError};
use crate::drift::{ModelDrift, unix_now};

/// How the candidate takes part.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutMode {
    #[default]
    Canary,
    Shadow,
    /// The watch after a promotion (see the module docs); not started by hand.
    Bake,
}

/// When a rollout is ended on its own (see the module docs). Every guard compares the
/// candidate with production over what this instance served in the last `window_seconds`,
/// once both have `min_rows` there.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Guards {
    /// Rows each side must have scored in the window before the rate guards judge.
    pub min_rows: u64,
    /// The sliding window the rate guards judge, in seconds.
    pub window_seconds: u64,
    /// The candidate's anomaly rate may be at most this many times production's (and, when
    /// production flags nothing, at most `max_anomaly_rate` on its own).
    pub max_anomaly_rate_ratio: f64,
    /// The candidate's anomaly rate when production's is 0.
    pub max_anomaly_rate: f64,
    /// Share of the candidate's predicts that may fail.
    pub max_error_rate: f64,
    /// The candidate's p99 latency may be at most this many times production's.
    pub max_latency_ratio: f64,
    /// End the rollout when the candidate's drift verdict is `drift`.
    pub drift: bool,
}

impl Default for Guards {
    fn default() -> Self {
        Self {
            min_rows: 200,
            window_seconds: 300,
            max_anomaly_rate_ratio: 2.0,
            max_anomaly_rate: 0.2,
            max_error_rate: 0.05,
            max_latency_ratio: 5.0,
            drift: false,
        }
    }
}

/// A running rollout, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutPolicy {
    pub version: i64,
    pub traffic_percent: f64,
    pub mode: RolloutMode,
    pub guards: Guards,
    pub started_at: DateTime<Utc>,
    pub started_by: String,
    /// Canary or shadow: the bake its promotion starts, in seconds (0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bake_seconds: u64,
    /// A bake: when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bake_until: Option<DateTime<Utc>>,
    /// A bake: the production version the promotion replaced, which a breach puts back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<i64>,
    /// A bake: the share of the version's training rows labelled anomalous, which its live
    /// anomaly rate is held to (`None` when unknown: then `max_anomaly_rate` alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_anomaly_rate: Option<f64>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl RolloutPolicy {
    /// Whether a request with this routing key goes to the candidate (canary mode).
    pub fn routes_to_candidate(&self, key: &str) -> bool {
        let digest = Sha256::digest(key.as_bytes());
        let mut head = [0u8; 8];
        head.copy_from_slice(&digest[..8]);
        let bucket = u64::from_be_bytes(head) % 10_000;
        (bucket as f64) < self.traffic_percent * 100.0
    }
}

/// Which version answered (or shadowed) a predict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    Production,
    Candidate,
}

/// Predicts, failures, rows and anomalies.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    requests: u64,
    errors: u64,
    rows: u64,
    anomalies: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.rows += other.rows;
        self.anomalies += other.anomalies;
    }

    fn anomaly_rate(&self) -> Option<f64> {
        (self.rows > 0).then(|| self.anomalies as f64 / self.rows as f64)
    }

    fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

/// Buckets a guard's window is kept in.
pub const WINDOW_BUCKETS: u64 = 30;

/// A side's counts over the last window, bucket by bucket: slot `n % WINDOW_BUCKETS`
/// holds bucket `n` (the time since the rollout started, divided by the bucket's length).
/// (A slot never written holds bucket 0's empty counts, which add nothing.)
#[derive(Debug, Clone, Default)]
struct Recent {
    buckets: [(u64, Counts); WINDOW_BUCKETS as usize],
}

impl Recent {
    fn bucket(&mut self, n: u64) -> &mut Counts {
        let slot = &mut self.buckets[(n % WINDOW_BUCKETS) as usize];
        if slot.0 != n {
            *slot = (n, Counts::default());
        }
        &mut slot.1
    }

    /// The counts of the window that ends with bucket `now`.
    fn sum(&self, now: u64) -> Counts {
        let mut total = Counts::default();
        for (n, counts) in &self.buckets {
            if *n <= now && now - *n < WINDOW_BUCKETS {
                total.add(counts);
            }
        }
        total
    }
}

/// What one side scored on this instance: since the rollout started, and recently.
#[derive(Debug, Clone, Default)]
struct Side {
    total: Counts,
    recent: Recent,
    /// The latest latencies (ms), at most [`LATENCIES`], for the p99.
    latencies: Vec<f64>,
    next: usize,
}

/// Latencies kept per side for the p99.
const LATENCIES: usize = 2048;

impl Side {
    fn observe(
        &mut self,
        bucket: u64,
        rows: usize,
        anomalies: usize,
        latency: Duration,
        failed: bool,
    ) {
        let one = Counts {
            requests: 1,
            errors: u64::from(failed),
            rows: if failed { 0 } else { rows as u64 },
            anomalies: if failed { 0 } else { anomalies as u64 },
        };
        self.total.add(&one);
        self.recent.bucket(bucket).add(&one);
        if failed {
            return;
        }
        let ms = latency.as_secs_f64() * 1e3;
        if self.latencies.len() < LATENCIES {
            self.latencies.push(ms);
        } else {
            self.latencies[self.next] = ms;
            self.next = (self.next + 1) % LATENCIES;
        }
    }

    fn p99_ms(&self) -> Option<f64> {
        if self.latencies.is_empty() {
            return None;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        let i = ((sorted.len() as f64) * 0.99).ceil() as usize;
        Some(sorted[i.saturating_sub(1).min(sorted.len() - 1)])
    }

    fn report(&self, bucket: u64) -> Value {
        let (t, w) = (&self.total, self.recent.sum(bucket));
        json!({
            "requests": t.requests, "errors": t.errors, "rows": t.rows,
            "anomalies": t.anomalies, "anomaly_rate": t.anomaly_rate(),
            "error_rate": t.error_rate(), "p99_latency_ms": self.p99_ms(),
            "window": {
                "requests": w.requests, "errors": w.errors, "rows": w.rows,
                "anomalies": w.anomalies, "anomaly_rate": w.anomaly_rate(),
                "error_rate": w.error_rate(),
            },
        })
    }
}

/// Shadow comparisons: rows compared, rows labelled alike, and the rank correlations of
/// each compared predict (averaged).
#[derive(Debug, Clone, Default)]
struct Agreement {
    rows: u64,
    agreeing: u64,
    correlations: f64,
    compared: u64,
}

/// This instance's comparison of a rollout.
#[derive(Debug, Default)]
struct Comparison {
    production: Side,
    candidate: Side,
    agreement: Agreement,
}

/// A rollout running on this instance: its policy and comparison.
#[derive(Debug)]
pub struct ActiveRollout {
    pub policy: RolloutPolicy,
    comparison: Mutex<Comparison>,
    /// Set by the first caller that ends an expired bake, so it is ended once.
    ending: AtomicBool,
    /// Candidate observations offered to the drift guard (it judges every 64th).
    drift_checks: AtomicU64,
    /// When this instance started keeping the comparison (the windows' buckets count
    /// from it).
    started: Instant,
    /// Shadowed predicts not compared: the shadow scorer's queue was full.
    shadow_dropped: AtomicU64,
}

/// A guard's verdict against a rollout: which and the figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breach {
    pub guard: &'static str,
    pub candidate: f64,
    pub production: Option<f64>,
    pub limit: f64,
}

/// Spearman's rank correlation of two score lists (ties get their mean rank); `None` under
/// two rows or when one list is constant.
fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    fn ranks(x: &[f64]) -> Vec<f64> {
        let mut order: Vec<usize> = (0..x.len()).collect();
        order.sort_by(|&i, &j| x[i].total_cmp(&x[j]));
        let mut r = vec![0.0; x.len()];
        let mut i = 0;
        while i < order.len() {
            let mut j = i;
            while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
                j += 1;
            }
            let mean = (i + j) as f64 / 2.0 + 1.0;
            for k in &order[i..=j] {
                r[*k] = mean;
            }
            i = j + 1;
        }
        r
    }
    if a.len() < 2 || a.len() != b.len() {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    (va > 0.0 && vb > 0.0).then(|| cov / (va.sqrt() * vb.sqrt()))
}

impl ActiveRollout {
    fn new(policy: RolloutPolicy) -> Self {
        Self {
            policy,
            comparison: Mutex::default(),
            ending: AtomicBool::new(false),
            drift_checks: AtomicU64::new(0),
            started: Instant::now(),
            shadow_dropped: AtomicU64::new(0),
        }
    }

    /// Counts a shadowed predict left uncompared (the shadow scorer was behind).
    pub fn shadow_dropped(&self) {
        self.shadow_dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// The window bucket `since_start` falls in.
    fn bucket_at(&self, since_start: Duration) -> u64 {
        let window_ms = self.policy.guards.window_seconds.saturating_mul(1000);
        let bucket_ms = (window_ms / WINDOW_BUCKETS).max(1);
        u64::try_from(since_start.as_millis()).unwrap_or(u64::MAX) / bucket_ms
    }

    fn bucket_now(&self) -> u64 {
        self.bucket_at(self.started.elapsed())
    }

    /// A bake whose time is up at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.policy.bake_until.is_some_and(|until| now >= until)
    }

    /// The drift guard (when the policy asks for it): every 64th call, the verdict of the
    /// candidate's drift windows (`drift`: the candidate's, as the predict that loaded it
    /// holds them); a `drift` verdict is a breach, with the largest PSI as its figure.
    pub fn judge_drift(&self, drift: &ModelDrift, thresholds: &DriftThresholds) -> Option<Breach> {
        if !self.policy.guards.drift
            || !self
                .drift_checks
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(64)
        {
            return None;
        }
        let window = drift.reported_window(unix_now(), thresholds.min_samples);
        let report = compare(drift.reference(), &window.stats, thresholds);
        (report.verdict == Verdict::Drift).then(|| Breach {
            guard: "drift",
            candidate: report.features.iter().map(|f| f.psi).fold(0.0, f64::max),
            production: None,
            limit: thresholds.psi_drift,
        })
    }

    fn comparison(&self) -> std::sync::MutexGuard<'_, Comparison> {
        self.comparison
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a predict served (or shadowed) by `variant`; returns the breach it makes,
    /// if the candidate's figures now break a guard.
    pub fn observe(
        &self,
        variant: Variant,
        rows: usize,
        anomalies: usize,
        latency: Duration,
        failed: bool,
    ) -> Option<Breach> {
        let bucket = self.bucket_now();
        self.observe_in(bucket, variant, (rows, anomalies), latency, failed)
    }

    fn observe_in(
        &self,
        bucket: u64,
        variant: Variant,
        (rows, anomalies): (usize, usize),
        latency: Duration,
        failed: bool,
    ) -> Option<Breach> {
        let mut c = self.comparison();
        match variant {
            Variant::Production => {
                c.production
                    .observe(bucket, rows, anomalies, latency, failed);
                None
            }
            Variant::Candidate => {
                c.candidate
                    .observe(bucket, rows, anomalies, latency, failed);
                self.judge(&c, bucket)
            }
        }
    }

    /// Records a shadow comparison of one predict's rows: labels (`-1`/`1`) and scores of
    /// production and candidate.
    pub fn compare(&self, production: (&[i8], &[f64]), candidate: (&[i8], &[f64])) {
        let agreeing = production
            .0
            .iter()
            .zip(candidate.0)
            .filter(|(a, b)| a == b)
            .count();
        let rho = spearman(production.1, candidate.1);
        let mut c = self.comparison();
        c.agreement.rows += production.0.len() as u64;
        c.agreement.agreeing += agreeing as u64;
        if let Some(rho) = rho {
            c.agreement.correlations += rho;
            c.agreement.compared += 1;
        }
    }

    fn judge(&self, c: &Comparison, bucket: u64) -> Option<Breach> {
        let g = &self.policy.guards;
        let (cand, prod) = (
            c.candidate.recent.sum(bucket),
            c.production.recent.sum(bucket),
        );
        // A bake has no other version beside it: its own training rate is the reference.
        let bake = self.policy.mode == RolloutMode::Bake;
        if cand.requests >= 20
            && let Some(rate) = cand.error_rate()
            && rate > g.max_error_rate
        {
            return Some(Breach {
                guard: "error_rate",
                candidate: rate,
                production: prod.error_rate(),
                limit: g.max_error_rate,
            });
        }
        if cand.rows < g.min_rows || (!bake && prod.rows < g.min_rows) {
            return None;
        }
        let cr = cand.anomaly_rate()?;
        let pr = if bake {
            self.policy.training_anomaly_rate
        } else {
            Some(prod.anomaly_rate()?)
        };
        let limit = match pr {
            Some(pr) if pr > 0.0 => pr * g.max_anomaly_rate_ratio,
            _ => g.max_anomaly_rate,
        };
        if cr > limit {
            return Some(Breach {
                guard: "anomaly_rate",
                candidate: cr,
                production: pr,
                limit,
            });
        }
        // The p99s sort the kept latencies (the latest of each side): judged every 64th
        // candidate request, not on each. Canaries only: a bake has no other version to
        // compare with, and a shadow's candidate is timed off the request path (on a
        // low-priority thread, its caches cold), which says nothing of answer latency.
        let (cand_l, prod_l) = (&c.candidate, &c.production);
        if self.policy.mode == RolloutMode::Canary
            && cand_l.total.requests % 64 == 0
            && cand_l.latencies.len() >= 100
            && prod_l.latencies.len() >= 100
            && let (Some(cp), Some(pp)) = (cand_l.p99_ms(), prod_l.p99_ms())
            && pp > 0.0
            && cp > pp * g.max_latency_ratio
        {
            return Some(Breach {
                guard: "latency_p99",
                candidate: cp,
                production: Some(pp),
                limit: pp * g.max_latency_ratio,
            });
        }
        None
    }

    /// The policy with this instance's live comparison.
    pub fn report(&self) -> Value {
        let bucket = self.bucket_now();
        let c = self.comparison();
        let a = &c.agreement;
        let mut out = serde_json::to_value(&self.policy).unwrap_or(Value::Null);
        out["comparison"] = json!({
            "scope": "this instance, since the rollout started or the instance learnt of it",
            "window_seconds": self.policy.guards.window_seconds,
            "production": c.production.report(bucket),
            "candidate": c.candidate.report(bucket),
            "shadow": {
                "rows_compared": a.rows,
                "label_agreement": (a.rows > 0).then(|| a.agreeing as f64 / a.rows as f64),
                "score_rank_correlation": (a.compared > 0).then(|| a.correlations / a.compared as f64),
                "dropped": self.shadow_dropped.load(Ordering::Relaxed),
            },
            "breach": self.judge(&c, bucket),
        });
        out
    }
}

/// A rollout to start.
#[derive(Debug, Clone)]
pub struct NewRollout {
    pub version: i64,
    pub traffic_percent: f64,
    pub mode: RolloutMode,
    pub guards: Guards,
    /// The bake its promotion starts, in seconds (0: none).
    pub bake_seconds: u64,
}

impl ModelRegistry {
    /// The rollout running for a model, if any: read from the metadata store once, then
    /// held until a change of the model is made or announced.
    ///
    /// # Errors
    /// The store failed, or holds a policy this version cannot read.
    pub async fn rollout(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<Arc<ActiveRollout>>, RegistryError> {
        let active = self.held_or_stored_rollout(tenant, name).await?;
        match active {
            Some(a) if a.expired(Utc::now()) => {
                self.finish_bake(tenant, name, &a).await;
                Ok(None)
            }
            other => Ok(other),
        }
    }

    /// The rollout held for a model, else read from the metadata store (and then held).
    async fn held_or_stored_rollout(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<Arc<ActiveRollout>>, RegistryError> {
        // Looked up by reference: every predict asks, and most models have no rollout.
        if let Some(known) = self.lock_rollouts().get(tenant).and_then(|m| m.get(name)) {
            return Ok(known.clone());
        }
        // A change made or announced while the store is read makes what it read stale.
        let generation = self.rollout_generation.load(Ordering::Acquire);
        let stored = self.meta.rollout(tenant, name).await?;
        let active = match stored {
            Some(v) => {
                let policy: RolloutPolicy =
                    serde_json::from_value(v).map_err(|e| StoreError::Corrupt {
                        column: "model_rollouts.policy",
                        reason: e.to_string(),
                    })?;
                Some(Arc::new(ActiveRollout::new(policy)))
            }
            None => None,
        };
        let mut held = self.lock_rollouts();
        if self.rollout_generation.load(Ordering::Acquire) == generation {
            held.entry(tenant.to_string())
                .or_default()
                .insert(name.to_string(), active.clone());
        }
        Ok(active)
    }

    /// The rollout held for a model on this instance, without asking the store.
    fn held_rollout(&self, tenant: &str, name: &str) -> Option<Arc<ActiveRollout>> {
        self.lock_rollouts()
            .get(tenant)
            .and_then(|m| m.get(name))
            .cloned()
            .flatten()
    }

    /// Ends a bake whose time is up (once, whichever predict notices first): the version
    /// stays production.
    async fn finish_bake(&self, tenant: &str, name: &str, bake: &ActiveRollout) {
        if bake.ending.swap(true, Ordering::AcqRel) {
            return;
        }
        let detail = json!({"version": bake.policy.version, "until": bake.policy.bake_until});
        if let Err(e) = self
            .end_rollout(tenant, name, "pynomaly", "baked", detail)
            .await
        {
            bake.ending.store(false, Ordering::Release);
            tracing::warn!(error = %e, model = name, "cannot end a finished bake");
        }
    }

    /// Watches `version`, just promoted over `replaced`, for `seconds` with `guards` (a
    /// bake, see the module docs). Nothing to do for 0 seconds.
    ///
    /// # Errors
    /// The store failed.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_bake(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
        replaced: Option<i64>,
        seconds: u64,
        guards: Guards,
        by: &str,
    ) -> Result<(), RegistryError> {
        if seconds == 0 {
            return Ok(());
        }
        let training_anomaly_rate = match self.load(tenant, name, Some(version)).await? {
            Some(loaded) => match &loaded.drift {
                Some(d) => Some(d.reference().training_anomaly_rate),
                None => loaded.version.contamination.as_f64(),
            },
            None => None,
        };
        let now = Utc::now();
        let policy = RolloutPolicy {
            version,
            traffic_percent: 100.0,
            mode: RolloutMode::Bake,
            guards,
            started_at: now,
            started_by: by.to_string(),
            bake_seconds: seconds,
            bake_until: Some(now + chrono::Duration::seconds(seconds.min(i64::MAX as u64) as i64)),
            replaced,
            training_anomaly_rate,
        };
        self.store_rollout(tenant, name, &policy, by, "bake_started")
            .await
    }

    /// Stores `policy` as the model's rollout, announces the change to the other instances
    /// and audits it as `what` (`started`, `bake_started`).
    async fn store_rollout(
        &self,
        tenant: &str,
        name: &str,
        policy: &RolloutPolicy,
        by: &str,
        what: &str,
    ) -> Result<(), RegistryError> {
        let stored = serde_json::to_value(policy).map_err(|e| StoreError::Corrupt {
            column: "model_rollouts.policy",
            reason: e.to_string(),
        })?;
        self.meta.set_rollout(tenant, name, &stored).await?;
        self.forget_rollout(tenant, name);
        self.announce(tenant, name).await;
        self.audit_rollout(tenant, name, by, json!({"rollout": what, "policy": stored}))
            .await;
        Ok(())
    }

    pub(super) fn lock_rollouts(&self) -> std::sync::MutexGuard<'_, super::Rollouts> {
        self.rollouts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets what is held of a model's rollout (a change made or announced).
    pub(super) fn forget_rollout(&self, tenant: &str, name: &str) {
        let mut held = self.lock_rollouts();
        self.rollout_generation.fetch_add(1, Ordering::AcqRel);
        if let Some(models) = held.get_mut(tenant) {
            models.remove(name);
        }
    }

    /// Forgets every rollout held (model changes may have been missed).
    pub(super) fn forget_rollouts(&self) {
        let mut held = self.lock_rollouts();
        self.rollout_generation.fetch_add(1, Ordering::AcqRel);
        held.clear();
    }

    /// Starts a canary or shadow rollout of `new.version` (replacing one running).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] without such a version; [`StoreError::Conflict`] when it is
    /// the production version or archived.
    pub async fn start_rollout(
        &self,
        tenant: &str,
        name: &str,
        new: NewRollout,
        by: &str,
    ) -> Result<Arc<ActiveRollout>, RegistryError> {
        let version = self
            .meta
            .model_version(tenant, name, new.version)
            .await?
            .ok_or_else(|| {
                StoreError::NotFound(format!("model '{name}' has no version {}", new.version))
            })?;
        if version.stage != pynomaly_store::STAGING {
            return Err(StoreError::Conflict(format!(
                "version {} of model '{name}' is {}: a rollout's candidate is a staging version",
                new.version, version.stage
            ))
            .into());
        }
        let policy = RolloutPolicy {
            version: new.version,
            traffic_percent: new.traffic_percent,
            mode: new.mode,
            guards: new.guards,
            started_at: Utc::now(),
            started_by: by.to_string(),
            bake_seconds: new.bake_seconds,
            bake_until: None,
            replaced: None,
            training_anomaly_rate: None,
        };
        self.store_rollout(tenant, name, &policy, by, "started")
            .await?;
        Ok(self
            .rollout(tenant, name)
            .await?
            .unwrap_or_else(|| Arc::new(ActiveRollout::new(policy))))
    }

    /// Ends a model's rollout (`why`: `ended`, `promoted` or a guard's name); returns the
    /// policy it had, with this instance's comparison.
    ///
    /// # Errors
    /// The store failed.
    pub async fn end_rollout(
        &self,
        tenant: &str,
        name: &str,
        by: &str,
        why: &str,
        detail: Value,
    ) -> Result<Option<Value>, RegistryError> {
        let held = self.held_rollout(tenant, name);
        let ended = self.meta.end_rollout(tenant, name).await?;
        self.forget_rollout(tenant, name);
        if ended.is_none() {
            return Ok(None);
        }
        self.announce(tenant, name).await;
        let report = held.map_or_else(|| ended.clone().unwrap_or_default(), |h| h.report());
        self.audit_rollout(
            tenant,
            name,
            by,
            json!({"rollout": "ended", "why": why, "detail": detail, "policy": ended}),
        )
        .await;
        Ok(Some(report))
    }

    /// Ends a rollout a guard caught, counting it (see the module docs); a bake's breach
    /// also puts the version it replaced back in production.
    pub async fn roll_back_rollout(
        &self,
        tenant: &str,
        name: &str,
        rollout: &ActiveRollout,
        breach: &Breach,
    ) {
        let detail = serde_json::to_value(breach).unwrap_or(Value::Null);
        match self
            .end_rollout(tenant, name, "pynomaly", breach.guard, detail)
            .await
        {
            Ok(Some(_)) => {
                self.count_rollback(name, breach.guard);
                tracing::warn!(
                    model = name,
                    version = rollout.policy.version,
                    guard = breach.guard,
                    candidate = breach.candidate,
                    production = breach.production,
                    limit = breach.limit,
                    "rollout ended by its guard"
                );
                if rollout.policy.mode == RolloutMode::Bake {
                    self.undo_promotion(tenant, name, &rollout.policy, breach)
                        .await;
                } else {
                    self.count_stage_change(name, &format!("guard:{}", breach.guard));
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, model = name, "cannot end a rollout its guard caught")
            }
        }
    }

    /// Puts back the production version a bake's version replaced, if the baked version is
    /// still production (a promotion since then ended the bake anyway).
    async fn undo_promotion(
        &self,
        tenant: &str,
        name: &str,
        bake: &RolloutPolicy,
        breach: &Breach,
    ) {
        let Some(previous) = bake.replaced else {
            tracing::warn!(
                model = name,
                version = bake.version,
                "the bake's guard caught a version that replaced none: it stays production"
            );
            return;
        };
        match self.meta.production_version(tenant, name).await {
            Ok(Some(p)) if p.version == bake.version && p.stage == PRODUCTION => {}
            Ok(_) => return,
            Err(e) => {
                tracing::error!(error = %e, model = name, "cannot read the production version to undo a promotion");
                return;
            }
        }
        let change = NewStage {
            to: PRODUCTION.into(),
            by: "pynomaly".into(),
            reason: "guard".into(),
            note: Some(format!(
                "version {} broke its bake's {} guard: {:.4} against a limit of {:.4}",
                bake.version, breach.guard, breach.candidate, breach.limit
            )),
        };
        if let Err(e) = self
            .change_stage(tenant, name, previous, change, None)
            .await
        {
            tracing::error!(error = %e, model = name, version = previous, "cannot put the previous production version back");
        }
    }

    /// Promotes the rollout's candidate to production, which ends the rollout, then starts
    /// the bake the rollout asked for (or `bake`: seconds and guards in its place).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when no rollout runs; as [`ModelRegistry::change_stage`].
    pub async fn promote_rollout(
        &self,
        tenant: &str,
        name: &str,
        by: &str,
        note: Option<String>,
        request_id: Option<String>,
        bake: (Option<u64>, Option<Guards>),
    ) -> Result<pynomaly_store::StageChange, RegistryError> {
        let Some(active) = self.rollout(tenant, name).await? else {
            return Err(StoreError::NotFound(format!("model '{name}' has no rollout")).into());
        };
        // The candidate leaving staging ends the rollout (see `change_stage`).
        let change = pynomaly_store::NewStage {
            to: PRODUCTION.into(),
            by: by.to_string(),
            reason: "promote".into(),
            note,
        };
        let changed = self
            .change_stage(tenant, name, active.policy.version, change, request_id)
            .await?;
        if let Err(e) = self
            .start_bake(
                tenant,
                name,
                active.policy.version,
                changed.replaced,
                bake.0.unwrap_or(active.policy.bake_seconds),
                bake.1.unwrap_or(active.policy.guards),
                by,
            )
            .await
        {
            tracing::error!(error = %e, model = name, "promoted, but its bake could not be started");
        }
        Ok(changed)
    }

    async fn audit_rollout(&self, tenant: &str, name: &str, by: &str, detail: Value) {
        let entry = NewAuditEntry {
            tenant: tenant.to_string(),
            actor: by.to_string(),
            action: "model_rollout".into(),
            resource: format!("/api/v1/models/{name}/canary"),
            outcome: 200,
            request_id: String::new(),
            client_addr: None,
            created_at: Utc::now(),
            detail: Some(detail),
        };
        if let Err(e) = self.meta.append_audit(&[entry]).await {
            tracing::error!(error = %e, model = name, "cannot audit a rollout change");
        }
    }

    fn count_rollback(&self, model: &str, guard: &str) {
        super::lifecycle::bump(&self.rollbacks, model, guard);
    }

    /// Rollouts ended by their guards on this instance, by (model, guard).
    pub fn rollbacks(&self) -> Vec<((String, String), u64)> {
        super::lifecycle::totals(&self.rollbacks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(percent: f64) -> RolloutPolicy {
        RolloutPolicy {
            version: 2,
            traffic_percent: percent,
            mode: RolloutMode::Canary,
            guards: Guards::default(),
            started_at: Utc::now(),
            started_by: "key:k".into(),
            bake_seconds: 0,
            bake_until: None,
            replaced: None,
            training_anomaly_rate: None,
        }
    }

    #[test]
    fn routing_is_stable_per_key_and_near_the_percentage() {
        let p = policy(10.0);
        let routed = (0..5000)
            .filter(|i| p.routes_to_candidate(&format!("customer-{i}")))
            .count();
        let share = routed as f64 / 5000.0 * 100.0;
        assert!((share - 10.0).abs() <= 2.0, "{share}%");
        for i in 0..100 {
            let key = format!("customer-{i}");
            assert_eq!(p.routes_to_candidate(&key), p.routes_to_candidate(&key));
        }
        assert!((0..1000).all(|i| !policy(0.0).routes_to_candidate(&i.to_string())));
        assert!((0..1000).all(|i| policy(100.0).routes_to_candidate(&i.to_string())));
    }

    #[test]
    fn a_candidate_flagging_three_times_as_much_breaks_the_default_guard() {
        let active = ActiveRollout::new(policy(50.0));
        let ms = Duration::from_millis(1);
        for _ in 0..30 {
            assert_eq!(active.observe(Variant::Production, 10, 1, ms, false), None);
        }
        let mut breach = None;
        for _ in 0..30 {
            breach = breach.or(active.observe(Variant::Candidate, 10, 3, ms, false));
        }
        let breach = breach.expect("3x the anomaly rate is caught");
        assert_eq!(breach.guard, "anomaly_rate");
        assert!((breach.candidate - 0.3).abs() < 1e-12 && breach.limit < 0.3);
        // The same rate as production passes.
        let fine = ActiveRollout::new(policy(50.0));
        for _ in 0..30 {
            fine.observe(Variant::Production, 10, 1, ms, false);
            assert_eq!(fine.observe(Variant::Candidate, 10, 1, ms, false), None);
        }
    }

    #[test]
    fn the_guards_judge_the_window_not_everything_since_the_start() {
        let mut p = policy(50.0);
        p.guards.window_seconds = 60;
        let active = ActiveRollout::new(p);
        let ms = Duration::from_millis(1);
        let at = |s: u64| active.bucket_at(Duration::from_secs(s));
        // A first window where both flag 10 %.
        for _ in 0..30 {
            active.observe_in(at(0), Variant::Production, (10, 1), ms, false);
            let fine = active.observe_in(at(0), Variant::Candidate, (10, 1), ms, false);
            assert_eq!(fine, None);
        }
        // A minute later the candidate flags 30 %, production still 10 %. Since the start
        // that is 20 %, just at the limit (2 × 10 %); within the window it is 3 × production.
        let mut breach = None;
        for _ in 0..30 {
            active.observe_in(at(61), Variant::Production, (10, 1), ms, false);
            breach = breach.or(active.observe_in(at(61), Variant::Candidate, (10, 3), ms, false));
        }
        let breach = breach.expect("the window's 3x is caught");
        assert_eq!(breach.guard, "anomaly_rate");
        assert!((breach.candidate - 0.3).abs() < 1e-12, "{breach:?}");
        let report = active.report();
        assert_eq!(report["comparison"]["candidate"]["rows"], 600);
        assert_eq!(report["comparison"]["window_seconds"], 60);

        // Too few rows in the window: no verdict, whatever came before it.
        let mut p = policy(50.0);
        p.guards.window_seconds = 60;
        let sparse = ActiveRollout::new(p);
        for _ in 0..30 {
            sparse.observe_in(at(0), Variant::Production, (10, 1), ms, false);
            sparse.observe_in(at(0), Variant::Candidate, (10, 1), ms, false);
        }
        sparse.observe_in(at(120), Variant::Production, (10, 1), ms, false);
        let judged = sparse.observe_in(at(120), Variant::Candidate, (10, 9), ms, false);
        assert_eq!(judged, None, "10 rows is under min_rows");
    }

    #[test]
    fn spearman_is_one_for_the_same_order_and_minus_one_reversed() {
        let a = [0.1, 0.5, 0.3, 0.9];
        assert!((spearman(&a, &[1.0, 5.0, 3.0, 9.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &[9.0, 5.0, 7.0, 1.0]).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(spearman(&a, &[1.0, 1.0, 1.0, 1.0]), None);
    }
}
