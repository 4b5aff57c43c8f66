//! Golden tests: detect-core against scikit-learn 1.9.1.
//!
//! The fixtures under `tests/fixtures/` at the repository root are written by
//! `tests/fixtures/generate.py` (see its docstring for what each holds and why the data are
//! free of distance ties). They are committed, so these tests need no Python.
//!
//! What must agree, and how closely:
//! - LOF training scores (`-negative_outlier_factor_`) and novelty scores
//!   (`-score_samples` with `novelty=True`): 1e-9 relative. Only the order of floating-point
//!   sums may differ from scikit-learn's.
//! - LOF thresholds: exactly 1.5 for `"auto"`; for a fraction, 1e-9 relative (the quantile
//!   of scores that themselves agree to 1e-9). Predictions: equal.
//! - The clamp of `n_neighbors` to n − 1, with a warning wherever scikit-learn warns.
//! - Isolation forest: c(n) and the contamination quantile exactly; the forest itself only
//!   statistically, since our random number generator is not NumPy's.

use std::path::PathBuf;

use detect_core::iforest::average_path_length;
use detect_core::metrics::roc_auc;
use detect_core::model::quantile_threshold;
use detect_core::{DetectorConfig, fit};
use ndarray::Array2;
use serde_json::{Map, Value, json};

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad fixture {}: {e}", path.display()))
}

/// The entries of a fixture's array, each with its `name`.
fn named(entries: &Value) -> impl Iterator<Item = (&str, &Value)> {
    let entries = entries.as_array().expect("an array of named entries");
    entries
        .iter()
        .map(|e| (e["name"].as_str().expect("name"), e))
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).expect("a matrix of numbers");
    let width = rows[0].len();
    let flat: Vec<f64> = rows.into_iter().flatten().collect();
    Array2::from_shape_vec((flat.len() / width, width), flat).expect("rectangular fixture")
}

fn floats(v: &Value) -> Vec<f64> {
    serde_json::from_value(v.clone()).expect("an array of numbers")
}

fn predictions(v: &Value) -> Vec<i8> {
    serde_json::from_value(v.clone()).expect("an array of -1/1")
}

/// An f64 stored as the 16 hex digits of its IEEE-754 bits.
fn exact(v: &Value) -> f64 {
    let s = v.as_str().expect("hex bits");
    f64::from_bits(u64::from_str_radix(s, 16).expect("16 hex digits"))
}

fn relative_difference(got: f64, expected: f64) -> f64 {
    if got == expected {
        0.0
    } else {
        (got - expected).abs() / got.abs().max(expected.abs())
    }
}

/// Asserts `got` equals `expected` element-wise to `tol` relative, naming the worst row.
fn assert_close(what: &str, got: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    let (worst, err) = got
        .iter()
        .zip(expected)
        .map(|(&g, &e)| relative_difference(g, e))
        .enumerate()
        .fold((0, 0.0), |acc, (i, d)| if d > acc.1 { (i, d) } else { acc });
    assert!(
        err <= tol,
        "{what}: row {worst}: got {:e}, scikit-learn {:e} (relative difference {err:e} > {tol:e})",
        got[worst],
        expected[worst],
    );
}

fn lof_config(params: &Value, contamination: &str) -> DetectorConfig {
    let contamination = if contamination == "auto" {
        json!("auto")
    } else {
        json!(contamination.parse::<f64>().expect("a fraction"))
    };
    let params: &Map<String, Value> = params.as_object().expect("params object");
    DetectorConfig::from_json("lof", params, &contamination).expect("valid LOF parameters")
}

