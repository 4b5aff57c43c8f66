//! The parameter tables: every algorithm's parameters with their JSON types, defaults and
//! ranges, written once.
//!
//! Parsing (`super::json`), the checks ([`super::ParamGuard`]) and the description
//! [`algorithms`] serves all read these tables, so what the API describes is what it
//! accepts.

use serde_json::{Value, json};

/// The values a parameter accepts: its JSON type and its range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Domain {
    /// An integer in `[min, max]`; a `max` of `u64::MAX` is no upper bound. Integral
    /// numbers (`100.0`) and numeric strings are accepted.
    Integer { min: u64, max: u64 },
    /// A count (an integer >= 1) or a fraction in (0, 1]; with `auto`, also `"auto"`.
    CountOrFraction { auto: bool },
    /// `true` or `false` (or those words as strings).
    Boolean,
    /// One of these names.
    OneOf(&'static [&'static str]),
    /// A finite number at least this (numeric strings are accepted).
    NumberAtLeast(f64),
    /// `"auto"` or a number in (0, max] (numeric strings are accepted).
    AutoOrFractionUpTo(f64),
    /// A number strictly between `min` and `max` (numeric strings are accepted).
    NumberBetween(f64, f64),
    /// `"auto"` or an integer in `[min, max]`.
    AutoOrInteger { min: u64, max: u64 },
    /// A number in (0, 1] (numeric strings are accepted).
    Fraction,
}

impl Domain {
    /// The JSON type, as [`algorithms`] spells it.
    pub fn type_name(self) -> &'static str {
        match self {
            Domain::Integer { .. } => "integer",
            Domain::CountOrFraction { auto: true } => "\"auto\" | integer | number",
            Domain::CountOrFraction { auto: false } => "integer | number",
            Domain::Boolean => "boolean",
            Domain::OneOf(_) => "string",
            Domain::NumberAtLeast(_) => "number",
            Domain::AutoOrFractionUpTo(_) => "\"auto\" | number",
            Domain::NumberBetween(..) => "number",
            Domain::AutoOrInteger { .. } => "\"auto\" | integer",
            Domain::Fraction => "number",
        }
    }

    /// What is accepted, as error messages and [`algorithms`] word it.
    pub fn accepted(self) -> String {
        match self {
            Domain::Integer { min, max: u64::MAX } => format!("an integer >= {min}"),
            Domain::Integer { min, max } => format!("an integer in [{min}, {max}]"),
            Domain::CountOrFraction { auto: true } => {
                "\"auto\", an integer >= 1, or a fraction in (0, 1]".into()
            }
            Domain::CountOrFraction { auto: false } => {
                "an integer >= 1 or a fraction in (0, 1]".into()
            }
            Domain::Boolean => "true or false".into(),
            Domain::OneOf(names) => names
                .iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", "),
            Domain::NumberAtLeast(min) => format!("a number >= {min}"),
            Domain::AutoOrFractionUpTo(max) => format!("\"auto\" or a number in (0, {max}]"),
            Domain::NumberBetween(min, max) => format!("a number in ({min}, {max})"),
            Domain::AutoOrInteger { min, max } => {
                format!("\"auto\" or an integer in [{min}, {max}]")
            }
            Domain::Fraction => "a number in (0, 1]".into(),
        }
    }

    /// Whether the integer `i` is in range (for a count: whether it is a valid count).
    pub fn admits_integer(self, i: u64) -> bool {
        match self {
            Domain::Integer { min, max } | Domain::AutoOrInteger { min, max } => {
                (min..=max).contains(&i)
            }
            Domain::CountOrFraction { .. } => i >= 1,
            _ => false,
        }
    }

    /// Whether the number `f` is in range (for a count or fraction: whether it is a valid
    /// fraction).
    pub fn admits_number(self, f: f64) -> bool {
        match self {
            Domain::CountOrFraction { .. } | Domain::Fraction => f > 0.0 && f <= 1.0,
            Domain::NumberAtLeast(min) => f.is_finite() && f >= min,
            Domain::AutoOrFractionUpTo(max) => f > 0.0 && f <= max,
            Domain::NumberBetween(min, max) => f > min && f < max,
            _ => false,
        }
    }
}

/// A default value, as JSON spells it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Literal {
    Integer(u64),
    Number(f64),
    Bool(bool),
    Str(&'static str),
    /// No value: the parameter is optional (for `random_state`, a seed is drawn).
    Null,
}

impl Literal {
    /// The value as JSON.
    pub fn to_json(self) -> Value {
        match self {
            Literal::Integer(i) => json!(i),
            Literal::Number(f) => json!(f),
            Literal::Bool(b) => json!(b),
            Literal::Str(s) => json!(s),
            Literal::Null => Value::Null,
        }
    }
}

