//! Per-feature standardization, as scikit-learn's `StandardScaler` (which PyOD's
//! `standardizer` wraps): z = (x − mean) / scale with the population standard deviation as
//! the scale, and 1 for a feature scikit-learn deems constant (variance ≤ n ε var +
//! (n ε mean)², `_is_constant_feature`), so a constant column maps to 0, never NaN.
//!
//! The column moments behind it ([`Moments`]) also carry the deviations' cross products,
//! so a covariance of the standardized data (PCA's) needs no standardized copy.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// Rows per block of the moment passes: partial sums per block are added in block order,
/// so the moments do not depend on the thread count.
const BLOCK_ROWS: usize = 4096;
/// From this width the cross products of a block are one matrix product (CᵀC).
const PRODUCT_MIN_WIDTH: usize = 8;

/// Column means and, about them, the sums of the deviations and of their products.
pub(crate) struct Moments {
    pub(crate) n: usize,
    /// The column sums over n (or the divisor given).
    pub(crate) mean: Vec<f64>,
    /// Σ (x − mean) per column: zero but for rounding, scikit-learn's correction term.
    pub(crate) correction: Vec<f64>,
    /// Σ (x − mean)(x − mean)ᵀ, d × d, row-major, exactly symmetric.
    pub(crate) scatter: Vec<f64>,
}

impl Moments {
    /// Two passes over `x`: the column sums, then the deviations' sums and products.
    pub(crate) fn of(x: ArrayView2<'_, f64>) -> Self {
        Self::about_sums_over(x, x.nrows() as f64)
    }

    /// [`Moments::of`] about the column sums over `divisor` instead of the mean
    /// (scikit-learn's `GaussianMixture` divides by n + 10ε).
    pub(crate) fn about_sums_over(x: ArrayView2<'_, f64>, divisor: f64) -> Self {
        let (n, d) = x.dim();
        let x = x.as_standard_layout();
        let flat = x
            .as_slice()
            .expect("a standard-layout matrix is contiguous");
        let sums = add_in_order(
            crate::rows::map_chunks(flat, BLOCK_ROWS * d, |rows| {
                with_const_width!(d, W, column_sums::<W>(rows, d))
            }),
            d,
        );
        let mean: Vec<f64> = sums.iter().map(|s| s / divisor).collect();
        let blocks: Vec<Vec<f64>> = crate::rows::map_chunks(flat, BLOCK_ROWS * d, |rows| {
            deviations(rows.len() / d, |i| &rows[i * d..(i + 1) * d], &mean)
        });
        let both = add_in_order(blocks, d + d * d);
        let correction = both[..d].to_vec();
        let mut scatter = both[d..].to_vec();
        for a in 0..d {
            for b in 0..a {
                scatter[a * d + b] = scatter[b * d + a];
            }
        }
        Self {
            n,
            mean,
            correction,
            scatter,
        }
    }
}

/// Over `count` rows, `row(i)` the i-th: Σ (r − mean) (d values) then
/// Σ (r − mean)(r − mean)ᵀ (d × d, the upper triangle filled), the products row by row
/// below [`PRODUCT_MIN_WIDTH`] features and as one matrix product CᵀC from it (what
/// NumPy's `cov` does). Shared by [`Moments::of`] and MCD's supports.
pub(crate) fn deviations<'a>(
    count: usize,
    row: impl Fn(usize) -> &'a [f64],
    mean: &[f64],
) -> Vec<f64> {
    let d = mean.len();
    let mut out = vec![0.0; d + d * d];
    let (correction, scatter) = out.split_at_mut(d);
    if d >= PRODUCT_MIN_WIDTH {
        let mut c = Array2::zeros((count, d));
        for (i, mut line) in c.rows_mut().into_iter().enumerate() {
            let r = row(i);
            for (((t, v), mu), s) in line.iter_mut().zip(r).zip(mean).zip(correction.iter_mut()) {
                *t = v - mu;
                *s += *t;
            }
        }
        let mut product = Array2::zeros((d, d));
        general_mat_mul(1.0, &c.t(), &c, 0.0, &mut product);
        for (o, p) in scatter.iter_mut().zip(product.iter()) {
            *o = *p;
        }
        return out;
    }
    with_const_width!(
        d,
        W,
        narrow_deviations::<W>(count, &row, mean, correction, scatter)
    );
    out
}

