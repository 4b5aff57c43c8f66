//! # GMM: Gaussian mixture likelihood (one component)
//!
//! PyOD's `GMM` with its default `n_components=1`, which wraps scikit-learn's
//! `GaussianMixture(covariance_type="full")`: the score of a row is its negative
//! log-likelihood, −log N(x | μ, Σ). With one component scikit-learn's EM stops where it
//! starts (every responsibility is 1), so the fit is closed-form and deterministic:
//!
//! - nₖ = n + 10 ε (scikit-learn's guard against empty components), μ = Σ x / nₖ;
//! - Σ = (x − μ)ᵀ (x − μ) / nₖ + `reg_covar` · I (default 1e-6);
//! - Σ = L Lᵀ (Cholesky); a row's score is ½ (d ln 2π + ‖L⁻¹(x − μ)‖²) + Σᵢ ln Lᵢᵢ.
//!
//! The scores equal scikit-learn's (and PyOD's) up to the rounding of the Cholesky factor
//! and the triangular solve. A covariance that is not positive definite even with
//! `reg_covar` is an error naming `reg_covar`, as scikit-learn refuses it.
//!
//! ## Per-feature contributions
//! [`Gmm::contributions`] gives each feature its *conditional* term of the
//! log-likelihood: with P = Σ⁻¹ and r = x − μ,
//! cⱼ = ½ (xⱼ − E[xⱼ | x₋ⱼ])² / Var(xⱼ | x₋ⱼ) = ½ (P r)ⱼ² / Pⱼⱼ,
//! which is how much the score's Mahalanobis term ½ rᵀ P r grows when feature j is added
//! to the others (the conditional terms of Mason, Tracy & Young's decomposition of
//! Hotelling's T², "Decomposition of T² for Multivariate Control Chart Interpretation",
//! J. Quality Technology 1995). Each is ≥ 0, does not depend on the order of the
//! features (unlike the sequential terms of ‖L⁻¹ r‖², which blame the first of two
//! correlated features for both), and names the feature that breaks the correlations
//! the model learnt even when its value alone is ordinary. For a diagonal covariance
//! they are ½ zⱼ² and sum to the score minus its value at the mean; with correlations
//! they need not sum to it.
//!
//! ## Cost
//! O(n d²) for the covariance, O(d³) for the factor, O(d²) per scored row. The model keeps
//! μ and L (d + d² values).

use std::sync::OnceLock;

use nalgebra::DMatrix;
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::params::{Checked, GmmParams};
use crate::rows::{BLOCK_ROWS, BlockContributor, BlockScorer};
use crate::standardize::Moments;

/// A fitted one-component GMM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Gmm {
    mean: Vec<f64>,
    /// The lower Cholesky factor L of the covariance, row-major (d × d).
    chol: Vec<f64>,
    /// ½ d ln 2π + Σᵢ ln Lᵢᵢ: the score of a row at the mean.
    offset: f64,
    /// What the contributions are computed from, made on the first explanation (not part
    /// of the model format).
    #[serde(skip)]
    inverse: OnceLock<Inverse>,
}

impl Gmm {
    /// Fits on `x` (validated, at least 2 rows) and returns the model and the training
    /// rows' scores.
    ///
    /// # Errors
    /// [`DetectError::InvalidParameter`] naming `reg_covar` when the regularised
    /// covariance is not positive definite.
    pub(crate) fn fit(
        params: &Checked<GmmParams>,
        x: ArrayView2<'_, f64>,
    ) -> Result<(Self, Vec<f64>), DetectError> {
        let (n, d) = x.dim();
        let nk = n as f64 + 10.0 * f64::EPSILON;
        let Moments { mean, scatter, .. } = Moments::about_sums_over(x, nk);
        let mut cov = Array2::from_shape_vec((d, d), scatter)
            .expect("d × d values")
            .mapv(|s| s / nk);
        for i in 0..d {
            cov[[i, i]] += params.reg_covar;
        }
        let cholesky = nalgebra::Cholesky::new(DMatrix::from_fn(d, d, |i, j| cov[[i, j]]))
            .ok_or_else(|| DetectError::InvalidParameter {
                name: "reg_covar".into(),
                reason: format!(
                    "the covariance plus reg_covar = {} is not positive definite: some \
                     features are (nearly) collinear or constant; increase reg_covar",
                    params.reg_covar
                ),
            })?;
        let l = cholesky.l();
        let log_det: f64 = (0..d).map(|i| l[(i, i)].ln()).sum();
        let offset = 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln() + log_det;
        let chol = (0..d * d).map(|k| l[(k / d, k % d)]).collect();
        let model = Self {
            mean,
            chol,
            offset,
            inverse: OnceLock::new(),
        };
        let scores = model.score(x);
        Ok((model, scores))
    }

