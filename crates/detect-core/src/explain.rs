//! Per-feature explanations: which features make a row anomalous.
//!
//! Every detector splits a row's anomaly score over the features in its own natural way
//! (its `contributions`: one non-negative value per row and feature, larger = more
//! responsible for the score):
//!
//! - ECOD, COPOD ([`crate::tails`]): the per-feature terms of the score's sum — for ECOD
//!   the −ln tail probability of the tail the score picks; they sum to the score;
//! - HBOS ([`crate::hbos`]): each feature's −log₂(density + alpha) above the lowest its
//!   histogram allows; they sum to the score minus the lowest possible score;
//! - PCA ([`crate::pca`]): the per-feature summands of the row's distance to each selected
//!   component, in the standardized space; they sum to the score;
//! - GMM ([`crate::gmm`]): the conditional terms of the Mahalanobis distance (how far each
//!   feature is from what the others predict);
//! - MCD ([`crate::mcd`]): |c_f · (P c)_f| with c the row less the robust location and P the
//!   robust precision: the terms of the squared Mahalanobis distance, made non-negative
//!   (they sum to the score when none is negative);
//! - CBLOF ([`crate::cblof`]): the per-feature squared differences to the centre the score
//!   uses;
//! - KNN, LOF, DBSCAN, INNE ([`crate::knn`], [`crate::lof`], [`crate::dbscan`],
//!   [`crate::inne`]): the score split over the features in proportion to their parts of
//!   the (squared) distance to the neighbours, nearest core row or centres the score uses;
//!   they sum to the score;
//! - isolation forest ([`crate::iforest`]): Local-DIFFI, the depth-weighted importance of
//!   the features split on along the row's paths.
//!
//! [`crate::FittedModel::explain`] turns them into each row's `top_k` features, in
//! decreasing order of contribution (ties: the lower feature index first), each
//! contribution **normalised so that a row's contributions over all its features (not
//! only the top ones) sum to 1**. A row whose contributions are all 0 (a row nothing in
//! the model finds unusual, e.g. on a core row of DBSCAN) gets 1 / n_features for every
//! feature; where contributions are infinite (HBOS with `alpha` 0 and an empty bin), the
//! infinite ones share 1 equally and the others get 0.
//!
//! Cost: each detector's contributions walk the same trees, neighbours, histograms or
//! components as its score, in parallel over rows, plus a few operations per feature;
//! then O(d k) per row to keep its k top features, each row's list its own allocation.
//! `benches/score.rs` times the isolation forest's explanations beside its scoring, and
//! `bench-tools`' `explain-cost` every detector's (figures in BENCHMARKS.md): for the
//! detectors that score a row in tens of nanoseconds the per-row list costs more than the
//! scoring.

use ndarray::{ArrayView1, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// One feature's share of a row's anomaly: `feature` is the column index (0-based),
/// `contribution` its normalised share in [0, 1] (a row's shares over all features sum
/// to 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureContribution {
    pub feature: usize,
    pub contribution: f64,
}

/// How many features the service's `explain` options show per row when not told: 3, or
/// every feature when there are fewer.
pub const DEFAULT_TOP_K: usize = 3;

/// The name the service gives column `index` of data without feature names: `x0`, `x1`,
/// … (as drift reports name them).
pub fn column_name(index: usize) -> String {
    format!("x{index}")
}

