//! Empirical tail probabilities per feature: the shared part of ECOD ([`crate::ecod`]) and
//! COPOD ([`crate::copod`]).
//!
//! For each feature j and row i, PyOD's `column_ecdf` gives the left tail
//! F̂ⱼ(xᵢⱼ) = #{k : xₖⱼ ≤ xᵢⱼ} / n and, applied to −X, the right tail #{k : xₖⱼ ≥ xᵢⱼ} / n,
//! each as the matching entry of `np.linspace(1/n, 1, n)` (so the value is the one NumPy
//! computes, `i · ((1 − 1/n)/(n − 1)) + 1/n`, not `(i + 1)/n`, which can differ in the last
//! bit). The detectors use U_l = −ln(left), U_r = −ln(right) and the sign of each feature's
//! skewness (`scipy.stats.skew`, biased), and differ only in how they combine them.
//!
//! A new row is scored as PyOD scores one row on its own (`decision_function(row[None])`):
//! the tails are counted, and the skewness signs computed, over the training rows plus
//! that row (n + 1 values), so the row's score does not depend on the other rows in the
//! request. The skewness with the row added comes from the training mean and centred sums
//! of squares and cubes, updated by Pébay's one-point formulas, in O(1) per feature.
//!
//! A feature whose skewness is undefined (scipy's test: m₂ ≤ (ε · mean)², a constant
//! column) makes PyOD's scores NaN for every row; here the skew-picked term is left out for
//! that feature instead, and the detector combines the two tails alone
//! ([`Skew::Undefined`]).
//!
//! ## Cost
//! Fit: one sort per feature, O(d · n log n), in parallel over features; the n logarithms
//! are taken once and shared by every feature, and each feature's pass writes its rows'
//! combined terms (one vector per feature, not a left and a right). Scoring a new row:
//! two binary searches per feature, O(d log n). Memory: the sorted training columns (n · d).

use std::marker::PhantomData;

use ndarray::{Array2, ArrayView1, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How a detector combines one feature's tail terms (ECOD's and COPOD's rules).
pub trait TailRule {
    /// The feature's term from its skewness sign and −ln of its left and right tails.
    fn term(skew: Skew, left: f64, right: f64) -> f64;
}

/// A fitted tail detector: the training tails, scored with rule `R`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct TailModel<R> {
    tails: Tails,
    rule: PhantomData<R>,
}

impl<R: TailRule> TailModel<R> {
    /// Fits on `x` (validated) and returns the model and the training rows' scores.
    pub(crate) fn fit(x: ArrayView2<'_, f64>) -> (Self, Vec<f64>) {
        let (tails, terms) = Tails::fit(x, R::term);
        let scores = training_scores(&terms, tails.n);
        let model = Self {
            tails,
            rule: PhantomData,
        };
        (model, scores)
    }

    /// Novelty scores of new rows (validated, with the model's width).
    pub(crate) fn score_novel(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        novel_scores(&self.tails, x, R::term)
    }

    /// Each new row's per-feature terms (rows validated, with the model's width): the
    /// term of feature j is the rule's combination of −ln of the row's tails in j (for
    /// ECOD the larger of U_l, U_r and the skew-picked tail), counted as
    /// [`TailModel::score_novel`] counts them, so a row's terms sum to its novelty score.
    /// Every term is ≥ 0 (a tail probability is at most 1).
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let tails = &self.tails;
        crate::rows::contribution_rows(x, tails.sorted.len(), |row, out| {
            for (j, (&v, o)) in row.iter().zip(out.iter_mut()).enumerate() {
                let (l, r) = tails.novel(j, v);
                *o = R::term(tails.novel_skew(j, v), l, r);
            }
        })
    }

    /// Checks a deserialized model's invariants against the model's width.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        self.tails.check(n_features)
    }
}

/// The sign of a feature's skewness, as PyOD's `np.sign(skew(X))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Skew {
    Negative,
    Zero,
    Positive,
    /// scipy's skewness is NaN (a constant column).
    Undefined,
}

impl Skew {
    /// PyOD's `U_l · −sign(s − 1) + U_r · sign(s + 1)`: the right tail for a positive
    /// skew, the left for a negative one, their sum for zero; `None` when undefined.
    pub fn pick(self, left: f64, right: f64) -> Option<f64> {
        match self {
            Skew::Negative => Some(left),
            Skew::Positive => Some(right),
            Skew::Zero => Some(left + right),
            Skew::Undefined => None,
        }
    }
}

/// The training columns, sorted, and their skewness signs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Tails {
    n: usize,
    /// Per feature: the n training values, ascending.
    sorted: Vec<Vec<f64>>,
    /// Per feature: the training moments, and the skewness sign they give.
    moments: Vec<Moments>,
    skew: Vec<Skew>,
}