#[test]
fn lof_scores_thresholds_and_predictions_match_scikit_learn() {
    let fx = fixture("lof.json");
    let cases = fx["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10, "fixture has {} cases", cases.len());
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let data = &fx["datasets"][case["dataset"].as_str().expect("dataset")];
        let (x, queries) = (matrix(&data["x"]), matrix(&data["queries"]));
        let expected_scores = floats(&case["scores"]);
        for (contamination, want) in case["contamination"].as_object().expect("contaminations") {
            let what = format!("{name}, contamination {contamination}");
            let fitted = fit(&lof_config(&case["params"], contamination), x.view())
                .unwrap_or_else(|e| panic!("{what}: fit failed: {e}"));

            assert_close(
                &format!("{what}: training scores"),
                &fitted.training.scores,
                &expected_scores,
                1e-9,
            );
            let threshold = want["threshold"].as_f64().expect("threshold");
            if contamination == "auto" {
                assert_eq!(fitted.training.threshold, 1.5, "{what}: threshold");
            } else {
                assert_close(
                    &format!("{what}: threshold"),
                    &[fitted.training.threshold],
                    &[threshold],
                    1e-9,
                );
            }
            assert_eq!(fitted.model.threshold(), fitted.training.threshold);
            assert_eq!(
                fitted.training.predictions,
                predictions(&want["predictions"]),
                "{what}: training predictions"
            );

            let novel = fitted
                .model
                .predict(queries.view())
                .unwrap_or_else(|e| panic!("{what}: predict failed: {e}"));
            assert_close(
                &format!("{what}: novelty scores"),
                &novel.scores,
                &floats(&want["novelty_scores"]),
                1e-9,
            );
            assert_eq!(
                novel.predictions,
                predictions(&want["novelty_predictions"]),
                "{what}: novelty predictions"
            );
        }
    }
}

#[test]
fn lof_clamps_n_neighbors_to_n_minus_one_and_warns_where_scikit_learn_does() {
    let fx = fixture("lof.json");
    let mut clamped_with_warning = 0;
    for (name, case) in named(&fx["cases"]) {
        let x = matrix(&fx["datasets"][case["dataset"].as_str().expect("dataset")]["x"]);
        let asked = case["params"]["n_neighbors"].as_u64().expect("n_neighbors") as usize;
        let effective = case["n_neighbors_effective"].as_u64().expect("effective") as usize;
        let fitted = fit(&lof_config(&case["params"], "auto"), x.view()).expect("fit");
        if case["sklearn_warns_clamp"].as_bool().expect("flag") {
            assert!(asked > x.nrows() && effective == x.nrows() - 1, "{name}");
            assert!(
                fitted.warnings.iter().any(|w| w.contains("n_neighbors")),
                "{name}: scikit-learn warns that n_neighbors ({asked}) is clamped to \
                 {effective}; we gave {:?}",
                fitted.warnings
            );
            clamped_with_warning += 1;
        } else {
            // Including asked == n, which scikit-learn clamps to n - 1 silently.
            assert!(
                fitted.warnings.is_empty(),
                "{name}: unexpected warnings {:?}",
                fitted.warnings
            );
        }
    }
    assert!(clamped_with_warning > 0, "the fixture has no clamping case");
}

#[test]
fn average_path_length_matches_scikit_learn_bit_for_bit() {
    let fx = fixture("iforest.json");
    for row in fx["average_path_length"].as_array().expect("rows") {
        let n = row["n"].as_u64().expect("n") as usize;
        let expected = exact(&row["c_bits"]);
        let got = average_path_length(n);
        assert_eq!(
            got.to_bits(),
            expected.to_bits(),
            "c({n}): got {got:e}, scikit-learn {expected:e}"
        );
    }
}

