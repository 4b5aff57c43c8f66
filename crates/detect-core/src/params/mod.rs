//! Parameters: what a caller may ask for, checked into what an algorithm can run.
//!
//! Names, defaults and ranges are scikit-learn's, written once in one table per algorithm
//! ([`ISOLATION_FOREST`], [`LOF`]: each parameter's name, JSON type, default and range).
//! The tables drive:
//! - parsing: [`DetectorConfig::from_json`] reads parameters from a JSON object (from the
//!   HTTP API or `--param name=value` on the command line), rejecting unknown names and
//!   values of the wrong type with an error that lists what is accepted, never ignoring
//!   anything silently;
//! - [`algorithms`], the description `GET /api/v1/algorithms` serves;
//! - the range rules of [`ParamGuard::check`], which every params type implements
//!   ([`IsolationForestParams`], [`LofParams`], [`Contamination`]), one [`ParamError`] per
//!   rule.
//!
//! The params types have public fields, for callers to fill in; [`ParamGuard::check`] is the
//! only way to the [`Checked`] form the fit functions and [`DetectorConfig`] hold.

mod check;
mod json;
mod table;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::DetectError;
pub use check::{Checked, ParamError, ParamGuard};
pub use table::{
    ALGORITHM_NAMES, ALGORITHMS, AlgorithmSpec, AutoThreshold, CBLOF, CONTAMINATION, COPOD, DBSCAN,
    Domain, ECOD, GMM, HBOS, INNE, ISOLATION_FOREST, KNN, LOF, Literal, MCD, PCA, ParamSpec,
    algorithm, algorithms,
};
use table::{
    ALPHA, ASSUME_CENTERED, BETA, BOOTSTRAP, CBLOF_ALPHA, EPS, INNE_MAX_SAMPLES, INNE_N_ESTIMATORS,
    KNN_METHOD, MAX_FEATURES, MAX_SAMPLES, METRIC, MIN_SAMPLES, N_BINS, N_CLUSTERS, N_COMPONENTS,
    N_ESTIMATORS, N_NEIGHBORS, N_SELECTED_COMPONENTS, P, RANDOM_STATE, REG_COVAR, STANDARDIZATION,
    SUPPORT_FRACTION, TOL, USE_WEIGHTS, WEIGHTED,
};

/// The share of anomalies expected in the training data, which sets the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub enum Contamination {
    /// The algorithm's own rule ([`AlgorithmSpec::auto`]): scikit-learn's fixed offsets
    /// (0.5 on the isolation-forest score, 1.5 on the LOF), PyOD's default contamination
    /// 0.1 for PyOD's detectors.
    #[default]
    Auto,
    /// A fraction in (0, 0.5]: the threshold is the matching quantile of training scores.
    Fraction(f64),
}

impl Contamination {
    /// Parses and checks `"auto"` (or `null`) or a number in (0, 0.5].
    ///
    /// # Errors
    /// [`DetectError::InvalidParameter`] for anything else.
    pub fn from_json(v: &Value) -> Result<Checked<Self>, DetectError> {
        Ok(json::contamination(v)?.check()?)
    }

    /// Parses and checks the command-line form: `auto` or a number.
    ///
    /// # Errors
    /// [`DetectError::InvalidParameter`] when it is neither, or out of range.
    pub fn parse(s: &str) -> Result<Checked<Self>, DetectError> {
        Self::from_json(&Value::String(s.trim().to_string()))
    }

    /// The JSON form the API answers with: `"auto"` or the number.
    pub fn to_json(self) -> Value {
        match self {
            Contamination::Auto => json!("auto"),
            Contamination::Fraction(f) => json!(f),
        }
    }
}

/// `max_samples` of the isolation forest: how many rows each tree is built from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum MaxSamples {
    /// min(256, n).
    Auto,
    /// An absolute count (more than n is clamped to n, as scikit-learn does, with a warning).
    Count(usize),
    /// A fraction of n in (0, 1].
    Fraction(f64),
}

/// `max_features` of the isolation forest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum MaxFeatures {
    Count(usize),
    Fraction(f64),
}

/// Isolation forest parameters (scikit-learn's `IsolationForest`), unchecked: fit takes
/// them [`Checked`] ([`ParamGuard::check`]). The default is the table's
/// ([`ISOLATION_FOREST`]).
///
/// The field order is part of the model format (serialized models hold these).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IsolationForestParams {
    pub n_estimators: usize,
    pub max_samples: MaxSamples,
    /// A fraction in (0, 1] of the features, or a count when given as an integer.
    pub max_features: MaxFeatures,
    pub bootstrap: bool,
    /// `None`: a seed is drawn at fit time and stored with the model.
    pub random_state: Option<u64>,
}

