//! Evaluation metrics for labelled data: ROC-AUC and average precision, as
//! scikit-learn's `roc_auc_score` and `average_precision_score` compute them.
//!
//! Both start from the same curve (scikit-learn's `confusion_matrix_at_thresholds`): rows
//! sorted by decreasing score, one point per *distinct* score, holding the cumulative
//! true- and false-positive counts of every row scored at least that high. Rows with tied
//! scores therefore always enter the curve together, whatever their order in the input:
//! - ROC-AUC is the trapezoid area under (FPR, TPR) over those points, starting at (0, 0),
//!   so a tie between an outlier and an inlier counts as half a correct ranking.
//! - Average precision is the step sum `Σ (Rₙ − Rₙ₋₁) · Pₙ` over the same points
//!   (no interpolation), clipped at 0 as scikit-learn does.
//!
//! The arithmetic follows scikit-learn's operation by operation (including the collinear
//! points `roc_curve` drops and NumPy's pairwise summation), so results are bit-identical
//! to scikit-learn 1.9.1's (checked on 300 random sets of up to 200k rows, with and without
//! ties). Cost: a parallel sort of integer keys, O(n log n), then three linear passes;
//! memory: one copy of the scores (8 bytes a row), the curve itself is never stored.
//!
//! ```
//! use detect_core::metrics::{average_precision, roc_auc};
//!
//! // true = outlier; higher score = more anomalous.
//! let labels = [false, false, true, true];
//! let scores = [0.1, 0.4, 0.35, 0.8];
//! assert_eq!(roc_auc(&labels, &scores), Some(0.75));
//! assert!((average_precision(&labels, &scores).unwrap() - 0.8333333333333333).abs() < 1e-15);
//! // One class only: the metrics are undefined.
//! assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
//! ```

use rayon::prelude::*;

/// ROC-AUC and average precision of one set of scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankingMetrics {
    pub roc_auc: f64,
    pub average_precision: f64,
}

/// Both metrics from one sort, as [`roc_auc`] and [`average_precision`] compute them.
///
/// Returns `None` in the same cases as they do.
pub fn ranking_metrics(labels: &[bool], scores: &[f64]) -> Option<RankingMetrics> {
    let ranked = Ranked::new(labels, scores)?;
    let (n_points, n_kept) = ranked.count_points();
    Some(RankingMetrics {
        roc_auc: ranked.roc_auc(n_kept),
        average_precision: ranked.average_precision(n_points),
    })
}

/// Area under the ROC curve, as `sklearn.metrics.roc_auc_score(labels, scores)`.
///
/// `labels[i]` is `true` for an outlier (the positive class) and higher scores mean more
/// anomalous. Tied scores form one threshold (see the module docs).
///
/// Returns `None` when only one class is present (scikit-learn raises), when the slices
/// differ in length or are empty, or when a score is NaN or infinite.
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Option<f64> {
    let ranked = Ranked::new(labels, scores)?;
    Some(ranked.roc_auc(ranked.count_points().1))
}

/// Average precision, as `sklearn.metrics.average_precision_score(labels, scores)`:
/// `Σ (Rₙ − Rₙ₋₁) · Pₙ` over the distinct score thresholds, from the highest down.
///
/// `labels[i]` is `true` for an outlier (the positive class). Returns `None` when only one
/// class is present, when the slices differ in length or are empty, or when a score is NaN
/// or infinite.
pub fn average_precision(labels: &[bool], scores: &[f64]) -> Option<f64> {
    let ranked = Ranked::new(labels, scores)?;
    Some(ranked.average_precision(ranked.count_points().0))
}

/// The scores of the positives and of the negatives, each sorted from high to low, as
/// order-preserving integer keys (equal keys exactly when the scores are equal).
///
/// Walking both lists together visits the distinct thresholds in order without sorting
/// (score, label) pairs or storing the curve: the metrics cost one copy of the scores
/// (8 bytes a row), whatever the number of rows.
struct Ranked {
    pos: Vec<u64>,
    neg: Vec<u64>,
}

impl Ranked {
    fn new(labels: &[bool], scores: &[f64]) -> Option<Self> {
        if labels.len() != scores.len() || scores.iter().any(|s| !s.is_finite()) {
            return None;
        }
        let n_pos = labels.iter().filter(|&&l| l).count();
        if n_pos == 0 || n_pos == labels.len() {
            return None;
        }
        let mut pos = Vec::with_capacity(n_pos);
        let mut neg = Vec::with_capacity(labels.len() - n_pos);
        for (&l, &s) in labels.iter().zip(scores) {
            if l {
                pos.push(descending_key(s));
            } else {
                neg.push(descending_key(s));
            }
        }
        rayon::join(|| pos.par_sort_unstable(), || neg.par_sort_unstable());
        Some(Self { pos, neg })
    }