#[test]
fn contamination_thresholds_match_numpy_percentile_bit_for_bit() {
    let fx = fixture("iforest.json");
    let mut checked = 0;
    for (name, set) in named(&fx["thresholds"]) {
        let scores: Vec<f64> = set["scores_bits"]
            .as_array()
            .expect("scores")
            .iter()
            .map(exact)
            .collect();
        for want in set["expected"].as_array().expect("expected") {
            let c = exact(&want["contamination_bits"]);
            let expected = exact(&want["threshold_bits"]);
            let got = quantile_threshold(&scores, c);
            assert_eq!(
                got.to_bits(),
                expected.to_bits(),
                "{name} (n = {}), contamination {c}: got {got:e}, numpy {expected:e}",
                scores.len()
            );
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} thresholds checked");
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

#[test]
fn isolation_forest_agrees_with_scikit_learn_statistically() {
    let fx = fixture("iforest.json");
    let toy = &fx["toy"];
    let x = matrix(&toy["x"]);
    let labels: Vec<bool> = predictions(&toy["labels"])
        .into_iter()
        .map(|l| l == 1)
        .collect();
    let sklearn_mean = floats(&toy["sklearn_mean_scores"]);
    let sklearn_auc = toy["sklearn_roc_auc_mean"].as_f64().expect("auc");
    let sklearn_anomalies: Vec<f64> = floats(&toy["sklearn_training_anomalies_auto_per_seed"]);

    let mut mean = vec![0.0; x.nrows()];
    let (mut auc, mut anomalies) = (0.0, 0.0);
    for seed in 0..5u64 {
        let params = json!({"random_state": seed});
        let config = DetectorConfig::from_json(
            "isolation_forest",
            params.as_object().expect("object"),
            &json!("auto"),
        )
        .expect("valid parameters");
        let fitted = fit(&config, x.view()).expect("fit");
        assert_eq!(fitted.training.threshold, 0.5);
        auc += roc_auc(&labels, &fitted.training.scores).expect("both classes") / 5.0;
        anomalies += fitted.training.anomaly_count as f64 / 5.0;
        for (m, s) in mean.iter_mut().zip(&fitted.training.scores) {
            *m += s / 5.0;
        }
    }

    let r = pearson(&mean, &sklearn_mean);
    assert!(r > 0.95, "correlation with scikit-learn's mean scores {r}");
    assert!(
        (auc - sklearn_auc).abs() < 0.02,
        "mean ROC-AUC {auc}, scikit-learn {sklearn_auc}"
    );
    let level = |s: &[f64]| s.iter().sum::<f64>() / s.len() as f64;
    assert!(
        (level(&mean) - level(&sklearn_mean)).abs() < 0.01,
        "mean score {} vs scikit-learn {}",
        level(&mean),
        level(&sklearn_mean)
    );
    // The "auto" threshold 0.5 flags about as many rows as scikit-learn's.
    let sk = level(&sklearn_anomalies);
    assert!(
        (anomalies - sk).abs() <= 0.35 * sk,
        "anomalies at the auto threshold: {anomalies} per seed, scikit-learn {sk}"
    );
}

/// PyOD's labels (1 = outlier) as our predictions (-1 = anomaly).
fn pyod_predictions(v: &Value) -> Vec<i8> {
    let labels: Vec<i8> = serde_json::from_value(v.clone()).expect("an array of 0/1");
    labels
        .into_iter()
        .map(|l| if l == 1 { -1 } else { 1 })
        .collect()
}

/// As [`assert_close`], with differences below `floor` accepted whatever their relative
/// size (scores that are sums of logarithms can be near 0).
fn assert_near(what: &str, got: &[f64], expected: &[f64], tol: f64, floor: f64) {
    assert_eq!(got.len(), expected.len(), "{what}: length");
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let ok = (g - e).abs() <= floor || relative_difference(g, e) <= tol;
        assert!(ok, "{what}: row {i}: got {g:e}, PyOD {e:e}");
    }
}

/// PyOD's deterministic detectors, GMM with its one component among them, MCD on data
/// where every seed gives PyOD the same support and CBLOF on data where every seed gives
/// k-means the same partition, and both with a `random_state` on data where the seed
/// matters (`tests/fixtures/generate_pyod.py`):
/// training scores,
/// the threshold for contamination `"auto"` (PyOD's 0.1), the labels, and the scores of
/// new rows, all to 1e-9 relative.
#[test]
fn pyod_detectors_scores_thresholds_and_labels_match_pyod() {
    let fx = fixture("pyod.json");
    let mut seen = std::collections::BTreeSet::new();
    for (name, case) in named(&fx["cases"]) {
        let data = &fx["datasets"][case["dataset"].as_str().expect("dataset")];
        let (x, queries) = (matrix(&data["x"]), matrix(&data["queries"]));
        let algorithm = case["algorithm"].as_str().expect("algorithm");
        seen.insert(algorithm);
        let params = case["params"].as_object().expect("params object");
        let config = DetectorConfig::from_json(algorithm, params, &json!("auto"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let fitted = fit(&config, x.view()).unwrap_or_else(|e| panic!("{name}: fit: {e}"));
        let tol = 1e-9;
        assert_near(
            &format!("{name}: training scores"),
            &fitted.training.scores,
            &floats(&case["scores"]),
            tol,
            1e-12,
        );
        assert_near(
            &format!("{name}: threshold"),
            &[fitted.training.threshold],
            &[case["threshold"].as_f64().expect("threshold")],
            tol,
            1e-12,
        );
        assert_eq!(
            fitted.training.predictions,
            pyod_predictions(&case["labels"]),
            "{name}: labels"
        );
        let novel = fitted.model.score(queries.view()).expect("score");
        assert_near(
            &format!("{name}: novelty scores"),
            &novel,
            &floats(&case["novelty_scores"]),
            tol,
            1e-12,
        );
        // The serialized model scores the same, bit for bit.
        let copy = detect_core::FittedModel::from_bytes(&fitted.model.to_bytes()).expect("read");
        assert_eq!(copy.score(queries.view()).expect("score"), novel, "{name}");
    }
    let all: Vec<_> = seen.into_iter().collect();
    assert_eq!(
        all,
        ["cblof", "copod", "ecod", "gmm", "hbos", "knn", "mcd", "pca"]
    );
}

/// scikit-learn's DBSCAN (`tests/fixtures/dbscan.json`, on `pyod.json`'s datasets):
/// cluster labels and core rows exactly; the scores (distance to the nearest core row) and
/// the novelty scores to 1e-9 relative; with `contamination: "auto"` the rows labelled −1
/// are exactly the noise.
#[test]
fn dbscan_clusters_equal_scikit_learn_and_noise_is_labelled_an_anomaly() {
    let data = fixture("pyod.json");
    let fx = fixture("dbscan.json");
    for (name, case) in named(&fx["cases"]) {
        let set = &data["datasets"][case["dataset"].as_str().expect("dataset")];
        let (x, queries) = (matrix(&set["x"]), matrix(&set["queries"]));
        let params = case["params"].as_object().expect("params object");
        let config = DetectorConfig::from_json("dbscan", params, &json!("auto"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let detect_core::AlgorithmParams::Dbscan(p) = &config.algorithm else {
            panic!("{name}: not DBSCAN");
        };
        let (labels, core) =
            detect_core::dbscan::cluster_labels(x.view(), p.eps, p.min_samples, p.metric);
        let want: Vec<i64> = serde_json::from_value(case["labels"].clone()).expect("labels");
        assert_eq!(labels, want, "{name}: labels");
        let want_core: Vec<bool> = serde_json::from_value(case["core"].clone()).expect("core");
        assert_eq!(core, want_core, "{name}: core rows");

        let fitted = fit(&config, x.view()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_near(
            &format!("{name}: scores"),
            &fitted.training.scores,
            &floats(&case["scores"]),
            1e-9,
            1e-12,
        );
        assert_eq!(fitted.training.threshold, p.eps, "{name}");
        let noise: Vec<i8> = want.iter().map(|&l| if l == -1 { -1 } else { 1 }).collect();
        assert_eq!(fitted.training.predictions, noise, "{name}: noise");
        let novel = fitted.model.score(queries.view()).expect("score");
        assert_near(
            &format!("{name}: novelty scores"),
            &novel,
            &floats(&case["novelty_scores"]),
            1e-9,
            1e-12,
        );
    }
}
