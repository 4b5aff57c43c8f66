//! # COPOD: copula-based outlier detection
//!
//! Li, Zhao, Botta, Ionescu & Hu, "COPOD: Copula-Based Outlier Detection" (ICDM 2020), as
//! PyOD's `COPOD` computes it: with the empirical copula's tail terms U_l, U_r and the
//! skew-picked U_skew of each feature ([`crate::tails`]), the row's score is
//! Σⱼ max(U_skew, (U_l + U_r) / 2). Higher = more anomalous. No parameters, no
//! randomness: the scores equal PyOD's to the last digits of the logarithms and the sum.
//!
//! A constant feature, for which PyOD returns NaN for every row, contributes
//! (U_l + U_r) / 2 (0 for a constant column).
//!
//! ## Cost
//! As ECOD's: O(d · n log n) to fit, O(d log n) per new row, n · d values kept.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::tails::{self, Skew, Tails};

/// A fitted COPOD model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Copod {
    tails: Tails,
}

/// One feature's term.
fn term(skew: Skew, left: f64, right: f64) -> f64 {
    let both = (left + right) / 2.0;
    skew.pick(left, right).map_or(both, |s| s.max(both))
}

impl Copod {
    /// Fits on `x` (validated) and returns the model and the training rows' scores.
    pub(crate) fn fit(x: ArrayView2<'_, f64>) -> (Self, Vec<f64>) {
        let (tails, training) = Tails::fit(x);
        let scores = tails::training_scores(&tails, &training, term);
        (Self { tails }, scores)
    }

    /// Novelty scores of new rows (validated, with the model's width).
    pub(crate) fn score_novel(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        tails::novel_scores(&self.tails, x, term)
    }

    /// Checks a deserialized model's invariants against the model's width.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        self.tails.check(n_features)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn the_extreme_row_scores_highest() {
        let x = array![[1.0, 5.0], [1.1, 5.2], [0.9, 4.9], [1.0, 5.1], [7.0, -3.0]];
        let (_, scores) = Copod::fit(x.view());
        let top = scores.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(scores[4], top);
    }
}