impl Default for IsolationForestParams {
    fn default() -> Self {
        json::isolation_forest(&Map::new()).expect("the table's defaults parse")
    }
}

/// Distance used by LOF.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Metric {
    Euclidean,
    Manhattan,
    /// Minkowski distance with exponent `p` >= 1.
    Minkowski(f64),
}

impl Metric {
    /// The metric's name as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Euclidean => "euclidean",
            Metric::Manhattan => "manhattan",
            Metric::Minkowski(_) => "minkowski",
        }
    }
}

/// Local outlier factor parameters (scikit-learn's `LocalOutlierFactor`), unchecked: fit
/// takes them [`Checked`] ([`ParamGuard::check`]). The default is the table's ([`LOF`]).
///
/// The field order is part of the model format (serialized models hold these).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LofParams {
    pub n_neighbors: usize,
    pub metric: Metric,
}

impl Default for LofParams {
    fn default() -> Self {
        json::lof(&Map::new()).expect("the table's defaults parse")
    }
}

/// Parameters of the detectors that take none besides the contamination (ECOD, COPOD).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct NoParams {}

/// `n_bins` of HBOS.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Bins {
    /// The same count for every feature.
    Count(usize),
    /// Birgé and Rozenblac's choice per feature (PyOD's `"auto"`).
    Auto,
}

/// Histogram-based outlier score parameters (PyOD's `HBOS`), unchecked. The default is
/// the table's ([`HBOS`]).
///
/// The field order is part of the model format (serialized models hold these).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HbosParams {
    pub n_bins: Bins,
    pub alpha: f64,
    pub tol: f64,
}

impl Default for HbosParams {
    fn default() -> Self {
        json::hbos(&Map::new()).expect("the table's defaults parse")
    }
}

/// How KNN turns a row's k neighbour distances into its score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KnnMethod {
    /// The distance to the k-th neighbour.
    Largest,
    /// The mean of the k distances.
    Mean,
    /// The median of the k distances.
    Median,
}

impl KnnMethod {
    /// The name as the API spells it.
    pub fn name(self) -> &'static str {
        match self {
            KnnMethod::Largest => "largest",
            KnnMethod::Mean => "mean",
            KnnMethod::Median => "median",
        }
    }
}

/// k-nearest-neighbour detector parameters (PyOD's `KNN`), unchecked. The default is the
/// table's ([`KNN`]).
///
/// The field order is part of the model format (serialized models hold these).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KnnParams {
    pub n_neighbors: usize,
    pub method: KnnMethod,
    pub metric: Metric,
}

impl Default for KnnParams {
    fn default() -> Self {
        json::knn(&Map::new()).expect("the table's defaults parse")
    }
}

/// PCA detector parameters (PyOD's `PCA`), unchecked. The default is the table's ([`PCA`]).
///
/// The field order is part of the model format (serialized models hold these).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PcaParams {
    /// `None`: min(n_samples, n_features).
    pub n_components: Option<usize>,
    /// `None`: all of them.
    pub n_selected_components: Option<usize>,
    pub weighted: bool,
    pub standardization: bool,
}

impl Default for PcaParams {
    fn default() -> Self {
        json::pca(&Map::new()).expect("the table's defaults parse")
    }
}

/// One-component Gaussian mixture parameters (PyOD's `GMM`), unchecked. The default is
/// the table's ([`GMM`]).
///
/// The field order is part of the model format (serialized models hold these).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GmmParams {
    /// Added to the covariance's diagonal.
    pub reg_covar: f64,
}

impl Default for GmmParams {
    fn default() -> Self {
        json::gmm(&Map::new()).expect("the table's defaults parse")
    }
}

/// DBSCAN parameters (scikit-learn's `DBSCAN`), unchecked. The default is the table's
/// ([`DBSCAN`]).
///
/// The field order is part of the model format (serialized models hold these).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DbscanParams {
    pub eps: f64,
    pub min_samples: usize,
    pub metric: Metric,
}

impl Default for DbscanParams {
    fn default() -> Self {
        json::dbscan(&Map::new()).expect("the table's defaults parse")
    }
}

/// INNE parameters (PyOD's `INNE`), unchecked. The default is the table's ([`INNE`]).
///
/// The field order is part of the model format (serialized models hold these).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct InneParams {
    pub n_estimators: usize,
    /// ψ: `Auto` = min(8, n).
    pub max_samples: MaxSamples,
    /// `None`: a seed is drawn at fit time and stored with the model.
    pub random_state: Option<u64>,
}

impl Default for InneParams {
    fn default() -> Self {
        json::inne(&Map::new()).expect("the table's defaults parse")
    }
}