    /// Scores rows (validated, with the model's width): −log-likelihood.
    pub(crate) fn score(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        crate::rows::score_blocks(x, self)
    }

    /// Each row's per-feature conditional terms (rows validated, with the model's
    /// width), as the module docs define them: O(d³) once for the diagonal of Σ⁻¹, then
    /// O(d²) per row, as scoring.
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        crate::rows::contributions_by_blocks(x, self)
    }

    /// What the contributions are computed from ([`Gmm::inverse_of`]), made on the first
    /// call.
    fn inverse(&self) -> &Inverse {
        self.inverse.get_or_init(|| self.inverse_of())
    }

    /// L⁻¹ and the precision's diagonal.
    fn inverse_of(&self) -> Inverse {
        let d = self.mean.len();
        // L⁻¹ by forward substitution on the identity, row-major; Pⱼⱼ = Σᵢ (L⁻¹)ᵢⱼ².
        let mut inv = vec![0.0; d * d];
        for c in 0..d {
            for i in c..d {
                let mut acc = if i == c { 1.0 } else { 0.0 };
                for j in c..i {
                    acc -= self.chol[i * d + j] * inv[j * d + c];
                }
                inv[i * d + c] = acc / self.chol[i * d + i];
            }
        }
        let precision_diagonal: Vec<f64> = (0..d)
            .map(|j| (j..d).map(|i| inv[i * d + j] * inv[i * d + j]).sum())
            .collect();
        Inverse {
            inv,
            precision_diagonal,
        }
    }

    /// Checks a deserialized model's invariants against the model's width.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        let d = n_features;
        let diagonal_ok = (0..d).all(|i| self.chol.get(i * d + i).is_some_and(|v| *v > 0.0));
        if self.mean.len() != d || self.chol.len() != d * d || !diagonal_ok {
            return Err("GMM parameters do not match the model's width".into());
        }
        Ok(())
    }
}

/// What [`Gmm::contributions`] needs besides the mean: L⁻¹ (row-major, lower) and the
/// precision's diagonal.
#[derive(Debug, Clone)]
struct Inverse {
    inv: Vec<f64>,
    precision_diagonal: Vec<f64>,
}

impl BlockContributor for Gmm {
    fn scratch_len(&self, d: usize, rows: usize) -> usize {
        rows * 2 * d
    }

    /// y = L⁻¹ r with yᵢ = Σⱼ₍ⱼ≤ᵢ₎ (L⁻¹)ᵢⱼ rⱼ added in order of j, then (P r)ⱼ =
    /// Σᵢ₍ᵢ≥ⱼ₎ (L⁻¹)ᵢⱼ yᵢ in order of i, and ½ (P r)ⱼ² / Pⱼⱼ — each row's arithmetic as
    /// one row at a time, the sums of a run of rows held in vector registers.
    #[inline(always)]
    fn contribute_block<S: pulp::Simd>(
        &self,
        simd: S,
        rows: &[f64],
        terms: &mut [f64],
        scratch: &mut [f64],
    ) {
        let d = self.mean.len();
        let b = rows.len() / d;
        let Inverse {
            inv,
            precision_diagonal,
        } = self.inverse();
        let (r, rest) = scratch.split_at_mut(b * d);
        let y = &mut rest[..b * d];
        crate::rows::by_feature(rows, d, r, |k, v| v - self.mean[k]);
        for i in 0..d {
            let (row, y) = (&inv[i * d..][..=i], &mut y[i * b..][..b]);
            combine(simd, b, row.iter().copied().zip(r.chunks_exact(b)), y);
        }
        for (j, &p) in precision_diagonal.iter().enumerate() {
            let column = (j..d).map(|i| inv[i * d + j]);
            let out = &mut terms[j * b..][..b];
            combine(simd, b, column.zip(y[j * b..].chunks_exact(b)), out);
            for t in out.iter_mut() {
                *t = 0.5 * *t * *t / p;
            }
        }
    }
}

/// Rows per run of [`combine`]: four vectors of AVX-512, eight of AVX2.
const RUN: usize = 32;

/// `out` = Σ c · v over `(c, v)` in order (v: b values, one per row), each row's sum
/// started at 0 and added term by term as one row at a time adds it, [`RUN`] rows at a
/// time in vector registers.
#[inline(always)]
fn combine<'a, S: pulp::Simd>(
    simd: S,
    b: usize,
    terms: impl Iterator<Item = (f64, &'a [f64])> + Clone,
    out: &mut [f64],
) {
    let w = S::F64_LANES;
    let runs = if w > 1 && RUN.is_multiple_of(w) {
        b / RUN
    } else {
        0
    };
    for run in 0..runs {
        let at = run * RUN;
        let mut sums = [simd.splat_f64s(0.0); RUN];
        let sums = &mut sums[..RUN / w];
        for (c, v) in terms.clone() {
            let c = simd.splat_f64s(c);
            let v = S::as_simd_f64s(&v[at..at + RUN]).0;
            for (s, &v) in sums.iter_mut().zip(v) {
                *s = simd.add_f64s(*s, simd.mul_f64s(c, v));
            }
        }
        for (o, s) in S::as_mut_simd_f64s(&mut out[at..at + RUN])
            .0
            .iter_mut()
            .zip(sums)
        {
            *o = *s;
        }
    }
    let rest = &mut out[runs * RUN..b];
    rest.fill(0.0);
    for (c, v) in terms {
        for (s, &v) in rest.iter_mut().zip(&v[runs * RUN..b]) {
            *s += c * v;
        }
    }
}