/// `np.linspace(1/n, 1, n)[i]`.
#[inline]
fn linspace_probability(i: usize, n: usize) -> f64 {
    if i + 1 == n {
        return 1.0;
    }
    let start = 1.0 / n as f64;
    let step = (1.0 - start) / (n - 1) as f64;
    i as f64 * step + start
}

/// A column's count, mean and centred sums of squares and cubes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Moments {
    n: f64,
    mean: f64,
    c2: f64,
    c3: f64,
}

impl Moments {
    fn of(column: ArrayView1<'_, f64>) -> Self {
        let n = column.len() as f64;
        let mean = column.iter().sum::<f64>() / n;
        let (mut c2, mut c3) = (0.0, 0.0);
        for &v in column {
            let d = v - mean;
            c2 += d * d;
            c3 += d * d * d;
        }
        Self { n, mean, c2, c3 }
    }

    /// The moments with one more value (Pébay 2008, eq. 2.1–2.2 with a one-point set).
    fn with(self, v: f64) -> Self {
        let Self { n, mean, c2, c3 } = self;
        let n1 = n + 1.0;
        let delta = v - mean;
        Self {
            n: n1,
            mean: mean + delta / n1,
            c2: c2 + delta * delta * n / n1,
            c3: c3 + delta * delta * delta * n * (n - 1.0) / (n1 * n1) - 3.0 * delta * c2 / n1,
        }
    }

    /// `np.sign(scipy.stats.skew(column))` (biased moments, scipy's test for an
    /// undefined skewness).
    fn skew(self) -> Skew {
        let (m2, m3) = (self.c2 / self.n, self.c3 / self.n);
        if m2 <= (f64::EPSILON * self.mean) * (f64::EPSILON * self.mean) {
            return Skew::Undefined;
        }
        let s = m3 / m2.powf(1.5);
        if s > 0.0 {
            Skew::Positive
        } else if s < 0.0 {
            Skew::Negative
        } else {
            Skew::Zero
        }
    }
}

#[cfg(test)]
fn skew_sign(column: &[f64]) -> Skew {
    Moments::of(ArrayView1::from(column)).skew()
}

impl Tails {
    /// Sorts the training columns and gives, per feature, `combine(skew, left, right)` of
    /// every training row (−ln of its tails).
    pub(crate) fn fit(
        x: ArrayView2<'_, f64>,
        combine: impl Fn(Skew, f64, f64) -> f64 + Sync,
    ) -> (Self, Vec<Vec<f64>>) {
        let n = x.nrows();
        // −ln of each of the n probabilities, computed once for every feature.
        let neg_ln: Vec<f64> = (0..n).map(|i| -linspace_probability(i, n).ln()).collect();
        // Per feature: sorted values, moments, and each row's term.
        type Feature = (Vec<f64>, Moments, Vec<f64>);
        let per_feature: Vec<Feature> = (0..x.ncols())
            .into_par_iter()
            .map(|j| {
                let column = x.column(j);
                let moments = Moments::of(column);
                let skew = moments.skew();
                // The order within a group of equal values does not matter: a group
                // shares its value and its tails.
                // Sorting (value, row) pairs keeps each comparison in cache (measured:
                // faster here than an LSD radix sort on the bits).
                let mut pairs: Vec<(f64, u32)> = column
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| (v, i as u32))
                    .collect();
                pairs.sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
                let mut terms = vec![0.0; n];
                // Walk the groups of equal values: a group [s, e] has n − s values at or
                // above it and e + 1 at or below it.
                let mut s = 0;
                while s < n {
                    let mut e = s;
                    while e + 1 < n && pairs[e + 1].0 == pairs[s].0 {
                        e += 1;
                    }
                    let term = combine(skew, neg_ln[e], neg_ln[n - s - 1]);
                    for &(_, i) in &pairs[s..=e] {
                        terms[i as usize] = term;
                    }
                    s = e + 1;
                }
                let sorted: Vec<f64> = pairs.into_iter().map(|p| p.0).collect();
                (sorted, moments, terms)
            })
            .collect();
        let mut tails = Self {
            n,
            sorted: Vec::with_capacity(per_feature.len()),
            moments: Vec::with_capacity(per_feature.len()),
            skew: Vec::with_capacity(per_feature.len()),
        };
        let mut terms = Vec::with_capacity(per_feature.len());
        for (sorted, moments, t) in per_feature {
            tails.sorted.push(sorted);
            tails.moments.push(moments);
            tails.skew.push(moments.skew());
            terms.push(t);
        }
        (tails, terms)
    }

    /// The skewness sign of feature `j` over the training values plus `v`.
    fn novel_skew(&self, j: usize, v: f64) -> Skew {
        self.moments[j].with(v).skew()
    }

    /// −ln of a new value's left and right tail in feature `j`, counted over the training
    /// values plus itself.
    pub(crate) fn novel(&self, j: usize, v: f64) -> (f64, f64) {
        let sorted = &self.sorted[j];
        let n1 = self.n + 1;
        let at_or_below = sorted.partition_point(|&t| t <= v);
        let at_or_above = self.n - sorted.partition_point(|&t| t < v);
        (
            -linspace_probability(at_or_below, n1).ln(),
            -linspace_probability(at_or_above, n1).ln(),
        )
    }

    /// Checks a deserialized model's invariants.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        if self.n < 2
            || self.sorted.len() != n_features
            || self.skew.len() != n_features
            || self.moments.len() != n_features
            || self.sorted.iter().any(|c| c.len() != self.n)
        {
            return Err("empirical CDF columns do not match the training set".into());
        }
        Ok(())
    }
}

