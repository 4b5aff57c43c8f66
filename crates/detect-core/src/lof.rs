//! # Local outlier factor
//!
//! Breunig, Kriegel, Ng & Sander, "LOF: Identifying Density-Based Local Outliers"
//! (SIGMOD 2000), with the semantics of scikit-learn's `LocalOutlierFactor`:
//!
//! - k = `n_neighbors`, clamped to n − 1 with a warning (as scikit-learn does);
//! - each training row's k nearest neighbours exclude the row itself; its k-distance is
//!   the distance to the k-th of them;
//! - reach-dist_k(a, b) = max(d(a, b), k-distance(b));
//! - lrd(a) = 1 / (mean over a's neighbours b of reach-dist_k(a, b) + 1e-10) (the 1e-10
//!   keeps duplicates finite, as in scikit-learn);
//! - LOF(a) = mean over a's neighbours b of lrd(b) / lrd(a): about 1 inside a cluster,
//!   larger for outliers. It is the anomaly score (scikit-learn's
//!   `-negative_outlier_factor_`); contamination `"auto"` puts the threshold at 1.5.
//! - A new row (novelty scoring, for `predict`) is scored the same way against the
//!   training rows, its neighbours taken among all of them.
//!
//! ## Cost
//! Neighbour search dominates: a k-d tree below 16 dimensions (O(n log n) on spread-out
//! data), blocked brute force above (O(n² d)). Memory: the training rows, plus n·k
//! neighbour positions and distances while fitting; the fitted model keeps the rows, the
//! index and two numbers per row (k-distance and lrd) for novelty scoring.
//!
//! Results are deterministic and independent of thread count: each row's neighbours and
//! sums are computed by one thread in a fixed order.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::kdtree::NeighborIndex;
use crate::params::{Checked, LofParams};

/// scikit-learn's guard against zero reachability distances (duplicates).
const LRD_EPSILON: f64 = 1e-10;

/// A fitted LOF model (scikit-learn's `LocalOutlierFactor(novelty=True)` after `fit`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lof {
    /// Effective number of neighbours (after clamping).
    k: usize,
    index: NeighborIndex,
    /// Per index position: distance to the k-th neighbour.
    k_distance: Vec<f64>,
    /// Per index position: local reachability density.
    lrd: Vec<f64>,
}

impl Lof {
    /// Fits on `x` (validated, at least 2 rows) and returns the model and each training
    /// row's local outlier factor, in input order.
    ///
    /// # Errors
    /// None today for validated input; the `Result` keeps the signature uniform.
    pub(crate) fn fit(
        params: &Checked<LofParams>,
        x: ArrayView2<'_, f64>,
        warnings: &mut Vec<String>,
    ) -> Result<(Self, Vec<f64>), DetectError> {
        let (n, dim) = x.dim();
        // scikit-learn clamps k to n - 1 but warns only when k exceeds n.
        let k = params.n_neighbors.min(n - 1);
        if params.n_neighbors > n {
            warnings.push(format!(
                "n_neighbors ({}) is greater than the total number of samples ({n}); \
                 n_neighbors will be set to (n_samples - 1) for estimation",
                params.n_neighbors
            ));
        }
        let x = x.as_standard_layout();
        let data = x.as_slice().expect("standard layout is contiguous");
        let index = NeighborIndex::build(data, dim, params.metric);
        // Neighbours of every training row, excluding itself, in index order.
        let (dist, pos) = index.training_neighbors(k);
        let k_distance: Vec<f64> = dist.chunks(k).map(|d| d[k - 1]).collect();
        let lrd: Vec<f64> = dist
            .par_chunks(k)
            .zip(pos.par_chunks(k))
            .map(|(d, p)| local_reachability_density(d, p, &k_distance))
            .collect();
        let mut scores = vec![0.0; n];
        let lof_by_position: Vec<f64> = pos
            .par_chunks(k)
            .enumerate()
            .map(|(at, p)| outlier_factor(lrd[at], p, &lrd))
            .collect();
        for (at, lof) in lof_by_position.into_iter().enumerate() {
            scores[index.original(at)] = lof;
        }
        Ok((
            Self {
                k,
                index,
                k_distance,
                lrd,
            },
            scores,
        ))
    }

    /// Novelty scores of new rows (validated, with the model's width): each row's local
    /// outlier factor with respect to the training rows.
    pub(crate) fn score_novel(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        let x = x.as_standard_layout();
        let data = x.as_slice().expect("standard layout is contiguous");
        self.index.map_query_neighbors(data, self.k, |d, p| {
            outlier_factor(
                local_reachability_density(d, p, &self.k_distance),
                p,
                &self.lrd,
            )
        })
    }