/// MCD parameters (PyOD's `MCD`, scikit-learn's `MinCovDet`), unchecked. The default is
/// the table's ([`MCD`]).
///
/// The field order is part of the model format (serialized models hold these).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct McdParams {
    /// The share of rows in the raw support; `None`: scikit-learn's ⌈(n + d + 1) / 2⌉.
    pub support_fraction: Option<f64>,
    /// Location 0, covariances about the origin.
    pub assume_centered: bool,
    /// `None`: a seed is drawn at fit time and stored with the model.
    pub random_state: Option<u64>,
}

impl Default for McdParams {
    fn default() -> Self {
        json::mcd(&Map::new()).expect("the table's defaults parse")
    }
}

/// CBLOF parameters (PyOD's `CBLOF` with scikit-learn's `KMeans`), unchecked. The default
/// is the table's ([`CBLOF`]).
///
/// The field order is part of the model format (serialized models hold these).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CblofParams {
    /// k-means' k.
    pub n_clusters: usize,
    /// The share of rows the large clusters hold at least.
    pub alpha: f64,
    /// The size ratio of the last large cluster to the first small one.
    pub beta: f64,
    /// Multiply a row's distance by its cluster's size.
    pub use_weights: bool,
    /// `None`: a seed is drawn at fit time and stored with the model.
    pub random_state: Option<u64>,
}

impl Default for CblofParams {
    fn default() -> Self {
        json::cblof(&Map::new()).expect("the table's defaults parse")
    }
}

/// One algorithm with its checked parameters.
///
/// The variant order is part of the model format (serialized models hold these).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AlgorithmParams {
    IsolationForest(Checked<IsolationForestParams>),
    Lof(Checked<LofParams>),
    Ecod(Checked<NoParams>),
    Copod(Checked<NoParams>),
    Hbos(Checked<HbosParams>),
    Knn(Checked<KnnParams>),
    Pca(Checked<PcaParams>),
    Gmm(Checked<GmmParams>),
    Dbscan(Checked<DbscanParams>),
    Inne(Checked<InneParams>),
    Mcd(Checked<McdParams>),
    Cblof(Checked<CblofParams>),
}

