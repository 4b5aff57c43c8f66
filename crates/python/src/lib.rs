//! # `pynomaly._core`: detect-core for Python
//!
//! The extension module under the `pynomaly` package's scikit-learn estimators
//! (`python/pynomaly/estimators.py`). It is deliberately thin: one class, [`Model`], that
//! fits a [`DetectorConfig`] on a NumPy matrix, scores new rows and serializes itself in
//! the service's model format ([`FittedModel::to_bytes`]), so a model pickled in Python
//! and a model stored by `pynomaly serve` are the same bytes. Everything scikit-learn
//! specific (parameter names, `offset_`, the sign of `score_samples`, which methods exist
//! for `novelty`) lives in Python; everything numeric lives in detect-core. Beside it,
//! [`algorithms`] hands Python the parameter tables (names, defaults, ranges) and
//! [`dbscan_clusters`] scikit-learn's DBSCAN cluster labels, which a model does not keep.
//!
//! Parameters cross as JSON text and are read by [`DetectorConfig::from_json`], the same
//! parser the HTTP API uses, so names, ranges and error messages are the API's.
//!
//! Matrices are read in place: a C-contiguous `float64` array is a borrowed
//! [`ndarray::ArrayView2`] with no copy (detect-core copies only other layouts). The GIL is
//! released while fitting and scoring (`py.detach`), so other Python threads run, and the
//! work runs on a rayon pool of the caller's size (`n_threads`), the global pool when none
//! is given. Results do not depend on the number of threads.
//!
//! Built only by maturin (`pip install ./python`); see the crate manifest for why it has no
//! Rust tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use detect_core::{AlgorithmParams, DetectError, DetectorConfig, FittedModel};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray2};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use serde_json::{Map, Value};

/// The extension module.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MODEL_FORMAT_VERSION", detect_core::MODEL_FORMAT_VERSION)?;
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(algorithms, m)?)?;
    m.add_function(wrap_pyfunction!(dbscan_clusters, m)?)?;
    Ok(())
}

/// Every algorithm's parameters, types, defaults and ranges as JSON text: the body of the
/// API's `GET /api/v1/algorithms`, read from the same table the parser checks against (the
/// estimators build their parameter lists and docs from it).
#[pyfunction]
fn algorithms() -> PyResult<String> {
    serde_json::to_string(&detect_core::params::algorithms())
        .map_err(|e| PyRuntimeError::new_err(e.to_string()))
}

/// scikit-learn's `DBSCAN(...).fit(x)`: the cluster label of every row (from 0 in the
/// order clusters are found, -1 for noise) and whether it is a core row. `params` is JSON
/// text with the API's `dbscan` parameters, checked as `Model.fit` checks them.
#[pyfunction]
#[pyo3(signature = (params, x, n_threads=None))]
fn dbscan_clusters<'py>(
    py: Python<'py>,
    params: &str,
    x: PyReadonlyArray2<'py, f64>,
    n_threads: Option<usize>,
) -> PyResult<DbscanClusters<'py>> {
    let params: Map<String, Value> = serde_json::from_str(params)
        .map_err(|e| PyValueError::new_err(format!("parameters are not a JSON object: {e}")))?;
    let config = DetectorConfig::from_json("dbscan", &params, &Value::String("auto".into()))
        .map_err(value_error)?;
    let AlgorithmParams::Dbscan(p) = &config.algorithm else {
        return Err(PyRuntimeError::new_err(
            "the dbscan parameters parsed as another algorithm",
        ));
    };
    let view = x.as_array();
    detect_core::validate::check_matrix(&view).map_err(value_error)?;
    let (labels, core) = py.detach(|| {
        in_pool(n_threads, || {
            detect_core::dbscan::cluster_labels(view, p.eps, p.min_samples, p.metric)
        })
    })?;
    Ok((labels.into_pyarray(py), core.into_pyarray(py)))
}

/// What `dbscan_clusters` returns: the labels and the core-row mask.
type DbscanClusters<'py> = (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<bool>>);

/// A fitted detect-core model, of any algorithm detect-core has.
///
/// Scores follow the service's convention: higher = more anomalous, and a row is an
/// anomaly (`-1`) exactly when its score is greater than `threshold`.
#[pyclass(frozen, module = "pynomaly._core")]
#[derive(Debug)]
struct Model {
    inner: FittedModel,
}

