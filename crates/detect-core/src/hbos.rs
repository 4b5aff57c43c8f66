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
//! Fit: for a fixed `n_bins`, one pass for every feature's range, then one that counts
//! each value's bin and keeps its score term's index (n · d `u16`s while fitting), so the
//! training scores are lookups: O(n d). Values well inside a bin (most of them) get their
//! bin from the equal widths alone, without reading an edge (see `Interior`). For
//! `"auto"` a sort per feature first, O(d · n log n), after which each of the √n candidate
//! histograms is read off the sorted column by binary search (O(b log n) each, not O(n)).
//! Scoring new rows: per feature and row, the bin computed from the equal widths and
//! checked against its edges, O(1).
//! Memory: the model keeps the edges and densities, d · (2b + 1) values.

use std::sync::OnceLock;

use ndarray::{Array2, ArrayView2};
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
    /// [`Hbos::ceilings_of`], made on the first explanation (not part of the model
    /// format).
    #[serde(skip)]
    ceilings: OnceLock<Vec<f64>>,
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

/// Rows per block of the binning passes (blocks run in parallel).
const BLOCK_ROWS: usize = 4096;

/// Each column's minimum and maximum (the values are finite): per block, running minima
/// and maxima over a run of whole rows about 64 values long, compared element by element
/// (so the comparisons run in vector registers), then folded per column.
fn column_ranges(flat: &[f64], d: usize) -> Vec<(f64, f64)> {
    let run = d * 64_usize.div_ceil(d);
    let blocks: Vec<(Vec<f64>, Vec<f64>)> = flat
        .par_chunks(BLOCK_ROWS * d)
        .map(|rows| {
            let (mut lo, mut hi) = (vec![f64::INFINITY; run], vec![f64::NEG_INFINITY; run]);
            for chunk in rows.chunks(run) {
                for ((lo, hi), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(chunk) {
                    *lo = if v < *lo { v } else { *lo };
                    *hi = if v > *hi { v } else { *hi };
                }
            }
            (lo, hi)
        })
        .collect();
    let mut range = vec![(f64::INFINITY, f64::NEG_INFINITY); d];
    for (lo, hi) in blocks {
        for (k, (l, h)) in lo.into_iter().zip(hi).enumerate() {
            let r = &mut range[k % d];
            *r = (r.0.min(l), r.1.max(h));
        }
    }
    range
}

/// `np.histogram`'s equal-bins computation of the bin of `v` (between the first and last
/// edge): ⌊(v − first) · scale⌋, moved by one where the rounding put it beside the edge
/// it lies on.
#[inline]
fn histogram_bin(e: &[f64], v: f64, scale: f64) -> usize {
    let b = e.len() - 1;
    let h = (((v - e[0]) * scale) as usize).min(b - 1);
    h - usize::from(v < e[h]) + usize::from(h + 1 < b && v >= e[h + 1])
}

/// The bin of the values that lie strictly inside one bin, farther from both its edges
/// than any rounding of the edges or of the value's position reaches: there the
/// histogram's bin (edgeₖ ≤ v < edgeₖ₊₁) and the score's (edgeₖ < v ≤ edgeₖ₊₁) are the
/// same k = ⌊(v − first) · scale⌋, found without reading an edge. The first edge itself
/// (often the most common value) is in the first bin on both counts. Other values (on or
/// beside an edge, outside the edges) are for [`histogram_bin`] and [`term_bin`].
struct Interior {
    first: f64,
    /// Whether the first two edges differ (else the first edge's value belongs where
    /// [`histogram_bin`] says).
    first_apart: bool,
    scale: f64,
    /// The number of bins (below `u16::MAX`: see [`Interior::ON_EDGE`]).
    bins: i32,
    /// How near (in bins) an integer the position may come: the edges (`i · step +
    /// first`), `v − first` and the product each round by an ulp or two of the largest
    /// magnitude M at hand, together under 8 ε (M · scale + b) bins; eight times that.
    margin: f64,
}

impl Interior {
    fn new(edges: &[f64], scale: f64) -> Self {
        let b = edges.len() - 1;
        let magnitude = edges[0].abs().max(edges[b].abs());
        Self {
            first: edges[0],
            first_apart: edges[0] < edges[1],
            scale,
            bins: i32::try_from(b).unwrap_or(i32::MAX),
            margin: 64.0 * f64::EPSILON * (magnitude * scale + b as f64),
        }
    }

    /// v's bin when v lies inside one (see [`Interior`]), else [`Interior::ON_EDGE`];
    /// without branches, so a block's codes are computed in vector registers.
    #[inline(always)]
    fn code(&self, v: f64) -> u16 {
        let at = (v - self.first) * self.scale;
        // `as` saturates: below the first edge gives 0 with a negative fraction.
        let k = at as i32;
        let fraction = at - f64::from(k);
        let inside =
            (k >= 0) & (k < self.bins) & (fraction > self.margin) & (fraction < 1.0 - self.margin);
        // Exclusive: the first edge's own position has no fraction.
        let first = (v == self.first) & self.first_apart;
        let code = if inside { k as u16 } else { Self::ON_EDGE };
        if first { 0 } else { code }
    }

    /// [`Interior::code`] of a value the edges must place (no bin has this index:
    /// `Binned` indexes only histograms of fewer than `u16::MAX` bins).
    const ON_EDGE: u16 = u16::MAX;
}

/// The score term's index of a training value `v` in histogram bin `h` (see
/// [`term_index`]; `edges.len() − 1` for the floor): where `h` is exactly the bin v lies in,
/// `np.digitize(right=True)` puts v in bin h + [v > edgeₕ], read off the edges at hand
/// (the first edge itself counts in the first bin: `tol` ≥ 0); else [`digitize`] answers.
#[inline]
fn term_bin(e: &[f64], h: usize, v: f64, scale: f64, tol: f64) -> u16 {
    let b = e.len() - 1;
    let exact =
        (e[h] <= v) & (h == 0 || e[h - 1] < v) & ((v < e[h + 1]) | ((h + 1 == b) & (v <= e[b])));
    let term = if exact {
        (h + usize::from(v > e[h])).max(1) - 1
    } else {
        term_index(e, digitize(e, v, scale), v, tol).unwrap_or(b)
    };
    // `Binned::of` indexes only histograms of fewer than u16::MAX bins.
    term as u16
}

/// The training rows binned: each feature's histogram counts and, per value, the index of
/// its score term (`terms.len()` for the histogram's floor); `None` when a histogram has
/// more bins than a `u16` index holds.
struct Binned {
    counts: Vec<Vec<u64>>,
    terms: Option<Vec<u16>>,
}

impl Binned {
    /// One pass over the rows: each value's [`histogram_bin`] counted, its [`term_bin`]
    /// kept.
    fn of(flat: &[f64], edges: &[Vec<f64>], tol: f64) -> Self {
        let d = edges.len();
        let n = flat.len() / d;
        let indexed = edges.iter().all(|e| e.len() <= usize::from(u16::MAX));
        let mut terms = vec![0u16; if indexed { n * d } else { 0 }];
        let scales: Vec<f64> = edges.iter().map(|e| scale(e)).collect();
        let interiors: Vec<Interior> = edges
            .iter()
            .zip(&scales)
            .map(|(e, &s)| Interior::new(e, s))
            .collect();
        // Feature by feature within a block, so each feature's edges stay at hand.
        let bin = |rows: &[f64], out: &mut [u16]| {
            let mut counts: Vec<Vec<u64>> = edges.iter().map(|e| vec![0; e.len() - 1]).collect();
            let (mut column, mut codes) = (Vec::with_capacity(BLOCK_ROWS), Vec::new());
            for (j, (e, counts)) in edges.iter().zip(&mut counts).enumerate() {
                if indexed {
                    // The bins found from the widths alone first, then the rest from the
                    // edges, each counted in one of four interleaved tallies, so runs of
                    // one bin do not wait on the previous increment of the same counter.
                    column.clear();
                    column.extend(rows[j..].iter().step_by(d));
                    codes.resize(column.len(), 0);
                    for (c, &v) in codes.iter_mut().zip(&column) {
                        *c = interiors[j].code(v);
                    }
                    let mut tallies = vec![[0u32; 4]; counts.len()];
                    let out = out[j..].iter_mut().step_by(d);
                    for (i, ((&code, r), o)) in
                        codes.iter().zip(rows.chunks_exact(d)).zip(out).enumerate()
                    {
                        let (h, term) = if code == Interior::ON_EDGE {
                            let h = histogram_bin(e, r[j], scales[j]);
                            (h, term_bin(e, h, r[j], scales[j], tol))
                        } else {
                            (usize::from(code), code)
                        };
                        tallies[h][i & 3] += 1;
                        *o = term;
                    }
                    for (c, t) in counts.iter_mut().zip(tallies) {
                        *c = t.iter().map(|&t| u64::from(t)).sum();
                    }
                } else {
                    for &v in rows[j..].iter().step_by(d) {
                        counts[histogram_bin(e, v, scales[j])] += 1;
                    }
                }
            }
            counts
        };
        let blocks: Vec<Vec<Vec<u64>>> = if indexed {
            flat.par_chunks(BLOCK_ROWS * d)
                .zip(terms.par_chunks_mut(BLOCK_ROWS * d))
                .map(|(rows, out)| bin(rows, out))
                .collect()
        } else {
            flat.par_chunks(BLOCK_ROWS * d)
                .map(|rows| bin(rows, &mut []))
                .collect()
        };
        let mut counts: Vec<Vec<u64>> = edges.iter().map(|e| vec![0; e.len() - 1]).collect();
        for block in blocks {
            for (total, c) in counts.iter_mut().zip(block) {
                for (t, c) in total.iter_mut().zip(c) {
                    *t += c;
                }
            }
        }
        Self {
            counts,
            terms: indexed.then_some(terms),
        }
    }
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
        let (n, d) = x.dim();
        let x = x.as_standard_layout();
        let flat = x
            .as_slice()
            .expect("a standard-layout matrix is contiguous");
        let edges: Vec<Vec<f64>> = match params.n_bins {
            Bins::Count(b) => column_ranges(flat, d)
                .into_iter()
                .map(|(lo, hi)| edges(lo, hi, b))
                .collect(),
            Bins::Auto => (0..d)
                .into_par_iter()
                .map(|j| {
                    let mut sorted = x.column(j).to_vec();
                    sorted.sort_unstable_by(f64::total_cmp);
                    edges(sorted[0], sorted[n - 1], optimal_bins(&sorted))
                })
                .collect(),
        };
        let binned = Binned::of(flat, &edges, params.tol);
        let histograms: Vec<Histogram> = edges
            .into_iter()
            .zip(&binned.counts)
            .map(|(edges, counts)| {
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
            ceilings: OnceLock::new(),
        };
        let scores = match &binned.terms {
            Some(at) => model.score_binned(at),
            None => model.score(x.view()),
        };
        (model, scores)
    }

    /// The training rows' scores from their term indices ([`Binned`]): the terms
    /// [`Hbos::score`] looks up, added in the same order.
    fn score_binned(&self, at: &[u16]) -> Vec<f64> {
        let d = self.histograms.len();
        let tables: Vec<Vec<f64>> = self
            .histograms
            .iter()
            .map(|h| h.terms.iter().copied().chain([h.floor]).collect())
            .collect();
        at.par_chunks_exact(d)
            .with_min_len(BLOCK_ROWS)
            .map(|row| {
                let sum: f64 = row
                    .iter()
                    .zip(&tables)
                    .map(|(&k, t)| t[usize::from(k)])
                    .sum();
                -sum
            })
            .collect()
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
            let features = self.histograms.iter().zip(ceilings).zip(&scales);
            for ((&v, ((h, c), &scale)), o) in row.iter().zip(features).zip(out) {
                *o = c - h.term(v, self.tol, scale);
            }
        })
    }

    /// Per feature, [`Histogram::scale`].
    fn scales(&self) -> Vec<f64> {
        self.histograms.iter().map(Histogram::scale).collect()
    }

    /// [`Hbos::ceilings_of`], made on the first call.
    fn ceilings(&self) -> &[f64] {
        self.ceilings.get_or_init(|| self.ceilings_of())
    }

    /// Per feature, the largest log₂(density + alpha) of its bins.
    fn ceilings_of(&self) -> Vec<f64> {
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
        match term_index(&self.edges, digitize(&self.edges, v, scale), v, tol) {
            Some(k) => self.terms[k],
            None => self.floor,
        }
    }

    fn scale(&self) -> f64 {
        scale(&self.edges)
    }
}

