//! # PCA: principal-component outlier score
//!
//! Shyu, Chen, Sarinnapakorn & Chang, "A Novel Anomaly Detection Scheme Based on
//! Principal Component Classifier" (ICDM 2003), as PyOD's `PCA` scores it:
//!
//! 1. standardize the features (`standardization`, default on; [`crate::standardize`]);
//! 2. a full PCA of the result, as scikit-learn's `PCA` with its default solver: the
//!    eigenvectors of the sample covariance, by decreasing eigenvalue, each signed so that
//!    its largest-magnitude entry is positive (`svd_flip(u_based_decision=False)`), with
//!    explained-variance ratios evrⱼ = λⱼ / Σλ; `n_components` of them are kept (default
//!    min(n_samples, n_features));
//! 3. the score of a row z is Σⱼ ‖z − vⱼ‖ / wⱼ over the last `n_selected_components` kept
//!    components (default all), with wⱼ = evrⱼ when `weighted` (default) and 1 otherwise.
//!    PyOD treats each unit component vⱼ as a point and measures the Euclidean distance
//!    from z to it (`cdist`), which is what is computed here.
//!
//! Where a component's explained variance is numerically zero (a constant column, or
//! exactly collinear ones), PyOD divides by 0 and returns +inf for every row (or, where
//! LAPACK returns a tiny positive eigenvalue instead, scores dominated by that noise).
//! Here a weight below n_features · 2⁻⁵² is raised to that floor: the scores stay finite
//! and, like PyOD's in the tiny-eigenvalue case, are then ranked by ‖z‖.
//!
//! Deterministic; the scores equal PyOD's up to the rounding of the eigendecomposition
//! (a different, equally exact algorithm: nalgebra's symmetric QR instead of LAPACK).
//!
//! ## Cost
//! O(n d²) for the covariance, O(d³) for its eigendecomposition, O(n d s) to score with s
//! selected components. Memory: the model keeps d · s components, s weights and the
//! scaler.

use nalgebra::{DMatrix, SymmetricEigen};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::params::{Checked, ParamError, PcaParams};
use crate::rows::{BLOCK_ROWS, BlockContributor, BlockScorer};
use crate::standardize::{Moments, Scaler};

/// A fitted PCA model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pca {
    scaler: Option<Scaler>,
    /// The selected components, row-major (s × d).
    components: Vec<f64>,
    /// Their weights (evr or 1), floored as the module docs say.
    weights: Vec<f64>,
    /// Explained-variance ratio of every kept component, as scikit-learn reports it.
    explained_variance_ratio: Vec<f64>,
}

impl Pca {
    /// Fits on `x` (validated, at least 2 rows) and returns the model and the training
    /// rows' scores.
    ///
    /// # Errors
    /// [`DetectError::InvalidParameter`] when `n_components` exceeds min(n_samples,
    /// n_features) or `n_selected_components` exceeds the components kept.
    pub(crate) fn fit(
        params: &Checked<PcaParams>,
        x: ArrayView2<'_, f64>,
    ) -> Result<(Self, Vec<f64>), DetectError> {
        let (n, d) = x.dim();
        let most = n.min(d);
        let kept = params.n_components.unwrap_or(most);
        if kept > most {
            return Err(DetectError::InvalidParameter {
                name: "n_components".into(),
                reason: format!(
                    "got {kept}; accepted: at most min(n_samples, n_features) = {most} for this data"
                ),
            });
        }
        let selected = params.n_selected_components.unwrap_or(kept);
        if selected > kept {
            return Err(ParamError::NSelectedComponents(selected).into());
        }
        let moments = Moments::of(x);
        let scaler = params
            .standardization
            .then(|| Scaler::from_moments(&moments));
        let (vectors, evr) = principal_components(&covariance(&moments, scaler.as_ref()), d);
        let floor = d as f64 * f64::EPSILON;
        let mut components = Vec::with_capacity(selected * d);
        let mut weights = Vec::with_capacity(selected);
        for j in kept - selected..kept {
            components.extend_from_slice(&vectors[j * d..(j + 1) * d]);
            weights.push(if params.weighted {
                evr[j].max(floor)
            } else {
                1.0
            });
        }
        let model = Self {
            scaler,
            components,
            weights,
            explained_variance_ratio: evr[..kept].to_vec(),
        };
        let scores = model.score(x);
        Ok((model, scores))
    }

    /// Scores rows (validated, with the model's width), standardizing each as it goes (no
    /// standardized copy of `x`), `BLOCK_ROWS` rows at a time.
    pub(crate) fn score(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        crate::rows::score_blocks(x, self)
    }

