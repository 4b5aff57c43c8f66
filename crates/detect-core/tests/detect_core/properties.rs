//! Property tests: invariants that hold for any data, not just the golden fixtures.
//!
//! - LOF scores do not depend on the order of the rows (on tie-free data: with ties the
//!   choice among equidistant neighbours may legitimately follow the order).
//! - Isolation forest and LOF scores are bit-identical whatever the rayon thread count, and
//!   whether the fit borrows the matrix or consumes it (`fit_owned`).
//! - A serialized model loads back to bit-identical scores, and no byte string, however
//!   corrupt, makes loading panic.
//! - Bad input (NaN, infinity, no rows, no columns, a single row, the wrong width) is a
//!   typed error naming the problem, never a panic.
//!
//! Case counts are kept small so the whole file runs in seconds in a debug build.

use detect_core::{DetectError, DetectorConfig, Fit, FittedModel, fit, fit_model, fit_owned};
use ndarray::Array2;
use proptest::prelude::*;
use serde_json::{Value, json};

/// Continuous random values: two rows at (nearly) equal distances have probability ~0.
fn tie_free_matrix(
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) -> impl Strategy<Value = Array2<f64>> {
    (rows, cols).prop_flat_map(|(n, d)| {
        proptest::collection::vec(-100.0f64..100.0, n * d)
            .prop_map(move |v| Array2::from_shape_vec((n, d), v).expect("n * d values"))
    })
}

fn lof_params() -> impl Strategy<Value = Value> {
    (
        1usize..12,
        prop_oneof![
            Just(json!({"metric": "euclidean"})),
            Just(json!({"metric": "manhattan"})),
            Just(json!({"metric": "minkowski", "p": 3})),
        ],
    )
        .prop_map(|(k, mut p)| {
            p["n_neighbors"] = json!(k);
            p
        })
}

fn iforest_params() -> impl Strategy<Value = Value> {
    (1usize..40, any::<u64>(), prop_oneof![Just(json!("auto")), Just(json!(16)), Just(json!(0.5))])
        .prop_map(|(trees, seed, max_samples)| {
            json!({"n_estimators": trees, "random_state": seed, "max_samples": max_samples})
        })
}

fn config(algorithm: &str, params: &Value, contamination: Value) -> DetectorConfig {
    DetectorConfig::from_json(
        algorithm,
        params.as_object().expect("object"),
        &contamination,
    )
    .expect("valid parameters")
}

fn fit_with_threads(threads: usize, config: &DetectorConfig, x: &Array2<f64>) -> Fit {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
        .install(|| fit(config, x.view()))
        .expect("fit")
}

/// The fit on one thread, and the fits on 2 and 4 (with their thread counts), each
/// checked to have the one-thread fit's training scores and threshold, bit for bit.
fn fits_on_more_threads(
    config: &DetectorConfig,
    x: &Array2<f64>,
) -> Result<(Fit, Vec<(usize, Fit)>), TestCaseError> {
    let one = fit_with_threads(1, config, x);
    let mut others = Vec::new();
    for threads in [2, 4] {
        let many = fit_with_threads(threads, config, x);
        prop_assert_eq!(bits(&many.training.scores), bits(&one.training.scores));
        prop_assert_eq!(
            many.training.threshold.to_bits(),
            one.training.threshold.to_bits()
        );
        others.push((threads, many));
    }
    Ok((one, others))
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|s| s.to_bits()).collect()
}