impl AlgorithmParams {
    /// The algorithm's table.
    pub fn spec(&self) -> &'static AlgorithmSpec {
        match self {
            AlgorithmParams::IsolationForest(_) => &ISOLATION_FOREST,
            AlgorithmParams::Lof(_) => &LOF,
            AlgorithmParams::Ecod(_) => &ECOD,
            AlgorithmParams::Copod(_) => &COPOD,
            AlgorithmParams::Hbos(_) => &HBOS,
            AlgorithmParams::Knn(_) => &KNN,
            AlgorithmParams::Pca(_) => &PCA,
            AlgorithmParams::Gmm(_) => &GMM,
            AlgorithmParams::Dbscan(_) => &DBSCAN,
            AlgorithmParams::Inne(_) => &INNE,
            AlgorithmParams::Mcd(_) => &MCD,
            AlgorithmParams::Cblof(_) => &CBLOF,
        }
    }

    /// The threshold `contamination: "auto"` gives before any scores are seen: the
    /// algorithm's fixed offset, or DBSCAN's `eps`; `None` where it is a quantile of the
    /// training scores ([`AutoThreshold::Fraction`]).
    pub fn auto_threshold(&self) -> Option<f64> {
        match (self.spec().auto, self) {
            (AutoThreshold::Offset(t), _) => Some(t),
            (AutoThreshold::Eps, AlgorithmParams::Dbscan(p)) => Some(p.eps),
            (AutoThreshold::Eps | AutoThreshold::Fraction(_), _) => None,
        }
    }

    /// The algorithm's name as the API spells it.
    pub fn name(&self) -> &'static str {
        self.spec().name
    }

    /// Builds and checks parameters from a JSON object. `null` values mean "default".
    ///
    /// # Errors
    /// Unknown algorithm or parameter, wrong type, or value out of range.
    pub fn from_json(algorithm: &str, params: &Map<String, Value>) -> Result<Self, DetectError> {
        let Some(spec) = table::algorithm(algorithm) else {
            return Err(DetectError::UnknownAlgorithm {
                name: algorithm.to_string(),
                accepted: ALGORITHM_NAMES.join(", "),
            });
        };
        json::reject_unknown(spec, params)?;
        Ok(match spec.name {
            n if n == ISOLATION_FOREST.name => {
                AlgorithmParams::IsolationForest(json::isolation_forest(params)?.check()?)
            }
            n if n == LOF.name => AlgorithmParams::Lof(json::lof(params)?.check()?),
            n if n == ECOD.name => AlgorithmParams::Ecod(NoParams {}.check()?),
            n if n == COPOD.name => AlgorithmParams::Copod(NoParams {}.check()?),
            n if n == HBOS.name => AlgorithmParams::Hbos(json::hbos(params)?.check()?),
            n if n == KNN.name => AlgorithmParams::Knn(json::knn(params)?.check()?),
            n if n == PCA.name => AlgorithmParams::Pca(json::pca(params)?.check()?),
            n if n == GMM.name => AlgorithmParams::Gmm(json::gmm(params)?.check()?),
            n if n == DBSCAN.name => AlgorithmParams::Dbscan(json::dbscan(params)?.check()?),
            n if n == INNE.name => AlgorithmParams::Inne(json::inne(params)?.check()?),
            n if n == MCD.name => AlgorithmParams::Mcd(json::mcd(params)?.check()?),
            _ => AlgorithmParams::Cblof(json::cblof(params)?.check()?),
        })
    }

    /// The parameters as the API answers with them (every parameter, defaults filled in;
    /// `p` only for the minkowski metric), which [`AlgorithmParams::from_json`] reads back.
    pub fn to_json(&self) -> Value {
        Value::Object(self.parameters())
    }

    /// [`AlgorithmParams::to_json`]'s object itself.
    pub fn parameters(&self) -> Map<String, Value> {
        let mut m = Map::new();
        match self {
            AlgorithmParams::IsolationForest(p) => {
                m.insert(N_ESTIMATORS.name.into(), json!(p.n_estimators));
                m.insert(MAX_SAMPLES.name.into(), max_samples_json(p.max_samples));
                let max_features = match p.max_features {
                    MaxFeatures::Count(c) => json!(c),
                    MaxFeatures::Fraction(f) => json!(f),
                };
                m.insert(MAX_FEATURES.name.into(), max_features);
                m.insert(BOOTSTRAP.name.into(), json!(p.bootstrap));
                m.insert(RANDOM_STATE.name.into(), json!(p.random_state));
            }
            AlgorithmParams::Lof(p) => {
                m.insert(N_NEIGHBORS.name.into(), json!(p.n_neighbors));
                insert_metric(&mut m, p.metric);
            }
            AlgorithmParams::Ecod(_) | AlgorithmParams::Copod(_) => {}
            AlgorithmParams::Hbos(p) => {
                let n_bins = match p.n_bins {
                    Bins::Count(c) => json!(c),
                    Bins::Auto => json!("auto"),
                };
                m.insert(N_BINS.name.into(), n_bins);
                m.insert(ALPHA.name.into(), json!(p.alpha));
                m.insert(TOL.name.into(), json!(p.tol));
            }
            AlgorithmParams::Knn(p) => {
                m.insert(N_NEIGHBORS.name.into(), json!(p.n_neighbors));
                m.insert(KNN_METHOD.name.into(), json!(p.method.name()));
                insert_metric(&mut m, p.metric);
            }
            AlgorithmParams::Pca(p) => {
                m.insert(N_COMPONENTS.name.into(), json!(p.n_components));
                m.insert(
                    N_SELECTED_COMPONENTS.name.into(),
                    json!(p.n_selected_components),
                );
                m.insert(WEIGHTED.name.into(), json!(p.weighted));
                m.insert(STANDARDIZATION.name.into(), json!(p.standardization));
            }
            AlgorithmParams::Gmm(p) => {
                m.insert(REG_COVAR.name.into(), json!(p.reg_covar));
            }
            AlgorithmParams::Dbscan(p) => {
                m.insert(EPS.name.into(), json!(p.eps));
                m.insert(MIN_SAMPLES.name.into(), json!(p.min_samples));
                insert_metric(&mut m, p.metric);
            }
            AlgorithmParams::Inne(p) => {
                m.insert(INNE_N_ESTIMATORS.name.into(), json!(p.n_estimators));
                m.insert(
                    INNE_MAX_SAMPLES.name.into(),
                    max_samples_json(p.max_samples),
                );
                m.insert(RANDOM_STATE.name.into(), json!(p.random_state));
            }
            AlgorithmParams::Mcd(p) => {
                m.insert(SUPPORT_FRACTION.name.into(), json!(p.support_fraction));
                m.insert(ASSUME_CENTERED.name.into(), json!(p.assume_centered));
                m.insert(RANDOM_STATE.name.into(), json!(p.random_state));
            }
            AlgorithmParams::Cblof(p) => {
                m.insert(N_CLUSTERS.name.into(), json!(p.n_clusters));
                m.insert(CBLOF_ALPHA.name.into(), json!(p.alpha));
                m.insert(BETA.name.into(), json!(p.beta));
                m.insert(USE_WEIGHTS.name.into(), json!(p.use_weights));
                m.insert(RANDOM_STATE.name.into(), json!(p.random_state));
            }
        }
        m
    }
}