/// Bins per unit of value: b / (last edge − first edge).
fn scale(edges: &[f64]) -> f64 {
    let b = edges.len() - 1;
    b as f64 / (edges[b] - edges[0])
}

/// The term of a value `at` edges above (its [`digitize`] bin): the bin's own, the
/// first or last bin's for values beyond them within `tol` bin widths, `None` (the
/// lowest term) farther out.
fn term_index(edges: &[f64], at: usize, v: f64, tol: f64) -> Option<usize> {
    let b = edges.len() - 1;
    if at == 0 {
        (edges[0] - v <= (edges[1] - edges[0]) * tol).then_some(0)
    } else if at == b + 1 {
        (v - edges[b] <= (edges[b] - edges[b - 1]) * tol).then_some(b - 1)
    } else {
        Some(at - 1)
    }
}

/// `np.digitize(v, edges, right=True)`: the number of edges below `v`. The edges are
/// equally spaced, so the bin v lies in is computed, and the answer taken from the
/// two comparisons with that bin's edges (rounding can put v one bin off); a search
/// of the edges settles what that cannot (edges so close that they round together).
/// `scale` is [`scale`]'s.
#[inline]
fn digitize(edges: &[f64], v: f64, scale: f64) -> usize {
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
        // Steps of ~670 ulps: bins a few hundred ulps wide, where the margin matters.
        let narrow: Vec<f64> = (0..1000).map(|i| 1e8 + (i % 97) as f64 * 1e-5).collect();
        for column in [column, narrow] {
            let mut sorted = column.clone();
            sorted.sort_by(f64::total_cmp);
            for bins in [1, 2, 3, 7, 10, 64, 333] {
                let (edges, counts) = histogram(&sorted, bins);
                let binned = Binned::of(&column, std::slice::from_ref(&edges), 0.5);
                let counts: Vec<u64> = counts.into_iter().map(|c| c as u64).collect();
                assert_eq!(binned.counts, vec![counts], "{bins}");
            }
        }
    }

    #[test]
    fn binned_training_scores_equal_scoring_the_rows_anew() {
        // Integers on the edges of 10 bins over [0, 10], a constant column, a column of
        // rounding-prone thirds, one of steps of a few ulps and one with a far outlier.
        let x = Array2::from_shape_fn((2000, 5), |(i, j)| match j {
            0 => (i % 11) as f64,
            1 => 7.25,
            2 => (i % 301) as f64 / 3.0,
            3 => 1e8 + (i % 97) as f64 * 1e-5,
            _ => {
                if i == 5 {
                    1e6
                } else {
                    (i * 7919 % 1013) as f64 * 0.1
                }
            }
        });
        // 70,000 bins: more than a u16 term index holds, so the rows are scored anew.
        for n_bins in [
            Bins::Count(10),
            Bins::Count(3),
            Bins::Count(70_000),
            Bins::Auto,
        ] {
            for tol in [0.01, 0.5] {
                let p = HbosParams {
                    n_bins,
                    tol,
                    ..HbosParams::default()
                };
                let (model, scores) = Hbos::fit(&p.check().unwrap(), x.view());
                let again = model.score(x.view());
                let same = scores
                    .iter()
                    .zip(&again)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{n_bins:?} tol {tol}");
            }
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
                    assert_eq!(digitize(&h.edges, v, h.scale()), want, "{v} in {edges:?}");
                }
            }
        }
    }

    #[test]
    fn interior_bins_lie_strictly_between_their_edges() {
        let values: Vec<f64> = (0..4000)
            .map(|i| (((i * 7919) % 4001) as f64 / 97.0).powf(1.7) - 30.0)
            .collect();
        // Ranges far narrower than their magnitude, where a fraction of a bin is a few ulps.
        let narrow = |at: f64, width: f64| -> Vec<f64> {
            (0..4000)
                .map(|i| at + width * f64::from(i) / 3999.0)
                .collect()
        };
        let cases = [
            ((-3.0, 7.0), values.clone()),
            ((0.1, 0.7), values.iter().map(|v| v / 100.0).collect()),
            ((1e8, 1e8 + 1e-3), narrow(1e8, 1e-3)),
            ((-1e15, -1e15 + 8e3), narrow(-1e15, 8e3)),
            ((1e8, 1e8 + 1e-6), narrow(1e8, 1e-6)),
        ];
        for ((min, max), values) in &cases {
            for bins in [1, 2, 3, 10, 17, 100, 5000] {
                let e = edges(*min, *max, bins);
                let interior = Interior::new(&e, scale(&e));
                let around = e.iter().flat_map(|&x| [x.next_down(), x, x.next_up()]);
                let mut inside = 0;
                for v in values.iter().copied().chain(around) {
                    let code = interior.code(v);
                    if code != Interior::ON_EDGE {
                        let k = usize::from(code);
                        inside += 1;
                        let first = v == e[0] && k == 0;
                        assert!(first || e[k] < v && v < e[k + 1], "{v} in bin {k} of {e:?}");
                        // Both bins agree with the edge-reading path.
                        let h = histogram_bin(&e, v, scale(&e));
                        assert_eq!((h, term_bin(&e, h, v, scale(&e), 0.1)), (k, code));
                    }
                }
                // The shortcut takes most values in range where bins are far wider than
                // an ulp.
                let in_range = values.iter().filter(|&&v| *min <= v && v <= *max).count();
                if *min == -3.0 && bins <= 100 {
                    assert!(
                        inside * 10 > in_range * 9,
                        "{inside} of {in_range}, {bins} bins"
                    );
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
