//! # DBSCAN
//!
//! Ester, Kriegel, Sander & Xu, "A Density-Based Algorithm for Discovering Clusters in
//! Large Spatial Databases with Noise" (KDD 1996), with scikit-learn's `DBSCAN` semantics
//! for the clusters:
//!
//! - a row's ε-neighbourhood is every training row at distance ≤ `eps`, itself included;
//! - a row is a core row when its neighbourhood holds at least `min_samples` rows;
//! - clusters grow from core rows taken in row order (scikit-learn's `dbscan_inner`): a
//!   border row joins the first cluster that reaches it; rows no cluster reaches are noise
//!   (label −1). The labels equal scikit-learn's ([`cluster_labels`]).
//!
//! The anomaly score is the distance to the nearest core row (0 for a core row), so a
//! border row scores at most `eps` and a noise row more: with `contamination: "auto"` the
//! threshold is `eps` and the rows labelled −1 are exactly scikit-learn's noise. A new row
//! is scored the same way against the fitted core rows (novelty scoring). Data without a
//! single core row is an error naming `eps` (no distance to a core row exists).
//!
//! ## Cost
//! One radius query per row through the k-d tree (brute force from 16 dimensions): about
//! O(n log n + n · m) for m rows per neighbourhood, O(n²) in the worst case; the
//! neighbourhoods are held while clustering (n · m positions). The model keeps the core
//! rows and their index.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::kdtree::NeighborIndex;
use crate::params::{Checked, DbscanParams, Metric};

/// A fitted DBSCAN model: the index of its core rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Dbscan {
    core: NeighborIndex,
}

/// scikit-learn's `DBSCAN(eps, min_samples, metric).fit(x).labels_` (input validated):
/// cluster numbers from 0 in the order clusters are found, −1 for noise; and whether each
/// row is a core row.
pub fn cluster_labels(
    x: ArrayView2<'_, f64>,
    eps: f64,
    min_samples: usize,
    metric: Metric,
) -> (Vec<i64>, Vec<bool>) {
    let (n, dim) = x.dim();
    let x = x.as_standard_layout();
    let data = x.as_slice().expect("standard layout is contiguous");
    let index = NeighborIndex::build(data, dim, metric);
    // Each row's neighbourhood, as input rows.
    let neighbourhoods: Vec<Vec<u32>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut found = Vec::new();
            index.within(&data[i * dim..(i + 1) * dim], eps, &mut found);
            found
                .iter_mut()
                .for_each(|p| *p = index.original(*p as usize) as u32);
            found
        })
        .collect();
    let core: Vec<bool> = neighbourhoods
        .iter()
        .map(|nb| nb.len() >= min_samples)
        .collect();
    let mut labels = vec![-1i64; n];
    let mut next = 0;
    let mut stack = Vec::new();
    for start in 0..n {
        if labels[start] != -1 || !core[start] {
            continue;
        }
        let mut i = start;
        loop {
            if labels[i] == -1 {
                labels[i] = next;
                if core[i] {
                    stack.extend(
                        neighbourhoods[i]
                            .iter()
                            .map(|&j| j as usize)
                            .filter(|&j| labels[j] == -1),
                    );
                }
            }
            match stack.pop() {
                Some(j) => i = j,
                None => break,
            }
        }
        next += 1;
    }
    (labels, core)
}

impl Dbscan {
    /// Fits on `x` (validated) and returns the model and the training rows' scores.
    ///
    /// # Errors
    /// [`DetectError::InvalidParameter`] naming `eps` when no row is a core row.
    pub(crate) fn fit(
        params: &Checked<DbscanParams>,
        x: ArrayView2<'_, f64>,
    ) -> Result<(Self, Vec<f64>), DetectError> {
        let (_, core) = cluster_labels(x, params.eps, params.min_samples, params.metric);
        let dim = x.ncols();
        let core_rows: Vec<f64> = x
            .outer_iter()
            .zip(&core)
            .filter(|(_, c)| **c)
            .flat_map(|(r, _)| r.to_vec())
            .collect();
        if core_rows.is_empty() {
            return Err(DetectError::InvalidParameter {
                name: "eps".into(),
                reason: format!(
                    "no row has {} rows within eps = {}: every row would be noise; \
                     increase eps or decrease min_samples",
                    params.min_samples, params.eps
                ),
            });
        }
        let model = Self {
            core: NeighborIndex::build(&core_rows, dim, params.metric),
        };
        let mut scores = model.score(x);
        // A core row is its own nearest core row: exactly 0.
        for (s, c) in scores.iter_mut().zip(&core) {
            if *c {
                *s = 0.0;
            }
        }
        Ok((model, scores))
    }

    /// Distance from each row (validated, with the model's width) to the nearest core row.
    pub(crate) fn score(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        let x = x.as_standard_layout();
        let data = x.as_slice().expect("standard layout is contiguous");
        self.core.map_query_neighbors(data, 1, |d, _| d[0])
    }

    /// Each row's per-feature shares of its score (rows validated, with the model's
    /// width): the distance to the nearest core row, split over the features in
    /// proportion to their terms of the reduced distance to that row (squared differences
    /// for euclidean). A row's shares are ≥ 0 and sum to its score (all 0 for a row on a
    /// core row).
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let x = x.as_standard_layout();
        let data = x.as_slice().expect("standard layout is contiguous");
        let dim = x.ncols();
        let rows = self.core.map_query_rows(data, 1, |row, d, p| {
            let mut out = vec![0.0; dim];
            self.core.add_shares(row, p[0] as usize, d[0], &mut out);
            out
        });
        Array2::from_shape_vec((rows.len(), dim), rows.concat())
            .expect("one share per feature and row")
    }

    /// Checks a deserialized model's invariants against the model's width.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        self.core.check(n_features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamGuard;
    use ndarray::array;

    #[test]
    fn two_clusters_a_border_row_and_noise() {
        let x = array![
            [0.0, 0.0],
            [0.0, 0.1],
            [0.1, 0.0],
            [5.0, 5.0],
            [5.0, 5.1],
            [5.1, 5.0],
            [0.0, 0.3],
            [9.0, -9.0]
        ];
        let (labels, core) = cluster_labels(x.view(), 0.25, 3, Metric::Euclidean);
        assert_eq!(labels, vec![0, 0, 0, 1, 1, 1, 0, -1]);
        assert_eq!(core, vec![true, true, true, true, true, true, false, false]);
    }

    #[test]
    fn feature_shares_sum_to_the_distance_to_the_nearest_core_row() {
        let x = array![[0.0, 0.0], [0.0, 0.1], [0.1, 0.0], [0.1, 0.1], [3.0, 3.0]];
        let p = DbscanParams {
            eps: 0.2,
            min_samples: 3,
            metric: Metric::Euclidean,
        }
        .check()
        .unwrap();
        let (model, _) = Dbscan::fit(&p, x.view()).unwrap();
        let rows = array![[0.05, 0.05], [0.05, 4.0], [-2.0, 0.1]];
        let shares = model.contributions(rows.view());
        let scores = model.score(rows.view());
        for (i, score) in scores.iter().enumerate() {
            let sum: f64 = shares.row(i).sum();
            assert!((sum - score).abs() < 1e-12, "{sum} vs {score}");
        }
        assert!(shares[[1, 1]] > shares[[1, 0]], "{shares}");
        assert!(shares[[2, 0]] > shares[[2, 1]], "{shares}");
    }
}