    /// Each new row's per-feature shares of its local outlier factor (rows validated,
    /// with the model's width): the factor compares the row's distances to its k
    /// neighbours with theirs, so each neighbour takes an equal part of the score, split
    /// over the features in proportion to their terms of the reduced distance to that
    /// neighbour (squared differences for euclidean). A row's shares are ≥ 0 and sum to
    /// its score.
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let x = x.as_standard_layout();
        let data = x.as_slice().expect("standard layout is contiguous");
        let dim = x.ncols();
        let rows = self.index.map_query_rows(data, self.k, |row, d, p| {
            let score = outlier_factor(
                local_reachability_density(d, p, &self.k_distance),
                p,
                &self.lrd,
            );
            let mut out = vec![0.0; dim];
            for &pos in p {
                self.index
                    .add_shares(row, pos as usize, score / p.len() as f64, &mut out);
            }
            out
        });
        Array2::from_shape_vec((rows.len(), dim), rows.concat())
            .expect("one share per feature and row")
    }

    /// Checks a deserialized model's invariants against the model's width.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        let n = self.index.len();
        if self.k == 0 || self.k > n || self.k_distance.len() != n || self.lrd.len() != n {
            return Err("LOF arrays do not match the training set".into());
        }
        self.index.check(n_features)
    }

    /// The effective number of neighbours.
    pub fn n_neighbors(&self) -> usize {
        self.k
    }
}

/// scikit-learn's `_local_reachability_density` for one row.
fn local_reachability_density(dist: &[f64], pos: &[u32], k_distance: &[f64]) -> f64 {
    let sum: f64 = dist
        .iter()
        .zip(pos)
        .map(|(&d, &p)| d.max(k_distance[p as usize]))
        .sum();
    1.0 / (sum / dist.len() as f64 + LRD_EPSILON)
}

/// Mean of the neighbours' lrd ratios to the row's own.
fn outlier_factor(own_lrd: f64, pos: &[u32], lrd: &[f64]) -> f64 {
    let sum: f64 = pos.iter().map(|&p| lrd[p as usize] / own_lrd).sum();
    sum / pos.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{Metric, ParamGuard};
    use ndarray::array;

    #[test]
    fn an_isolated_point_has_a_large_factor() {
        let x = array![
            [0.0, 0.0],
            [0.0, 1.0],
            [1.0, 0.0],
            [1.0, 1.0],
            [0.5, 0.5],
            [10.0, 10.0]
        ];
        let p = LofParams {
            n_neighbors: 3,
            metric: Metric::Euclidean,
        }
        .check()
        .unwrap();
        let mut w = Vec::new();
        let (_, scores) = Lof::fit(&p, x.view(), &mut w).unwrap();
        assert!(w.is_empty());
        assert!(scores[5] > 5.0, "{scores:?}");
        assert!(scores[..5].iter().all(|&s| s < 1.5), "{scores:?}");
    }

    #[test]
    fn too_many_neighbours_are_clamped_with_a_warning() {
        let x = array![[0.0], [1.0], [3.0]];
        let mut w = Vec::new();
        let (lof, _) = Lof::fit(&LofParams::default().check().unwrap(), x.view(), &mut w).unwrap();
        assert_eq!(lof.n_neighbors(), 2);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn feature_shares_sum_to_the_factor_and_follow_the_far_feature() {
        let x = array![
            [0.0, 0.0],
            [0.0, 1.0],
            [1.0, 0.0],
            [1.0, 1.0],
            [0.5, 0.5],
            [0.3, 0.8]
        ];
        let p = LofParams {
            n_neighbors: 3,
            metric: Metric::Euclidean,
        }
        .check()
        .unwrap();
        let (lof, _) = Lof::fit(&p, x.view(), &mut Vec::new()).unwrap();
        let rows = array![[0.5, 0.6], [0.5, 7.0], [-6.0, 0.5]];
        let shares = lof.contributions(rows.view());
        let scores = lof.score_novel(rows.view());
        for (i, score) in scores.iter().enumerate() {
            let sum: f64 = shares.row(i).sum();
            assert!((sum - score).abs() < 1e-12, "{sum} vs {score}");
        }
        assert!(shares[[1, 1]] > shares[[1, 0]], "{shares}");
        assert!(shares[[2, 0]] > shares[[2, 1]], "{shares}");
    }
}
