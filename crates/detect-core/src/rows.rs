//! Row-parallel scoring shared by the detectors that score each row on its own (HBOS,
//! PCA, GMM, ECOD/COPOD's new rows).

use ndarray::{ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;

/// Rows per parallel work item: enough to amortise the split on small rows.
const MIN_ROWS_PER_TASK: usize = 1024;

/// `score` of every row of `x`, in row order, computed in parallel (each row by one
/// thread, so the result does not depend on the thread count).
pub(crate) fn score_rows(
    x: ArrayView2<'_, f64>,
    score: impl Fn(ArrayView1<'_, f64>) -> f64 + Sync,
) -> Vec<f64> {
    x.axis_iter(Axis(0))
        .into_par_iter()
        .with_min_len(MIN_ROWS_PER_TASK)
        .map(&score)
        .collect()
}
