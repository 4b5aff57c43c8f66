//! Parameters from JSON (the HTTP API's objects, `--param name=value`), read by the tables:
//! an unknown name is rejected with the names accepted, a value of the wrong type with what
//! the parameter accepts, and an absent or `null` value takes the table's default. Ranges
//! are left to the checks ([`super::ParamGuard`]).

use serde_json::{Map, Value};

use super::table::{
    ALPHA, ASSUME_CENTERED, AlgorithmSpec, BETA, BOOTSTRAP, CBLOF_ALPHA, CONTAMINATION, Domain,
    EPS, INNE_MAX_SAMPLES, INNE_N_ESTIMATORS, KNN_METHOD, KNN_N_NEIGHBORS, MAX_FEATURES,
    MAX_SAMPLES, METRIC, MIN_SAMPLES, N_BINS, N_CLUSTERS, N_COMPONENTS, N_ESTIMATORS, N_NEIGHBORS,
    N_SELECTED_COMPONENTS, P, ParamSpec, RANDOM_STATE, REG_COVAR, STANDARDIZATION,
    SUPPORT_FRACTION, TOL, USE_WEIGHTS, WEIGHTED,
};
use super::{
    Bins, CblofParams, Contamination, DbscanParams, GmmParams, HbosParams, InneParams,
    IsolationForestParams, KnnMethod, KnnParams, LofParams, MaxFeatures, MaxSamples, McdParams,
    Metric, PcaParams,
};
use crate::DetectError;

/// Rejects a name `spec` does not list.
pub(super) fn reject_unknown(
    spec: &AlgorithmSpec,
    params: &Map<String, Value>,
) -> Result<(), DetectError> {
    match params
        .keys()
        .find(|k| !spec.parameter_names().any(|n| n == k.as_str()))
    {
        Some(name) => Err(DetectError::UnknownParameter {
            algorithm: spec.name.to_string(),
            name: name.clone(),
            accepted: spec.parameter_names().collect::<Vec<_>>().join(", "),
        }),
        None => Ok(()),
    }
}

/// The isolation forest's parameters: those given, the table's defaults for the rest.
pub(super) fn isolation_forest(
    params: &Map<String, Value>,
) -> Result<IsolationForestParams, DetectError> {
    let n_estimators = integer(&N_ESTIMATORS, &given_or_default(params, &N_ESTIMATORS))?;
    let max_samples = max_samples(params, &MAX_SAMPLES)?;
    let max_features =
        match count_or_fraction(&MAX_FEATURES, &given_or_default(params, &MAX_FEATURES))? {
            CountOrFraction::Count(c) => MaxFeatures::Count(c),
            CountOrFraction::Fraction(f) => MaxFeatures::Fraction(f),
            // Not produced: the domain does not accept "auto".
            CountOrFraction::Auto => return Err(invalid(&MAX_FEATURES, &Value::from("auto"))),
        };
    let bootstrap = boolean(&BOOTSTRAP, &given_or_default(params, &BOOTSTRAP))?;
    // The default is null: no seed, one is drawn at fit time.
    let random_state = given(params, &RANDOM_STATE)
        .map(|v| integer(&RANDOM_STATE, v))
        .transpose()?;
    Ok(IsolationForestParams {
        n_estimators: to_usize(n_estimators),
        max_samples,
        max_features,
        bootstrap,
        random_state,
    })
}

/// The local outlier factor's parameters: those given, the table's defaults for the rest.
pub(super) fn lof(params: &Map<String, Value>) -> Result<LofParams, DetectError> {
    let n_neighbors = to_usize(integer(
        &N_NEIGHBORS,
        &given_or_default(params, &N_NEIGHBORS),
    )?);
    Ok(LofParams {
        n_neighbors,
        metric: metric(params)?,
    })
}

/// KNN's parameters: those given, the table's defaults for the rest.
pub(super) fn knn(params: &Map<String, Value>) -> Result<KnnParams, DetectError> {
    let n_neighbors = to_usize(integer(
        &KNN_N_NEIGHBORS,
        &given_or_default(params, &KNN_N_NEIGHBORS),
    )?);
    let method = match one_of(&KNN_METHOD, &given_or_default(params, &KNN_METHOD))? {
        "mean" => KnnMethod::Mean,
        "median" => KnnMethod::Median,
        _ => KnnMethod::Largest,
    };
    Ok(KnnParams {
        n_neighbors,
        method,
        metric: metric(params)?,
    })
}

