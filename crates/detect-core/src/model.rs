//! Fitted models: scoring, thresholds, predictions and the serialized form.
//!
//! [`fit`] checks the input, fits the configured detector and scores the training rows
//! (the answer of `POST /api/v1/detect`). The resulting [`FittedModel`] scores new rows
//! ([`FittedModel::predict`]) and serializes to a compact binary form
//! ([`FittedModel::to_bytes`]): the magic bytes `PNMY`, a little-endian `u16` format
//! version, then the model in postcard. Loading a model gives bit-identical scores.
//!
//! Score convention (the API's, `docs/api.md`): higher = more anomalous; a row is an anomaly
//! (`-1`) exactly when its score is greater than the threshold.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

pub use crate::quantile::quantile_threshold;

use crate::cblof::Cblof;
use crate::copod::Copod;
use crate::dbscan::Dbscan;
use crate::ecod::Ecod;
use crate::explain::Explanations;
use crate::gmm::Gmm;
use crate::hbos::Hbos;
use crate::iforest::IsolationForest;
use crate::inne::Inne;
use crate::knn::Knn;
use crate::lof::Lof;
use crate::mcd::Mcd;
use crate::params::{AlgorithmParams, AutoThreshold, Contamination, DetectorConfig};
use crate::pca::Pca;
use crate::{DetectError, validate};

/// Current version of the serialized model format.
pub const MODEL_FORMAT_VERSION: u16 = 1;
const MAGIC: &[u8; 4] = b"PNMY";

/// Scores, predictions and the threshold for a set of rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Anomaly score per row, higher = more anomalous.
    pub scores: Vec<f64>,
    /// `-1` anomaly, `1` normal (scikit-learn's convention).
    pub predictions: Vec<i8>,
    /// A row is `-1` exactly when its score is greater than this.
    pub threshold: f64,
    /// Number of `-1` predictions.
    pub anomaly_count: usize,
}

impl Detection {
    /// Labels `scores` against `threshold`.
    pub fn from_scores(scores: Vec<f64>, threshold: f64) -> Self {
        let predictions: Vec<i8> = scores
            .iter()
            .map(|&s| if s > threshold { -1 } else { 1 })
            .collect();
        let anomaly_count = predictions.iter().filter(|&&p| p == -1).count();
        Self {
            scores,
            predictions,
            threshold,
            anomaly_count,
        }
    }
}

/// The fitted detector itself.
///
/// The variant order is part of the model format: new detectors are appended, so models
/// written before they existed read back unchanged.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Detector {
    IsolationForest(IsolationForest),
    Lof(Lof),
    Ecod(Ecod),
    Copod(Copod),
    Hbos(Hbos),
    Knn(Knn),
    Pca(Pca),
    Gmm(Gmm),
    Dbscan(Dbscan),
    Inne(Inne),
    Mcd(Mcd),
    Cblof(Cblof),
}

/// A fitted model: the detector, its configuration (with the seed that was used), the
/// threshold and the shape of its training data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FittedModel {
    config: DetectorConfig,
    threshold: f64,
    n_features: usize,
    n_samples: usize,
    detector: Detector,
}

/// The result of [`fit`]: the model, the training rows' detection and any warnings
/// the caller should show (as scikit-learn warns).
#[derive(Debug, Clone)]
pub struct Fit {
    pub model: FittedModel,
    pub training: Detection,
    pub warnings: Vec<String>,
}

/// Fits the configured detector on `x` and labels its rows.
///
/// For the isolation forest the training scores are `-score_samples(x)`; for LOF they are
/// the local outlier factors of the training rows (`-negative_outlier_factor_`), each row's
/// neighbours excluding itself; for PyOD's detectors (ECOD, COPOD, HBOS, KNN, PCA, GMM) they are
/// PyOD's `decision_scores_`. With `contamination` a fraction (or `"auto"` for PyOD's
/// detectors: 0.1, PyOD's default), the threshold is the matching quantile of these
/// scores, computed as NumPy's `percentile` does.
///
/// # Errors
/// Empty input, fewer than 2 rows, NaN or infinite values, or parameters that cannot
/// apply to this data.
pub fn fit(config: &DetectorConfig, x: ArrayView2<'_, f64>) -> Result<Fit, DetectError> {
    fit_input(config, Input::View(x))
}