/// One parameter: its name, what it accepts and its default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    /// The name, as JSON objects and `--param` spell it (scikit-learn's).
    pub name: &'static str,
    pub domain: Domain,
    pub default: Literal,
    /// What the default or a special value means, added to the description.
    pub note: Option<&'static str>,
}

impl ParamSpec {
    /// The parameter's entry in [`algorithms`]: name, type, default, and its range (an
    /// `[min, max]` pair for bounded integers, the accepted names for a choice, else words).
    pub fn describe(&self) -> Value {
        let type_name = match self.default {
            Literal::Null => format!("{} | null", self.domain.type_name()),
            _ => self.domain.type_name().to_string(),
        };
        let mut entry = json!({
            "name": self.name,
            "type": type_name,
            "default": self.default.to_json(),
        });
        match self.domain {
            Domain::Integer { min, max } if max != u64::MAX => entry["range"] = json!([min, max]),
            Domain::Boolean => {}
            Domain::OneOf(names) => entry["accepted"] = json!(names),
            domain => {
                let accepted = domain.accepted();
                entry["range"] = json!(match self.note {
                    Some(note) => format!("{accepted}; {note}"),
                    None => accepted,
                });
            }
        }
        entry
    }
}

/// What `contamination = "auto"` stands for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AutoThreshold {
    /// scikit-learn's fixed offset on the score: 0.5 for the isolation forest, 1.5 for LOF.
    Offset(f64),
    /// PyOD's default contamination (0.1): the threshold is that quantile of the training
    /// scores, as a number given as `contamination` would be.
    Fraction(f64),
    /// DBSCAN's `eps`: the rows labelled −1 are the noise rows.
    Eps,
}

impl AutoThreshold {
    /// The words [`algorithms`] uses for it.
    pub fn describe(self) -> String {
        match self {
            AutoThreshold::Offset(t) => format!("threshold {t}"),
            AutoThreshold::Fraction(f) => format!("contamination {f}, PyOD's default"),
            AutoThreshold::Eps => "threshold eps: the noise rows".into(),
        }
    }
}

/// One algorithm: its name, its parameters and how `contamination = "auto"` thresholds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlgorithmSpec {
    /// The name, as the API and `--algorithm` spell it.
    pub name: &'static str,
    pub description: &'static str,
    /// Whether a fitted model scores new rows.
    pub supports_novelty: bool,
    /// What `contamination = "auto"` means for this algorithm.
    pub auto: AutoThreshold,
    /// Every parameter the algorithm accepts, in the order they are described.
    pub params: &'static [ParamSpec],
}

impl AlgorithmSpec {
    /// The names of the parameters, in table order.
    pub fn parameter_names(&self) -> impl Iterator<Item = &'static str> + use<> {
        self.params.iter().map(|p| p.name)
    }

    /// The algorithm's entry in [`algorithms`].
    pub fn describe(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "supports_novelty": self.supports_novelty,
            "contamination": {
                "default": CONTAMINATION.default.to_json(),
                "accepted": format!(
                    "\"auto\" ({}) or a number in (0, {CONTAMINATION_MAX}]",
                    self.auto.describe()
                ),
            },
            "parameters": self.params.iter().map(ParamSpec::describe).collect::<Vec<_>>(),
        })
    }
}

pub(super) const N_ESTIMATORS: ParamSpec = ParamSpec {
    name: "n_estimators",
    domain: Domain::Integer {
        min: 1,
        max: 100_000,
    },
    default: Literal::Integer(100),
    note: None,
};
pub(super) const MAX_SAMPLES: ParamSpec = ParamSpec {
    name: "max_samples",
    domain: Domain::CountOrFraction { auto: true },
    default: Literal::Str("auto"),
    note: Some("\"auto\" = min(256, n)"),
};
pub(super) const MAX_FEATURES: ParamSpec = ParamSpec {
    name: "max_features",
    domain: Domain::CountOrFraction { auto: false },
    default: Literal::Number(1.0),
    note: None,
};
pub(super) const BOOTSTRAP: ParamSpec = ParamSpec {
    name: "bootstrap",
    domain: Domain::Boolean,
    default: Literal::Bool(false),
    note: None,
};
pub(super) const RANDOM_STATE: ParamSpec = ParamSpec {
    name: "random_state",
    domain: Domain::Integer {
        min: 0,
        max: u64::MAX,
    },
    default: Literal::Null,
    note: Some("null draws a seed that is stored with the model"),
};

