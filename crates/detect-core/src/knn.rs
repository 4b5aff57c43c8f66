//! # k-nearest-neighbour distance (KNN)
//!
//! Ramaswamy, Rastogi & Shim, "Efficient Algorithms for Mining Outliers from Large Data
//! Sets" (SIGMOD 2000), with the semantics of PyOD's `KNN`:
//!
//! - each training row's k nearest neighbours exclude the row itself (scikit-learn's
//!   `kneighbors()` without `X`); a new row's are taken among all training rows;
//! - the score is, by `method`, the distance to the k-th neighbour (`largest`, PyOD's
//!   default), the mean of the k distances (`mean`) or their median (`median`, the mean of
//!   the two middle ones for an even k, as `np.median`);
//! - k = `n_neighbors` (default 5), clamped to n − 1 with a warning where scikit-learn
//!   would refuse (it needs k < n).
//!
//! The distances are exact (k-d tree below 16 dimensions, blocked brute force with an
//! exact re-measure above: the same neighbour search as [`crate::lof`]), so the scores equal
//! PyOD's up to the last digits of the distance sums; a tie among neighbours cannot change
//! them, since only the distances enter the score.
//!
//! ## Cost
//! As LOF's neighbour search: O(n log n · k) on well-spread low-dimensional data, O(n² d)
//! above 16 dimensions; memory n·k distances while fitting. The model keeps the training
//! rows and the index for novelty scoring.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::kdtree::NeighborIndex;
use crate::params::{Checked, KnnMethod, KnnParams};

/// A fitted KNN model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Knn {
    /// Effective number of neighbours (after clamping).
    k: usize,
    method: KnnMethod,
    index: NeighborIndex,
}

impl Knn {
    /// Fits on `x` (validated, at least 2 rows) and returns the model and each training
    /// row's score, in input order.
    ///
    /// # Errors
    /// None today for validated input; the `Result` keeps the signature uniform.
    pub(crate) fn fit(
        params: &Checked<KnnParams>,
        x: ArrayView2<'_, f64>,
        warnings: &mut Vec<String>,
    ) -> Result<(Self, Vec<f64>), DetectError> {
        let (n, dim) = x.dim();
        let k = params.n_neighbors.min(n - 1);
        if params.n_neighbors >= n {
            warnings.push(format!(
                "n_neighbors ({}) must be below the number of samples ({n}); \
                 {k} neighbours are used",
                params.n_neighbors
            ));
        }
        let x = x.as_standard_layout();
        let data = x.as_slice().expect("standard layout is contiguous");
        let index = NeighborIndex::build(data, dim, params.metric);
        let (dist, _) = index.training_neighbors(k);
        let mut scores = vec![0.0; n];
        for (at, d) in dist.chunks(k).enumerate() {
            scores[index.original(at)] = combine(params.method, d);
        }
        let model = Self {
            k,
            method: params.method,
            index,
        };
        Ok((model, scores))
    }

    /// Novelty scores of new rows (validated, with the model's width): their neighbours
    /// are taken among all training rows.
    pub(crate) fn score_novel(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        let x = x.as_standard_layout();
        let data = x.as_slice().expect("standard layout is contiguous");
        self.index
            .map_query_neighbors(data, self.k, |d, _| combine(self.method, d))
    }