/// A row's explanation as one CSV field (the batch outputs' and `pynomaly detect`'s
/// `explanation` column): `name:share` pairs joined by `;`, quoted as RFC 4180 quotes
/// when a name holds a comma, a quote or a line break.
pub fn csv_cell(row: &[FeatureContribution], names: &[String]) -> String {
    use std::fmt::Write as _;
    let mut cell = String::new();
    for (j, c) in row.iter().enumerate() {
        if j > 0 {
            cell.push(';');
        }
        let _ = write!(cell, "{}:{}", names[c.feature], c.contribution);
    }
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

/// A row's contributions normalised to sum to 1 (see the module docs for all-zero and
/// infinite rows).
pub fn normalise(raw: &[f64]) -> Vec<f64> {
    let shares = Shares::of(raw.iter().copied());
    raw.iter().map(|&c| shares.of_one(c)).collect()
}

/// What [`normalise`] divides by, read off a row once.
struct Shares {
    infinite: usize,
    total: f64,
    width: usize,
}

impl Shares {
    fn of(row: impl Iterator<Item = f64> + Clone) -> Self {
        Self {
            infinite: row.clone().filter(|c| c.is_infinite()).count(),
            total: row.clone().map(|c| c.max(0.0)).sum(),
            width: row.count(),
        }
    }

    /// The share of a contribution `c` of the row.
    fn of_one(&self, c: f64) -> f64 {
        if self.infinite > 0 {
            if c.is_infinite() {
                1.0 / self.infinite as f64
            } else {
                0.0
            }
        } else if self.total > 0.0 {
            c.max(0.0) / self.total
        } else {
            1.0 / self.width as f64
        }
    }
}

/// Each row's `top_k` features by contribution (`top_k` at most the row width),
/// normalised as [`normalise`] does, in decreasing order (ties: lower index first).
pub fn top_features(
    contributions: ArrayView2<'_, f64>,
    top_k: usize,
) -> Vec<Vec<FeatureContribution>> {
    let rank = |row: ArrayView1<'_, f64>| {
        let copied;
        let row = match row.as_slice() {
            Some(row) => row,
            None => {
                copied = row.to_vec();
                &copied
            }
        };
        let shares = Shares::of(row.iter().copied());
        // The k largest so far, largest first: a feature goes after every one whose share
        // is at least its own, so equal shares keep the lower index first.
        let mut top: Vec<FeatureContribution> = Vec::with_capacity(top_k + 1);
        for (feature, &c) in row.iter().enumerate() {
            let contribution = shares.of_one(c);
            if top.len() == top_k && top[top_k - 1].contribution.total_cmp(&contribution).is_ge() {
                continue;
            }
            let at = top.partition_point(|t| t.contribution.total_cmp(&contribution).is_ge());
            top.insert(
                at,
                FeatureContribution {
                    feature,
                    contribution,
                },
            );
            top.truncate(top_k);
        }
        top
    };
    // Entering the thread pool costs more than ranking a few rows.
    if contributions.nrows() < PARALLEL_MIN_ROWS {
        contributions.outer_iter().map(rank).collect()
    } else {
        contributions
            .outer_iter()
            .into_par_iter()
            .with_min_len(PARALLEL_MIN_ROWS)
            .map(rank)
            .collect()
    }
}

/// Rows below which ranking stays on the calling thread.
const PARALLEL_MIN_ROWS: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn rows_are_normalised_over_all_features_and_ranked() {
        let c = array![
            [1.0, 3.0, 0.0, 4.0],
            [0.0, 0.0, 0.0, 0.0],
            [2.0, f64::INFINITY, 1.0, f64::INFINITY]
        ];
        let top = top_features(c.view(), 2);
        let f = |r: &Vec<FeatureContribution>| {
            r.iter()
                .map(|c| (c.feature, c.contribution))
                .collect::<Vec<_>>()
        };
        assert_eq!(f(&top[0]), vec![(3, 0.5), (1, 0.375)]);
        assert_eq!(f(&top[1]), vec![(0, 0.25), (1, 0.25)]);
        assert_eq!(f(&top[2]), vec![(1, 0.5), (3, 0.5)]);
        let names: Vec<String> = ["a", "b,c", "d", "e"].map(String::from).to_vec();
        assert_eq!(csv_cell(&top[0], &names), "\"e:0.5;b,c:0.375\"");
        let quoted: Vec<String> = ["a", "b\"c", "d", "e"].map(String::from).to_vec();
        assert_eq!(csv_cell(&top[1], &quoted), "\"a:0.25;b\"\"c:0.25\"");
        let plain: Vec<String> = (0..4).map(column_name).collect();
        assert_eq!(csv_cell(&top[0], &plain), "x3:0.5;x1:0.375");
    }

    #[test]
    fn the_top_features_are_the_head_of_the_fully_sorted_shares() {
        let values = [0.0, 0.5, 0.5, 2.0, -1.0, 3.25, 0.5, 1e-300, 7.0, 2.0];
        let rows = ndarray::Array2::from_shape_fn((200, 7), |(i, j)| {
            values[(i * 7 + j * 3 + i / 5) % values.len()]
        });
        for k in 1..=7 {
            let top = top_features(rows.view(), k);
            for (row, got) in rows.outer_iter().zip(&top) {
                let shares = normalise(&row.to_vec());
                let mut order: Vec<usize> = (0..shares.len()).collect();
                order.sort_by(|&a, &b| shares[b].total_cmp(&shares[a]).then(a.cmp(&b)));
                let want: Vec<FeatureContribution> = order[..k]
                    .iter()
                    .map(|&feature| FeatureContribution {
                        feature,
                        contribution: shares[feature],
                    })
                    .collect();
                assert_eq!(got, &want, "{row}, top {k}");
            }
        }
    }
}
