//! Scoring speed of a fitted 100-tree isolation forest: one row at a time (the
//! `predict` hot path) and in bulk (rows per second per core), its per-feature
//! explanations of the same rows (`FittedModel::explain`, top 3, to compare with
//! scoring), plus LOF novelty scoring.
//!
//! `cargo bench -p detect-core --bench score`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use detect_core::{DetectorConfig, fit};
use ndarray::Array2;
use serde_json::json;
use std::hint::black_box;

fn data(n: usize, d: usize) -> Array2<f64> {
    // A deterministic, well-spread pseudo-random matrix (no RNG dependency needed).
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    Array2::from_shape_fn((n, d), |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    })
}

fn config(algorithm: &str, params: serde_json::Value) -> DetectorConfig {
    DetectorConfig::from_json(algorithm, params.as_object().unwrap(), &json!("auto")).unwrap()
}

fn bench(c: &mut Criterion) {
    let train = data(10_000, 10);
    let forest = fit(
        &config("isolation_forest", json!({"random_state": 0})),
        train.view(),
    )
    .unwrap()
    .model;
    let one = data(1, 10);
    c.bench_function("iforest_100_trees_score_1_row_10_features", |b| {
        b.iter(|| forest.score(black_box(one.view())).unwrap())
    });
    c.bench_function("iforest_100_trees_explain_1_row_10_features", |b| {
        b.iter(|| forest.explain(black_box(one.view()), 3).unwrap())
    });
    let block = data(100_000, 10);
    let mut g = c.benchmark_group("iforest_100_trees_bulk");
    g.throughput(Throughput::Elements(block.nrows() as u64));
    g.sample_size(20);
    g.bench_function("score_100k_rows_10_features_single_thread", |b| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        b.iter(|| pool.install(|| forest.score(black_box(block.view())).unwrap()))
    });
    g.bench_function("explain_100k_rows_10_features_single_thread", |b| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        b.iter(|| pool.install(|| forest.explain(black_box(block.view()), 3).unwrap()))
    });
    g.finish();

    let lof = fit(&config("lof", json!({})), data(20_000, 5).view())
        .unwrap()
        .model;
    let one = data(1, 5);
    c.bench_function("lof_20k_training_rows_score_1_row", |b| {
        b.iter(|| lof.score(black_box(one.view())).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