/// Every training row's score: its features' terms summed in feature order.
fn training_scores(terms: &[Vec<f64>], n: usize) -> Vec<f64> {
    (0..n)
        .into_par_iter()
        .with_min_len(1024)
        .map(|i| terms.iter().map(|t| t[i]).sum())
        .collect()
}

/// Scores new rows against the training tails (see the module docs).
pub(crate) fn novel_scores(
    tails: &Tails,
    x: ArrayView2<'_, f64>,
    combine: impl Fn(Skew, f64, f64) -> f64 + Sync,
) -> Vec<f64> {
    crate::rows::score_rows(x, |row| {
        row.iter()
            .enumerate()
            .map(|(j, &v)| {
                let (l, r) = tails.novel(j, v);
                combine(tails.novel_skew(j, v), l, r)
            })
            .sum()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// ECOD's and COPOD's per-feature terms sum to the row's score, are never negative,
    /// and the feature a row is extreme in leads.
    fn feature_terms_sum_to_the_score<R: TailRule>() {
        let x = array![
            [1.0, 5.0, 0.3],
            [1.1, 5.2, 0.1],
            [0.9, 4.9, 0.2],
            [1.0, 5.1, 0.4],
            [1.2, 5.0, 0.5],
            [0.8, 4.8, 0.3]
        ];
        let (model, _) = TailModel::<R>::fit(x.view());
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

    #[test]
    fn ecod_and_copod_rows_feature_terms_sum_to_their_scores_and_the_extreme_feature_leads() {
        feature_terms_sum_to_the_score::<crate::ecod::EcodRule>();
        feature_terms_sum_to_the_score::<crate::copod::CopodRule>();
    }

    #[test]
    fn ties_share_the_largest_rank_and_tails_count_both_ways() {
        let x = array![[1.0], [2.0], [2.0], [3.0]];
        let (_, left) = Tails::fit(x.view(), |_, left, _| left);
        let (tails, right) = Tails::fit(x.view(), |_, _, right| right);
        let p = |i| -linspace_probability(i, 4).ln();
        assert_eq!(left[0], vec![p(0), p(2), p(2), 0.0]);
        assert_eq!(right[0], vec![0.0, p(2), p(2), p(0)]);
        // A new value among the training ones counts itself: 5 values.
        let q = |i| -linspace_probability(i, 5).ln();
        assert_eq!(tails.novel(0, 2.0), (q(3), q(3)));
        assert_eq!(tails.novel(0, 9.0), (0.0, q(0)));
    }

    #[test]
    fn skew_signs_follow_scipy() {
        assert_eq!(skew_sign(&[1.0, 1.0, 1.0, 10.0]), Skew::Positive);
        assert_eq!(skew_sign(&[-10.0, 1.0, 1.0, 1.0]), Skew::Negative);
        assert_eq!(skew_sign(&[1.0, 2.0, 3.0]), Skew::Zero);
        assert_eq!(skew_sign(&[4.0, 4.0, 4.0]), Skew::Undefined);
    }

    #[test]
    fn adding_a_value_updates_the_moments_as_recomputing_them() {
        let column = [0.5, 2.0, 2.5, 7.0, -1.0];
        let grown = Moments::of(ArrayView1::from(&column[..4])).with(column[4]);
        let direct = Moments::of(ArrayView1::from(&column));
        for (a, b) in [
            (grown.mean, direct.mean),
            (grown.c2, direct.c2),
            (grown.c3, direct.c3),
        ] {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "{grown:?} {direct:?}"
            );
        }
    }
}