/// `max_samples` as the API spells it.
fn max_samples_json(m: MaxSamples) -> Value {
    match m {
        MaxSamples::Auto => json!("auto"),
        MaxSamples::Count(c) => json!(c),
        MaxSamples::Fraction(f) => json!(f),
    }
}

/// `metric`, and `p` for the minkowski metric only.
fn insert_metric(m: &mut Map<String, Value>, metric: Metric) {
    m.insert(METRIC.name.into(), json!(metric.name()));
    if let Metric::Minkowski(e) = metric {
        m.insert(P.name.into(), json!(e));
    }
}

/// A full detector configuration: algorithm, parameters and contamination, all checked (a
/// value of this type holds no parameter out of range).
///
/// Serialized, it takes one of two forms:
/// - in human-readable formats (JSON), the API's: `{"algorithm": "lof", "parameters":
///   {...}, "contamination": "auto"}`, the fields a job spec stores; it is read back
///   through [`DetectorConfig::from_json`], so unknown names and values out of range are
///   errors, with the API's messages;
/// - in binary formats (postcard: the model format), the fields as they are, checked again
///   when read.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    pub algorithm: AlgorithmParams,
    pub contamination: Checked<Contamination>,
}

impl DetectorConfig {
    /// Builds a configuration from an algorithm name, its parameters as JSON and the
    /// contamination as JSON (`"auto"`, a number, or `null` for the default).
    ///
    /// # Errors
    /// As [`AlgorithmParams::from_json`] and [`Contamination::from_json`].
    pub fn from_json(
        algorithm: &str,
        params: &Map<String, Value>,
        contamination: &Value,
    ) -> Result<Self, DetectError> {
        Ok(Self {
            algorithm: AlgorithmParams::from_json(algorithm, params)?,
            contamination: Contamination::from_json(contamination)?,
        })
    }
}

/// [`DetectorConfig`] in human-readable formats.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiForm {
    algorithm: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    contamination: Value,
}

/// [`DetectorConfig`] in binary formats; the model format.
#[derive(Deserialize)]
struct BinaryForm {
    algorithm: AlgorithmParams,
    contamination: Checked<Contamination>,
}

/// [`BinaryForm`], to write.
#[derive(Serialize)]
struct BinaryFormRef<'a> {
    algorithm: &'a AlgorithmParams,
    contamination: &'a Checked<Contamination>,
}