#[pymethods]
impl Model {
    /// Fits `algorithm` with `params` and `contamination` (JSON text, as the HTTP API takes
    /// them) on `x`; returns the model, the training rows' scores (`None` unless
    /// `training_scores`: an isolation forest is then only grown) and fit warnings.
    #[staticmethod]
    #[pyo3(signature = (algorithm, params, contamination, x, n_threads=None, training_scores=true))]
    fn fit<'py>(
        py: Python<'py>,
        algorithm: &str,
        params: &str,
        contamination: &str,
        x: PyReadonlyArray2<'py, f64>,
        n_threads: Option<usize>,
        training_scores: bool,
    ) -> PyResult<FitResult<'py>> {
        let params: Map<String, Value> = serde_json::from_str(params)
            .map_err(|e| PyValueError::new_err(format!("parameters are not a JSON object: {e}")))?;
        let contamination: Value = serde_json::from_str(contamination)
            .map_err(|e| PyValueError::new_err(format!("contamination is not JSON: {e}")))?;
        let config =
            DetectorConfig::from_json(algorithm, &params, &contamination).map_err(value_error)?;
        let view = x.as_array();
        let (model, scores, warnings) = py
            .detach(|| {
                in_pool(n_threads, || {
                    if training_scores {
                        detect_core::fit(&config, view)
                            .map(|f| (f.model, Some(f.training.scores), f.warnings))
                    } else {
                        detect_core::fit_model(&config, view).map(|(m, w)| (m, None, w))
                    }
                })
            })?
            .map_err(value_error)?;
        Ok((
            Model { inner: model },
            scores.map(|s| s.into_pyarray(py)),
            warnings,
        ))
    }

    /// Anomaly scores of new rows (LOF: novelty scores against the training rows).
    #[pyo3(signature = (x, n_threads=None))]
    fn score<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f64>,
        n_threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let view = x.as_array();
        let scores = if view.nrows() * view.ncols() <= SMALL_INPUT_CELLS {
            // A few rows take microseconds: releasing the GIL and waking a pool would cost
            // more than the work.
            self.inner.score(view)
        } else {
            py.detach(|| in_pool(n_threads, || self.inner.score(view)))?
        };
        Ok(scores.map_err(value_error)?.into_pyarray(py))
    }

    /// The model in the service's format (`PNMY`, format version, postcard body).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    /// Reads a model written by `to_bytes` (or stored by the service).
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Model> {
        FittedModel::from_bytes(data)
            .map(|inner| Model { inner })
            .map_err(value_error)
    }

    /// Pickles as the model's bytes.
    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let load = py.get_type::<Model>().getattr("from_bytes")?;
        let args = PyTuple::new(py, [self.to_bytes(py)])?;
        Ok((load, args))
    }

    /// A row is an anomaly exactly when its score is greater than this.
    #[getter]
    fn threshold(&self) -> f64 {
        self.inner.threshold()
    }

    /// The algorithm's name, as the API spells it (`isolation_forest`, `lof`, `ecod`, ...).
    #[getter]
    fn algorithm(&self) -> &'static str {
        self.inner.algorithm()
    }

    /// Number of features the model scores.
    #[getter]
    fn n_features(&self) -> usize {
        self.inner.n_features()
    }

    /// Number of rows the model was fitted on.
    #[getter]
    fn n_samples(&self) -> usize {
        self.inner.n_samples()
    }

    /// The configuration as the API reports it: `{"algorithm", "parameters",
    /// "contamination"}` (the isolation forest's `random_state` is the seed it used).
    #[getter]
    fn config_json(&self) -> PyResult<String> {
        serde_json::to_string(self.inner.config())
            .map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> String {
        format!(
            "Model(algorithm={:?}, n_features={}, n_samples={}, threshold={})",
            self.inner.algorithm(),
            self.inner.n_features(),
            self.inner.n_samples(),
            self.inner.threshold()
        )
    }
}

/// What `Model.fit` returns to Python: the model, the training scores, the warnings.
type FitResult<'py> = (Model, Option<Bound<'py, PyArray1<f64>>>, Vec<String>);

/// Inputs up to this many values are scored on the calling thread.
const SMALL_INPUT_CELLS: usize = 4096;

fn value_error(e: DetectError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// Runs `work` on a rayon pool of `n_threads` threads (kept for later calls), or on the
/// global pool when `None`.
fn in_pool<T: Send>(n_threads: Option<usize>, work: impl FnOnce() -> T + Send) -> PyResult<T> {
    let Some(n) = n_threads else {
        return Ok(work());
    };
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let pool = {
        let mut pools = POOLS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match pools.get(&n) {
            Some(pool) => Arc::clone(pool),
            None => {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(n.max(1))
                    .thread_name(|i| format!("pynomaly-{i}"))
                    .build()
                    .map_err(|e| PyRuntimeError::new_err(format!("thread pool: {e}")))?;
                Arc::clone(pools.entry(n).or_insert_with(|| Arc::new(pool)))
            }
        }
    };
    Ok(pool.install(work))
}
