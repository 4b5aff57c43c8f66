//! # HBOS: histogram-based outlier score
//!
//! Goldstein & Dengel, "Histogram-based Outlier Score (HBOS): A fast Unsupervised Anomaly
//! Detection Algorithm" (KI 2012), as PyOD's `HBOS` computes it:
//!
//! - per feature, a static histogram as `np.histogram(column, bins, density=True)`: equal
//!   bins from the minimum to the maximum (± 0.5 for a constant column), edges as
//!   `np.linspace` places them, densities count / width / n;
//! - `n_bins`: the same count for every feature (default 10), or `"auto"`: per feature the
//!   count in 1..max(2, ⌊√n⌋) − 1 maximising Birgé and Rozenblac's penalised likelihood
//!   Σₖ hₖ ln(b hₖ / n + 1) − (b − 1 + (ln b)^2.5) (PyOD's `get_optimal_n_bins`);
//! - a value falls in bin k when edgeₖ < v ≤ edgeₖ₊₁ (`np.digitize(..., right=True)`, as
//!   PyOD scores); the minimum itself and values below it within `tol` bin widths take the
//!   first bin, values above the last edge within `tol` widths the last bin, and values
//!   farther out the lowest bin's term;
//! - a row's score is −Σⱼ log₂(densityⱼ + `alpha`). Higher = more anomalous.
//!
//! Deterministic: the scores equal PyOD's to the last digits of the logarithms and sums.
//!
//! ## Cost
//! Fit: one pass per feature, O(n d), for a fixed `n_bins`; for `"auto"` a sort per
//! feature, O(d · n log n), after which each of the √n candidate histograms is read off
//! the sorted column by binary search (O(b log n) each, not O(n)). Scoring: per feature and
//! row, the bin computed from the equal widths and checked against its edges, O(1).
//! Memory: the edges and densities, d · (2b + 1) values.

use ndarray::{Array2, ArrayView1, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::params::{Bins, Checked, HbosParams};

/// One feature's histogram.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Histogram {
    /// b + 1 edges, ascending.
    edges: Vec<f64>,
    /// log₂(density + alpha) of each of the b bins.
    terms: Vec<f64>,
    /// The smallest of `terms`: the term of values far outside the edges.
    floor: f64,
}

/// A fitted HBOS model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hbos {
    tol: f64,
    histograms: Vec<Histogram>,
}

/// `np.histogram`'s edges for values from `min` to `max`: `np.linspace` over the range,
/// widened by 0.5 either side when it is empty.
fn edges(min: f64, max: f64, bins: usize) -> Vec<f64> {
    let (mut first, mut last) = (min, max);
    if first == last {
        first -= 0.5;
        last += 0.5;
    }
    let step = (last - first) / bins as f64;
    let mut edges: Vec<f64> = (0..=bins).map(|i| i as f64 * step + first).collect();
    edges[bins] = last;
    edges
}

/// `np.histogram(column, bins)`'s edges and counts, for a column sorted ascending: NumPy
/// puts v in bin k when edgeₖ ≤ v < edgeₖ₊₁, the last bin closed, so each count is read
/// off the sorted column by binary search (what `"auto"`'s many candidate counts need).
fn histogram(sorted: &[f64], bins: usize) -> (Vec<f64>, Vec<usize>) {
    let edges = edges(sorted[0], sorted[sorted.len() - 1], bins);
    let below = |e: f64| sorted.partition_point(|&v| v < e);
    let mut counts = Vec::with_capacity(bins);
    let mut start = below(edges[0]);
    for k in 0..bins {
        let end = if k + 1 == bins {
            sorted.len()
        } else {
            below(edges[k + 1])
        };
        counts.push(end - start);
        start = end;
    }
    (edges, counts)
}

/// The same edges and counts for an unsorted column in one pass, as `np.histogram`'s
/// equal-bins loop computes each value's bin: ⌊(v − first) · b / (last − first)⌋, then
/// moved by one where the rounding put it beside the edge it lies on.
fn histogram_unsorted(column: ArrayView1<'_, f64>, bins: usize) -> (Vec<f64>, Vec<usize>) {
    let (min, max) = column
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let edges = edges(min, max, bins);
    let (first, last) = (edges[0], edges[bins]);
    let norm = bins as f64 / (last - first);
    let mut counts = vec![0usize; bins];
    for &v in column {
        let at = (((v - first) * norm) as usize).min(bins - 1);
        let at = at - usize::from(v < edges[at]) + usize::from(at + 1 < bins && v >= edges[at + 1]);
        counts[at] += 1;
    }
    (edges, counts)
}