/// [`fit`] on a matrix the caller gives up: the same model and scores, bit for bit, but
/// the isolation forest writes the training scores into the matrix's own memory instead of
/// a second buffer (see `IsolationForest::score_owned`), so fitting a large file costs
/// little more than the file's matrix.
///
/// # Errors
/// As [`fit`].
pub fn fit_owned(config: &DetectorConfig, x: Array2<f64>) -> Result<Fit, DetectError> {
    fit_input(config, Input::Owned(x))
}

/// The training data of a fit: borrowed, or owned and consumed by the scoring.
enum Input<'a> {
    View(ArrayView2<'a, f64>),
    Owned(Array2<f64>),
}

fn fit_input(config: &DetectorConfig, input: Input<'_>) -> Result<Fit, DetectError> {
    let Fitted {
        model,
        scores,
        warnings,
    } = fit_detector(config, input, true)?;
    let scores = scores.expect("a labelled fit scores the training rows");
    let training = Detection::from_scores(scores, model.threshold);
    Ok(Fit {
        model,
        training,
        warnings,
    })
}

/// Fits the configured detector on `x` without labelling its rows, when the threshold
/// does not need their scores: an isolation forest with contamination `"auto"` is then
/// only grown, not also walked by every training row (what the Python package's
/// scikit-learn estimators' `fit` needs). The model is [`fit`]'s, bit for bit.
///
/// # Errors
/// As [`fit`].
pub fn fit_model(
    config: &DetectorConfig,
    x: ArrayView2<'_, f64>,
) -> Result<(FittedModel, Vec<String>), DetectError> {
    let fitted = fit_detector(config, Input::View(x), false)?;
    Ok((fitted.model, fitted.warnings))
}

/// What [`fit_detector`] gives.
struct Fitted {
    model: FittedModel,
    /// The training rows' scores, when they were computed.
    scores: Option<Vec<f64>>,
    warnings: Vec<String>,
}

/// The fit itself, with the training rows' scores when `label` is set or the threshold
/// needs them.
fn fit_detector(
    config: &DetectorConfig,
    input: Input<'_>,
    label: bool,
) -> Result<Fitted, DetectError> {
    let x = match &input {
        Input::View(v) => v.view(),
        Input::Owned(a) => a.view(),
    };
    let (n_samples, n_features) = x.dim();
    validate::check_matrix(&x)?;
    if x.nrows() < 2 {
        return Err(DetectError::TooFewRows { n_rows: x.nrows() });
    }
    let mut warnings = Vec::new();
    let mut config = config.clone();
    let need_scores = label || *config.contamination != Contamination::Auto;
    let (detector, scores) = match &mut config.algorithm {
        AlgorithmParams::IsolationForest(p) => {
            // Drawn in scikit-learn's range for `random_state` (32 bits), which every JSON
            // client reads back exactly.
            let seed = p.random_state_or_insert_with(|| u64::from(rand::random::<u32>()));
            let forest = IsolationForest::fit(p, seed, x, &mut warnings)?;
            let scores = match input {
                _ if !need_scores => None,
                Input::View(v) => Some(forest.score(v)),
                Input::Owned(a) => Some(forest.score_owned(a)),
            };
            (Detector::IsolationForest(forest), scores)
        }
        AlgorithmParams::Lof(p) => {
            let (lof, scores) = Lof::fit(p, x, &mut warnings)?;
            (Detector::Lof(lof), Some(scores))
        }
        AlgorithmParams::Ecod(_) => {
            let (m, scores) = Ecod::fit(x);
            (Detector::Ecod(m), Some(scores))
        }
        AlgorithmParams::Copod(_) => {
            let (m, scores) = Copod::fit(x);
            (Detector::Copod(m), Some(scores))
        }
        AlgorithmParams::Hbos(p) => {
            let (m, scores) = Hbos::fit(p, x);
            (Detector::Hbos(m), Some(scores))
        }
        AlgorithmParams::Knn(p) => {
            let (m, scores) = Knn::fit(p, x, &mut warnings)?;
            (Detector::Knn(m), Some(scores))
        }
        AlgorithmParams::Pca(p) => {
            let (m, scores) = Pca::fit(p, x)?;
            (Detector::Pca(m), Some(scores))
        }
        AlgorithmParams::Gmm(p) => {
            let (m, scores) = Gmm::fit(p, x)?;
            (Detector::Gmm(m), Some(scores))
        }
        AlgorithmParams::Dbscan(p) => {
            let (m, scores) = Dbscan::fit(p, x)?;
            (Detector::Dbscan(m), Some(scores))
        }
        AlgorithmParams::Inne(p) => {
            let seed = p.random_state_or_insert_with(|| u64::from(rand::random::<u32>()));
            let (m, scores) = Inne::fit(p, seed, x, &mut warnings)?;
            (Detector::Inne(m), Some(scores))
        }
        AlgorithmParams::Mcd(p) => {
            let seed = p.random_state_or_insert_with(|| u64::from(rand::random::<u32>()));
            let (m, scores) = Mcd::fit(p, seed, x, &mut warnings)?;
            (Detector::Mcd(m), Some(scores))
        }
        AlgorithmParams::Cblof(p) => {
            let seed = p.random_state_or_insert_with(|| u64::from(rand::random::<u32>()));
            let (m, scores) = Cblof::fit(p, seed, x, &mut warnings)?;
            (Detector::Cblof(m), Some(scores))
        }
    };
    let threshold = match (
        *config.contamination,
        config.algorithm.auto_threshold(),
        &scores,
    ) {
        (Contamination::Auto, Some(t), _) => t,
        (Contamination::Fraction(c), _, Some(scores)) => quantile_threshold(scores, c),
        (Contamination::Auto, None, Some(scores)) => match config.algorithm.spec().auto {
            AutoThreshold::Fraction(c) => quantile_threshold(scores, c),
            // `auto_threshold` answers for the other kinds.
            AutoThreshold::Offset(t) => t,
            AutoThreshold::Eps => f64::INFINITY,
        },
        // Only the forest skips its training scores, and only when `auto` needs none.
        (_, auto, None) => auto.unwrap_or(f64::INFINITY),
    };
    let model = FittedModel {
        config,
        threshold,
        n_features,
        n_samples,
        detector,
    };
    Ok(Fitted {
        model,
        scores,
        warnings,
    })
}