/// HBOS's parameters: those given, the table's defaults for the rest.
pub(super) fn hbos(params: &Map<String, Value>) -> Result<HbosParams, DetectError> {
    let n_bins = match given_or_default(params, &N_BINS) {
        Value::String(s) if s == "auto" => Bins::Auto,
        v => Bins::Count(to_usize(integer(&N_BINS, &v)?)),
    };
    Ok(HbosParams {
        n_bins,
        alpha: number(&ALPHA, &given_or_default(params, &ALPHA))?,
        tol: number(&TOL, &given_or_default(params, &TOL))?,
    })
}

/// PCA's parameters: those given, the table's defaults for the rest.
pub(super) fn pca(params: &Map<String, Value>) -> Result<PcaParams, DetectError> {
    let optional = |spec: &ParamSpec| {
        given(params, spec)
            .map(|v| integer(spec, v).map(to_usize))
            .transpose()
    };
    Ok(PcaParams {
        n_components: optional(&N_COMPONENTS)?,
        n_selected_components: optional(&N_SELECTED_COMPONENTS)?,
        weighted: boolean(&WEIGHTED, &given_or_default(params, &WEIGHTED))?,
        standardization: boolean(
            &STANDARDIZATION,
            &given_or_default(params, &STANDARDIZATION),
        )?,
    })
}

/// GMM's parameters: those given, the table's defaults for the rest.
pub(super) fn gmm(params: &Map<String, Value>) -> Result<GmmParams, DetectError> {
    Ok(GmmParams {
        reg_covar: number(&REG_COVAR, &given_or_default(params, &REG_COVAR))?,
    })
}

/// `max_samples` (the isolation forest's, INNE's): `"auto"`, a count or a fraction.
fn max_samples(params: &Map<String, Value>, spec: &ParamSpec) -> Result<MaxSamples, DetectError> {
    Ok(
        match count_or_fraction(spec, &given_or_default(params, spec))? {
            CountOrFraction::Auto => MaxSamples::Auto,
            CountOrFraction::Count(c) => MaxSamples::Count(c),
            CountOrFraction::Fraction(f) => MaxSamples::Fraction(f),
        },
    )
}

/// INNE's parameters: those given, the table's defaults for the rest.
pub(super) fn inne(params: &Map<String, Value>) -> Result<InneParams, DetectError> {
    Ok(InneParams {
        n_estimators: to_usize(integer(
            &INNE_N_ESTIMATORS,
            &given_or_default(params, &INNE_N_ESTIMATORS),
        )?),
        max_samples: max_samples(params, &INNE_MAX_SAMPLES)?,
        random_state: given(params, &RANDOM_STATE)
            .map(|v| integer(&RANDOM_STATE, v))
            .transpose()?,
    })
}

/// MCD's parameters: those given, the table's defaults for the rest.
pub(super) fn mcd(params: &Map<String, Value>) -> Result<McdParams, DetectError> {
    Ok(McdParams {
        support_fraction: given(params, &SUPPORT_FRACTION)
            .map(|v| number(&SUPPORT_FRACTION, v))
            .transpose()?,
        assume_centered: boolean(
            &ASSUME_CENTERED,
            &given_or_default(params, &ASSUME_CENTERED),
        )?,
        random_state: given(params, &RANDOM_STATE)
            .map(|v| integer(&RANDOM_STATE, v))
            .transpose()?,
    })
}

/// CBLOF's parameters: those given, the table's defaults for the rest.
pub(super) fn cblof(params: &Map<String, Value>) -> Result<CblofParams, DetectError> {
    Ok(CblofParams {
        n_clusters: to_usize(integer(
            &N_CLUSTERS,
            &given_or_default(params, &N_CLUSTERS),
        )?),
        alpha: number(&CBLOF_ALPHA, &given_or_default(params, &CBLOF_ALPHA))?,
        beta: number(&BETA, &given_or_default(params, &BETA))?,
        use_weights: boolean(&USE_WEIGHTS, &given_or_default(params, &USE_WEIGHTS))?,
        random_state: given(params, &RANDOM_STATE)
            .map(|v| integer(&RANDOM_STATE, v))
            .transpose()?,
    })
}

/// DBSCAN's parameters: those given, the table's defaults for the rest.
pub(super) fn dbscan(params: &Map<String, Value>) -> Result<DbscanParams, DetectError> {
    Ok(DbscanParams {
        eps: number(&EPS, &given_or_default(params, &EPS))?,
        min_samples: to_usize(integer(
            &MIN_SAMPLES,
            &given_or_default(params, &MIN_SAMPLES),
        )?),
        metric: metric(params)?,
    })
}