/// PyOD's `get_optimal_n_bins` (Birgé & Rozenblac) for a sorted column.
fn optimal_bins(sorted: &[f64]) -> usize {
    let n = sorted.len();
    let upper = 2.max((n as f64).sqrt() as usize);
    let mut best = (1, f64::NEG_INFINITY);
    for b in 1..upper {
        let (_, counts) = histogram(sorted, b);
        let penalty = b as f64 - 1.0 + (b as f64).ln().powf(2.5);
        let likelihood: f64 = counts
            .iter()
            .map(|&h| {
                let h = h as f64;
                h * ((b as f64 * h) / n as f64 + 1.0).ln() - penalty
            })
            .sum();
        // np.argmax: the first maximum.
        if likelihood > best.1 {
            best = (b, likelihood);
        }
    }
    best.0
}

impl Hbos {
    /// Fits on `x` (validated) and returns the model and the training rows' scores.
    pub(crate) fn fit(params: &Checked<HbosParams>, x: ArrayView2<'_, f64>) -> (Self, Vec<f64>) {
        let n = x.nrows();
        let histograms: Vec<Histogram> = (0..x.ncols())
            .into_par_iter()
            .map(|j| {
                let (edges, counts) = match params.n_bins {
                    Bins::Count(b) => histogram_unsorted(x.column(j), b),
                    Bins::Auto => {
                        let mut sorted = x.column(j).to_vec();
                        sorted.sort_unstable_by(f64::total_cmp);
                        histogram(&sorted, optimal_bins(&sorted))
                    }
                };
                let terms: Vec<f64> = counts
                    .iter()
                    .zip(edges.windows(2))
                    .map(|(&c, e)| (c as f64 / (e[1] - e[0]) / n as f64 + params.alpha).log2())
                    .collect();
                let floor = terms.iter().copied().fold(f64::INFINITY, f64::min);
                Histogram {
                    edges,
                    terms,
                    floor,
                }
            })
            .collect();
        let model = Self {
            tol: params.tol,
            histograms,
        };
        let scores = model.score(x);
        (model, scores)
    }

    /// Scores rows (validated, with the model's width): the training rows and new ones
    /// alike.
    pub(crate) fn score(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        let scales = self.scales();
        crate::rows::score_rows(x, |row| {
            let sum: f64 = row
                .iter()
                .zip(&self.histograms)
                .zip(&scales)
                .map(|((&v, h), &scale)| h.term(v, self.tol, scale))
                .sum();
            -sum
        })
    }

    /// Each row's per-feature terms (rows validated, with the model's width): for
    /// feature j, cⱼ − log₂(densityⱼ + alpha), with cⱼ the largest log₂(density + alpha)
    /// of j's bins. The score's own terms, −log₂(densityⱼ + alpha), can be negative (a
    /// density above 1); shifted by cⱼ each is ≥ 0 — how far the row's bin is from j's
    /// densest — and a row's terms sum to its score minus the lowest score any row can
    /// get, −Σⱼ cⱼ.
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let (ceilings, scales) = (self.ceilings(), self.scales());
        crate::rows::contribution_rows(x, self.histograms.len(), |row, out| {
            let features = self.histograms.iter().zip(&ceilings).zip(&scales);
            for ((&v, ((h, c), &scale)), o) in row.iter().zip(features).zip(out) {
                *o = c - h.term(v, self.tol, scale);
            }
        })
    }

    /// Per feature, [`Histogram::scale`].
    fn scales(&self) -> Vec<f64> {
        self.histograms.iter().map(Histogram::scale).collect()
    }

    /// Per feature, the largest log₂(density + alpha) of its bins.
    fn ceilings(&self) -> Vec<f64> {
        self.histograms
            .iter()
            .map(|h| h.terms.iter().copied().fold(f64::NEG_INFINITY, f64::max))
            .collect()
    }

    /// Checks a deserialized model's invariants against the model's width.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        let ok = self.histograms.len() == n_features
            && self
                .histograms
                .iter()
                .all(|h| !h.terms.is_empty() && h.edges.len() == h.terms.len() + 1);
        if ok {
            Ok(())
        } else {
            Err("HBOS histograms do not match the model's width".into())
        }
    }
}

impl Histogram {
    /// log₂(density + alpha) of the bin `v` falls in, as PyOD's
    /// `_calculate_outlier_scores` assigns it.
    /// `scale` is [`Histogram::scale`].
    fn term(&self, v: f64, tol: f64, scale: f64) -> f64 {
        let b = self.terms.len();
        let at = self.digitize(v, scale);
        if at == 0 {
            let width = self.edges[1] - self.edges[0];
            if self.edges[0] - v <= width * tol {
                self.terms[0]
            } else {
                self.floor
            }
        } else if at == b + 1 {
            let width = self.edges[b] - self.edges[b - 1];
            if v - self.edges[b] <= width * tol {
                self.terms[b - 1]
            } else {
                self.floor
            }
        } else {
            self.terms[at - 1]
        }
    }

    /// Bins per unit of value: b / (last edge − first edge).
    fn scale(&self) -> f64 {
        let b = self.edges.len() - 1;
        b as f64 / (self.edges[b] - self.edges[0])
    }

