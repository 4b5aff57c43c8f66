//! # ECOD: empirical-cumulative-distribution-based outlier detection
//!
//! Li, Zhao, Hu, Botta, Ionescu & Chen, "ECOD: Unsupervised Outlier Detection Using
//! Empirical Cumulative Distribution Functions" (IEEE TKDE 2022), as PyOD's `ECOD`
//! computes it: per feature j, the tail terms U_l = −ln F̂ⱼ(x), U_r = −ln(1 − F̂ⱼ(x⁻)) and
//! the skew-picked one (U_r for a positively skewed feature, U_l for a negative one, their
//! sum for a skew of exactly zero; [`crate::tails`]); the row's score is
//! Σⱼ max(U_l, U_r, U_skew). Higher = more anomalous. No parameters, no randomness:
//! the scores equal PyOD's to the last digits of the logarithms and the sum.
//!
//! A constant feature, for which PyOD returns NaN for every row, contributes
//! max(U_l, U_r) (0 for a constant column).
//!
//! ## Cost
//! O(d · n log n) to fit (a sort per feature, in parallel), O(d log n) per new row;
//! the model keeps the sorted training columns (n · d values).

use crate::tails::{Skew, TailModel, TailRule};

/// A fitted ECOD model.
pub type Ecod = TailModel<EcodRule>;

/// ECOD's rule for one feature's term.
#[derive(Debug, Clone, Copy)]
pub struct EcodRule;

impl TailRule for EcodRule {
    fn term(skew: Skew, left: f64, right: f64) -> f64 {
        let tail = left.max(right);
        skew.pick(left, right).map_or(tail, |s| s.max(tail))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn the_extreme_row_scores_highest() {
        let x = array![[1.0, 5.0], [1.1, 5.2], [0.9, 4.9], [1.0, 5.1], [7.0, -3.0]];
        let (model, scores) = Ecod::fit(x.view());
        let top = scores.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(scores[4], top);
        let novel = model.score_novel(array![[1.0, 5.05], [20.0, 5.0]].view());
        assert!(novel[1] > novel[0], "{novel:?}");
    }
}