    /// Each row's per-feature terms (rows validated, with the model's width), in the
    /// standardized space the score is computed in: each selected component's distance
    /// term ‖z − v‖ / w = Σ_f (z_f − v_f)² / (‖z − v‖ w) is split over the features as
    /// the summands say, so a row's terms are ≥ 0 and sum to its score.
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        crate::rows::contributions_by_blocks(x, self)
    }

    /// The explained-variance ratio of each kept component (scikit-learn's
    /// `explained_variance_ratio_`).
    pub fn explained_variance_ratio(&self) -> &[f64] {
        &self.explained_variance_ratio
    }

    /// Checks a deserialized model's invariants against the model's width.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        let s = self.weights.len();
        let scaler_ok = self.scaler.as_ref().is_none_or(|c| c.width() == n_features);
        if s == 0 || self.components.len() != s * n_features || !scaler_ok {
            return Err("PCA components do not match the model's width".into());
        }
        Ok(())
    }
}

/// Rows [`Pca::score_block`] carries through a block together, their running sums held
/// in vector registers from one feature to the next (four AVX-512 registers, eight AVX2 or
/// sixteen SSE2: enough independent sums to hide the additions' latency). Divides
/// [`BLOCK_ROWS`].
const LANES: usize = 32;

impl BlockScorer for Pca {
    /// Per component and row, the distance Σₖ (zₖ − vₖ)² summed in feature order, its
    /// square root times the weight's reciprocal, added in component order — each row's
    /// arithmetic exactly as one row at a time would do it.
    #[inline(always)]
    fn score_block(&self, rows: &[f64], out: &mut [f64], buffer: &mut [f64]) {
        let b = out.len();
        let d = rows.len() / b;
        let z = &mut buffer[..BLOCK_ROWS * d];
        for (i, row) in rows.chunks_exact(d).enumerate() {
            for (k, &v) in row.iter().enumerate() {
                z[k * BLOCK_ROWS + i] = match &self.scaler {
                    Some(s) => s.standardize(k, v),
                    None => v,
                };
            }
        }
        // LANES rows at a time, their sums held in registers across the features (rows
        // past `b` hold what an earlier block left, finite, and are not written out).
        for start in (0..b).step_by(LANES) {
            let mut total = [0.0; LANES];
            for (v, &w) in self.components.chunks_exact(d).zip(&self.weights) {
                let per_weight = 1.0 / w;
                let mut distance = [0.0; LANES];
                for (k, &vk) in v.iter().enumerate() {
                    let zk = &z[k * BLOCK_ROWS + start..][..LANES];
                    for (s, &zv) in distance.iter_mut().zip(zk) {
                        let t = zv - vk;
                        *s += t * t;
                    }
                }
                for (o, &s) in total.iter_mut().zip(&distance) {
                    *o += s.sqrt() * per_weight;
                }
            }
            let end = (start + LANES).min(b);
            out[start..end].copy_from_slice(&total[..end - start]);
        }
    }
}

impl BlockContributor for Pca {
    fn scratch_len(&self, d: usize, rows: usize) -> usize {
        rows.next_multiple_of(LANES) * (d + self.weights.len())
    }

    /// [`LANES`] rows at a time, held in registers: per component, the distances
    /// Σₖ (zₖ − vₖ)² in feature order and 1 / (√distance · w) (0 where the distance is
    /// 0); then per feature, (zₖ − vₖ)² times that added in component order — each row's
    /// arithmetic as one row at a time.
    #[inline(always)]
    fn contribute_block<S: pulp::Simd>(
        &self,
        _: S,
        rows: &[f64],
        terms: &mut [f64],
        scratch: &mut [f64],
    ) {
        let d = self.components.len() / self.weights.len();
        let b = rows.len() / d;
        // Standardized rows and the components' scales per row, feature by feature with a
        // stride of whole lane groups (lanes past `b` hold finite leftovers and are not
        // written out).
        let stride = b.next_multiple_of(LANES);
        let (z, scale) = scratch.split_at_mut(stride * d);
        for (i, row) in rows.chunks_exact(d).enumerate() {
            for (k, &v) in row.iter().enumerate() {
                z[k * stride + i] = match &self.scaler {
                    Some(s) => s.standardize(k, v),
                    None => v,
                };
            }
        }
        for start in (0..b).step_by(LANES) {
            let components = self.components.chunks_exact(d).zip(&self.weights);
            for (j, (v, &w)) in components.enumerate() {
                let mut distance = [0.0; LANES];
                for (k, &vk) in v.iter().enumerate() {
                    let zk = &z[k * stride + start..][..LANES];
                    for (s, &zv) in distance.iter_mut().zip(zk) {
                        let t = zv - vk;
                        *s += t * t;
                    }
                }
                let scale = &mut scale[j * stride + start..][..LANES];
                for (c, &s) in scale.iter_mut().zip(&distance) {
                    *c = if s > 0.0 { 1.0 / (s.sqrt() * w) } else { 0.0 };
                }
            }
            let n = (b - start).min(LANES);
            for k in 0..d {
                let mut zk = [0.0; LANES];
                zk.copy_from_slice(&z[k * stride + start..][..LANES]);
                let mut total = [0.0; LANES];
                for (j, v) in self.components.chunks_exact(d).enumerate() {
                    let vk = v[k];
                    let scale = &scale[j * stride + start..][..LANES];
                    for ((o, &zv), &c) in total.iter_mut().zip(&zk).zip(scale) {
                        let t = zv - vk;
                        *o += t * t * c;
                    }
                }
                terms[k * b + start..][..n].copy_from_slice(&total[..n]);
            }
        }
    }
}

