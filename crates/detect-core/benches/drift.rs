//! Cost of drift accounting: adding scored rows to a window (the per-predict work), and
//! building a reference / comparing a window (per training / per report), beside the
//! cost of scoring the same row with a 100-tree isolation forest.
//!
//! `cargo bench -p detect-core --bench drift`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use detect_core::drift::{DriftThresholds, ReferenceProfile, WindowStats, compare};
use detect_core::{DetectorConfig, fit};
use ndarray::Array2;
use serde_json::json;
use std::hint::black_box;

fn data(n: usize, d: usize, seed: u64) -> Array2<f64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ seed;
    Array2::from_shape_fn((n, d), |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    })
}

fn bench(c: &mut Criterion) {
    let train = data(10_000, 10, 0);
    let reference = ReferenceProfile::from_matrix(train.view(), 0.1);
    let one = data(1, 10, 1);
    let block = data(1000, 10, 2);
    let mut window = WindowStats::new(&reference);
    c.bench_function("drift_window_add_1_row_10_features", |b| {
        b.iter(|| window.add_rows(&reference, black_box(one.view()), 0))
    });
    let mut g = c.benchmark_group("drift_window_bulk");
    g.throughput(Throughput::Elements(block.nrows() as u64));
    g.bench_function("add_1000_rows_10_features", |b| {
        b.iter(|| window.add_rows(&reference, black_box(block.view()), 0))
    });
    g.finish();
    c.bench_function("drift_compare_10_features", |b| {
        b.iter(|| compare(&reference, black_box(&window), &DriftThresholds::default()))
    });
    let mut g = c.benchmark_group("drift_reference");
    g.sample_size(20);
    g.bench_function("from_matrix_10k_rows_10_features", |b| {
        b.iter(|| ReferenceProfile::from_matrix(black_box(train.view()), 0.1))
    });
    g.finish();
    let config = DetectorConfig::from_json(
        "isolation_forest",
        json!({"random_state": 0}).as_object().unwrap(),
        &json!("auto"),
    )
    .unwrap();
    let forest = fit(&config, train.view()).unwrap().model;
    c.bench_function("iforest_100_trees_predict_1_row_10_features", |b| {
        b.iter(|| forest.predict(black_box(one.view())).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