    /// `np.digitize(v, edges, right=True)`: the number of edges below `v`. The edges are
    /// equally spaced, so the bin v lies in is computed, and the answer taken from the
    /// two comparisons with that bin's edges (rounding can put v one bin off); a search
    /// of the edges settles what that cannot (edges so close that they round together).
    #[inline]
    fn digitize(&self, v: f64, scale: f64) -> usize {
        let edges = &self.edges;
        let b = edges.len() - 1;
        // `as` saturates: a value below the first edge gives bin 0, one far above it b.
        let k = (((v - edges[0]) * scale) as usize).min(b - 1);
        let at = k + 1 - usize::from(v <= edges[k]) + usize::from(v > edges[k + 1]);
        let exact = (at == 0 || edges[at - 1] < v) && (at > b || v <= edges[at]);
        if exact {
            at
        } else {
            edges.partition_point(|&e| e < v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamGuard;
    use ndarray::array;

    #[test]
    fn numpy_histogram_edges_and_counts() {
        let (edges, counts) = histogram(&[0.0, 1.0, 1.0, 2.5, 4.0], 4);
        assert_eq!(edges, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        // [0, 1) [1, 2) [2, 3) [3, 4]
        assert_eq!(counts, vec![1, 2, 1, 1]);
        let (edges, counts) = histogram(&[3.0, 3.0], 2);
        assert_eq!(edges, vec![2.5, 3.0, 3.5]);
        assert_eq!(counts, vec![0, 2]);
    }

    #[test]
    fn one_pass_counts_equal_the_sorted_ones() {
        let column: Vec<f64> = (0..997)
            .map(|i| (((i * 7919) % 1009) as f64 / 10.0).powf(1.3) - 20.0)
            .chain([0.1, 0.2, 0.3, 0.7, 1.0 / 3.0])
            .collect();
        let mut sorted = column.clone();
        sorted.sort_by(f64::total_cmp);
        for bins in [1, 2, 3, 7, 10, 64, 333] {
            assert_eq!(
                histogram_unsorted(ndarray::ArrayView1::from(&column), bins),
                histogram(&sorted, bins),
                "{bins}"
            );
        }
    }

    #[test]
    fn computed_bins_equal_a_search_of_the_edges() {
        let values: Vec<f64> = (0..4000)
            .map(|i| (((i * 7919) % 4001) as f64 / 97.0).powf(1.7) - 30.0)
            .chain([-1e300, 1e300, 0.0, -0.0, 1.0 / 3.0, 2.0 / 3.0])
            .collect();
        for (min, max) in [
            (-3.0, 7.0),
            (0.1, 0.7),
            (5.0, 5.0),
            (-1e-9, 1e-9),
            (1.0, 1e6),
        ] {
            for bins in [1, 2, 3, 10, 17, 100] {
                let edges = edges(min, max, bins);
                let h = Histogram {
                    terms: vec![0.0; bins],
                    floor: 0.0,
                    edges: edges.clone(),
                };
                // Every edge itself, and the values beside it, too.
                let around = edges.iter().flat_map(|&e| [e.next_down(), e, e.next_up()]);
                for v in values.iter().copied().chain(around) {
                    let want = edges.partition_point(|&e| e < v);
                    assert_eq!(h.digitize(v, h.scale()), want, "{v} in {edges:?}");
                }
            }
        }
    }

    #[test]
    fn a_row_in_an_empty_region_scores_highest() {
        let x = array![[0.0], [0.1], [0.2], [0.15], [0.05], [1.0]];
        let p = HbosParams::default().check().unwrap();
        let (model, scores) = Hbos::fit(&p, x.view());
        let top = scores.iter().cloned().fold(f64::MIN, f64::max);
        assert_eq!(scores[5], top);
        // Far beyond the last edge: the lowest bin's term.
        let far = model.score(array![[50.0]].view());
        assert_eq!(far[0], -model.histograms[0].floor);
    }

    #[test]
    fn feature_terms_sum_to_the_score_above_the_lowest_one() {
        let x = array![
            [0.0, 3.0],
            [0.1, 3.5],
            [0.2, 3.1],
            [0.15, 3.2],
            [0.05, 3.3],
            [0.12, 3.4],
            [0.5, 3.25]
        ];
        let p = HbosParams::default().check().unwrap();
        let (model, _) = Hbos::fit(&p, x.view());
        let rows = array![[0.1, 3.2], [0.11, 9.0], [4.0, 3.3], [0.49, 3.01]];
        let terms = model.contributions(rows.view());
        let scores = model.score(rows.view());
        let lowest = -model.ceilings().iter().sum::<f64>();
        for (i, score) in scores.iter().enumerate() {
            let sum: f64 = terms.row(i).sum();
            assert!(
                (sum - (score - lowest)).abs() < 1e-12,
                "{sum} vs {score} - {lowest}"
            );
            assert!(terms.row(i).iter().all(|&t| t >= 0.0), "{terms}");
        }
        assert!(terms[[1, 1]] > terms[[1, 0]], "{terms}");
        assert!(terms[[2, 0]] > terms[[2, 1]], "{terms}");
    }
}
