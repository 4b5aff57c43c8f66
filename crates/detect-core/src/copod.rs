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

use crate::tails::{Skew, TailModel, TailRule};

/// A fitted COPOD model.
pub type Copod = TailModel<CopodRule>;

/// COPOD's rule for one feature's term.
#[derive(Debug, Clone, Copy)]
pub struct CopodRule;

impl TailRule for CopodRule {
    fn term(skew: Skew, left: f64, right: f64) -> f64 {
        let both = (left + right) / 2.0;
        skew.pick(left, right).map_or(both, |s| s.max(both))
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