/// Every principal component of `z`'s rows, row-major by decreasing eigenvalue and signed
/// as scikit-learn signs them, and their explained-variance ratios.
/// The sample covariance (n − 1) of the standardized data (of the data itself without a
/// scaler), from the raw data's moments: z = (x − mean) / scale.
fn covariance(m: &Moments, scaler: Option<&Scaler>) -> Vec<f64> {
    let (n, d) = (m.n as f64, m.mean.len());
    let ones = vec![1.0; d];
    let scale = scaler.map_or(ones.as_slice(), Scaler::scale);
    let mut cov = vec![0.0; d * d];
    for a in 0..d {
        for b in 0..d {
            let centred = m.scatter[a * d + b] - m.correction[a] * m.correction[b] / n;
            cov[a * d + b] = centred / (n - 1.0) / (scale[a] * scale[b]);
        }
    }
    cov
}

fn principal_components(cov: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let eigen = SymmetricEigen::new(DMatrix::from_fn(d, d, |i, j| cov[i * d + j]));
    let mut order: Vec<usize> = (0..d).collect();
    order.sort_by(|&a, &b| eigen.eigenvalues[b].total_cmp(&eigen.eigenvalues[a]));
    // Negative eigenvalues are rounding: scikit-learn clips them to 0.
    let values: Vec<f64> = order
        .iter()
        .map(|&i| eigen.eigenvalues[i].max(0.0))
        .collect();
    let total: f64 = values.iter().sum();
    let mut vectors = Vec::with_capacity(d * d);
    for &i in &order {
        let v = eigen.eigenvectors.column(i);
        // svd_flip: the first entry of largest magnitude becomes positive.
        let mut at = 0;
        for (j, x) in v.iter().enumerate() {
            if x.abs() > v[at].abs() {
                at = j;
            }
        }
        let sign = if v[at] < 0.0 { -1.0 } else { 1.0 };
        vectors.extend(v.iter().map(|x| x * sign));
    }
    let evr = values.iter().map(|v| v / total).collect();
    (vectors, evr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamGuard;
    use ndarray::array;

    #[test]
    fn components_are_unit_signed_and_sorted() {
        let z = array![[2.0, 0.1], [-2.0, -0.1], [1.0, -0.2], [-1.0, 0.2]];
        let (v, evr) = principal_components(&covariance(&Moments::of(z.view()), None), 2);
        assert!(evr[0] > evr[1] && (evr[0] + evr[1] - 1.0).abs() < 1e-12);
        let norm = (v[0] * v[0] + v[1] * v[1]).sqrt();
        assert!((norm - 1.0).abs() < 1e-12);
        assert!(v[0] > 0.0 && v[0].abs() > v[1].abs());
    }

    #[test]
    fn too_many_components_name_the_parameter() {
        let x = array![[1.0, 2.0], [2.0, 1.0], [3.0, 3.5]];
        let p = PcaParams {
            n_components: Some(3),
            ..PcaParams::default()
        }
        .check()
        .unwrap();
        let err = Pca::fit(&p, x.view()).unwrap_err();
        assert!(
            matches!(err, DetectError::InvalidParameter { ref name, .. } if name == "n_components")
        );
        let p = PcaParams {
            n_selected_components: Some(3),
            ..PcaParams::default()
        }
        .check()
        .unwrap();
        let err = Pca::fit(&p, x.view()).unwrap_err();
        assert!(err.to_string().contains("n_selected_components"), "{err}");
    }

    #[test]
    fn block_contributions_are_each_rows_own() {
        // 150 rows: two full blocks and a part block.
        let x = Array2::from_shape_fn((150, 5), |(i, k)| {
            ((i * 7 + k * 13) % 17) as f64 * 0.3 + (i as f64 * (k + 1) as f64).sin()
        });
        let (model, _) = Pca::fit(&PcaParams::default().check().unwrap(), x.view()).unwrap();
        let scaler = model.scaler.as_ref().unwrap();
        let terms = model.contributions(x.view());
        for (i, row) in x.rows().into_iter().enumerate() {
            let z: Vec<f64> = (0..5).map(|k| scaler.standardize(k, row[k])).collect();
            let mut want = [0.0; 5];
            for (v, w) in model.components.chunks_exact(5).zip(&model.weights) {
                let sq: f64 = z.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum();
                if sq > 0.0 {
                    let scale = 1.0 / (sq.sqrt() * w);
                    for ((o, a), b) in want.iter_mut().zip(&z).zip(v) {
                        *o += (a - b) * (a - b) * scale;
                    }
                }
            }
            assert_eq!(terms.row(i).to_vec(), want, "row {i}");
        }
    }

    #[test]
    fn block_scores_are_each_rows_own() {
        // 150 rows: two full blocks, then a part block whose unused lanes hold the
        // previous block's values.
        let x = Array2::from_shape_fn((150, 5), |(i, k)| {
            ((i * 7 + k * 13) % 17) as f64 * 0.3 + (i as f64 * (k + 1) as f64).sin()
        });
        let p = PcaParams {
            n_selected_components: Some(3),
            ..PcaParams::default()
        };
        let (model, scores) = Pca::fit(&p.check().unwrap(), x.view()).unwrap();
        let scaler = model.scaler.as_ref().unwrap();
        for (i, row) in x.rows().into_iter().enumerate() {
            let mut want = 0.0;
            for (v, &w) in model.components.chunks_exact(5).zip(&model.weights) {
                let mut s = 0.0;
                for (k, (&x, &vk)) in row.iter().zip(v).enumerate() {
                    let t = scaler.standardize(k, x) - vk;
                    s += t * t;
                }
                want += s.sqrt() * (1.0 / w);
            }
            assert_eq!(scores[i].to_bits(), want.to_bits(), "row {i}");
            let alone = model.score(row.insert_axis(ndarray::Axis(0)));
            assert_eq!(alone[0].to_bits(), want.to_bits(), "row {i} alone");
        }
        // Enough rows to be scored in parallel: the same scores as on one thread.
        let many = Array2::from_shape_fn((30_000, 5), |(i, k)| x[[i % 150, k]]);
        assert!(many.len() > crate::rows::SEQUENTIAL_MAX_VALUES);
        let all = model.score(many.view());
        for (i, s) in all.iter().enumerate() {
            assert_eq!(s.to_bits(), scores[i % 150].to_bits(), "row {i}");
        }
    }

    #[test]
    fn feature_terms_sum_to_the_score() {
        let x = array![
            [1.0, 2.0, 0.5],
            [2.0, 1.0, 0.7],
            [3.0, 3.5, 0.1],
            [2.5, 2.0, 0.9],
            [1.5, 3.0, 0.4],
            [0.5, 1.5, 0.6]
        ];
        for p in [
            PcaParams::default(),
            PcaParams {
                n_selected_components: Some(2),
                weighted: false,
                ..PcaParams::default()
            },
        ] {
            let (model, _) = Pca::fit(&p.check().unwrap(), x.view()).unwrap();
            let rows = array![[2.0, 2.0, 0.5], [2.0, 2.1, 9.0], [-8.0, 2.0, 0.5]];
            let terms = model.contributions(rows.view());
            let scores = model.score(rows.view());
            for (i, score) in scores.iter().enumerate() {
                let sum: f64 = terms.row(i).sum();
                assert!((sum - score).abs() <= 1e-9 * score, "{sum} vs {score}");
                assert!(terms.row(i).iter().all(|&t| t >= 0.0), "{terms}");
            }
            assert!(terms[[1, 2]] > terms[[1, 0]].max(terms[[1, 1]]), "{terms}");
            assert!(terms[[2, 0]] > terms[[2, 1]].max(terms[[2, 2]]), "{terms}");
        }
    }
}
