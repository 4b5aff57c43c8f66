//! Prometheus metrics with the names and labels ML engineers' dashboards use (`docs/api.md`).
//!
//! - `pynomaly_requests_total{method,endpoint,status}`
//! - `pynomaly_request_duration_seconds{method,endpoint}` (histogram)
//! - `pynomaly_anomalies_detected_total{algorithm,dataset}`
//! - `pynomaly_model_inference_seconds{algorithm,data_size}` (histogram; `small` < 100
//!   rows, `medium` < 1000, `large`)
//! - `pynomaly_active_models` (models in the in-memory cache, read at scrape time)
//! - `pynomaly_data_quality_score{dataset}`, in [0, 1]: the share of cells that were
//!   usable (finite, and for scored data inside the model's training range; see
//!   `detect_core::drift`). Set by inline training (all-or-nothing, so 1), by each
//!   model's drift window at scrape time (`dataset` = model name) and by each batch source
//!   scored with a model (`dataset` = the source as named).
//! - `pynomaly_data_drift_score{model,feature}`: the PSI of the model's current (or just
//!   ended) drift window against its training data, for at most 20 features per model
//!   (the highest); refreshed at each scrape, so deleted models and stale windows vanish.
//! - `pynomaly_rate_limited_total` (requests answered 429: per-key, per-user and login limits)
//! - `pynomaly_model_predicted_rows_total{model,model_version,variant}` and
//!   `pynomaly_model_predicted_anomalies_total{model,model_version,variant}`: rows a
//!   model's predicts scored and those labelled anomalous, by the version that scored them
//!   and its part (`production`, `canary`, `shadow`, `requested` for a predict naming its
//!   version), so a rollout's anomaly rates can be compared per variant.
//!
//! Operational metrics (jobs, workers, model cache, pools, build info) are in
//! [`crate::ops_metrics`], registered in the same registry.
//!
//! `endpoint` is the route template; `dataset` is the model name, or `inline` for
//! `POST /api/v1/detect`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The service's metrics and their registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests_total: IntCounterVec,
    request_duration: HistogramVec,
    anomalies_detected: IntCounterVec,
    inference_seconds: HistogramVec,
    active_models: IntGauge,
    data_quality: GaugeVec,
    rate_limited: prometheus::IntCounter,
    ops: crate::ops_metrics::OpsMetrics,
    data_drift: GaugeVec,
    predicted_rows: IntCounterVec,
    predicted_anomalies: IntCounterVec,
    /// Datasets whose quality the drift windows set at the last scrape.
    drift_datasets: Arc<Mutex<Vec<String>>>,
}

