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

    #[test]
    fn a_rows_feature_terms_sum_to_its_score_and_the_extreme_feature_leads() {
        let x = array![
            [1.0, 5.0, 0.3],
            [1.1, 5.2, 0.1],
            [0.9, 4.9, 0.2],
            [1.0, 5.1, 0.4],
            [1.2, 5.0, 0.5],
            [0.8, 4.8, 0.3]
        ];
        let (model, _) = Copod::fit(x.view());
        let rows = array![[1.0, 5.05, 0.3], [1.05, 40.0, 0.25], [-3.0, 5.0, 0.2]];
        let terms = model.contributions(rows.view());
        let scores = model.score_novel(rows.view());
        for (i, score) in scores.iter().enumerate() {
            let sum: f64 = terms.row(i).sum();
            assert!(
                (sum - score).abs() <= 1e-12 * score.abs().max(1.0),
                "{sum} vs {score}"
            );
            assert!(terms.row(i).iter().all(|&t| t >= 0.0), "{terms}");
        }
        assert!(
            terms[[1, 1]] > terms[[1, 0]] && terms[[1, 1]] > terms[[1, 2]],
            "{terms}"
        );
        assert!(
            terms[[2, 0]] > terms[[2, 1]] && terms[[2, 0]] > terms[[2, 2]],
            "{terms}"
        );
    }
}
