//! The job crate's integration tests, one binary:
//!
//! - `redis_queue`: the Redis queue against a real Redis and Postgres, driven step by step;
//! - `s3_sources`: batch jobs reading `s3://` sources and writing outputs to S3;
//! - `schedule`: scheduled retraining, once per slot across instances.
//!
//! The servers come from `PYNOMALY_TEST_*` variables (see the `testkit` crate); a test
//! whose server is not configured skips, saying why.

mod redis_queue;
mod s3_sources;
mod schedule;

use std::sync::Arc;
use std::time::Duration;

use pynomaly_jobs::{BatchSpec, JobRunner, OutputFormat, RunnerConfig, Scoring, SourceResolver};
use pynomaly_models::ModelRegistry;
use pynomaly_store::{ArtifactStore, DEFAULT_TENANT, DynMetadataStore, JobKind, NewJob};
use serde_json::{Value, json};

/// A job runner on these stores and sources, reading `chunk_rows` rows at a time and
/// recording progress after every chunk.
fn runner(
    meta: &DynMetadataStore,
    artifacts: &ArtifactStore,
    sources: SourceResolver,
    chunk_rows: usize,
) -> Arc<JobRunner> {
    let registry = ModelRegistry::new(Arc::clone(meta), artifacts.clone(), 1 << 20);
    let config = RunnerConfig {
        chunk_rows,
        progress_interval: Duration::from_millis(0),
    };
    Arc::new(JobRunner::new(
        Arc::new(registry),
        artifacts.clone(),
        sources,
        config,
    ))
}

/// A batch job over `sources` fitting an isolation forest (10 trees, seed 1) with this
/// contamination, writing CSV; `key` is its idempotency key.
fn fit_batch(sources: &[&str], contamination: Value, key: Option<&str>) -> NewJob {
    let parameters = json!({"n_estimators": 10, "random_state": 1});
    let spec = BatchSpec {
        sources: sources.iter().map(|s| s.to_string()).collect(),
        scoring: Scoring::Fit(
            detect_core::DetectorConfig::from_json(
                "isolation_forest",
                parameters.as_object().unwrap(),
                &contamination,
            )
            .unwrap(),
        ),
        output_format: OutputFormat::Csv,
        label_column: None,
        explain: None,
    };
    NewJob {
        tenant: DEFAULT_TENANT.into(),
        kind: JobKind::Batch,
        spec: serde_json::to_value(&spec).unwrap(),
        progress: json!({"rows_processed": 0, "sources_done": 0, "sources_total": sources.len()}),
        idempotency_key: key.map(str::to_string),
    }
}