pub(super) const N_NEIGHBORS: ParamSpec = ParamSpec {
    name: "n_neighbors",
    domain: Domain::Integer {
        min: 1,
        max: 10_000,
    },
    default: Literal::Integer(20),
    note: None,
};
/// The metric names; `euclidean` is scikit-learn's default `minkowski` with `p = 2`.
pub(super) const METRIC: ParamSpec = ParamSpec {
    name: "metric",
    domain: Domain::OneOf(&["euclidean", "manhattan", "minkowski"]),
    default: Literal::Str("euclidean"),
    note: None,
};
pub(super) const P: ParamSpec = ParamSpec {
    name: "p",
    domain: Domain::NumberAtLeast(1.0),
    default: Literal::Number(2.0),
    note: Some("only with metric \"minkowski\""),
};

/// `n_neighbors` of KNN: PyOD's default is 5, LOF's 20; the range is the same.
pub(super) const KNN_N_NEIGHBORS: ParamSpec = ParamSpec {
    default: Literal::Integer(5),
    ..N_NEIGHBORS
};
pub(super) const KNN_METHOD: ParamSpec = ParamSpec {
    name: "method",
    domain: Domain::OneOf(&["largest", "mean", "median"]),
    default: Literal::Str("largest"),
    note: None,
};
pub(super) const N_BINS: ParamSpec = ParamSpec {
    name: "n_bins",
    domain: Domain::AutoOrInteger {
        min: 1,
        max: 100_000,
    },
    default: Literal::Integer(10),
    note: Some("\"auto\" picks each feature's count by Birgé and Rozenblac's method"),
};
pub(super) const ALPHA: ParamSpec = ParamSpec {
    name: "alpha",
    domain: Domain::NumberBetween(0.0, 1.0),
    default: Literal::Number(0.1),
    note: None,
};
pub(super) const TOL: ParamSpec = ParamSpec {
    name: "tol",
    domain: Domain::NumberBetween(0.0, 1.0),
    default: Literal::Number(0.5),
    note: None,
};
pub(super) const N_COMPONENTS: ParamSpec = ParamSpec {
    name: "n_components",
    domain: Domain::Integer {
        min: 1,
        max: u64::MAX,
    },
    default: Literal::Null,
    note: Some("null keeps min(n_samples, n_features); more is an error at fit time"),
};
pub(super) const N_SELECTED_COMPONENTS: ParamSpec = ParamSpec {
    name: "n_selected_components",
    domain: Domain::Integer {
        min: 1,
        max: u64::MAX,
    },
    default: Literal::Null,
    note: Some("null uses every component; at most n_components (checked at fit time)"),
};
pub(super) const WEIGHTED: ParamSpec = ParamSpec {
    name: "weighted",
    domain: Domain::Boolean,
    default: Literal::Bool(true),
    note: None,
};
pub(super) const STANDARDIZATION: ParamSpec = ParamSpec {
    name: "standardization",
    domain: Domain::Boolean,
    default: Literal::Bool(true),
    note: None,
};

pub(super) const REG_COVAR: ParamSpec = ParamSpec {
    name: "reg_covar",
    domain: Domain::NumberAtLeast(0.0),
    default: Literal::Number(1e-6),
    note: None,
};

pub(super) const EPS: ParamSpec = ParamSpec {
    name: "eps",
    domain: Domain::NumberBetween(0.0, f64::INFINITY),
    default: Literal::Number(0.5),
    note: None,
};
pub(super) const MIN_SAMPLES: ParamSpec = ParamSpec {
    name: "min_samples",
    domain: Domain::Integer {
        min: 1,
        max: 100_000,
    },
    default: Literal::Integer(5),
    note: Some("rows within eps, the row itself included, that make a core row"),
};

/// INNE's `n_estimators`: PyOD's default 200, the isolation forest's range.
pub(super) const INNE_N_ESTIMATORS: ParamSpec = ParamSpec {
    default: Literal::Integer(200),
    ..N_ESTIMATORS
};
/// INNE's `max_samples`: ψ, the centres per set.
pub(super) const INNE_MAX_SAMPLES: ParamSpec = ParamSpec {
    note: Some("\"auto\" = min(8, n); at least 2 centres"),
    ..MAX_SAMPLES
};

/// MCD's `support_fraction`: the share of rows in the raw support.
pub(super) const SUPPORT_FRACTION: ParamSpec = ParamSpec {
    name: "support_fraction",
    domain: Domain::Fraction,
    default: Literal::Null,
    note: Some("null = min(n, ceil((n + n_features + 1) / 2)) rows, scikit-learn's"),
};
pub(super) const ASSUME_CENTERED: ParamSpec = ParamSpec {
    name: "assume_centered",
    domain: Domain::Boolean,
    default: Literal::Bool(false),
    note: None,
};