/// `metric` and `p` (LOF's, KNN's and DBSCAN's): scikit-learn's minkowski family.
fn metric(params: &Map<String, Value>) -> Result<Metric, DetectError> {
    let p = given(params, &P).map(|v| number(&P, v)).transpose()?;
    let metric = match given(params, &METRIC) {
        Some(v) => one_of(&METRIC, v)?,
        // scikit-learn's default metric is minkowski with p = 2, which is the euclidean
        // default: a `p` given alone is minkowski's.
        None if p.is_some() => "minkowski",
        None => one_of(&METRIC, &METRIC.default.to_json())?,
    };
    let metric = match metric {
        "euclidean" | "manhattan" => {
            // The minkowski exponent each name stands for; a `p` given with it must agree.
            let (named, own_p) = if metric == "euclidean" {
                (Metric::Euclidean, 2.0)
            } else {
                (Metric::Manhattan, 1.0)
            };
            if let Some(e) = p.filter(|&e| e != own_p) {
                return Err(DetectError::InvalidParameter {
                    name: P.name.into(),
                    reason: format!("p = {e} only applies to metric \"minkowski\""),
                });
            }
            named
        }
        _ => minkowski(match p {
            Some(e) => e,
            None => number(&P, &P.default.to_json())?,
        }),
    };
    Ok(metric)
}

/// Minkowski with exponent `e`, named euclidean or manhattan where it is one of them.
fn minkowski(e: f64) -> Metric {
    if e == 2.0 {
        Metric::Euclidean
    } else if e == 1.0 {
        Metric::Manhattan
    } else {
        Metric::Minkowski(e)
    }
}

/// `contamination`: `"auto"` (also `null`) or a number, which may be written as a string.
pub(super) fn contamination(v: &Value) -> Result<Contamination, DetectError> {
    match v {
        Value::Null => Ok(Contamination::Auto),
        Value::String(s) if s == "auto" => Ok(Contamination::Auto),
        Value::String(s) => s
            .parse::<f64>()
            .map(Contamination::Fraction)
            .map_err(|_| invalid(&CONTAMINATION, v)),
        Value::Number(n) => Ok(Contamination::Fraction(n.as_f64().unwrap_or(f64::NAN))),
        other => Err(invalid(&CONTAMINATION, other)),
    }
}

/// The value given for `spec`; absent and `null` are not given.
fn given<'a>(params: &'a Map<String, Value>, spec: &ParamSpec) -> Option<&'a Value> {
    params.get(spec.name).filter(|v| !v.is_null())
}

/// The value given for `spec`, else its default.
fn given_or_default(params: &Map<String, Value>, spec: &ParamSpec) -> Value {
    given(params, spec)
        .cloned()
        .unwrap_or_else(|| spec.default.to_json())
}

fn invalid(spec: &ParamSpec, got: &Value) -> DetectError {
    DetectError::InvalidParameter {
        name: spec.name.into(),
        reason: format!("got {got}; accepted: {}", spec.domain.accepted()),
    }
}

fn to_usize(i: u64) -> usize {
    usize::try_from(i).unwrap_or(usize::MAX)
}

/// An integer >= 0: a number without a fraction (`100.0` is 100) or a string of digits.
fn integer(spec: &ParamSpec, v: &Value) -> Result<u64, DetectError> {
    let parsed = match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 1.8e19)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| invalid(spec, v))
}

enum CountOrFraction {
    Auto,
    Count(usize),
    Fraction(f64),
}

/// An integer is a count, any other number a fraction; `"auto"` where the domain takes it.
fn count_or_fraction(spec: &ParamSpec, v: &Value) -> Result<CountOrFraction, DetectError> {
    match v {
        Value::String(s)
            if s == "auto" && spec.domain == (Domain::CountOrFraction { auto: true }) =>
        {
            Ok(CountOrFraction::Auto)
        }
        Value::Number(n) if n.is_u64() || n.is_i64() => n
            .as_u64()
            .map(|c| CountOrFraction::Count(to_usize(c)))
            .ok_or_else(|| invalid(spec, v)),
        Value::Number(n) => Ok(CountOrFraction::Fraction(n.as_f64().unwrap_or(f64::NAN))),
        _ => Err(invalid(spec, v)),
    }
}

fn boolean(spec: &ParamSpec, v: &Value) -> Result<bool, DetectError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        _ => Err(invalid(spec, v)),
    }
}

/// One of the domain's names.
fn one_of(spec: &ParamSpec, v: &Value) -> Result<&'static str, DetectError> {
    let names = match spec.domain {
        Domain::OneOf(names) => names,
        _ => &[],
    };
    v.as_str()
        .and_then(|s| names.iter().find(|n| **n == s).copied())
        .ok_or_else(|| invalid(spec, v))
}

/// A number, which may be written as a string.
fn number(spec: &ParamSpec, v: &Value) -> Result<f64, DetectError> {
    match v {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => s.parse::<f64>().map_err(|_| invalid(spec, v)),
        _ => Err(invalid(spec, v)),
    }
}