impl Serialize for DetectorConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            ApiForm {
                algorithm: self.algorithm.name().to_string(),
                parameters: self.algorithm.parameters(),
                contamination: self.contamination.to_json(),
            }
            .serialize(serializer)
        } else {
            BinaryFormRef {
                algorithm: &self.algorithm,
                contamination: &self.contamination,
            }
            .serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for DetectorConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let f = ApiForm::deserialize(deserializer)?;
            DetectorConfig::from_json(&f.algorithm, &f.parameters, &f.contamination)
                .map_err(serde::de::Error::custom)
        } else {
            let f = BinaryForm::deserialize(deserializer)?;
            Ok(DetectorConfig {
                algorithm: f.algorithm,
                contamination: f.contamination,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn unknown_parameter_is_named_with_the_accepted_list() {
        let err = AlgorithmParams::from_json("lof", &obj(json!({"n_trees": 3}))).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("n_trees") && msg.contains("n_neighbors"),
            "{msg}"
        );
        assert_eq!(
            err,
            DetectError::UnknownParameter {
                algorithm: "lof".into(),
                name: "n_trees".into(),
                accepted: "n_neighbors, metric, p".into(),
            }
        );
    }

    #[test]
    fn contamination_out_of_range_is_rejected() {
        assert!(Contamination::from_json(&json!(0.6)).is_err());
        assert!(Contamination::from_json(&json!(0.0)).is_err());
        assert!(Contamination::from_json(&json!("often")).is_err());
        assert_eq!(
            *Contamination::from_json(&json!(0.5)).unwrap(),
            Contamination::Fraction(0.5)
        );
        // The API tests read the accepted range in the message.
        let msg = Contamination::from_json(&json!(0.9))
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "invalid value for 'contamination': got 0.9; accepted: \"auto\" or a number in (0, 0.5]"
        );
    }

    #[test]
    fn minkowski_with_p_two_is_euclidean() {
        let p = AlgorithmParams::from_json("lof", &obj(json!({"metric": "minkowski", "p": 2})))
            .unwrap();
        assert_eq!(
            p,
            AlgorithmParams::Lof(
                LofParams {
                    n_neighbors: 20,
                    metric: Metric::Euclidean
                }
                .check()
                .unwrap()
            )
        );
    }

    #[test]
    fn p_given_alone_is_minkowski_and_with_another_metric_is_rejected() {
        let p = AlgorithmParams::from_json("lof", &obj(json!({"p": 3}))).unwrap();
        assert_eq!(
            p.to_json(),
            json!({"n_neighbors": 20, "metric": "minkowski", "p": 3.0})
        );
        let p = AlgorithmParams::from_json("lof", &obj(json!({"p": 1}))).unwrap();
        assert_eq!(p.to_json()["metric"], "manhattan");
        let e = AlgorithmParams::from_json("lof", &obj(json!({"metric": "manhattan", "p": 3})))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value for 'p': p = 3 only applies to metric \"minkowski\""
        );
    }

    #[test]
    fn fractional_estimator_count_is_rejected() {
        let e = AlgorithmParams::from_json("isolation_forest", &obj(json!({"n_estimators": 2.5})));
        assert!(e.is_err());
        let e = AlgorithmParams::from_json("isolation_forest", &obj(json!({"n_estimators": 0})));
        assert!(e.is_err());
    }

    #[test]
    fn each_range_rule_is_rejected_by_check_naming_the_parameter() {
        let forest = |f: fn(&mut IsolationForestParams)| {
            let mut p = IsolationForestParams::default();
            f(&mut p);
            p.check().map(|_| ())
        };
        let lof = |f: fn(&mut LofParams)| {
            let mut p = LofParams::default();
            f(&mut p);
            p.check().map(|_| ())
        };
        let cases = [
            (
                forest(|p| p.n_estimators = 0),
                ParamError::NEstimators(0),
                "n_estimators",
                "got 0",
            ),
            (
                forest(|p| p.n_estimators = 100_001),
                ParamError::NEstimators(100_001),
                "n_estimators",
                "accepted: an integer in [1, 100000]",
            ),
            (
                forest(|p| p.max_samples = MaxSamples::Count(0)),
                ParamError::MaxSamplesCount(0),
                "max_samples",
                "got 0",
            ),
            (
                forest(|p| p.max_samples = MaxSamples::Fraction(1.5)),
                ParamError::MaxSamplesFraction(1.5),
                "max_samples",
                "got 1.5",
            ),
            (
                forest(|p| p.max_samples = MaxSamples::Fraction(0.0)),
                ParamError::MaxSamplesFraction(0.0),
                "max_samples",
                "(0, 1]",
            ),
            (
                forest(|p| p.max_features = MaxFeatures::Count(0)),
                ParamError::MaxFeaturesCount(0),
                "max_features",
                "got 0",
            ),
            (
                forest(|p| p.max_features = MaxFeatures::Fraction(-0.5)),
                ParamError::MaxFeaturesFraction(-0.5),
                "max_features",
                "got -0.5",
            ),
            (
                lof(|p| p.n_neighbors = 0),
                ParamError::NNeighbors(0),
                "n_neighbors",
                "got 0",
            ),
            (
                lof(|p| p.n_neighbors = 10_001),
                ParamError::NNeighbors(10_001),
                "n_neighbors",
                "[1, 10000]",
            ),
            (
                lof(|p| p.metric = Metric::Minkowski(0.5)),
                ParamError::MinkowskiP(0.5),
                "p",
                "accepted: a number >= 1",
            ),
            (
                lof(|p| p.metric = Metric::Minkowski(f64::INFINITY)),
                ParamError::MinkowskiP(f64::INFINITY),
                "p",
                "got inf",
            ),
            (
                Contamination::Fraction(0.0).check().map(|_| ()),
                ParamError::Contamination(0.0),
                "contamination",
                "(0, 0.5]",
            ),
            (
                Contamination::Fraction(0.75).check().map(|_| ()),
                ParamError::Contamination(0.75),
                "contamination",
                "got 0.75",
            ),
        ];
        for (result, expected, name, text) in cases {
            let err = result.expect_err(name);
            assert_eq!(err, expected);
            assert_eq!(err.parameter(), name);
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("invalid value for '{name}': ")),
                "{msg}"
            );
            assert!(msg.contains(text), "{msg} lacks {text}");
            // The API reports it as an invalid parameter with the same message.
            let detect = DetectError::from(err);
            assert_eq!(detect.to_string(), msg);
            assert!(matches!(detect, DetectError::InvalidParameter { name: n, .. } if n == name));
        }
        // A fraction NaN breaks the rule too.
        let nan = forest(|p| p.max_features = MaxFeatures::Fraction(f64::NAN)).unwrap_err();
        assert_eq!(nan.parameter(), "max_features");
    }

    #[test]
    fn the_bounds_themselves_pass_the_checks() {
        let mut p = IsolationForestParams {
            n_estimators: 1,
            max_samples: MaxSamples::Fraction(1.0),
            max_features: MaxFeatures::Count(1),
            bootstrap: true,
            random_state: Some(u64::MAX),
        };
        assert!(p.check().is_ok());
        p.n_estimators = 100_000;
        p.max_samples = MaxSamples::Count(1);
        p.max_features = MaxFeatures::Fraction(f64::MIN_POSITIVE);
        assert!(p.check().is_ok());
        for metric in [
            Metric::Minkowski(1.0),
            Metric::Minkowski(1e300),
            Metric::Manhattan,
        ] {
            let l = LofParams {
                n_neighbors: 10_000,
                metric,
            };
            assert!(l.check().is_ok(), "{l:?}");
        }
        assert!(Contamination::Fraction(0.5).check().is_ok());
        assert!(Contamination::Auto.check().is_ok());
    }

    #[test]
    fn the_tables_and_algorithms_agree() {
        let described = algorithms();
        let described = described.as_array().unwrap();
        assert_eq!(described.len(), ALGORITHMS.len());
        assert_eq!(
            ALGORITHM_NAMES.to_vec(),
            ALGORITHMS.iter().map(|a| a.name).collect::<Vec<_>>()
        );
        for (spec, d) in ALGORITHMS.iter().zip(described) {
            assert_eq!(d["name"], spec.name);
            assert_eq!(algorithm(spec.name), Some(spec));
            assert_eq!(d["contamination"]["default"], "auto");
            let accepted = d["contamination"]["accepted"].as_str().unwrap();
            assert!(
                accepted.contains(&format!("({})", spec.auto.describe()))
                    && accepted.contains("(0, 0.5]"),
                "{accepted}"
            );
            let params = d["parameters"].as_array().unwrap();
            let names: Vec<_> = params.iter().map(|p| p["name"].as_str().unwrap()).collect();
            assert_eq!(names, spec.parameter_names().collect::<Vec<_>>());

            // What the defaults parse to is what is described as the default.
            let defaults = AlgorithmParams::from_json(spec.name, &Map::new()).unwrap();
            assert_eq!(defaults.name(), spec.name);
            let defaults = defaults.to_json();
            for (p, described) in spec.params.iter().zip(params) {
                assert_eq!(described["default"], p.default.to_json(), "{}", p.name);
                if let Some(v) = defaults.get(p.name) {
                    assert_eq!(*v, p.default.to_json(), "{}", p.name);
                }
                match p.domain {
                    Domain::Integer { min, max } if max != u64::MAX => {
                        assert_eq!(described["range"], json!([min, max]), "{}", p.name);
                        // The bounds are accepted, one past them rejected with the name.
                        for ok in [min, max] {
                            let given = obj(json!({ p.name: ok }));
                            assert!(AlgorithmParams::from_json(spec.name, &given).is_ok());
                        }
                        for bad in [min.checked_sub(1), max.checked_add(1)]
                            .into_iter()
                            .flatten()
                        {
                            let given = obj(json!({ p.name: bad }));
                            let err = AlgorithmParams::from_json(spec.name, &given).unwrap_err();
                            assert!(
                                matches!(&err, DetectError::InvalidParameter { name, .. } if name == p.name),
                                "{err}"
                            );
                        }
                    }
                    Domain::OneOf(names) => {
                        assert_eq!(described["accepted"], json!(names));
                        for name in names {
                            let given = obj(json!({ p.name: name }));
                            assert!(AlgorithmParams::from_json(spec.name, &given).is_ok());
                        }
                    }
                    Domain::Boolean => assert!(described.get("range").is_none()),
                    domain => {
                        let range = described["range"].as_str().unwrap();
                        assert!(range.starts_with(&domain.accepted()), "{range}");
                    }
                }
            }
        }
        // The minkowski exponent's default is the one `metric: "minkowski"` alone uses.
        let mink = AlgorithmParams::from_json("lof", &obj(json!({"metric": "minkowski"})));
        let two = AlgorithmParams::from_json("lof", &obj(json!({"p": P.default.to_json()})));
        assert_eq!(mink.unwrap(), two.unwrap());
    }

    #[test]
    fn defaults_are_the_tables_and_pass_the_checks() {
        let forest = IsolationForestParams::default();
        assert_eq!(forest.n_estimators, 100);
        assert_eq!(forest.max_samples, MaxSamples::Auto);
        assert_eq!(forest.max_features, MaxFeatures::Fraction(1.0));
        assert!(!forest.bootstrap);
        assert_eq!(forest.random_state, None);
        assert!(forest.check().is_ok());
        let lof = LofParams::default();
        assert_eq!(lof.n_neighbors, 20);
        assert_eq!(lof.metric, Metric::Euclidean);
        assert!(lof.check().is_ok());
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Configurations and their bytes in the model format, written by the model format's
    /// first version: these must keep reading back.
    const MODEL_FORMAT_CONFIGS: [(&str, &str, &str, &str); 6] = [
        (
            "isolation_forest",
            "{}",
            "\"auto\"",
            "00640001000000000000f03f000000",
        ),
        (
            "isolation_forest",
            r#"{"n_estimators": 7, "max_samples": 0.25, "max_features": 2, "bootstrap": true, "random_state": 42}"#,
            "0.1",
            "000702000000000000d03f000201012a019a9999999999b93f",
        ),
        (
            "isolation_forest",
            r#"{"max_samples": 64, "max_features": 0.5}"#,
            "0.5",
            "0064014001000000000000e03f000001000000000000e03f",
        ),
        ("lof", "{}", "\"auto\"", "01140000"),
        (
            "lof",
            r#"{"n_neighbors": 5, "metric": "manhattan"}"#,
            "0.05",
            "010501019a9999999999a93f",
        ),
        (
            "lof",
            r#"{"metric": "minkowski", "p": 3.5}"#,
            "\"auto\"",
            "0114020000000000000c4000",
        ),
    ];

    fn config(algorithm: &str, params: &str, contamination: &str) -> DetectorConfig {
        let params: Value = serde_json::from_str(params).unwrap();
        let contamination: Value = serde_json::from_str(contamination).unwrap();
        DetectorConfig::from_json(algorithm, &obj(params), &contamination).unwrap()
    }

    #[test]
    fn the_model_format_of_a_config_is_unchanged() {
        for (algorithm, params, contamination, bytes) in MODEL_FORMAT_CONFIGS {
            let c = config(algorithm, params, contamination);
            let written = postcard::to_allocvec(&c).unwrap();
            assert_eq!(hex(&written), bytes, "{algorithm} {params}");
            let read: DetectorConfig = postcard::from_bytes(&written).unwrap();
            assert_eq!(read, c);
        }
    }

    #[test]
    fn reading_the_model_format_checks_the_ranges() {
        let c = config("isolation_forest", "{}", "\"auto\"");
        let mut bytes = postcard::to_allocvec(&c).unwrap();
        // The byte after the variant is n_estimators (100 as a varint): make it 0.
        assert_eq!(bytes[1], 100);
        bytes[1] = 0;
        let err = postcard::from_bytes::<DetectorConfig>(&bytes).unwrap_err();
        assert!(matches!(err, postcard::Error::SerdeDeCustom), "{err:?}");

        let c = config("lof", "{}", "0.5");
        let mut bytes = postcard::to_allocvec(&c).unwrap();
        // The last 8 bytes are the contamination as an f64: make it 0.75.
        let n = bytes.len();
        bytes[n - 8..].copy_from_slice(&0.75f64.to_le_bytes());
        assert!(postcard::from_bytes::<DetectorConfig>(&bytes).is_err());
    }

    #[test]
    fn json_carries_the_api_form_and_reads_it_back_checked() {
        let c = config("lof", r#"{"n_neighbors": 5, "p": 3}"#, "0.05");
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            json!({
                "algorithm": "lof",
                "parameters": {"n_neighbors": 5, "metric": "minkowski", "p": 3.0},
                "contamination": 0.05,
            })
        );
        assert_eq!(serde_json::from_value::<DetectorConfig>(v).unwrap(), c);

        // Every default, including the seed left to draw, reads back as it was.
        let c = config("isolation_forest", "{}", "\"auto\"");
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<DetectorConfig>(&text).unwrap(), c);

        // Parameters and contamination may be left out, as in a request.
        let short: DetectorConfig = serde_json::from_value(json!({"algorithm": "lof"})).unwrap();
        assert_eq!(short, config("lof", "{}", "null"));

        let bad = json!({"algorithm": "lof", "parameters": {"n_neighbors": 0}});
        let err = serde_json::from_value::<DetectorConfig>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid value for 'n_neighbors'"), "{err}");
        let bad = json!({"algorithm": "lof", "parameters": {"k": 3}});
        let err = serde_json::from_value::<DetectorConfig>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown parameter 'k'"), "{err}");
        let bad = json!({"algorithm": "lof", "n_neighbors": 3});
        assert!(serde_json::from_value::<DetectorConfig>(bad).is_err());
    }
}