fn relative_difference(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn lof_scores_follow_the_rows_when_they_are_reordered(
        (x, perm) in tie_free_matrix(2..60, 1..5).prop_flat_map(|x| {
            let n = x.nrows();
            (Just(x), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
        }),
        params in lof_params(),
    ) {
        let config = config("lof", &params, json!("auto"));
        let original = fit(&config, x.view()).expect("fit");
        let shuffled = x.select(ndarray::Axis(0), &perm);
        let reordered = fit(&config, shuffled.view()).expect("fit");
        for (i, &from) in perm.iter().enumerate() {
            let (a, b) = (reordered.training.scores[i], original.training.scores[from]);
            prop_assert!(
                relative_difference(a, b) <= 1e-12,
                "row {from} moved to {i}: score {a} vs {b}"
            );
        }
        // Novelty scores of the same query rows do not depend on the training order either.
        let queries = x.mapv(|v| v * 0.9 + 0.37);
        let a = original.model.predict(queries.view()).expect("predict").scores;
        let b = reordered.model.predict(queries.view()).expect("predict").scores;
        for (i, (&a, &b)) in a.iter().zip(&b).enumerate() {
            prop_assert!(relative_difference(a, b) <= 1e-12, "query {i}: {a} vs {b}");
        }
    }

    #[test]
    fn lof_scores_do_not_depend_on_the_thread_count(
        x in tie_free_matrix(2..80, 1..5),
        params in lof_params(),
    ) {
        let config = config("lof", &params, json!(0.1));
        let (one, others) = fits_on_more_threads(&config, &x)?;
        for (threads, many) in others {
            let a = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool")
                .install(|| many.model.predict(x.view())).expect("predict");
            let b = one.model.predict(x.view()).expect("predict");
            prop_assert_eq!(bits(&a.scores), bits(&b.scores));
        }
    }

    #[test]
    fn isolation_forest_scores_do_not_depend_on_the_thread_count(
        x in tie_free_matrix(2..120, 1..6),
        params in iforest_params(),
    ) {
        let config = config("isolation_forest", &params, json!(0.1));
        let (one, others) = fits_on_more_threads(&config, &x)?;
        for (_, many) in others {
            prop_assert_eq!(&many.training.predictions, &one.training.predictions);
        }
    }

    #[test]
    fn fitting_an_owned_matrix_gives_the_same_fit(
        x in tie_free_matrix(2..120, 1..6),
        params in iforest_params(),
        algorithm in prop_oneof![Just("isolation_forest"), Just("lof")],
    ) {
        let params = if algorithm == "lof" { json!({"n_neighbors": 3}) } else { params };
        let config = config(algorithm, &params, json!(0.1));
        // The parameters carry the seed, so both fits grow the same trees.
        let borrowed = fit(&config, x.view()).expect("fit");
        let owned = fit_owned(&config, x.clone()).expect("fit_owned");
        prop_assert_eq!(bits(&owned.training.scores), bits(&borrowed.training.scores));
        prop_assert_eq!(owned.training.threshold.to_bits(), borrowed.training.threshold.to_bits());
        prop_assert_eq!(&owned.training.predictions, &borrowed.training.predictions);
    }

    #[test]
    fn fitting_without_labels_gives_the_same_model(
        x in tie_free_matrix(2..120, 1..6),
        params in iforest_params(),
        algorithm in prop_oneof![Just("isolation_forest"), Just("lof")],
        contamination in prop_oneof![Just(json!("auto")), Just(json!(0.1))],
    ) {
        let params = if algorithm == "lof" { json!({"n_neighbors": 3}) } else { params };
        let config = config(algorithm, &params, contamination);
        let labelled = fit(&config, x.view()).expect("fit");
        let (model, warnings) = fit_model(&config, x.view()).expect("fit_model");
        prop_assert_eq!(model.to_bytes(), labelled.model.to_bytes());
        prop_assert_eq!(warnings, labelled.warnings);
    }

    #[test]
    fn a_serialized_model_scores_exactly_like_the_original(
        x in tie_free_matrix(2..60, 1..5),
        lof in lof_params(),
        forest in iforest_params(),
        use_lof in any::<bool>(),
    ) {
        let config = if use_lof {
            config("lof", &lof, json!("auto"))
        } else {
            config("isolation_forest", &forest, json!(0.05))
        };
        let fitted = fit(&config, x.view()).expect("fit");
        let bytes = fitted.model.to_bytes();
        let loaded = FittedModel::from_bytes(&bytes).expect("load");
        prop_assert_eq!(loaded.config(), fitted.model.config());
        prop_assert_eq!(loaded.threshold().to_bits(), fitted.model.threshold().to_bits());
        let queries = x.mapv(|v| v * 1.1 - 0.5);
        let a = fitted.model.predict(queries.view()).expect("predict");
        let b = loaded.predict(queries.view()).expect("predict");
        prop_assert_eq!(bits(&a.scores), bits(&b.scores));
        prop_assert_eq!(a.predictions, b.predictions);
        // Serializing the loaded model gives the same bytes.
        prop_assert_eq!(loaded.to_bytes(), bytes.clone());

        // Every truncation and a flipped byte either loads or fails with a typed error.
        for cut in [0, 1, 4, 5, 6, 7, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            let _ = FittedModel::from_bytes(&bytes[..cut.min(bytes.len())]);
        }
        let mut flipped = bytes.clone();
        let at = bytes.len() / 3;
        flipped[at] ^= 0xA5;
        if let Ok(model) = FittedModel::from_bytes(&flipped) {
            // A corrupt model that still loads must still score without panicking.
            let _ = model.predict(queries.view());
        }
    }

    #[test]
    fn arbitrary_bytes_never_load_as_a_model_by_panicking(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        with_header in any::<bool>(),
    ) {
        let mut bytes = Vec::new();
        if with_header {
            bytes.extend_from_slice(b"PNMY");
            bytes.extend_from_slice(&detect_core::MODEL_FORMAT_VERSION.to_le_bytes());
        }
        bytes.extend_from_slice(&body);
        if let Ok(model) = FittedModel::from_bytes(&bytes) {
            let width = model.n_features().clamp(1, 64);
            let _ = model.predict(Array2::zeros((3, width)).view());
        }
    }

    #[test]
    fn a_non_finite_value_is_reported_with_its_row_and_column(
        x in tie_free_matrix(2..40, 1..5),
        at in any::<proptest::sample::Index>(),
        bad in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
        use_lof in any::<bool>(),
    ) {
        let (n, d) = x.dim();
        let cell = at.index(n * d);
        let (row, column) = (cell / d, cell % d);
        let mut dirty = x.clone();
        dirty[[row, column]] = bad;
        let config = if use_lof {
            config("lof", &json!({"n_neighbors": 3}), json!("auto"))
        } else {
            config("isolation_forest", &json!({"n_estimators": 5, "random_state": 1}), json!("auto"))
        };
        match fit(&config, dirty.view()) {
            Err(DetectError::NonFinite { row: r, column: c, .. }) => {
                prop_assert_eq!((r, c), (row, column));
            }
            other => prop_assert!(false, "fit: expected NonFinite, got {:?}", other.map(|f| f.training)),
        }
        // Scoring rejects it the same way.
        let model = fit(&config, x.view()).expect("fit").model;
        match model.predict(dirty.view()) {
            Err(DetectError::NonFinite { row: r, column: c, .. }) => {
                prop_assert_eq!((r, c), (row, column));
            }
            other => prop_assert!(false, "predict: expected NonFinite, got {:?}", other),
        }
    }

    #[test]
    fn scoring_rows_of_the_wrong_width_is_a_feature_mismatch(
        x in tie_free_matrix(2..30, 1..5),
        width in 1usize..8,
        use_lof in any::<bool>(),
    ) {
        prop_assume!(width != x.ncols());
        let config = if use_lof {
            config("lof", &json!({"n_neighbors": 2}), json!("auto"))
        } else {
            config("isolation_forest", &json!({"n_estimators": 5, "random_state": 3}), json!("auto"))
        };
        let model = fit(&config, x.view()).expect("fit").model;
        let rows = Array2::<f64>::zeros((3, width));
        prop_assert_eq!(
            model.predict(rows.view()).map(|d| d.scores),
            Err(DetectError::FeatureMismatch { expected: x.ncols(), found: width })
        );
    }
}

/// Small proptest inputs fit in one parallel work item; this one spans many (LOF works in
/// blocks of 256 rows, isolation-forest scoring in blocks of 2048), so the threads really
/// split the work.
#[test]
fn scores_on_thousands_of_rows_are_identical_on_1_2_and_4_threads() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(42);
    let x = Array2::from_shape_simple_fn((4000, 3), || rng.random_range(-10.0..10.0));
    for config in [
        config("lof", &json!({"n_neighbors": 20}), json!(0.05)),
        config(
            "lof",
            &json!({"n_neighbors": 7, "metric": "manhattan"}),
            json!("auto"),
        ),
        config("isolation_forest", &json!({"random_state": 5}), json!(0.05)),
    ] {
        let one = fit_with_threads(1, &config, &x);
        let novel_one = one
            .model
            .predict(x.slice(ndarray::s![..2500, ..]))
            .expect("predict");
        for threads in [2, 4] {
            let many = fit_with_threads(threads, &config, &x);
            assert_eq!(
                bits(&many.training.scores),
                bits(&one.training.scores),
                "{config:?}"
            );
            assert_eq!(
                many.training.threshold.to_bits(),
                one.training.threshold.to_bits()
            );
            let novel = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool")
                .install(|| many.model.predict(x.slice(ndarray::s![..2500, ..])))
                .expect("predict");
            assert_eq!(bits(&novel.scores), bits(&novel_one.scores), "{config:?}");
        }
    }
}