impl FittedModel {
    /// Anomaly scores of new rows (for LOF: novelty scores against the training set).
    ///
    /// # Errors
    /// Empty input, non-finite values, or rows whose width differs from the model's.
    pub fn score(&self, x: ArrayView2<'_, f64>) -> Result<Vec<f64>, DetectError> {
        self.check_rows(&x)?;
        Ok(match &self.detector {
            Detector::IsolationForest(f) => f.score(x),
            Detector::Lof(l) => l.score_novel(x),
            Detector::Ecod(m) => m.score_novel(x),
            Detector::Copod(m) => m.score_novel(x),
            Detector::Hbos(m) => m.score(x),
            Detector::Knn(m) => m.score_novel(x),
            Detector::Pca(m) => m.score(x),
            Detector::Gmm(m) => m.score(x),
            Detector::Dbscan(m) => m.score(x),
            Detector::Inne(m) => m.score(x),
            Detector::Mcd(m) => m.score(x),
            Detector::Cblof(m) => m.score(x),
        })
    }

    /// Each row's per-feature contributions to its anomaly, as the detector defines them
    /// ([`crate::explain`]): a rows × features matrix of non-negative values, larger =
    /// more responsible.
    ///
    /// # Errors
    /// As [`FittedModel::score`].
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>, DetectError> {
        self.check_rows(&x)?;
        Ok(self.checked_contributions(x))
    }

