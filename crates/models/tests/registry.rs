//! The model registry on the embedded stores: one artifact load however many requests ask
//! for a cold model at once, and no stale copy cached across an invalidation.

use std::sync::Arc;

use futures::future::join_all;
use pynomaly_models::{ModelRegistry, Registration};
use pynomaly_store::{ArtifactStore, DynMetadataStore, SqliteStore};
use serde_json::json;

fn fitted() -> detect_core::FittedModel {
    let config = detect_core::DetectorConfig::from_json(
        "isolation_forest",
        json!({"n_estimators": 5, "random_state": 1})
            .as_object()
            .unwrap(),
        &json!("auto"),
    )
    .unwrap();
    let rows = ndarray::Array2::from_shape_fn((50, 2), |(i, j)| ((i * 7 + j * 3) % 11) as f64);
    detect_core::fit(&config, rows.view()).unwrap().model
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_requests_for_a_cold_model_loads_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let meta: DynMetadataStore = Arc::new(SqliteStore::in_memory().await.unwrap());
    let artifacts = ArtifactStore::from_url(&dir.path().display().to_string()).unwrap();
    let trainer = ModelRegistry::new(Arc::clone(&meta), artifacts.clone(), 1 << 20);
    trainer
        .register(fitted(), Registration::new("t", "m"))
        .await
        .unwrap();
    // Another instance: its cache is cold.
    let cold = Arc::new(ModelRegistry::new(meta, artifacts, 1 << 20));
    let loads = join_all((0..16).map(|_| {
        let cold = Arc::clone(&cold);
        tokio::spawn(async move { cold.load("t", "m", None).await })
    }))
    .await;
    for l in loads {
        assert_eq!(l.unwrap().unwrap().unwrap().version.version, 1);
    }
    assert_eq!(cold.loads(), 1, "one artifact read for sixteen requests");
    cold.load("t", "m", Some(1)).await.unwrap().unwrap();
    assert_eq!(
        cold.loads(),
        1,
        "the production alias and the version share the entry"
    );
    cold.cache().invalidate("t", "m");
    cold.load("t", "m", None).await.unwrap().unwrap();
    assert_eq!(
        cold.loads(),
        2,
        "after an invalidation the model is read again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_job_run_twice_registers_one_version() {
    let dir = tempfile::tempdir().unwrap();
    let meta: DynMetadataStore = Arc::new(SqliteStore::in_memory().await.unwrap());
    let artifacts = ArtifactStore::from_url(&dir.path().display().to_string()).unwrap();
    let registry = ModelRegistry::new(Arc::clone(&meta), artifacts, 1 << 20);
    let reg = Registration {
        job_id: Some("job-1".into()),
        ..Registration::new("t", "m")
    };
    let first = registry.register(fitted(), reg.clone()).await.unwrap();
    // The worker crashed before finishing the job; another worker runs it again.
    let second = registry.register(fitted(), reg).await.unwrap();
    assert_eq!(second.version.version, 1);
    assert_eq!(second.version.artifact_path, first.version.artifact_path);
    assert_eq!(meta.model_versions("t", "m").await.unwrap().len(), 1);
    let files = walk(dir.path());
    assert_eq!(files, 1, "the re-run's artifact was removed");
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() { walk(&p) } else { 1 }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_watch_follows_a_model_trained_again_and_stops_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let meta: DynMetadataStore = Arc::new(SqliteStore::in_memory().await.unwrap());
    let artifacts = ArtifactStore::from_url(&dir.path().display().to_string()).unwrap();
    let registry = Arc::new(ModelRegistry::new(Arc::clone(&meta), artifacts, 1 << 20));
    let stop = tokio_util::sync::CancellationToken::new();
    let every = std::time::Duration::from_millis(20);
    assert!(
        registry
            .watch_production("t", "m", every, stop.clone())
            .await
            .unwrap()
            .is_none(),
        "no model, nothing to watch"
    );
    let reg = Registration::new("t", "m");
    let first = registry.register(fitted(), reg.clone()).await.unwrap();
    let mut watch = registry
        .watch_production("t", "m", every, stop.clone())
        .await
        .unwrap()
        .expect("the model exists");
    assert_eq!(
        watch.current.borrow_and_update().version.artifact_path,
        first.version.artifact_path
    );
    // Deleted and trained again: version 1 once more, but another artifact.
    registry.delete("t", "m").await.unwrap();
    let second = registry.register(fitted(), reg).await.unwrap();
    assert_eq!(second.version.version, 1);
    assert_ne!(second.version.artifact_path, first.version.artifact_path);
    tokio::time::timeout(std::time::Duration::from_secs(10), watch.current.changed())
        .await
        .expect("the new production version is published")
        .unwrap();
    assert_eq!(
        watch.current.borrow().version.artifact_path,
        second.version.artifact_path
    );
    stop.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(10), watch.task)
        .await
        .expect("the watch stops when asked")
        .unwrap();
}
