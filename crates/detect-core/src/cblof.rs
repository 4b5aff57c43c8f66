//! # CBLOF: cluster-based local outlier factor
//!
//! He, Xu & Deng, "Discovering cluster-based local outliers" (Pattern Recognition Letters
//! 2003), as PyOD's `CBLOF` with its default clustering, scikit-learn's `KMeans`:
//!
//! - k-means with `n_clusters` (default 8) as scikit-learn's defaults run it: the data
//!   centred on its mean, greedy k-means++ seeding (2 + ⌊ln k⌋ candidates per centre), one
//!   initialisation (`n_init="auto"`), Lloyd iterations until the labels stop changing or
//!   the centres move less than 1e-4 × the mean feature variance (at most 300), empty
//!   clusters given the rows farthest from their centres, and the labels of the final
//!   centres;
//! - the clusters sorted by size, largest first (ties in cluster order); the split b is the
//!   first i where the i largest clusters hold at least `alpha` (0.9) of the rows *and* the
//!   i-th is at least `beta` (5) times the next, else the first i meeting the `alpha`
//!   rule, else the first meeting the `beta` rule; the first b clusters are large;
//! - a row's score is its Euclidean distance to its own centre when its cluster is large,
//!   to the nearest large centre when small; with `use_weights`, times its cluster's size.
//!   A new row's cluster is its nearest centre (`KMeans.predict`).
//!
//! Where no split meets either rule (PyOD raises "Could not form valid cluster separation")
//! every cluster counts as large, so each row scores by the distance to its own centre,
//! and the fit warns; which partition k-means ends in depends on the seed, so a service
//! fit does not fail on a draw. `n_clusters` above the number of rows is an error naming
//! it. With fewer distinct rows than clusters, a cluster no row ends in counts as small.
//!
//! Randomized: k-means++ draws from NumPy's `RandomState(random_state)` exactly as
//! scikit-learn does (`choice` of the first centre, `uniform` candidates;
//! [`crate::numpy_random`]), the seed drawn and stored when not given, so a seed gives the
//! partition PyOD's does and the scores equal PyOD's (golden tests), unless rounding
//! decides a draw or a label between near-equal distances.
//!
//! ## Cost
//! k-means in vector lanes with Hamerly's bounds ([`kmeans`]); O(k d) per scored row. The
//! model keeps the k centres.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::params::{CblofParams, Checked};

mod kmeans;

use kmeans::squared_distance;

/// Rows per parallel work item of the training rows' scores.
const BLOCK: usize = 4096;

/// A fitted CBLOF model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cblof {
    /// k centres, row-major (k × d).
    centres: Vec<f64>,
    /// Rows per cluster in the training data.
    sizes: Vec<u64>,
    /// Per cluster: whether it is large.
    large: Vec<bool>,
    use_weights: bool,
}

/// The nearest centre (the first on ties) and the squared distance to it.
fn nearest(row: &[f64], centres: &[f64], d: usize) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (j, c) in centres.chunks_exact(d).enumerate() {
        let s = squared_distance(row, c);
        if s < best.1 {
            best = (j, s);
        }
    }
    best
}

fn n_clusters_error(reason: String) -> DetectError {
    DetectError::InvalidParameter {
        name: "n_clusters".into(),
        reason,
    }
}

impl Cblof {
    /// Fits on `x` (validated, at least 2 rows) with `seed` and returns the model and the
    /// training rows' scores.
    ///
    /// # Errors
    /// [`DetectError::InvalidParameter`] naming `n_clusters` when it is above the number of
    /// rows.
    pub(crate) fn fit(
        params: &Checked<CblofParams>,
        seed: u64,
        x: ArrayView2<'_, f64>,
        warnings: &mut Vec<String>,
    ) -> Result<(Self, Vec<f64>), DetectError> {
        let (n, d) = x.dim();
        let k = params.n_clusters;
        if k > n {
            return Err(n_clusters_error(format!(
                "{k} clusters for {n} rows; at most one cluster per row"
            )));
        }
        let t0 = std::time::Instant::now();
        let x = x.as_standard_layout();
        let data = x.as_slice().expect("standard layout");
        // scikit-learn centres the data before k-means and adds the mean back.
        let (columns, mean, variance_mean) = kmeans::Columns::centred(data, d);
        if std::env::var("KT").is_ok() {
            eprintln!("centred {:?}", t0.elapsed());
        }
        let (mut centres, labels) = kmeans::kmeans(&columns, k, variance_mean, seed);
        if std::env::var("KT").is_ok() {
            eprintln!("kmeans {:?}", t0.elapsed());
        }
        drop(columns);
        for c in centres.chunks_exact_mut(d) {
            for (v, m) in c.iter_mut().zip(&mean) {
                *v += m;
            }
        }
        let mut sizes = vec![0u64; k];
        for &l in &labels {
            sizes[l as usize] += 1;
        }
        let large = split(&sizes, n, params.alpha, params.beta).unwrap_or_else(|| {
            warnings.push(format!(
                "could not form a valid separation of the {k} clusters into large and small \
                 ones with alpha = {} and beta = {}; every cluster is scored as large \
                 (change n_clusters, alpha or beta)",
                params.alpha, params.beta
            ));
            vec![true; k]
        });
        let model = Self {
            centres,
            sizes,
            large,
            use_weights: params.use_weights,
        };
        // As PyOD: the training rows score in the clusters k-means put them in.
        let scores = data
            .par_chunks(d)
            .zip(labels.par_iter())
            .with_min_len(BLOCK)
            .map(|(row, &label)| model.score_in(row, label as usize))
            .collect();
        if std::env::var("KT").is_ok() {
            eprintln!("scored {:?}", t0.elapsed());
        }
        Ok((model, scores))
    }

