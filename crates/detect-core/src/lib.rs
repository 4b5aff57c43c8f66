//! # detect-core: anomaly detectors with scikit-learn's semantics
//!
//! The pure core of pynomaly: no I/O, no async runtime, no HTTP. Everything here is
//! synchronous code over [`ndarray`] matrices of `f64`, parallelised with [`rayon`]; the
//! service calls it from blocking threads.
//!
//! Detectors, each matching its scikit-learn or PyOD namesake:
//! - [`iforest`]: isolation forest (`sklearn.ensemble.IsolationForest`).
//! - [`lof`]: local outlier factor (`sklearn.neighbors.LocalOutlierFactor`), with novelty
//!   scoring of new rows, over an exact k-d tree or blocked brute-force neighbour search.
//! - [`ecod`], [`copod`]: PyOD's empirical-CDF and copula detectors, sharing the per-feature
//!   tail probabilities of `tails`.
//! - [`hbos`]: PyOD's histogram-based outlier score.
//! - [`knn`]: PyOD's k-nearest-neighbour distance, over LOF's neighbour search.
//! - [`pca`]: PyOD's principal-component score, over the shared `standardize`.
//! - [`gmm`]: PyOD's one-component Gaussian mixture (scikit-learn's `GaussianMixture`).
//! - [`inne`]: PyOD's isolation using nearest-neighbour ensembles (randomized, seeded).
//! - [`mcd`]: PyOD's minimum covariance determinant (scikit-learn's `MinCovDet`, FastMCD;
//!   randomized, seeded), scored by the squared Mahalanobis distance.
//! - [`cblof`]: PyOD's cluster-based local outlier factor over scikit-learn's k-means
//!   (randomized, seeded).
//! - [`dbscan`]: scikit-learn's DBSCAN clusters, scored by the distance to the nearest
//!   core row, over the k-d tree's radius search.
//!
//! Every detector also says which features make a row anomalous:
//! [`FittedModel::explain`] gives each row's top features and their normalised
//! contributions ([`explain`]).
//!
//! Beside them: [`params`], one table per algorithm of parameter names, types, defaults and
//! ranges, which parsing, the API's description of the algorithms and [`ParamGuard::check`]
//! all read; [`drift`], a reference profile kept with a model and compared with windows of
//! scored rows (PSI, KS); [`metrics`], ROC-AUC and average precision as scikit-learn
//! computes them.
//!
//! The flow: build a [`DetectorConfig`] (usually from JSON with
//! [`DetectorConfig::from_json`], which rejects unknown and out-of-range parameters),
//! [`fit`] it on a matrix, then score new rows with [`FittedModel::predict`].
//!
//! ```
//! use detect_core::{fit, DetectorConfig};
//! use ndarray::array;
//! use serde_json::json;
//!
//! let x = array![[0.0, 0.1], [0.1, 0.0], [0.05, 0.05], [0.1, 0.1], [8.0, 9.0]];
//! let params = json!({"n_estimators": 50, "random_state": 7});
//! let config = DetectorConfig::from_json(
//!     "isolation_forest",
//!     params.as_object().unwrap(),
//!     &json!(0.2),
//! )?;
//! let fitted = fit(&config, x.view())?;
//! // The far-away row is the one labelled -1.
//! assert_eq!(fitted.training.predictions, vec![1, 1, 1, 1, -1]);
//! // Same seed, same data: the same scores, from the model or its serialized copy.
//! let copy = detect_core::FittedModel::from_bytes(&fitted.model.to_bytes())?;
//! assert_eq!(copy.predict(x.view())?.scores, fitted.training.scores);
//! # Ok::<(), detect_core::DetectError>(())
//! ```
//!
//! Determinism: every random choice is drawn from generators seeded by the stored
//! `random_state` and the tree's index, and every parallel loop writes per-row results
//! whose arithmetic does not depend on how rows are split between threads, so the same
//! seed, data and parameters give the same scores on any machine and thread count.

/// Evaluates `$body` with the constant `$w` set to `$width` when it is 1 to 12, else 0 (a
/// width known only at run time), so loops over a row's features unroll and keep their
/// sums in registers. The forest's walks index a lane's row at `lane * W + feature`: with
/// a constant W that offset folds into the load's address (with eight lanes the offsets
/// otherwise spill to the stack).
macro_rules! with_const_width {
    ($width:expr, $w:ident, $body:expr) => {
        match $width {
            1 => {
                const $w: usize = 1;
                $body
            }
            2 => {
                const $w: usize = 2;
                $body
            }
            3 => {
                const $w: usize = 3;
                $body
            }
            4 => {
                const $w: usize = 4;
                $body
            }
            5 => {
                const $w: usize = 5;
                $body
            }
            6 => {
                const $w: usize = 6;
                $body
            }
            7 => {
                const $w: usize = 7;
                $body
            }
            8 => {
                const $w: usize = 8;
                $body
            }
            9 => {
                const $w: usize = 9;
                $body
            }
            10 => {
                const $w: usize = 10;
                $body
            }
            11 => {
                const $w: usize = 11;
                $body
            }
            12 => {
                const $w: usize = 12;
                $body
            }
            _ => {
                const $w: usize = 0;
                $body
            }
        }
    };
}

pub mod cblof;
mod chi2;
pub mod copod;
pub mod dbscan;
pub mod drift;
pub mod ecod;
pub mod error;
pub mod explain;
pub mod gmm;
pub mod hbos;
pub mod iforest;
pub mod inne;
mod kdtree;
pub mod knn;
pub mod lof;
pub mod mcd;
pub mod metrics;
pub mod model;
mod numpy_random;
pub mod params;
pub mod pca;
mod quantile;
mod rows;
mod standardize;
pub mod tails;
pub mod validate;

pub use error::DetectError;
pub use explain::{Explanations, FeatureContribution};
pub use model::{Detection, Fit, FittedModel, MODEL_FORMAT_VERSION, fit, fit_model, fit_owned};
pub use params::{
    AlgorithmParams, Bins, CblofParams, Checked, Contamination, DbscanParams, DetectorConfig,
    GmmParams, HbosParams, IsolationForestParams, KnnMethod, KnnParams, LofParams, McdParams,
    Metric, NoParams, ParamError, ParamGuard, PcaParams,
};
