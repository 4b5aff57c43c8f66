//! Row-parallel scoring shared by the detectors that score each row on its own (HBOS,
//! PCA, GMM, ECOD/COPOD's new rows), and the matching per-feature contributions.

use ndarray::{Array2, ArrayView1, ArrayView2, Axis};
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

/// A row × `width` matrix whose row i is written by `fill(row i of x, out)` (`out`
/// zeroed), rows computed in parallel as [`score_rows`] does.
pub(crate) fn contribution_rows(
    x: ArrayView2<'_, f64>,
    width: usize,
    fill: impl Fn(ArrayView1<'_, f64>, &mut [f64]) + Sync,
) -> Array2<f64> {
    let mut out = Array2::zeros((x.nrows(), width));
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(x.axis_iter(Axis(0)).into_par_iter())
        .with_min_len(MIN_ROWS_PER_TASK)
        .for_each(|(mut o, row)| {
            fill(
                row,
                o.as_slice_mut()
                    .expect("a fresh matrix's rows are contiguous"),
            )
        });
    out
}