    fn n_pos(&self) -> f64 {
        self.pos.len() as f64
    }

    fn n_neg(&self) -> f64 {
        self.neg.len() as f64
    }

    /// `(false positives, true positives)` at each distinct threshold, highest first:
    /// the rows scored at least that high (scikit-learn's `confusion_matrix_at_thresholds`).
    fn descending(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let (pos, neg) = (&self.pos, &self.neg);
        let (mut i, mut j) = (0, 0);
        std::iter::from_fn(move || {
            // Keys ascend as scores descend: the highest score has the smallest key.
            let t = match (pos.get(i), neg.get(j)) {
                (None, None) => return None,
                (Some(&p), None) => p,
                (None, Some(&q)) => q,
                (Some(&p), Some(&q)) => p.min(q),
            };
            while i < pos.len() && pos[i] == t {
                i += 1;
            }
            while j < neg.len() && neg[j] == t {
                j += 1;
            }
            Some((j as u64, i as u64))
        })
    }

    /// `(false positives, true positives, positives scored exactly at the threshold)` at
    /// each distinct threshold, lowest first.
    fn ascending(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        let (pos, neg) = (&self.pos, &self.neg);
        let (mut i, mut j) = (pos.len(), neg.len());
        std::iter::from_fn(move || {
            let t = match (i.checked_sub(1), j.checked_sub(1)) {
                (None, None) => return None,
                (Some(a), None) => pos[a],
                (None, Some(b)) => neg[b],
                (Some(a), Some(b)) => pos[a].max(neg[b]),
            };
            let (fp, tp) = (j as u64, i as u64);
            while i > 0 && pos[i - 1] == t {
                i -= 1;
            }
            while j > 0 && neg[j - 1] == t {
                j -= 1;
            }
            Some((fp, tp, tp - i as u64))
        })
    }

    /// The points `roc_curve(drop_intermediate=True)` keeps: the ends, and every point where
    /// the second difference of either coordinate (over the original neighbours) is non-zero.
    fn roc_points(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut points = self.descending().peekable();
        let mut prev: Option<(u64, u64)> = None;
        std::iter::from_fn(move || {
            loop {
                let cur = points.next()?;
                let keep = keeps(prev, cur, points.peek().copied());
                prev = Some(cur);
                if keep {
                    return Some(cur);
                }
            }
        })
    }

    /// The number of distinct thresholds, and of the points the ROC curve keeps.
    fn count_points(&self) -> (usize, usize) {
        let mut points = self.descending().peekable();
        let (mut n_points, mut n_kept) = (0, 0);
        let mut prev = None;
        while let Some(cur) = points.next() {
            n_points += 1;
            n_kept += usize::from(keeps(prev, cur, points.peek().copied()));
            prev = Some(cur);
        }
        (n_points, n_kept)
    }

    /// `numpy.trapezoid(tpr, fpr)` over the `n_kept` kept points, after (0, 0).
    fn roc_auc(&self, n_kept: usize) -> f64 {
        let (n_neg, n_pos) = (self.n_neg(), self.n_pos());
        let n_terms = n_kept;
        let mut prev = (0.0, 0.0);
        let mut terms = self.roc_points().map(|(fp, tp)| {
            let cur = (fp as f64 / n_neg, tp as f64 / n_pos);
            // diff(x) * (y[1:] + y[:-1]) / 2.0
            let term = (cur.0 - prev.0) * (cur.1 + prev.1) / 2.0;
            prev = cur;
            term
        });
        numpy_sum(&mut terms, n_terms)
    }

    /// `-Σ diff(recall) · precision[:-1]` over precision_recall_curve's reversed arrays
    /// (recall decreasing, precision 1 appended at recall 0), clipped at 0.
    fn average_precision(&self, n_points: usize) -> f64 {
        let n_pos = self.n_pos();
        let n_terms = n_points;
        let mut terms = self.ascending().map(|(fp, tp, at)| {
            let predicted = (tp + fp) as f64;
            let precision = if predicted != 0.0 {
                tp as f64 / predicted
            } else {
                0.0
            };
            // recall at the next (higher) threshold minus recall here.
            let recall = tp as f64 / n_pos;
            let recall_above = (tp - at) as f64 / n_pos;
            (recall_above - recall) * precision
        });
        let ap = -numpy_sum(&mut terms, n_terms);
        if ap > 0.0 { ap } else { 0.0 }
    }
}