/// Column sums of a block of rows `d` wide; `W` is `d` when known at compile time, else 0.
fn column_sums<const W: usize>(rows: &[f64], d: usize) -> Vec<f64> {
    let d = if W == 0 { d } else { W };
    let mut s = vec![0.0; d];
    for r in rows.chunks_exact(d) {
        for (s, v) in s.iter_mut().zip(r) {
            *s += v;
        }
    }
    s
}

/// [`deviations`] one row at a time, the upper triangle of the products; `W` as in
/// [`column_sums`].
fn narrow_deviations<'a, const W: usize>(
    count: usize,
    row: &impl Fn(usize) -> &'a [f64],
    mean: &[f64],
    correction: &mut [f64],
    scatter: &mut [f64],
) {
    let d = if W == 0 { mean.len() } else { W };
    let mut t = vec![0.0; d];
    for i in 0..count {
        let r = &row(i)[..d];
        for (((t, v), mu), s) in t.iter_mut().zip(r).zip(mean).zip(correction.iter_mut()) {
            *t = v - mu;
            *s += *t;
        }
        for a in 0..d {
            let ta = t[a];
            let line = &mut scatter[a * d..(a + 1) * d];
            for b in a..d {
                line[b] += ta * t[b];
            }
        }
    }
}

fn add_in_order(blocks: Vec<Vec<f64>>, width: usize) -> Vec<f64> {
    let mut total = vec![0.0; width];
    for block in blocks {
        for (t, b) in total.iter_mut().zip(block) {
            *t += b;
        }
    }
    total
}

/// Fitted means and scales.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Scaler {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl Scaler {
    /// Means and scales from the columns' moments, the variance with its rounding
    /// correction as `_incremental_mean_and_var` computes it.
    pub(crate) fn from_moments(m: &Moments) -> Self {
        let n = m.n as f64;
        let d = m.mean.len();
        let scale = (0..d)
            .map(|j| {
                let (correction, squares) = (m.correction[j], m.scatter[j * d + j]);
                let var = (squares - correction * correction / n) / n;
                let eps = f64::EPSILON;
                let bound = n * eps * var + (n * m.mean[j] * eps) * (n * m.mean[j] * eps);
                if var <= bound { 1.0 } else { var.sqrt() }
            })
            .collect();
        Self {
            mean: m.mean.clone(),
            scale,
        }
    }

    /// Feature `j`'s value `v` standardized.
    #[inline]
    pub(crate) fn standardize(&self, j: usize, v: f64) -> f64 {
        (v - self.mean[j]) / self.scale[j]
    }

    pub(crate) fn scale(&self) -> &[f64] {
        &self.scale
    }

    pub(crate) fn width(&self) -> usize {
        self.mean.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn columns_get_zero_mean_and_unit_variance_and_constants_map_to_zero() {
        let x = array![[1.0, 5.0], [3.0, 5.0]];
        let s = Scaler::from_moments(&Moments::of(x.view()));
        let z = Array2::from_shape_fn((2, 2), |(i, j)| s.standardize(j, x[[i, j]]));
        assert_eq!(z, array![[-1.0, 0.0], [1.0, 0.0]]);
    }

    #[test]
    fn wide_blocks_take_a_matrix_product_equal_to_the_row_by_row_sums() {
        let d = PRODUCT_MIN_WIDTH + 3;
        let x = Array2::from_shape_fn((BLOCK_ROWS + 777, d), |(i, j)| {
            ((i * 31 + j * 17) % 97) as f64 / 7.0 + (j as f64).sin()
        });
        let m = Moments::of(x.view());
        for a in 0..d {
            for b in 0..d {
                let direct: f64 = x
                    .rows()
                    .into_iter()
                    .map(|r| (r[a] - m.mean[a]) * (r[b] - m.mean[b]))
                    .sum();
                let got = m.scatter[a * d + b];
                assert!(
                    (got - direct).abs() <= 1e-9 * direct.abs().max(1.0),
                    "{got} vs {direct}"
                );
                assert_eq!(got, m.scatter[b * d + a]);
            }
        }
    }
}
