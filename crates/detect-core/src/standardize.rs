//! Per-feature standardization, as scikit-learn's `StandardScaler` (which PyOD's
//! `standardizer` wraps): z = (x − mean) / scale with the population standard deviation as
//! the scale, and 1 for a feature scikit-learn deems constant (variance ≤ n ε var +
//! (n ε mean)², `_is_constant_feature`), so a constant column maps to 0, never NaN.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use serde::{Deserialize, Serialize};

/// Fitted means and scales.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Scaler {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl Scaler {
    /// Means and scales of `x`'s columns, computed as `_incremental_mean_and_var` does
    /// (column sums row by row; the variance with its rounding correction).
    pub(crate) fn fit(x: ArrayView2<'_, f64>) -> Self {
        let n = x.nrows() as f64;
        let sum: Array1<f64> = x.sum_axis(Axis(0));
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        let d = x.ncols();
        let (mut correction, mut squares) = (vec![0.0; d], vec![0.0; d]);
        for row in x.outer_iter() {
            for (j, &v) in row.iter().enumerate() {
                let t = v - mean[j];
                correction[j] += t;
                squares[j] += t * t;
            }
        }
        let scale = (0..d)
            .map(|j| {
                let var = (squares[j] - correction[j] * correction[j] / n) / n;
                let eps = f64::EPSILON;
                let bound = n * eps * var + (n * mean[j] * eps) * (n * mean[j] * eps);
                if var <= bound { 1.0 } else { var.sqrt() }
            })
            .collect();
        Self { mean, scale }
    }

    /// `x` standardized.
    pub(crate) fn transform(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let mut z = x.to_owned();
        for mut row in z.outer_iter_mut() {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
                *v = (*v - m) / s;
            }
        }
        z
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
        let s = Scaler::fit(x.view());
        assert_eq!(s.transform(x.view()), array![[-1.0, 0.0], [1.0, 0.0]]);
    }
}
