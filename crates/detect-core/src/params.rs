//! Parameters: what a caller may ask for, checked into what an algorithm can run.
//!
//! Names, defaults and ranges are scikit-learn's. Parameters arrive as a JSON object
//! (from the HTTP API or `--param name=value` on the command line); [`DetectorConfig::from_json`]
//! rejects unknown names and out-of-range values with an error that lists what is accepted,
//! never ignoring anything silently. [`algorithms`] describes every algorithm for
//! `GET /api/v1/algorithms`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::DetectError;

/// The share of anomalies expected in the training data, which sets the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub enum Contamination {
    /// scikit-learn's fixed offsets: 0.5 on the isolation-forest score, 1.5 on the LOF.
    #[default]
    Auto,
    /// A fraction in (0, 0.5]: the threshold is the matching quantile of training scores.
    Fraction(f64),
}

impl Contamination {
    /// Parses `"auto"` or a number in (0, 0.5].
    ///
    /// # Errors
    /// [`DetectError::InvalidParameter`] for anything else.
    pub fn from_json(v: &Value) -> Result<Self, DetectError> {
        match v {
            Value::String(s) if s == "auto" => Ok(Contamination::Auto),
            Value::String(s) => match s.parse::<f64>() {
                Ok(f) => Self::fraction(f),
                Err(_) => Err(contamination_error(&format!("'{s}'"))),
            },
            Value::Number(n) => Self::fraction(n.as_f64().unwrap_or(f64::NAN)),
            Value::Null => Ok(Contamination::Auto),
            other => Err(contamination_error(&other.to_string())),
        }
    }

    /// Parses the command-line form: `auto` or a number.
    ///
    /// # Errors
    /// [`DetectError::InvalidParameter`] when it is neither.
    pub fn parse(s: &str) -> Result<Self, DetectError> {
        Self::from_json(&Value::String(s.trim().to_string()))
    }

    fn fraction(f: f64) -> Result<Self, DetectError> {
        if f > 0.0 && f <= 0.5 {
            Ok(Contamination::Fraction(f))
        } else {
            Err(contamination_error(&f.to_string()))
        }
    }

    /// The JSON form the API answers with: `"auto"` or the number.
    pub fn to_json(self) -> Value {
        match self {
            Contamination::Auto => json!("auto"),
            Contamination::Fraction(f) => json!(f),
        }
    }
}

fn contamination_error(got: &str) -> DetectError {
    DetectError::InvalidParameter {
        name: "contamination".into(),
        reason: format!("got {got}; accepted: \"auto\" or a number in (0, 0.5]"),
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

/// Isolation forest parameters (scikit-learn's `IsolationForest`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForestParams {
    pub n_estimators: usize,
    pub max_samples: MaxSamples,
    /// A fraction in (0, 1] of the features, or a count when given as an integer > 1.
    pub max_features: MaxFeatures,
    pub bootstrap: bool,
    /// `None`: a seed is drawn at fit time and stored with the model.
    pub random_state: Option<u64>,
}

/// `max_features` of the isolation forest.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum MaxFeatures {
    Count(usize),
    Fraction(f64),
}

impl Default for IsolationForestParams {
    fn default() -> Self {
        Self {
            n_estimators: 100,
            max_samples: MaxSamples::Auto,
            max_features: MaxFeatures::Fraction(1.0),
            bootstrap: false,
            random_state: None,
        }
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

/// Local outlier factor parameters (scikit-learn's `LocalOutlierFactor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LofParams {
    pub n_neighbors: usize,
    pub metric: Metric,
}

impl Default for LofParams {
    fn default() -> Self {
        Self {
            n_neighbors: 20,
            metric: Metric::Euclidean,
        }
    }
}

/// One algorithm with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AlgorithmParams {
    IsolationForest(IsolationForestParams),
    Lof(LofParams),
}