fn both_algorithms() -> [DetectorConfig; 2] {
    [
        config("lof", &json!({}), json!("auto")),
        config("isolation_forest", &json!({"random_state": 0}), json!(0.1)),
    ]
}

/// Asserts that fitting `x` fails with both algorithms, with an error that `expected`
/// accepts.
fn assert_fit_fails(x: &Array2<f64>, expected: impl Fn(&DetectError) -> bool) {
    for config in both_algorithms() {
        match fit(&config, x.view()) {
            Ok(_) => panic!("{config:?} fitted {x:?}"),
            Err(e) => assert!(expected(&e), "{config:?}: {e:?}"),
        }
    }
}

#[test]
fn fitting_no_rows_is_an_empty_input_error() {
    let x = Array2::<f64>::zeros((0, 3));
    assert_fit_fails(&x, |e| matches!(e, DetectError::EmptyInput(_)));
}

#[test]
fn fitting_rows_without_columns_is_an_empty_input_error() {
    let x = Array2::<f64>::zeros((5, 0));
    assert_fit_fails(&x, |e| matches!(e, DetectError::EmptyInput(_)));
}

#[test]
fn fitting_a_single_row_needs_at_least_two() {
    let x = Array2::from_shape_vec((1, 3), vec![1.0, 2.0, 3.0]).expect("1 x 3");
    assert_fit_fails(&x, |e| matches!(e, DetectError::TooFewRows { n_rows: 1 }));
}