    /// [`FittedModel::contributions`] of rows already checked.
    fn checked_contributions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        match &self.detector {
            Detector::IsolationForest(f) => f.contributions(x),
            Detector::Lof(l) => l.contributions(x),
            Detector::Ecod(m) => m.contributions(x),
            Detector::Copod(m) => m.contributions(x),
            Detector::Hbos(m) => m.contributions(x),
            Detector::Knn(m) => m.contributions(x),
            Detector::Pca(m) => m.contributions(x),
            Detector::Gmm(m) => m.contributions(x),
            Detector::Dbscan(m) => m.contributions(x),
            Detector::Inne(m) => m.contributions(x),
            Detector::Mcd(m) => m.contributions(x),
            Detector::Cblof(m) => m.contributions(x),
        }
    }

    /// Why each row is anomalous: its `top_k` features, most responsible first, each
    /// with its contribution normalised so that the row's contributions over **all** its
    /// features sum to 1 (the top ones may sum to less). See [`crate::explain`] for each
    /// detector's decomposition.
    ///
    /// # Errors
    /// As [`FittedModel::score`]; [`DetectError::InvalidParameter`] naming `top_k` when it
    /// is 0 or above the number of features.
    pub fn explain(
        &self,
        x: ArrayView2<'_, f64>,
        top_k: usize,
    ) -> Result<Explanations, DetectError> {
        if top_k == 0 || top_k > self.n_features {
            return Err(DetectError::InvalidParameter {
                name: "top_k".into(),
                reason: format!(
                    "got {top_k}; accepted: 1..={} (the model's number of features)",
                    self.n_features
                ),
            });
        }
        self.check_rows(&x)?;
        match &self.detector {
            Detector::Pca(m) => return Ok(crate::explain::by_blocks(x, top_k, m)),
            Detector::Gmm(m) => return Ok(crate::explain::by_blocks(x, top_k, m)),
            Detector::Mcd(m) => return Ok(crate::explain::by_blocks(x, top_k, m)),
            Detector::Inne(m) => return Ok(crate::explain::by_blocks(x, top_k, m)),
            _ => {}
        }
        crate::explain::by_chunks(x.nrows(), top_k, |rows, scratch, out| {
            let contributions = self.checked_contributions(x.slice(ndarray::s![rows, ..]));
            crate::explain::rank_rows(contributions.view(), scratch, out);
            Ok(())
        })
    }

    /// The input checks of scoring: rows, finite values, the model's width.
    fn check_rows(&self, x: &ArrayView2<'_, f64>) -> Result<(), DetectError> {
        validate::check_matrix(x)?;
        if x.ncols() != self.n_features {
            return Err(DetectError::FeatureMismatch {
                expected: self.n_features,
                found: x.ncols(),
            });
        }
        Ok(())
    }

    /// Scores and labels new rows against the model's threshold.
    ///
    /// # Errors
    /// As [`FittedModel::score`].
    pub fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Detection, DetectError> {
        Ok(Detection::from_scores(self.score(x)?, self.threshold))
    }

    /// The configuration the model was fitted with; `random_state` is the seed used.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// The algorithm's name (`isolation_forest`, `lof`).
    pub fn algorithm(&self) -> &'static str {
        self.config.algorithm.name()
    }

    /// A row is an anomaly exactly when its score is greater than this.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Number of features the model expects.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of rows the model was fitted on.
    pub fn n_samples(&self) -> usize {
        self.n_samples
    }

    /// Checks the invariants scoring relies on (for models read from bytes).
    fn check(&self) -> Result<(), String> {
        if self.n_features == 0 {
            return Err("model has no features".into());
        }
        match &self.detector {
            Detector::IsolationForest(f) => f.check(self.n_features),
            Detector::Lof(l) => l.check(self.n_features),
            Detector::Ecod(m) => m.check(self.n_features),
            Detector::Copod(m) => m.check(self.n_features),
            Detector::Hbos(m) => m.check(self.n_features),
            Detector::Knn(m) => m.check(self.n_features),
            Detector::Pca(m) => m.check(self.n_features),
            Detector::Gmm(m) => m.check(self.n_features),
            Detector::Dbscan(m) => m.check(self.n_features),
            Detector::Inne(m) => m.check(self.n_features),
            Detector::Mcd(m) => m.check(self.n_features),
            Detector::Cblof(m) => m.check(self.n_features),
        }
    }

    /// Serializes the model: `PNMY`, format version (u16 LE), postcard body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&MODEL_FORMAT_VERSION.to_le_bytes());
        // Serializing plain data into a Vec cannot fail.
        postcard::to_io(self, &mut out).expect("postcard serialization into a Vec");
        out
    }

    /// Reads a model written by [`FittedModel::to_bytes`].
    ///
    /// # Errors
    /// Wrong magic bytes, an unsupported format version, or a corrupt body.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DetectError> {
        if bytes.len() < 6 || &bytes[..4] != MAGIC {
            return Err(DetectError::Deserialize(
                "not a pynomaly model (bad magic bytes)".into(),
            ));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != MODEL_FORMAT_VERSION {
            return Err(DetectError::UnsupportedFormat {
                found: version,
                supported: MODEL_FORMAT_VERSION,
            });
        }
        let model: FittedModel = postcard::from_bytes(&bytes[6..])
            .map_err(|e| DetectError::Deserialize(e.to_string()))?;
        model.check().map_err(DetectError::Deserialize)?;
        Ok(model)
    }
}