    /// The centre a row's score is measured to, and the row's cluster.
    fn scoring_centre(&self, row: &[f64]) -> (usize, usize) {
        let (label, _) = nearest(row, &self.centres, row.len());
        (self.measured_to(row, label), label)
    }

    /// The centre a row of cluster `label` is measured to: its own when large, else the
    /// nearest large one.
    fn measured_to(&self, row: &[f64], label: usize) -> usize {
        let d = row.len();
        if self.large[label] {
            return label;
        }
        let mut best = (label, f64::INFINITY);
        for (j, c) in self.centres.chunks_exact(d).enumerate() {
            if self.large[j] {
                let s = squared_distance(row, c);
                if s < best.1 {
                    best = (j, s);
                }
            }
        }
        best.0
    }

    /// A row's score in cluster `label`.
    fn score_in(&self, row: &[f64], label: usize) -> f64 {
        let d = row.len();
        let centre = self.measured_to(row, label);
        let distance = squared_distance(row, &self.centres[centre * d..(centre + 1) * d]).sqrt();
        if self.use_weights {
            distance * self.sizes[label] as f64
        } else {
            distance
        }
    }

    /// Scores rows (validated, with the model's width).
    pub(crate) fn score(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        let d = self.centres.len() / self.sizes.len();
        crate::rows::score_rows(x, |row| {
            let (label, _) = nearest(row, &self.centres, d);
            self.score_in(row, label)
        })
    }

    /// Per row and feature, the squared difference between the row and the centre its
    /// score is measured to (its own for a large cluster, the nearest large one for a
    /// small): their sum is the square of the unweighted score. Rows are validated, with
    /// the model's width.
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let d = self.centres.len() / self.sizes.len();
        crate::rows::contribution_rows(x, d, |row, shares| {
            let (centre, _) = self.scoring_centre(row);
            let c = &self.centres[centre * d..(centre + 1) * d];
            for ((s, v), c) in shares.iter_mut().zip(row).zip(c) {
                *s = (v - c) * (v - c);
            }
        })
    }

    /// Checks a deserialized model's invariants against the model's width.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        let k = self.sizes.len();
        let ok = k >= 1
            && self.large.len() == k
            && self.large.iter().any(|&l| l)
            && self.centres.len() == k * n_features
            && self.centres.iter().all(|v| v.is_finite());
        if ok {
            Ok(())
        } else {
            Err("CBLOF centres do not match the model's width".into())
        }
    }
}

