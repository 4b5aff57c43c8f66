//! Input validation at the boundary: shape and finiteness, before any algorithm runs.

use ndarray::{Array2, ArrayView2};

use crate::DetectError;

/// Checks that `x` has rows and columns and only finite values.
///
/// # Errors
/// [`DetectError::EmptyInput`] or [`DetectError::NonFinite`] naming the first bad cell.
pub fn check_matrix(x: &ArrayView2<'_, f64>) -> Result<(), DetectError> {
    if x.nrows() == 0 {
        return Err(DetectError::EmptyInput("no rows".into()));
    }
    if x.ncols() == 0 {
        return Err(DetectError::EmptyInput("rows have no values".into()));
    }
    // Most matrices are finite: a scan the compiler vectorizes (no early exit) first, the
    // first offending value's place only when there is one.
    let all_finite = match x.as_slice() {
        Some(flat) => flat
            .chunks(1024)
            .all(|c| c.iter().fold(true, |ok, v| ok & v.is_finite())),
        None => x.iter().all(|v| v.is_finite()),
    };
    if all_finite {
        return Ok(());
    }
    for (row, r) in x.outer_iter().enumerate() {
        for (column, &value) in r.iter().enumerate() {
            if !value.is_finite() {
                return Err(DetectError::NonFinite { row, column, value });
            }
        }
    }
    Ok(())
}

pub fn matrix_from_rows<R: AsRef<[f64]>>(rows: &[R]) -> Result<Array2<f64>, DetectError> {
    let Some(first) = rows.first() else {
        return Err(DetectError::EmptyInput("no rows".into()));
    };
    let width = first.as_ref().len();
    if width == 0 {
        return Err(DetectError::EmptyInput("row 0 has no values".into()));
    }
    let mut flat = Vec::with_capacity(rows.len() * width);
    for (row, r) in rows.iter().enumerate() {
        let r = r.as_ref();
        if r.len() != width {
            return Err(DetectError::RaggedRow {
                row,
                found: r.len(),
                expected: width,
            });
        }
        for (column, &value) in r.iter().enumerate() {
            if !value.is_finite() {
                return Err(DetectError::NonFinite { row, column, value });
            }
        }
        flat.extend_from_slice(r);
    }
    Array2::from_shape_vec((rows.len(), width), flat)
        .map_err(|e| DetectError::EmptyInput(e.to_string()))
}