/// The algorithm names accepted everywhere.
pub const ALGORITHM_NAMES: [&str; 2] = ["isolation_forest", "lof"];

const IF_PARAMS: [&str; 5] = [
    "n_estimators",
    "max_samples",
    "max_features",
    "bootstrap",
    "random_state",
];
const LOF_PARAMS: [&str; 3] = ["n_neighbors", "metric", "p"];

impl AlgorithmParams {
    /// The algorithm's name as the API spells it.
    pub fn name(&self) -> &'static str {
        match self {
            AlgorithmParams::IsolationForest(_) => "isolation_forest",
            AlgorithmParams::Lof(_) => "lof",
        }
    }

    /// The names of the parameters `algorithm` accepts, or `None` for an unknown algorithm.
    pub fn parameter_names(algorithm: &str) -> Option<&'static [&'static str]> {
        match algorithm {
            "isolation_forest" => Some(&IF_PARAMS),
            "lof" => Some(&LOF_PARAMS),
            _ => None,
        }
    }

    /// Builds and checks parameters from a JSON object. `null` values mean "default".
    ///
    /// # Errors
    /// Unknown algorithm or parameter, wrong type, or value out of range.
    pub fn from_json(algorithm: &str, params: &Map<String, Value>) -> Result<Self, DetectError> {
        let Some(accepted) = Self::parameter_names(algorithm) else {
            return Err(DetectError::UnknownAlgorithm {
                name: algorithm.to_string(),
                accepted: ALGORITHM_NAMES.join(", "),
            });
        };
        if let Some(name) = params.keys().find(|k| !accepted.contains(&k.as_str())) {
            return Err(DetectError::UnknownParameter {
                algorithm: algorithm.to_string(),
                name: name.clone(),
                accepted: accepted.join(", "),
            });
        }
        let get = |name: &str| params.get(name).filter(|v| !v.is_null());
        match algorithm {
            "isolation_forest" => {
                let mut p = IsolationForestParams::default();
                if let Some(v) = get("n_estimators") {
                    p.n_estimators = int_in(v, "n_estimators", 1, 100_000)?;
                }
                if let Some(v) = get("max_samples") {
                    p.max_samples = match v {
                        Value::String(s) if s == "auto" => MaxSamples::Auto,
                        Value::Number(n) if n.is_u64() || n.is_i64() => {
                            MaxSamples::Count(int_in(v, "max_samples", 1, usize::MAX as u64)?)
                        }
                        Value::Number(n) => {
                            let f = n.as_f64().unwrap_or(f64::NAN);
                            if f > 0.0 && f <= 1.0 {
                                MaxSamples::Fraction(f)
                            } else {
                                return Err(invalid(
                                    "max_samples",
                                    &format!(
                                        "got {f}; accepted: \"auto\", an integer >= 1, or a fraction in (0, 1]"
                                    ),
                                ));
                            }
                        }
                        other => {
                            return Err(invalid(
                                "max_samples",
                                &format!(
                                    "got {other}; accepted: \"auto\", an integer >= 1, or a fraction in (0, 1]"
                                ),
                            ));
                        }
                    };
                }
                if let Some(v) = get("max_features") {
                    p.max_features = match v {
                        Value::Number(n) if n.is_u64() || n.is_i64() => {
                            MaxFeatures::Count(int_in(v, "max_features", 1, u32::MAX as u64)?)
                        }
                        Value::Number(n) => {
                            let f = n.as_f64().unwrap_or(f64::NAN);
                            if f > 0.0 && f <= 1.0 {
                                MaxFeatures::Fraction(f)
                            } else {
                                return Err(invalid(
                                    "max_features",
                                    &format!(
                                        "got {f}; accepted: an integer >= 1 or a fraction in (0, 1]"
                                    ),
                                ));
                            }
                        }
                        other => {
                            return Err(invalid(
                                "max_features",
                                &format!(
                                    "got {other}; accepted: an integer >= 1 or a fraction in (0, 1]"
                                ),
                            ));
                        }
                    };
                }
                if let Some(v) = get("bootstrap") {
                    p.bootstrap = match v {
                        Value::Bool(b) => *b,
                        Value::String(s) if s == "true" => true,
                        Value::String(s) if s == "false" => false,
                        other => {
                            return Err(invalid(
                                "bootstrap",
                                &format!("got {other}; accepted: true or false"),
                            ));
                        }
                    };
                }
                if let Some(v) = get("random_state") {
                    p.random_state = Some(int_in(v, "random_state", 0, u64::MAX)? as u64);
                }
                Ok(AlgorithmParams::IsolationForest(p))
            }
            _ => {
                let mut p = LofParams::default();
                if let Some(v) = get("n_neighbors") {
                    p.n_neighbors = int_in(v, "n_neighbors", 1, 10_000)?;
                }
                let exponent = match get("p") {
                    Some(v) => {
                        let f = number(v, "p")?;
                        if f < 1.0 || !f.is_finite() {
                            return Err(invalid("p", &format!("got {f}; accepted: a number >= 1")));
                        }
                        Some(f)
                    }
                    None => None,
                };
                let metric = match get("metric") {
                    None => "minkowski_default",
                    Some(Value::String(s)) => s.as_str(),
                    Some(other) => {
                        return Err(invalid(
                            "metric",
                            &format!(
                                "got {other}; accepted: \"euclidean\", \"manhattan\", \"minkowski\""
                            ),
                        ));
                    }
                };
                p.metric = match (metric, exponent) {
                    // scikit-learn's default metric is minkowski with p = 2.
                    ("minkowski_default" | "minkowski", None) => Metric::Euclidean,
                    ("minkowski_default" | "minkowski", Some(e)) => minkowski(e),
                    ("euclidean", None | Some(2.0)) => Metric::Euclidean,
                    ("manhattan", None | Some(1.0)) => Metric::Manhattan,
                    ("euclidean" | "manhattan", Some(e)) => {
                        return Err(invalid(
                            "p",
                            &format!("p = {e} only applies to metric \"minkowski\""),
                        ));
                    }
                    (other, _) => {
                        return Err(invalid(
                            "metric",
                            &format!(
                                "got \"{other}\"; accepted: \"euclidean\", \"manhattan\", \"minkowski\""
                            ),
                        ));
                    }
                };
                Ok(AlgorithmParams::Lof(p))
            }
        }
    }

    /// The parameters as the API answers with them (every parameter, defaults filled in).
    pub fn to_json(&self) -> Value {
        match self {
            AlgorithmParams::IsolationForest(p) => json!({
                "n_estimators": p.n_estimators,
                "max_samples": match p.max_samples {
                    MaxSamples::Auto => json!("auto"),
                    MaxSamples::Count(c) => json!(c),
                    MaxSamples::Fraction(f) => json!(f),
                },
                "max_features": match p.max_features {
                    MaxFeatures::Count(c) => json!(c),
                    MaxFeatures::Fraction(f) => json!(f),
                },
                "bootstrap": p.bootstrap,
                "random_state": p.random_state,
            }),
            AlgorithmParams::Lof(p) => {
                let mut m = json!({
                    "n_neighbors": p.n_neighbors,
                    "metric": p.metric.name(),
                });
                if let Metric::Minkowski(e) = p.metric {
                    m["p"] = json!(e);
                }
                m
            }
        }
    }
}