/// CBLOF's `n_clusters`: k-means' clusters; one cannot be split into large and small.
pub(super) const N_CLUSTERS: ParamSpec = ParamSpec {
    name: "n_clusters",
    domain: Domain::Integer {
        min: 2,
        max: 10_000,
    },
    default: Literal::Integer(8),
    note: None,
};
/// CBLOF's `alpha`: the share of rows the large clusters hold; HBOS's range.
pub(super) const CBLOF_ALPHA: ParamSpec = ParamSpec {
    default: Literal::Number(0.9),
    ..ALPHA
};
/// CBLOF's `beta`: the size ratio between the last large and the first small cluster.
pub(super) const BETA: ParamSpec = ParamSpec {
    name: "beta",
    domain: Domain::NumberBetween(1.0, f64::INFINITY),
    default: Literal::Number(5.0),
    note: None,
};
pub(super) const USE_WEIGHTS: ParamSpec = ParamSpec {
    name: "use_weights",
    domain: Domain::Boolean,
    default: Literal::Bool(false),
    note: None,
};

/// PyOD's default contamination, which `"auto"` stands for with PyOD's detectors.
const PYOD_CONTAMINATION: f64 = 0.1;

/// The largest contamination: at most half the training rows are anomalies.
const CONTAMINATION_MAX: f64 = 0.5;
/// `contamination`, which every algorithm takes beside its own parameters.
pub const CONTAMINATION: ParamSpec = ParamSpec {
    name: "contamination",
    domain: Domain::AutoOrFractionUpTo(CONTAMINATION_MAX),
    default: Literal::Str("auto"),
    note: None,
};

/// Isolation forest: scikit-learn's `IsolationForest` parameters.
pub const ISOLATION_FOREST: AlgorithmSpec = AlgorithmSpec {
    name: "isolation_forest",
    description: "Isolation forest (Liu, Ting & Zhou 2008), scikit-learn's IsolationForest semantics",
    supports_novelty: true,
    auto: AutoThreshold::Offset(0.5),
    params: &[
        N_ESTIMATORS,
        MAX_SAMPLES,
        MAX_FEATURES,
        BOOTSTRAP,
        RANDOM_STATE,
    ],
};

/// Local outlier factor: scikit-learn's `LocalOutlierFactor` parameters.
pub const LOF: AlgorithmSpec = AlgorithmSpec {
    name: "lof",
    description: "Local outlier factor (Breunig et al. 2000), scikit-learn's LocalOutlierFactor semantics; predict scores new rows as novelty",
    supports_novelty: true,
    auto: AutoThreshold::Offset(1.5),
    params: &[N_NEIGHBORS, METRIC, P],
};

/// ECOD: PyOD's `ECOD` (no parameters besides the contamination).
pub const ECOD: AlgorithmSpec = AlgorithmSpec {
    name: "ecod",
    description: "Empirical-CDF-based outlier detection (Li et al. 2022), PyOD's ECOD semantics; deterministic",
    supports_novelty: true,
    auto: AutoThreshold::Fraction(PYOD_CONTAMINATION),
    params: &[],
};

/// COPOD: PyOD's `COPOD` (no parameters besides the contamination).
pub const COPOD: AlgorithmSpec = AlgorithmSpec {
    name: "copod",
    description: "Copula-based outlier detection (Li et al. 2020), PyOD's COPOD semantics; deterministic",
    supports_novelty: true,
    auto: AutoThreshold::Fraction(PYOD_CONTAMINATION),
    params: &[],
};

/// HBOS: PyOD's `HBOS` parameters.
pub const HBOS: AlgorithmSpec = AlgorithmSpec {
    name: "hbos",
    description: "Histogram-based outlier score (Goldstein & Dengel 2012), PyOD's HBOS semantics; deterministic",
    supports_novelty: true,
    auto: AutoThreshold::Fraction(PYOD_CONTAMINATION),
    params: &[N_BINS, ALPHA, TOL],
};

/// KNN: PyOD's `KNN` parameters (exact neighbours).
pub const KNN: AlgorithmSpec = AlgorithmSpec {
    name: "knn",
    description: "k-nearest-neighbour distance (Ramaswamy et al. 2000), PyOD's KNN semantics with exact neighbours; deterministic",
    supports_novelty: true,
    auto: AutoThreshold::Fraction(PYOD_CONTAMINATION),
    params: &[KNN_N_NEIGHBORS, KNN_METHOD, METRIC, P],
};