/// PyOD's `_set_small_large_clusters`: per cluster whether it is large, or `None` when no
/// split meets either rule. Clusters past the last one any row ends in (PyOD's
/// `np.bincount` stops there) are small.
fn split(sizes: &[u64], n: usize, alpha: f64, beta: f64) -> Option<Vec<bool>> {
    let counted = sizes.iter().rposition(|&s| s > 0).map_or(0, |p| p + 1);
    let mut order: Vec<usize> = (0..counted).collect();
    // `np.argsort(-sizes)`: descending, ties in cluster order.
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]));
    let mut by_alpha = None;
    let mut by_beta = None;
    let mut both = None;
    let mut held = 0u64;
    for i in 1..counted {
        held += sizes[order[i - 1]];
        let a = held as f64 >= n as f64 * alpha;
        let b = sizes[order[i - 1]] as f64 / sizes[order[i]] as f64 >= beta;
        if a && by_alpha.is_none() {
            by_alpha = Some(i);
        }
        if b && by_beta.is_none() {
            by_beta = Some(i);
        }
        if a && b && both.is_none() {
            both = Some(i);
        }
    }
    let threshold = both.or(by_alpha).or(by_beta)?;
    let mut large = vec![false; sizes.len()];
    for &j in &order[..threshold] {
        large[j] = true;
    }
    Some(large)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamGuard;

    /// Three tight clusters of 60, 30 and 4 rows.
    fn clusters() -> Array2<f64> {
        let mut rows = Vec::new();
        for (centre, count) in [
            ([0.0, 0.0, 0.0], 60),
            ([20.0, 0.0, 5.0], 30),
            ([0.0, 30.0, 0.0], 4),
        ] {
            for i in 0..count {
                let jitter = |m: usize| ((i * 7 + m * 3) % 11) as f64 / 11.0 - 0.5;
                rows.extend([
                    centre[0] + jitter(0),
                    centre[1] + jitter(1),
                    centre[2] + jitter(2),
                ]);
            }
        }
        Array2::from_shape_vec((94, 3), rows).unwrap()
    }

    fn params(k: usize) -> Checked<CblofParams> {
        CblofParams {
            n_clusters: k,
            ..CblofParams::default()
        }
        .check()
        .unwrap()
    }

    #[test]
    fn the_small_cluster_scores_by_its_distance_to_the_nearest_large_centre() {
        let x = clusters();
        let (model, scores) = Cblof::fit(&params(3), 1, x.view(), &mut Vec::new()).unwrap();
        assert_eq!(
            model.large.iter().filter(|&&l| l).count(),
            2,
            "{:?}",
            model.sizes
        );
        // The 4 rows of the small cluster are about 30 from the nearest large centre.
        assert!(
            scores[90..].iter().all(|&s| s > 25.0),
            "{:?}",
            &scores[90..]
        );
        assert!(scores[..90].iter().all(|&s| s < 1.0));
        assert_eq!(model.score(x.view()), scores);
        let (_, again) = Cblof::fit(&params(3), 1, x.view(), &mut Vec::new()).unwrap();
        assert_eq!(again, scores);
    }

    #[test]
    fn split_follows_pyod() {
        // 90 % reached at 2 clusters, 50/20 < 5: alpha alone decides.
        assert_eq!(
            split(&[50, 40, 5, 5], 100, 0.9, 5.0),
            Some(vec![true, true, false, false])
        );
        // Both rules at 1.
        assert_eq!(split(&[5, 95], 100, 0.9, 5.0), Some(vec![false, true]));
        // Neither rule anywhere.
        assert_eq!(split(&[34, 33, 33], 100, 0.99, 5.0), None);
        // A cluster no row ends in is small.
        assert_eq!(
            split(&[70, 25, 5, 0], 100, 0.9, 5.0),
            Some(vec![true, true, false, false])
        );
    }

    #[test]
    fn too_many_clusters_is_an_error_and_no_separation_a_warning() {
        let x = clusters();
        let err = Cblof::fit(&params(95), 0, x.view(), &mut Vec::new()).unwrap_err();
        assert!(
            matches!(err, DetectError::InvalidParameter { ref name, .. } if name == "n_clusters")
        );
        let even = Array2::from_shape_fn((40, 1), |(i, _)| (i / 10) as f64 * 100.0);
        let p = CblofParams {
            n_clusters: 4,
            alpha: 0.99,
            ..CblofParams::default()
        };
        let mut warnings = Vec::new();
        let (model, scores) =
            Cblof::fit(&p.check().unwrap(), 0, even.view(), &mut warnings).unwrap();
        assert!(warnings[0].contains("separation"), "{warnings:?}");
        // Every cluster is large: each row scores by its distance to its own centre, 0 here.
        assert!(model.large.iter().all(|&l| l));
        assert!(scores.iter().all(|&s| s == 0.0), "{scores:?}");
    }

    #[test]
    fn contributions_name_the_shifted_feature() {
        let x = clusters();
        let (model, _) = Cblof::fit(&params(3), 2, x.view(), &mut Vec::new()).unwrap();
        for f in 0..3 {
            let mut row = x.slice(ndarray::s![0..1, ..]).to_owned();
            row[[0, f]] += 6.0;
            let c = model.contributions(row.view());
            let top = (0..3)
                .max_by(|&a, &b| c[[0, a]].total_cmp(&c[[0, b]]))
                .unwrap();
            assert_eq!(top, f, "{c:?}");
            let score = model.score(row.view())[0];
            assert!((c.sum().sqrt() - score).abs() <= 1e-9 * score);
        }
    }
}