fn minkowski(e: f64) -> Metric {
    if e == 2.0 {
        Metric::Euclidean
    } else if e == 1.0 {
        Metric::Manhattan
    } else {
        Metric::Minkowski(e)
    }
}

fn invalid(name: &str, reason: &str) -> DetectError {
    DetectError::InvalidParameter {
        name: name.into(),
        reason: reason.into(),
    }
}

fn number(v: &Value, name: &str) -> Result<f64, DetectError> {
    match v {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s
            .parse::<f64>()
            .map_err(|_| invalid(name, &format!("got '{s}'; expected a number"))),
        other => Err(invalid(name, &format!("got {other}; expected a number"))),
    }
}

fn int_in(v: &Value, name: &str, min: u64, max: u64) -> Result<usize, DetectError> {
    let parsed = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            // Accept 100.0 but not 100.5.
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match parsed {
        Some(i) if i >= min && i <= max => Ok(usize::try_from(i).unwrap_or(usize::MAX)),
        _ => Err(invalid(
            name,
            &format!("got {v}; accepted: an integer in [{min}, {max}]"),
        )),
    }
}

/// A full detector configuration: algorithm, parameters and contamination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorConfig {
    pub algorithm: AlgorithmParams,
    pub contamination: Contamination,
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

/// Describes every algorithm, its parameters, types, defaults and ranges (for
/// `GET /api/v1/algorithms` and `pynomaly detect --help`).
pub fn algorithms() -> Value {
    json!([
        {
            "name": "isolation_forest",
            "description": "Isolation forest (Liu, Ting & Zhou 2008), scikit-learn's IsolationForest semantics",
            "supports_novelty": true,
            "contamination": {"default": "auto", "accepted": "\"auto\" (threshold 0.5) or a number in (0, 0.5]"},
            "parameters": [
                {"name": "n_estimators", "type": "integer", "default": 100, "range": [1, 100000]},
                {"name": "max_samples", "type": "\"auto\" | integer | number", "default": "auto", "range": "\"auto\" = min(256, n); an integer >= 1; or a fraction in (0, 1]"},
                {"name": "max_features", "type": "integer | number", "default": 1.0, "range": "an integer >= 1 or a fraction in (0, 1]"},
                {"name": "bootstrap", "type": "boolean", "default": false},
                {"name": "random_state", "type": "integer | null", "default": null, "range": "an integer >= 0; null draws a seed that is stored with the model"}
            ]
        },
        {
            "name": "lof",
            "description": "Local outlier factor (Breunig et al. 2000), scikit-learn's LocalOutlierFactor semantics; predict scores new rows as novelty",
            "supports_novelty": true,
            "contamination": {"default": "auto", "accepted": "\"auto\" (threshold 1.5) or a number in (0, 0.5]"},
            "parameters": [
                {"name": "n_neighbors", "type": "integer", "default": 20, "range": [1, 10000]},
                {"name": "metric", "type": "string", "default": "euclidean", "accepted": ["euclidean", "manhattan", "minkowski"]},
                {"name": "p", "type": "number", "default": 2.0, "range": "a number >= 1 (with metric \"minkowski\")"}
            ]
        }
    ])
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
    }

    #[test]
    fn contamination_out_of_range_is_rejected() {
        assert!(Contamination::from_json(&json!(0.6)).is_err());
        assert!(Contamination::from_json(&json!(0.0)).is_err());
        assert!(Contamination::from_json(&json!("often")).is_err());
        assert_eq!(
            Contamination::from_json(&json!(0.5)).unwrap(),
            Contamination::Fraction(0.5)
        );
    }

    #[test]
    fn minkowski_with_p_two_is_euclidean() {
        let p = AlgorithmParams::from_json("lof", &obj(json!({"metric": "minkowski", "p": 2})))
            .unwrap();
        assert_eq!(
            p,
            AlgorithmParams::Lof(LofParams {
                n_neighbors: 20,
                metric: Metric::Euclidean
            })
        );
    }

    #[test]
    fn fractional_estimator_count_is_rejected() {
        let e = AlgorithmParams::from_json("isolation_forest", &obj(json!({"n_estimators": 2.5})));
        assert!(e.is_err());
        let e = AlgorithmParams::from_json("isolation_forest", &obj(json!({"n_estimators": 0})));
        assert!(e.is_err());
    }
}