#[test]
fn two_identical_rows_fit_without_panicking() {
    // The smallest legal input, and a degenerate one: every distance is zero.
    for config in both_algorithms() {
        let x = Array2::from_elem((2, 2), 4.0);
        let fitted = fit(&config, x.view()).expect("fit");
        assert_eq!(fitted.training.scores.len(), 2);
        assert!(fitted.training.scores.iter().all(|s| s.is_finite()));
    }
}

#[test]
fn scoring_no_rows_is_an_empty_input_error() {
    for config in both_algorithms() {
        let x = Array2::from_shape_fn((10, 2), |(i, j)| (i * 3 + j * 7) as f64 * 0.37);
        let model = fit(&config, x.view()).expect("fit").model;
        let none = Array2::<f64>::zeros((0, 2));
        assert!(matches!(
            model.predict(none.view()),
            Err(DetectError::EmptyInput(_))
        ));
    }
}

#[test]
fn a_model_from_another_format_version_is_refused() {
    let x = Array2::from_shape_fn((10, 2), |(i, j)| (i * 5 + j) as f64 * 0.11);
    let config = config(
        "isolation_forest",
        &json!({"random_state": 9, "n_estimators": 3}),
        json!("auto"),
    );
    let mut bytes = fit(&config, x.view()).expect("fit").model.to_bytes();
    let next = detect_core::MODEL_FORMAT_VERSION.wrapping_add(1);
    bytes[4..6].copy_from_slice(&next.to_le_bytes());
    assert!(matches!(
        FittedModel::from_bytes(&bytes),
        Err(DetectError::UnsupportedFormat { .. })
    ));
    assert!(matches!(
        FittedModel::from_bytes(b"not a model"),
        Err(DetectError::Deserialize(_))
    ));
}