/// Whether `roc_curve(drop_intermediate=True)` keeps point `cur` between `prev` and `next`
/// (the curve's ends are always kept): where the second difference of either coordinate
/// is non-zero.
fn keeps(prev: Option<(u64, u64)>, cur: (u64, u64), next: Option<(u64, u64)>) -> bool {
    match (prev, next) {
        (Some(a), Some(c)) => {
            let d2 = |a: u64, b: u64, c: u64| (c as i128 - b as i128) - (b as i128 - a as i128);
            d2(a.0, cur.0, c.0) != 0 || d2(a.1, cur.1, c.1) != 0
        }
        _ => true,
    }
}

/// A key whose unsigned order is the scores' descending order; -0.0 and 0.0 share a key,
/// as they are one threshold in NumPy.
fn descending_key(score: f64) -> u64 {
    let bits = (score + 0.0).to_bits();
    let ascending = if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    };
    !ascending
}

/// `numpy.sum` of `n` float64 values taken in order from `values`: NumPy's `pairwise_sum`
/// (eight accumulators over blocks of up to 128 values, recursive halves above that), which
/// is both what scikit-learn gets and more accurate than a running sum. The halves are
/// consumed left to right, so the values can be produced on the fly.
fn numpy_sum(values: &mut impl Iterator<Item = f64>, n: usize) -> f64 {
    if n == 0 { 0.0 } else { pairwise_sum(values, n) }
}