/// PCA: PyOD's `PCA` parameters (full PCA).
pub const PCA: AlgorithmSpec = AlgorithmSpec {
    name: "pca",
    description: "Principal-component distances weighted by explained variance (Shyu et al. 2003), PyOD's PCA semantics; deterministic",
    supports_novelty: true,
    auto: AutoThreshold::Fraction(PYOD_CONTAMINATION),
    params: &[
        N_COMPONENTS,
        N_SELECTED_COMPONENTS,
        WEIGHTED,
        STANDARDIZATION,
    ],
};

/// GMM: PyOD's `GMM` with one component (scikit-learn's `GaussianMixture`).
pub const GMM: AlgorithmSpec = AlgorithmSpec {
    name: "gmm",
    description: "Gaussian mixture negative log-likelihood with one full-covariance component, PyOD's GMM (scikit-learn's GaussianMixture) semantics; deterministic",
    supports_novelty: true,
    auto: AutoThreshold::Fraction(PYOD_CONTAMINATION),
    params: &[REG_COVAR],
};

/// DBSCAN: scikit-learn's `DBSCAN` parameters.
pub const DBSCAN: AlgorithmSpec = AlgorithmSpec {
    name: "dbscan",
    description: "DBSCAN (Ester et al. 1996) with scikit-learn's clusters; the score is the distance to the nearest core row, noise scores above eps; deterministic",
    supports_novelty: true,
    auto: AutoThreshold::Eps,
    params: &[EPS, MIN_SAMPLES, METRIC, P],
};

/// INNE: PyOD's `INNE` parameters.
pub const INNE: AlgorithmSpec = AlgorithmSpec {
    name: "inne",
    description: "Isolation using nearest-neighbour ensembles (Bandaragoda et al. 2018), PyOD's INNE semantics; randomized (seeded by random_state)",
    supports_novelty: true,
    auto: AutoThreshold::Fraction(PYOD_CONTAMINATION),
    params: &[INNE_N_ESTIMATORS, INNE_MAX_SAMPLES, RANDOM_STATE],
};

/// MCD: PyOD's `MCD` parameters (scikit-learn's `MinCovDet`).
pub const MCD: AlgorithmSpec = AlgorithmSpec {
    name: "mcd",
    description: "Squared Mahalanobis distance to the minimum covariance determinant estimate (FastMCD, Rousseeuw & Van Driessen 1999), PyOD's MCD (scikit-learn's MinCovDet) semantics; randomized (seeded by random_state)",
    supports_novelty: true,
    auto: AutoThreshold::Fraction(PYOD_CONTAMINATION),
    params: &[SUPPORT_FRACTION, ASSUME_CENTERED, RANDOM_STATE],
};

/// CBLOF: PyOD's `CBLOF` parameters with its default clustering (scikit-learn's `KMeans`).
pub const CBLOF: AlgorithmSpec = AlgorithmSpec {
    name: "cblof",
    description: "Cluster-based local outlier factor (He, Xu & Deng 2003) over k-means, PyOD's CBLOF (scikit-learn's KMeans) semantics; randomized (seeded by random_state)",
    supports_novelty: true,
    auto: AutoThreshold::Fraction(PYOD_CONTAMINATION),
    params: &[N_CLUSTERS, CBLOF_ALPHA, BETA, USE_WEIGHTS, RANDOM_STATE],
};

/// Every algorithm, in the order they are described.
pub const ALGORITHMS: &[AlgorithmSpec] = &[
    ISOLATION_FOREST,
    LOF,
    ECOD,
    COPOD,
    HBOS,
    KNN,
    PCA,
    GMM,
    DBSCAN,
    INNE,
    MCD,
    CBLOF,
];

/// The algorithm names accepted everywhere.
pub const ALGORITHM_NAMES: [&str; 12] = [
    ISOLATION_FOREST.name,
    LOF.name,
    ECOD.name,
    COPOD.name,
    HBOS.name,
    KNN.name,
    PCA.name,
    GMM.name,
    DBSCAN.name,
    INNE.name,
    MCD.name,
    CBLOF.name,
];

/// The table of the algorithm called `name`.
pub fn algorithm(name: &str) -> Option<&'static AlgorithmSpec> {
    ALGORITHMS.iter().find(|a| a.name == name)
}

/// Describes every algorithm, its parameters, types, defaults and ranges (the body of
/// `GET /api/v1/algorithms`).
pub fn algorithms() -> Value {
    Value::Array(ALGORITHMS.iter().map(AlgorithmSpec::describe).collect())
}