const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    ///
    /// # Panics
    /// Never in practice: names and labels are constants known to be valid and distinct.
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests_total = IntCounterVec::new(
            Opts::new("pynomaly_requests_total", "Total number of requests"),
            &["method", "endpoint", "status"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "pynomaly_request_duration_seconds",
                "Request duration in seconds",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "endpoint"],
        )
        .expect("valid metric");
        let anomalies_detected = IntCounterVec::new(
            Opts::new(
                "pynomaly_anomalies_detected_total",
                "Total number of anomalies detected",
            ),
            &["algorithm", "dataset"],
        )
        .expect("valid metric");
        let inference_seconds = HistogramVec::new(
            HistogramOpts::new(
                "pynomaly_model_inference_seconds",
                "Model inference time in seconds",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["algorithm", "data_size"],
        )
        .expect("valid metric");
        let active_models = IntGauge::new(
            "pynomaly_active_models",
            "Number of active models in memory",
        )
        .expect("valid metric");
        let data_quality = GaugeVec::new(
            Opts::new("pynomaly_data_quality_score", "Data quality score"),
            &["dataset"],
        )
        .expect("valid metric");
        let rate_limited = prometheus::IntCounter::new(
            "pynomaly_rate_limited_total",
            "Requests refused with 429 by a rate limit",
        )
        .expect("valid metric");
        let data_drift = GaugeVec::new(
            Opts::new(
                "pynomaly_data_drift_score",
                "Population stability index of the latest drift window against training",
            ),
            &["model", "feature"],
        )
        .expect("valid metric");
        let variant_labels = ["model", "model_version", "variant"];
        let predicted_rows = IntCounterVec::new(
            Opts::new(
                "pynomaly_model_predicted_rows_total",
                "Rows scored by a model's predicts, by version and variant",
            ),
            &variant_labels,
        )
        .expect("valid metric");
        let predicted_anomalies = IntCounterVec::new(
            Opts::new(
                "pynomaly_model_predicted_anomalies_total",
                "Rows a model's predicts labelled anomalous, by version and variant",
            ),
            &variant_labels,
        )
        .expect("valid metric");
        for c in [
            Box::new(requests_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(predicted_rows.clone()),
            Box::new(predicted_anomalies.clone()),
            Box::new(request_duration.clone()),
            Box::new(anomalies_detected.clone()),
            Box::new(inference_seconds.clone()),
            Box::new(active_models.clone()),
            Box::new(data_quality.clone()),
            Box::new(rate_limited.clone()),
            Box::new(data_drift.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        let ops = crate::ops_metrics::OpsMetrics::new(&registry);
        Self {
            registry,
            ops,
            requests_total,
            request_duration,
            anomalies_detected,
            inference_seconds,
            active_models,
            data_quality,
            rate_limited,
            data_drift,
            predicted_rows,
            predicted_anomalies,
            drift_datasets: Arc::default(),
        }
    }

    pub(crate) fn count_rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// The operational metrics.
    pub(crate) fn ops(&self) -> &crate::ops_metrics::OpsMetrics {
        &self.ops
    }

    pub(crate) fn observe_request(
        &self,
        method: &str,
        endpoint: &str,
        status: &str,
        elapsed: Duration,
    ) {
        self.requests_total
            .with_label_values(&[method, endpoint, status])
            .inc();
        self.request_duration
            .with_label_values(&[method, endpoint])
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn observe_inference(
        &self,
        algorithm: &str,
        dataset: &str,
        rows: usize,
        anomalies: usize,
        elapsed: Duration,
    ) {
        let size = match rows {
            0..100 => "small",
            100..1000 => "medium",
            _ => "large",
        };
        self.inference_seconds
            .with_label_values(&[algorithm, size])
            .observe(elapsed.as_secs_f64());
        self.count_anomalies(algorithm, dataset, anomalies);
    }

    /// Counts the rows a model version scored for a predict, as `variant`.
    pub(crate) fn observe_variant(
        &self,
        model: &str,
        version: i64,
        variant: &str,
        rows: usize,
        anomalies: usize,
    ) {
        let mut digits = itoa::Buffer::new();
        let labels = [model, digits.format(version), variant];
        self.predicted_rows
            .with_label_values(&labels)
            .inc_by(rows as u64);
        if anomalies > 0 {
            self.predicted_anomalies
                .with_label_values(&labels)
                .inc_by(anomalies as u64);
        }
    }

    /// Counts a scored batch source's anomalies (dataset = the source as named).
    fn count_anomalies(&self, algorithm: &str, dataset: &str, anomalies: usize) {
        if anomalies > 0 {
            self.anomalies_detected
                .with_label_values(&[algorithm, dataset])
                .inc_by(anomalies as u64);
        }
    }

    pub(crate) fn set_data_quality(&self, dataset: &str, score: f64) {
        self.data_quality.with_label_values(&[dataset]).set(score);
    }

    /// Replaces the drift gauges with `models`: (model, [(feature, PSI)], data quality).
    pub(crate) fn set_drift(
        &self,
        models: impl Iterator<Item = (String, Vec<(String, f64)>, f64)>,
    ) {
        self.data_drift.reset();
        let mut datasets = self
            .drift_datasets
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let before = std::mem::take(&mut *datasets);
        for (model, features, quality) in models {
            for (feature, psi) in features {
                self.data_drift
                    .with_label_values(&[&model, &feature])
                    .set(psi);
            }
            self.data_quality.with_label_values(&[&model]).set(quality);
            datasets.push(model);
        }
        for gone in before.iter().filter(|d| !datasets.contains(d)) {
            let _ = self.data_quality.remove_label_values(&[gone]);
        }
    }

    /// Drops a deleted model's quality series (its drift series go at the next scrape,
    /// with its windows).
    pub(crate) fn forget_model(&self, model: &str) {
        let _ = self.data_quality.remove_label_values(&[model]);
    }

    /// The Prometheus text exposition, with the model-cache gauge refreshed.
    pub(crate) fn render(&self, active_models: usize) -> String {
        self.active_models.set(active_models as i64);
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl pynomaly_jobs::BatchObserver for Metrics {
    fn source_scored(&self, algorithm: &str, dataset: &str, _rows: usize, anomalies: usize) {
        self.count_anomalies(algorithm, dataset, anomalies);
    }

    fn job_finished(&self, kind: &str, status: &str, elapsed: Duration) {
        self.ops.observe_job(kind, status, elapsed);
    }

    fn source_quality(&self, dataset: &str, score: f64) {
        self.set_data_quality(dataset, score);
    }
}