impl BlockScorer for Gmm {
    /// Forward substitution L y = x − μ for the block's rows (y laid out feature by
    /// feature, overwriting x − μ in place): per row, yᵢ = ((xᵢ − μᵢ) − Σⱼ₍ⱼ₌₀..ᵢ₎ Lᵢⱼ yⱼ)
    /// / Lᵢᵢ subtracted in order of j, and Σᵢ yᵢ² added in order of i — a row's arithmetic
    /// exactly as one row at a time.
    #[inline(always)]
    fn score_block(&self, rows: &[f64], out: &mut [f64], buffer: &mut [f64]) {
        let b = out.len();
        let d = self.mean.len();
        let y = &mut buffer[..BLOCK_ROWS * d];
        for (r, row) in rows.chunks_exact(d).enumerate() {
            for (i, (&v, &m)) in row.iter().zip(&self.mean).enumerate() {
                y[i * BLOCK_ROWS + r] = v - m;
            }
        }
        out.fill(0.0);
        let mut acc = [0.0; BLOCK_ROWS];
        let acc = &mut acc[..b];
        for i in 0..d {
            acc.copy_from_slice(&y[i * BLOCK_ROWS..i * BLOCK_ROWS + b]);
            for j in 0..i {
                let l = self.chol[i * d + j];
                for (a, &yj) in acc.iter_mut().zip(&y[j * BLOCK_ROWS..j * BLOCK_ROWS + b]) {
                    *a -= l * yj;
                }
            }
            let diagonal = self.chol[i * d + i];
            let yi = &mut y[i * BLOCK_ROWS..i * BLOCK_ROWS + b];
            for ((v, &a), sq) in yi.iter_mut().zip(acc.iter()).zip(out.iter_mut()) {
                *v = a / diagonal;
                *sq += *v * *v;
            }
        }
        for sq in out.iter_mut() {
            *sq = 0.5 * *sq + self.offset;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamGuard;
    use nalgebra::DVector;
    use ndarray::array;

    #[test]
    fn one_dimension_is_the_normal_density() {
        let x = array![[1.0], [3.0]];
        let p = GmmParams { reg_covar: 0.0 }.check().unwrap();
        let (model, scores) = Gmm::fit(&p, x.view()).unwrap();
        // mean 2, variance 1: −log N(1 | 2, 1) = ½ ln 2π + ½.
        let want = 0.5 * (2.0 * std::f64::consts::PI).ln() + 0.5;
        assert!((scores[0] - want).abs() < 1e-12, "{scores:?}");
        let far = model.score(array![[12.0]].view());
        assert!((far[0] - (want - 0.5 + 50.0)).abs() < 1e-12);
    }

    #[test]
    fn block_contributions_are_each_rows_own() {
        // 150 rows: two full blocks and a part block.
        let x = Array2::from_shape_fn((150, 4), |(i, k)| {
            ((i * 5 + k * 11) % 13) as f64 * 0.4 + (i as f64 * (k + 2) as f64).cos()
        });
        let (model, _) = Gmm::fit(&GmmParams::default().check().unwrap(), x.view()).unwrap();
        let Inverse {
            inv,
            precision_diagonal,
        } = model.inverse();
        let terms = model.contributions(x.view());
        let d = 4;
        for (i, row) in x.rows().into_iter().enumerate() {
            let y: Vec<f64> = (0..d)
                .map(|a| {
                    (0..=a)
                        .map(|j| inv[a * d + j] * (row[j] - model.mean[j]))
                        .sum()
                })
                .collect();
            let want: Vec<f64> = (0..d)
                .map(|j| {
                    let pr: f64 = (j..d).map(|a| inv[a * d + j] * y[a]).sum();
                    0.5 * pr * pr / precision_diagonal[j]
                })
                .collect();
            assert_eq!(terms.row(i).to_vec(), want, "row {i}");
        }
    }

    #[test]
    fn block_scores_are_each_rows_own() {
        // 150 rows: two full blocks and a part block.
        let x = Array2::from_shape_fn((150, 4), |(i, k)| {
            ((i * 5 + k * 11) % 13) as f64 * 0.4 + (i as f64 * (k + 2) as f64).cos()
        });
        let p = GmmParams::default().check().unwrap();
        let (model, scores) = Gmm::fit(&p, x.view()).unwrap();
        let d = 4;
        for (i, row) in x.rows().into_iter().enumerate() {
            let mut y = [0.0; 4];
            let mut sq = 0.0;
            for a in 0..d {
                let mut v = row[a] - model.mean[a];
                for (&l, &yb) in model.chol[a * d..a * d + a].iter().zip(&y) {
                    v -= l * yb;
                }
                y[a] = v / model.chol[a * d + a];
                sq += y[a] * y[a];
            }
            let want = 0.5 * sq + model.offset;
            assert_eq!(scores[i].to_bits(), want.to_bits(), "row {i}");
            let alone = model.score(row.insert_axis(ndarray::Axis(0)));
            assert_eq!(alone[0].to_bits(), want.to_bits(), "row {i} alone");
        }
    }

    #[test]
    fn a_singular_covariance_names_reg_covar() {
        let x = array![[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]];
        let p = GmmParams { reg_covar: 0.0 }.check().unwrap();
        let err = Gmm::fit(&p, x.view()).unwrap_err();
        assert!(
            matches!(err, DetectError::InvalidParameter { ref name, .. } if name == "reg_covar")
        );
    }

    /// ½ rᵀ A⁻¹ r for the covariance restricted to `keep`.
    fn half_mahalanobis(cov: &DMatrix<f64>, r: &[f64], keep: &[usize]) -> f64 {
        let sub = DMatrix::from_fn(keep.len(), keep.len(), |a, b| cov[(keep[a], keep[b])]);
        let v = DVector::from_iterator(keep.len(), keep.iter().map(|&k| r[k]));
        0.5 * v.dot(&(sub.try_inverse().unwrap() * &v))
    }

    #[test]
    fn a_features_term_is_what_it_adds_to_the_others_mahalanobis_distance() {
        let x = array![
            [1.0, 2.0, 0.5],
            [2.0, 3.1, 0.7],
            [3.0, 4.2, 0.1],
            [2.5, 3.4, 0.9],
            [1.5, 2.9, 0.4],
            [0.5, 1.2, 0.6],
            [2.2, 3.0, 0.2]
        ];
        let p = GmmParams { reg_covar: 0.0 }.check().unwrap();
        let (model, _) = Gmm::fit(&p, x.view()).unwrap();
        let d = 3;
        let l = DMatrix::from_row_slice(d, d, &model.chol);
        let cov = &l * l.transpose();
        let rows = array![[2.0, 3.0, 0.5], [2.0, 1.0, 0.5], [9.0, 3.0, 0.4]];
        let terms = model.contributions(rows.view());
        let scores = model.score(rows.view());
        for (i, row) in rows.outer_iter().enumerate() {
            let r: Vec<f64> = row.iter().zip(&model.mean).map(|(a, m)| a - m).collect();
            let all = half_mahalanobis(&cov, &r, &[0, 1, 2]);
            assert!(
                (scores[i] - model.offset - all).abs() < 1e-9,
                "{} vs {all}",
                scores[i]
            );
            for j in 0..d {
                let others: Vec<usize> = (0..d).filter(|&k| k != j).collect();
                let want = all - half_mahalanobis(&cov, &r, &others);
                let got = terms[[i, j]];
                assert!(
                    (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "{got} vs {want}"
                );
            }
        }
        // Row 1 breaks the strong correlation of features 0 and 1 with ordinary values.
        assert!(
            terms[[1, 1]] > terms[[1, 2]] && terms[[1, 0]] > terms[[1, 2]],
            "{terms}"
        );
        assert!(terms[[2, 0]] > terms[[2, 1]].max(terms[[2, 2]]), "{terms}");
    }

    #[test]
    fn with_uncorrelated_features_the_terms_sum_to_the_score_above_the_mean() {
        let x = array![[1.0, 5.0], [3.0, 5.0], [1.0, 7.0], [3.0, 7.0]];
        let p = GmmParams { reg_covar: 0.0 }.check().unwrap();
        let (model, _) = Gmm::fit(&p, x.view()).unwrap();
        let rows = array![[2.0, 6.0], [4.0, 6.5], [0.0, 2.0]];
        let terms = model.contributions(rows.view());
        let scores = model.score(rows.view());
        for (i, score) in scores.iter().enumerate() {
            let sum: f64 = terms.row(i).sum();
            assert!(
                (sum - (score - model.offset)).abs() < 1e-12,
                "{sum} vs {score}"
            );
        }
        // Variance 1 in both: ½ z².
        assert!((terms[[1, 0]] - 2.0).abs() < 1e-12 && (terms[[1, 1]] - 0.125).abs() < 1e-12);
    }
}