fn pairwise_sum(values: &mut impl Iterator<Item = f64>, n: usize) -> f64 {
    const BLOCK: usize = 128;
    let mut next = || values.next().unwrap_or(0.0);
    if n < 8 {
        let mut res = -0.0;
        for _ in 0..n {
            res += next();
        }
        res
    } else if n <= BLOCK {
        let mut r = [0.0f64; 8];
        for acc in &mut r {
            *acc = next();
        }
        let whole = n - n % 8;
        for _ in (8..whole).step_by(8) {
            for acc in &mut r {
                *acc += next();
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for _ in whole..n {
            res += next();
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        let left = pairwise_sum(values, n2);
        left + pairwise_sum(values, n - n2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn perfect_ranking_scores_one() {
        let labels = [false, false, false, true, true];
        let scores = [0.1, 0.2, 0.3, 0.8, 0.9];
        assert_eq!(roc_auc(&labels, &scores), Some(1.0));
        assert_eq!(average_precision(&labels, &scores), Some(1.0));
    }

    #[test]
    fn reversed_ranking_scores_zero_roc_auc() {
        let labels = [true, true, false, false];
        let scores = [0.1, 0.2, 0.3, 0.4];
        assert_eq!(roc_auc(&labels, &scores), Some(0.0));
        // Precision at the two thresholds that reach the positives: 1/3 and 2/4.
        // AP = 0.5 * 1/3 + 0.5 * 2/4 = 5/12.
        assert_relative_eq!(average_precision(&labels, &scores).unwrap(), 5.0 / 12.0);
    }

    #[test]
    fn scikit_learn_docstring_example() {
        // sklearn's roc_auc_score / average_precision_score docs: 0.75 and 0.8333...
        let labels = [false, false, true, true];
        let scores = [0.1, 0.4, 0.35, 0.8];
        assert_eq!(roc_auc(&labels, &scores), Some(0.75));
        assert_relative_eq!(average_precision(&labels, &scores).unwrap(), 5.0 / 6.0);
    }

    #[test]
    fn a_tie_across_classes_counts_half() {
        // Scores: o=0.9, {o,i}=0.5, i=0.1. Pairs (o, i): 4; correctly ordered: 3, tied: 1.
        // AUC = (3 + 0.5) / 4 = 0.875.
        let labels = [true, true, false, false];
        let scores = [0.9, 0.5, 0.5, 0.1];
        assert_eq!(roc_auc(&labels, &scores), Some(0.875));
        // Thresholds: 0.9 -> (tp 1, fp 0), P=1, R=1/2; 0.5 -> (2, 1), P=2/3, R=1.
        // AP = 1/2 * 1 + 1/2 * 2/3 = 5/6.
        assert_relative_eq!(average_precision(&labels, &scores).unwrap(), 5.0 / 6.0);
    }

    #[test]
    fn ties_do_not_depend_on_input_order() {
        let labels = [false, true, false, true, false, false, true];
        let scores = [0.3, 0.3, 0.3, 0.7, 0.1, 0.7, 0.3];
        let auc = roc_auc(&labels, &scores).unwrap();
        let ap = average_precision(&labels, &scores).unwrap();
        let mut idx: Vec<usize> = (0..labels.len()).collect();
        idx.reverse();
        let l2: Vec<bool> = idx.iter().map(|&i| labels[i]).collect();
        let s2: Vec<f64> = idx.iter().map(|&i| scores[i]).collect();
        assert_eq!(roc_auc(&l2, &s2), Some(auc));
        assert_eq!(average_precision(&l2, &s2), Some(ap));
        // By hand: thresholds 0.7 -> (tp 1, fp 1); 0.3 -> (3, 3); 0.1 -> (3, 4).
        // ROC points (0,0), (1/4,1/3), (3/4,1), (1,1): area = 1/24 + 1/3 + 1/4 = 15/24.
        assert_relative_eq!(auc, 15.0 / 24.0);
        // AP = 1/3 * 1/2 + 2/3 * 3/6 + 0 * 3/7 = 1/2.
        assert_relative_eq!(ap, 0.5);
    }

    #[test]
    fn all_scores_tied_is_chance() {
        let labels = [true, false, false, true, false];
        let scores = [1.0; 5];
        assert_eq!(roc_auc(&labels, &scores), Some(0.5));
        // One threshold: precision = share of positives = 2/5, recall 1.
        assert_relative_eq!(average_precision(&labels, &scores).unwrap(), 0.4);
    }

    #[test]
    fn one_class_gives_none() {
        assert_eq!(roc_auc(&[false, false], &[0.1, 0.2]), None);
        assert_eq!(average_precision(&[true, true], &[0.1, 0.2]), None);
        assert_eq!(roc_auc(&[], &[]), None);
    }

    #[test]
    fn mismatched_or_non_finite_input_gives_none() {
        assert_eq!(roc_auc(&[true, false], &[0.1]), None);
        assert_eq!(average_precision(&[true, false], &[0.1, f64::NAN]), None);
    }

    #[test]
    fn large_input_matches_the_rank_formula() {
        // Mann-Whitney: AUC = (Σ ranks of positives - P(P+1)/2) / (P N), mid-ranks for ties.
        let n = 5000;
        let mut state = 12345u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let labels: Vec<bool> = (0..n).map(|_| next() % 10 == 0).collect();
        // Coarse scores so there are many ties; positives shifted up.
        let scores: Vec<f64> = labels
            .iter()
            .map(|&l| (next() % 50) as f64 + if l { 10.0 } else { 0.0 })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let mut ranks = vec![0.0; n];
        let mut i = 0;
        while i < n {
            let mut j = i;
            while j + 1 < n && scores[order[j + 1]] == scores[order[i]] {
                j += 1;
            }
            let mid = (i + j) as f64 / 2.0 + 1.0;
            for &k in &order[i..=j] {
                ranks[k] = mid;
            }
            i = j + 1;
        }
        let p = labels.iter().filter(|&&l| l).count() as f64;
        let q = n as f64 - p;
        let rank_sum: f64 = (0..n).filter(|&k| labels[k]).map(|k| ranks[k]).sum();
        let expected = (rank_sum - p * (p + 1.0) / 2.0) / (p * q);
        assert_relative_eq!(
            roc_auc(&labels, &scores).unwrap(),
            expected,
            epsilon = 1e-12
        );
    }

    #[test]
    fn pairwise_sum_matches_a_plain_sum_on_exact_values() {
        let sum = |v: &[f64]| numpy_sum(&mut v.iter().copied(), v.len());
        let v: Vec<f64> = (0..1000).map(f64::from).collect();
        assert_eq!(sum(&v), 499_500.0);
        assert_eq!(sum(&[]), 0.0);
        assert_eq!(sum(&[2.5]), 2.5);
    }

    #[test]
    fn keys_sort_scores_from_high_to_low() {
        let mut state = 99u64;
        let mut scores: Vec<f64> = (0..5000)
            .map(|i| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                if i % 10 == 0 {
                    (v * 10.0).round()
                } else {
                    v * 1e3
                }
            })
            .collect();
        scores.extend([0.0, -0.0, 1e-310, -1e-310, f64::MAX, f64::MIN]);
        let mut keys: Vec<u64> = scores.iter().map(|&s| descending_key(s)).collect();
        keys.sort_unstable();
        let mut sorted = scores.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        let expected: Vec<u64> = sorted.iter().map(|&s| descending_key(s)).collect();
        assert_eq!(keys, expected);
        assert_eq!(descending_key(0.0), descending_key(-0.0));
    }

    #[test]
    fn both_metrics_at_once_equal_the_separate_ones() {
        let labels = [false, true, false, true, false, false, true];
        let scores = [0.3, 0.3, 0.3, 0.7, 0.1, 0.7, 0.3];
        let m = ranking_metrics(&labels, &scores).unwrap();
        assert_eq!(Some(m.roc_auc), roc_auc(&labels, &scores));
        assert_eq!(
            Some(m.average_precision),
            average_precision(&labels, &scores)
        );
        assert_eq!(ranking_metrics(&[true], &[1.0]), None);
    }
}
