//! Explanations name the feature that makes a row anomalous.
//!
//! Every detector is fitted on 2,000 seeded standard-normal rows × 6 features, then
//! explains 100 planted rows drawn from the same distribution, each with one feature
//! moved by 8 standard deviations, a different feature per row (cycling, alternately up
//! and down): for at least 95% of them the first feature named must be the planted one.
//!
//! The planted rows are new rows (what `predict` explains), not part of the training
//! set: planted among the training rows, the ~8 rows sharing a feature and direction
//! would form a small cluster of their own that masks them from the neighbour-based
//! detectors (KNN's 5 nearest neighbours of a planted row are the other planted rows),
//! a property of those scores rather than of their explanations.

use detect_core::{DetectorConfig, Explanations, FittedModel, fit};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{Value, json};

const ROWS: usize = 2_000;
const FEATURES: usize = 6;
const PLANTED: usize = 100;
const SHIFT: f64 = 8.0;

/// Standard normal values (Box–Muller) from a seeded generator.
fn gaussian(rng: &mut Xoshiro256PlusPlus) -> f64 {
    let u: f64 = 1.0 - rng.random::<f64>();
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

/// The training matrix, the planted rows and each one's planted feature.
fn planted_data() -> (Array2<f64>, Array2<f64>, Vec<usize>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2020);
    let x = Array2::from_shape_fn((ROWS, FEATURES), |_| gaussian(&mut rng));
    let mut planted = Array2::from_shape_fn((PLANTED, FEATURES), |_| gaussian(&mut rng));
    let features: Vec<usize> = (0..PLANTED)
        .map(|i| {
            let feature = i % FEATURES;
            let sign = if (i / FEATURES).is_multiple_of(2) {
                1.0
            } else {
                -1.0
            };
            planted[[i, feature]] += sign * SHIFT;
            feature
        })
        .collect();
    (x, planted, features)
}

fn detectors() -> Vec<(&'static str, Value)> {
    vec![
        ("isolation_forest", json!({"random_state": 0})),
        ("lof", json!({})),
        ("ecod", json!({})),
        ("copod", json!({})),
        ("hbos", json!({})),
        ("knn", json!({})),
        ("pca", json!({})),
        ("gmm", json!({})),
        ("dbscan", json!({"eps": 1.5})),
        ("inne", json!({"random_state": 0})),
        ("mcd", json!({"random_state": 0})),
        ("cblof", json!({"random_state": 0})),
    ]
}

/// `algorithm` with `params` fitted on `x`.
fn fitted(algorithm: &str, params: &Value, x: &Array2<f64>) -> FittedModel {
    let params = params.as_object().expect("object");
    let config = DetectorConfig::from_json(algorithm, params, &json!("auto")).expect("valid");
    fit(&config, x.view()).expect("fit").model
}

#[test]
fn every_detector_names_the_planted_feature_first_for_95_percent_of_planted_rows() {
    let (x, planted_rows, planted) = planted_data();
    let mut failures = Vec::new();
    for (algorithm, params) in detectors() {
        let model = fitted(algorithm, &params, &x);
        let explanations = model.explain(planted_rows.view(), 3).expect("explain");
        let hits = explanations
            .rows()
            .zip(&planted)
            .filter(|(e, feature)| e[0].feature == **feature)
            .count();
        eprintln!("{algorithm}: planted feature first for {hits}/{PLANTED} planted rows");
        if hits * 100 < 95 * PLANTED {
            failures.push(format!("{algorithm}: {hits}/{PLANTED}"));
        }
        for e in explanations.rows() {
            assert_eq!(e.len(), 3);
            assert!(e.windows(2).all(|w| w[0].contribution >= w[1].contribution));
            assert!(e.iter().map(|c| c.contribution).sum::<f64>() <= 1.0 + 1e-12);
        }
    }
    assert!(failures.is_empty(), "below 95%: {failures:?}");
}

#[test]
fn contributions_over_all_features_sum_to_one_and_bad_top_k_names_it() {
    let (x, _, _) = planted_data();
    for (algorithm, params) in detectors() {
        let model = fitted(algorithm, &params, &x);
        let head = x.slice(ndarray::s![..50, ..]);
        let all: Explanations = model.explain(head, FEATURES).expect("explain");
        for row in all.rows() {
            let total: f64 = row.iter().map(|c| c.contribution).sum();
            assert!((total - 1.0).abs() < 1e-9, "{algorithm}: {total}");
            let mut features: Vec<usize> = row.iter().map(|c| c.feature).collect();
            features.sort_unstable();
            assert_eq!(features, (0..FEATURES).collect::<Vec<_>>());
        }
        for bad in [0, FEATURES + 1] {
            let err = model.explain(head, bad).unwrap_err();
            assert!(err.to_string().contains("top_k"), "{algorithm}: {err}");
        }
        let narrow = x.slice(ndarray::s![..5, ..3]);
        assert!(model.explain(narrow, 1).is_err(), "{algorithm}");
    }
}

#[test]
fn explanations_rank_each_rows_contributions_in_every_chunk_and_list_length() {
    // 10 features, 300 rows: two chunks, blocks of 64 with a part block, and top lists up
    // to the whole width (longer ones than the vector ranking keeps).
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(7);
    let x = Array2::from_shape_fn((300, 10), |(_, j)| gaussian(&mut rng) * (1.0 + j as f64));
    for (algorithm, params) in detectors() {
        let params = match algorithm {
            "dbscan" => json!({"eps": 12.0}),
            _ => params,
        };
        let model = fitted(algorithm, &params, &x);
        let contributions = model.contributions(x.view()).expect("contributions");
        for k in [1, 3, 8, 9, 10] {
            let got = model.explain(x.view(), k).expect("explain");
            let want = detect_core::explain::top_features(contributions.view(), k);
            assert_eq!(got, want, "{algorithm}, top {k}");
            let one = model
                .explain(x.slice(ndarray::s![299.., ..]), k)
                .expect("explain");
            assert_eq!(one.row(0), want.row(299), "{algorithm}, top {k}, one row");
        }
    }
}