    /// Each new row's per-feature shares of its score (rows validated, with the model's
    /// width), neighbours taken as [`Knn::score_novel`] takes them: the score is a
    /// distance (`largest`: to the k-th neighbour) or an average of distances (`mean`:
    /// all k; `median`: the middle one or two), and each of those distances is split over
    /// the features in proportion to their terms of the reduced distance (squared
    /// differences for euclidean), so a row's shares are ≥ 0 and sum to its score.
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let x = x.as_standard_layout();
        let data = x.as_slice().expect("standard layout is contiguous");
        let dim = x.ncols();
        let k = self.k;
        let rows = self.index.map_query_rows(data, k, |row, d, p| {
            let mut out = vec![0.0; dim];
            let used: &[usize] = match self.method {
                KnnMethod::Largest => &[k - 1],
                KnnMethod::Mean => &[],
                KnnMethod::Median if k % 2 == 1 => &[k / 2],
                KnnMethod::Median => &[k / 2 - 1, k / 2],
            };
            if used.is_empty() {
                for (&dist, &pos) in d.iter().zip(p) {
                    self.index
                        .add_shares(row, pos as usize, dist / k as f64, &mut out);
                }
            } else {
                for &at in used {
                    let weight = d[at] / used.len() as f64;
                    self.index.add_shares(row, p[at] as usize, weight, &mut out);
                }
            }
            out
        });
        Array2::from_shape_vec((rows.len(), dim), rows.concat())
            .expect("one share per feature and row")
    }

    /// Checks a deserialized model's invariants against the model's width.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        if self.k == 0 || self.k > self.index.len() {
            return Err("KNN neighbour count does not match the training set".into());
        }
        self.index.check(n_features)
    }

    /// The effective number of neighbours.
    pub fn n_neighbors(&self) -> usize {
        self.k
    }
}

/// One row's score from its k neighbour distances (ascending).
fn combine(method: KnnMethod, d: &[f64]) -> f64 {
    let k = d.len();
    match method {
        KnnMethod::Largest => d[k - 1],
        KnnMethod::Mean => d.iter().sum::<f64>() / k as f64,
        KnnMethod::Median if k % 2 == 1 => d[k / 2],
        // np.median: the mean of the two middle values, computed as numpy's `mean` does.
        KnnMethod::Median => (d[k / 2 - 1] + d[k / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Metric, ParamGuard};
    use ndarray::array;

    #[test]
    fn each_method_reads_the_sorted_distances() {
        let d = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(combine(KnnMethod::Largest, &d), 8.0);
        assert_eq!(combine(KnnMethod::Mean, &d), 3.75);
        assert_eq!(combine(KnnMethod::Median, &d), 3.0);
        assert_eq!(combine(KnnMethod::Median, &d[..3]), 2.0);
    }

    #[test]
    fn a_far_row_scores_highest_and_k_is_clamped_with_a_warning() {
        let x = array![[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [9.0, 9.0]];
        let p = KnnParams {
            n_neighbors: 5,
            method: KnnMethod::Largest,
            metric: Metric::Euclidean,
        }
        .check()
        .unwrap();
        let mut w = Vec::new();
        let (knn, scores) = Knn::fit(&p, x.view(), &mut w).unwrap();
        assert_eq!(knn.n_neighbors(), 3);
        assert_eq!(w.len(), 1);
        assert!((scores[0] - 162f64.sqrt()).abs() < 1e-12, "{scores:?}");
        assert!(scores[3] > scores[1], "{scores:?}");
        let novel = knn.score_novel(array![[0.0, 0.5]].view());
        assert_eq!(novel, vec![1.25f64.sqrt()]);
    }

    #[test]
    fn feature_shares_sum_to_the_score_for_every_method() {
        let x = array![
            [0.0, 0.0],
            [0.0, 1.0],
            [1.0, 0.0],
            [1.0, 1.0],
            [0.5, 0.4],
            [0.2, 0.7]
        ];
        for method in [KnnMethod::Largest, KnnMethod::Mean, KnnMethod::Median] {
            for metric in [Metric::Euclidean, Metric::Manhattan, Metric::Minkowski(3.0)] {
                for k in [3, 4] {
                    let p = KnnParams {
                        n_neighbors: k,
                        method,
                        metric,
                    }
                    .check()
                    .unwrap();
                    let (knn, _) = Knn::fit(&p, x.view(), &mut Vec::new()).unwrap();
                    let rows = array![[0.5, 0.5], [0.4, 6.0], [-5.0, 0.3], [1.0, 1.0]];
                    let shares = knn.contributions(rows.view());
                    let scores = knn.score_novel(rows.view());
                    for (i, score) in scores.iter().enumerate() {
                        let sum: f64 = shares.row(i).sum();
                        assert!((sum - score).abs() < 1e-12, "{method:?} {sum} vs {score}");
                    }
                    assert!(shares[[1, 1]] > shares[[1, 0]], "{shares}");
                    assert!(shares[[2, 0]] > shares[[2, 1]], "{shares}");
                }
            }
        }
    }
}
