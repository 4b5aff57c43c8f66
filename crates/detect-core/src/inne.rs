//! # INNE: isolation using nearest-neighbour ensembles
//!
//! Bandaragoda, Ting, Albrecht, Liu, Zhu & Wells, "Isolation-based anomaly detection using
//! nearest-neighbor ensembles" (Computational Intelligence 2018), as PyOD's `INNE`:
//!
//! - `n_estimators` (default 200) sets of ψ centres, each drawn without replacement from the
//!   training rows; ψ = `max_samples`, `"auto"` = min(8, n) (a count above n is n, with a
//!   warning; a fraction f gives ⌊f n⌋);
//! - each centre's hypersphere has as radius the distance to the nearest other centre of its
//!   set, and the ratio 1 − (r_nn² + ε) / (r² + ε), where r_nn is that nearest centre's own
//!   radius (PyOD works with squared distances, and so does this);
//! - a row's isolation score in one set is the ratio of the smallest hypersphere that covers
//!   it (squared distance ≤ r²), or 1 when none does; its anomaly score is the mean over the
//!   sets. Higher = more anomalous, in [0, 1]. Scoring measures a row's squared distances
//!   as PyOD's `euclidean_distances(squared=True)` does, ‖x‖² + ‖c‖² − 2 x·c, on the rows
//!   and centres less one of the centres (which keeps the digits of data far from the
//!   origin, and integer data exact, as the radii are); the radii come from exact
//!   differences.
//!
//! Randomized: the sets come from generators seeded by `random_state` (drawn and stored when
//! not given) and the set's index, so a seed gives the same model on any machine and thread
//! count; our generator is not NumPy's, so single scores differ from PyOD's and only
//! ROC-AUC over seeds is compared (`bench-tools accuracy`).
//!
//! ## Cost
//! O(t ψ² d) to fit, O(t ψ d) per scored row (t sets): per block of 64 rows (as
//! `rows::score_blocks_with` hands them out), their dot products with every centre are one
//! matrix product (ndarray's, with the vector instructions the CPU has), then each set's
//! centres, in increasing order of radius, are compared with the block's rows side by
//! side, without branches. The model keeps t ψ centres.

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2};
use rand::seq::index;
use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::params::{Checked, InneParams, MaxSamples};
use crate::rows::BLOCK_ROWS;

/// PyOD's `MIN_FLOAT`, `np.finfo(float).eps`.
const MIN_FLOAT: f64 = f64::EPSILON;

/// A fitted INNE model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inne {
    /// Centres per set.
    psi: usize,
    /// Per set, ψ centres, row-major: t · ψ · d values.
    centres: Vec<f64>,
    /// Per set and centre: the squared radius.
    radius: Vec<f64>,
    /// Per set and centre: the isolation ratio.
    ratio: Vec<f64>,
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

impl Inne {
    /// Fits on `x` (validated, at least 2 rows) with `seed` and returns the model and the
    /// training rows' scores.
    ///
    /// # Errors
    /// [`DetectError::InvalidParameter`] naming `max_samples` when it selects fewer than 2
    /// centres (a hypersphere needs a nearest other centre).
    pub(crate) fn fit(
        params: &Checked<InneParams>,
        seed: u64,
        x: ArrayView2<'_, f64>,
        warnings: &mut Vec<String>,
    ) -> Result<(Self, Vec<f64>), DetectError> {
        let (n, d) = x.dim();
        let psi = match params.max_samples {
            MaxSamples::Auto => n.min(8),
            MaxSamples::Count(c) if c > n => {
                warnings.push(format!(
                    "max_samples ({c}) is greater than the total number of samples ({n}); \
                     max_samples will be set to n_samples for estimation"
                ));
                n
            }
            MaxSamples::Count(c) => c,
            MaxSamples::Fraction(f) => (f * n as f64) as usize,
        };
        if psi < 2 {
            return Err(DetectError::InvalidParameter {
                name: "max_samples".into(),
                reason: format!("selects {psi} centres of {n} rows; at least 2 are needed"),
            });
        }
        let x = x.as_standard_layout();
        let mut master = Xoshiro256PlusPlus::seed_from_u64(seed);
        let t = params.n_estimators;
        let mut centres = Vec::with_capacity(t * psi * d);
        let mut radius = Vec::with_capacity(t * psi);
        let mut ratio = Vec::with_capacity(t * psi);
        for _ in 0..t {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(master.next_u64());
            let first = centres.len();
            for i in index::sample(&mut rng, n, psi) {
                centres.extend(x.row(i).iter());
            }
            let set = &centres[first..];
            let mut nearest = vec![0usize; psi];
            let mut r = vec![f64::INFINITY; psi];
            for a in 0..psi {
                for b in 0..psi {
                    if a != b {
                        let dist =
                            squared_distance(&set[a * d..(a + 1) * d], &set[b * d..(b + 1) * d]);
                        // np.argmin: the first smallest.
                        if dist < r[a] {
                            r[a] = dist;
                            nearest[a] = b;
                        }
                    }
                }
            }
            for a in 0..psi {
                ratio.push(1.0 - (r[nearest[a]] + MIN_FLOAT) / (r[a] + MIN_FLOAT));
            }
            radius.extend(r);
        }
        let model = Self {
            psi,
            centres,
            radius,
            ratio,
        };
        let scores = model.score(x.view());
        Ok((model, scores))
    }

    /// Scores rows (validated, with the model's width).
    pub(crate) fn score(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        let (psi, t) = (self.psi, self.radius.len() / self.psi);
        let centres = Shifted::of(self, x.ncols());
        let arch = pulp::Arch::new();
        crate::rows::score_blocks_with(x, true, Buffers::default, |buffers, rows, out| {
            buffers.distances(&centres, rows, out.len());
            arch.dispatch(Scores {
                centres: &centres,
                buffers,
                psi,
                t,
                out,
            });
        })
    }

    /// Each row's per-feature shares of its score (rows validated, with the model's
    /// width). A set's term of the score (the covering centre's ratio, or 1 when no
    /// hypersphere covers the row) is split over the features in proportion to the
    /// squared differences between the row and the centre that decided it: the covering
    /// centre, or, for an uncovered row, the set's nearest centre (the hypersphere it
    /// came closest to). A row's shares are ≥ 0 and sum to its score.
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let d = x.ncols();
        let (psi, t) = (self.psi, self.radius.len() / self.psi);
        let centres = Shifted::of(self, d);
        let scratch = <(Buffers, Vec<u64>, Vec<f64>, Vec<f64>)>::default;
        let arch = pulp::Arch::new();
        crate::rows::contribution_blocks(
            x,
            d,
            scratch,
            |(buffers, decided, terms, work), rows, out| {
                let m = out.len() / d;
                buffers.distances(&centres, rows, m);
                decided.resize(t * m, 0);
                terms.resize(t * m, 0.0);
                arch.dispatch(Decisions {
                    centres: &centres,
                    buffers,
                    psi,
                    decided,
                    terms,
                });
                work.resize(3 * d * m + 3 * m, 0.0);
                arch.dispatch(Split {
                    model: self,
                    centres: &centres,
                    rows,
                    d,
                    decided,
                    terms,
                    work,
                    out,
                });
            },
        )
    }

    /// Checks a deserialized model's invariants against the model's width.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        let n = self.radius.len();
        let ok = self.psi >= 2
            && n > 0
            && n.is_multiple_of(self.psi)
            && self.ratio.len() == n
            && self.centres.len() == n * n_features;
        if ok {
            Ok(())
        } else {
            Err("INNE centres do not match the model's width".into())
        }
    }
}

/// A squared distance from its parts: ‖x‖² + ‖c‖² − 2 x·c.
#[inline(always)]
fn expanded(row_norm: f64, centre_norm: f64, dot: f64) -> f64 {
    row_norm + centre_norm - 2.0 * dot
}

/// One block's scores ([`Inne::score`]): per set, each row's term is the ratio of the
/// first centre in order of radius that covers it (1 where none does), found by going
/// through the set backwards and letting each covering centre overwrite the term; the
/// terms are added in set order and divided by the number of sets. Run by `pulp` with
/// the widest vector instructions the CPU has (the same bits on each).
struct Scores<'a> {
    centres: &'a Shifted,
    buffers: &'a Buffers,
    psi: usize,
    t: usize,
    out: &'a mut [f64],
}

impl pulp::WithSimd for Scores<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Self {
            centres,
            buffers,
            psi,
            t,
            out,
        } = self;
        let m = out.len();
        let mut term = [0.0; BLOCK_ROWS];
        let term = &mut term[..m];
        out.fill(0.0);
        for s in 0..t {
            term.fill(1.0);
            for c in (s * psi..(s + 1) * psi).rev() {
                covering(simd, centres, buffers, c, term, None);
            }
            for (o, &term) in out.iter_mut().zip(term.iter()) {
                *o += term;
            }
        }
        for o in out.iter_mut() {
            *o /= t as f64;
        }
    }
}

/// One block's deciding centres for [`Inne::contributions`]: per set (`psi` centres) and
/// row, the term as [`Scores`] finds it and the centre (its place in [`Shifted`]) that
/// decided it: the covering one, else the nearest (np.argmin over the set's own order:
/// the first nearest, so the set's centres go in the model's order, each replacing only
/// a farther one). `decided` and `terms` hold a row of m per set.
struct Decisions<'a> {
    centres: &'a Shifted,
    buffers: &'a Buffers,
    psi: usize,
    decided: &'a mut [u64],
    terms: &'a mut [f64],
}

impl pulp::WithSimd for Decisions<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Self {
            centres,
            buffers,
            psi,
            decided,
            terms,
        } = self;
        let m = buffers.norms.len();
        let sets = decided.chunks_exact_mut(m).zip(terms.chunks_exact_mut(m));
        for (s, (decided, terms)) in sets.enumerate() {
            let set = s * psi..(s + 1) * psi;
            let mut nearest = [f64::INFINITY; BLOCK_ROWS];
            let nearest = &mut nearest[..m];
            for &c in &centres.place[set.clone()] {
                let (cn, at) = (simd.splat_f64s(centres.norms[c]), simd.splat_u64s(c as u64));
                let (xn, xn_tail) = S::as_simd_f64s(&buffers.norms);
                let (p, p_tail) = S::as_simd_f64s(buffers.dots(c));
                let (near, near_tail) = S::as_mut_simd_f64s(nearest);
                let (dec, dec_tail) = S::as_mut_simd_u64s(decided);
                let zero = simd.splat_f64s(0.0);
                for (((near, dec), &xn), &p) in near.iter_mut().zip(dec).zip(xn).zip(p) {
                    let dist = simd.max_f64s(expanded_simd(simd, xn, cn, p), zero);
                    let ahead = simd.less_than_f64s(dist, *near);
                    *near = simd.select_f64s(ahead, dist, *near);
                    *dec = simd.select_u64s(ahead, at, *dec);
                }
                let tail = near_tail.iter_mut().zip(dec_tail).zip(xn_tail).zip(p_tail);
                for (((near, dec), &xn), &p) in tail {
                    let dist = expanded(xn, centres.norms[c], p).max(0.0);
                    if dist < *near {
                        *near = dist;
                        *dec = c as u64;
                    }
                }
            }
            terms.fill(1.0);
            for c in set.rev() {
                covering(simd, centres, buffers, c, terms, Some(&mut *decided));
            }
        }
    }
}

/// One block's contributions ([`Inne::contributions`]) from its deciding centres
/// ([`Decisions`]): per set, each row's squared differences to its deciding centre,
/// scaled to add up to the set's term over the number of sets (split evenly where the row
/// is the centre), added in set order; feature by feature across the block's rows, with
/// the widest vector instructions the CPU has.
struct Split<'a> {
    model: &'a Inne,
    centres: &'a Shifted,
    /// The block's rows, row-major, of `d` features.
    rows: &'a [f64],
    d: usize,
    decided: &'a [u64],
    terms: &'a [f64],
    /// Scratch: 3 · d · m + 3 · m values.
    work: &'a mut [f64],
    /// The rows' contributions, row-major.
    out: &'a mut [f64],
}

impl pulp::WithSimd for Split<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let Self {
            model,
            centres,
            rows,
            d,
            decided,
            terms,
            work,
            out,
        } = self;
        let m = rows.len() / d;
        let t = (model.radius.len() / model.psi) as f64;
        let (x, rest) = work.split_at_mut(d * m);
        let (sq, rest) = rest.split_at_mut(d * m);
        let (acc, rest) = rest.split_at_mut(d * m);
        let (total, rest) = rest.split_at_mut(m);
        let (scale, even) = rest.split_at_mut(m);
        let even = &mut even[..m];
        crate::rows::by_feature(rows, d, x, |_, v| v);
        acc.fill(0.0);
        for (decided, terms) in decided.chunks_exact(m).zip(terms.chunks_exact(m)) {
            for (i, &c) in decided.iter().enumerate() {
                let at = centres.index[c as usize];
                for (f, &v) in model.centres[at * d..(at + 1) * d].iter().enumerate() {
                    sq[f * m + i] = v;
                }
            }
            total.fill(0.0);
            for (x, sq) in x.chunks_exact(m).zip(sq.chunks_exact_mut(m)) {
                for ((sq, &x), total) in sq.iter_mut().zip(x).zip(total.iter_mut()) {
                    let diff = x - *sq;
                    *sq = diff * diff;
                    *total += *sq;
                }
            }
            for (((&term, &total), scale), even) in terms
                .iter()
                .zip(total.iter())
                .zip(scale.iter_mut())
                .zip(even.iter_mut())
            {
                let weight = term / t;
                let apart = total > 0.0;
                *scale = if apart { weight / total } else { 0.0 };
                *even = if apart { 0.0 } else { weight / d as f64 };
            }
            for (acc, sq) in acc.chunks_exact_mut(m).zip(sq.chunks_exact(m)) {
                let lanes = acc.iter_mut().zip(sq).zip(scale.iter().zip(even.iter()));
                for ((acc, &sq), (&scale, &even)) in lanes {
                    *acc += sq * scale + even;
                }
            }
        }
        crate::rows::by_row(acc, d, out);
    }
}

/// For each of a block's rows that centre `c` covers, its term becomes the centre's ratio
/// (and its deciding centre `c`, where given).
#[inline(always)]
fn covering<S: pulp::Simd>(
    simd: S,
    centres: &Shifted,
    buffers: &Buffers,
    c: usize,
    term: &mut [f64],
    decided: Option<&mut [u64]>,
) {
    let (cn, r, q) = (centres.norms[c], centres.radius[c], centres.ratio[c]);
    let (cn_s, r_s, q_s) = (simd.splat_f64s(cn), simd.splat_f64s(r), simd.splat_f64s(q));
    let (xn, xn_tail) = S::as_simd_f64s(&buffers.norms);
    let (p, p_tail) = S::as_simd_f64s(buffers.dots(c));
    let (terms, terms_tail) = S::as_mut_simd_f64s(term);
    match decided {
        None => {
            for ((term, &xn), &p) in terms.iter_mut().zip(xn).zip(p) {
                let covers = simd.less_than_or_equal_f64s(expanded_simd(simd, xn, cn_s, p), r_s);
                *term = simd.select_f64s(covers, q_s, *term);
            }
            for ((term, &xn), &p) in terms_tail.iter_mut().zip(xn_tail).zip(p_tail) {
                *term = if expanded(xn, cn, p) <= r { q } else { *term };
            }
        }
        Some(decided) => {
            let at = simd.splat_u64s(c as u64);
            let (dec, dec_tail) = S::as_mut_simd_u64s(decided);
            for (((term, dec), &xn), &p) in terms.iter_mut().zip(dec).zip(xn).zip(p) {
                let covers = simd.less_than_or_equal_f64s(expanded_simd(simd, xn, cn_s, p), r_s);
                *term = simd.select_f64s(covers, q_s, *term);
                *dec = simd.select_u64s(covers, at, *dec);
            }
            let tail = terms_tail.iter_mut().zip(dec_tail).zip(xn_tail).zip(p_tail);
            for (((term, dec), &xn), &p) in tail {
                if expanded(xn, cn, p) <= r {
                    *term = q;
                    *dec = c as u64;
                }
            }
        }
    }
}

/// [`expanded`] in vector lanes, operation for operation.
#[inline(always)]
fn expanded_simd<S: pulp::Simd>(
    simd: S,
    row_norm: S::f64s,
    centre_norm: S::f64s,
    dot: S::f64s,
) -> S::f64s {
    simd.sub_f64s(
        simd.add_f64s(row_norm, centre_norm),
        simd.mul_f64s(simd.splat_f64s(2.0), dot),
    )
}

/// Every centre as scoring measures it: less the model's first centre (so the expanded
/// distances of [`Buffers::distances`] keep their precision for data far from the
/// origin, e.g. a timestamp column, and stay exact for integer data, where rows often lie
/// exactly on a radius), with its squared norm, and each set's centres in increasing
/// order of radius (equal radii in the set's order): a row's covering centre of the
/// smallest radius is then the first one that covers it.
struct Shifted {
    /// The model's first centre.
    origin: Vec<f64>,
    /// (t · ψ) × d.
    centres: Array2<f64>,
    norms: Vec<f64>,
    /// Per centre in this order: its index in the model, squared radius and ratio.
    index: Vec<usize>,
    /// Per centre in the model's order, its place in this order.
    place: Vec<usize>,
    radius: Vec<f64>,
    ratio: Vec<f64>,
}

impl Shifted {
    fn of(model: &Inne, d: usize) -> Self {
        let psi = model.psi;
        let k = model.radius.len();
        let all = ArrayView2::from_shape((k, d), &model.centres).expect("t · ψ centres of d");
        let origin = model.centres[..d].to_vec();
        let mut index: Vec<usize> = (0..k).collect();
        for set in index.chunks_mut(psi) {
            set.sort_by(|&a, &b| model.radius[a].total_cmp(&model.radius[b]));
        }
        let centres = Array2::from_shape_fn((k, d), |(c, f)| all[[index[c], f]] - origin[f]);
        let mut place = vec![0; k];
        for (c, &i) in index.iter().enumerate() {
            place[i] = c;
        }
        Self {
            place,
            origin,
            norms: centres.rows().into_iter().map(|c| c.dot(&c)).collect(),
            centres,
            radius: index.iter().map(|&c| model.radius[c]).collect(),
            ratio: index.iter().map(|&c| model.ratio[c]).collect(),
            index,
        }
    }
}

/// One thread's scratch space for [`Buffers::distances`].
#[derive(Default)]
struct Buffers {
    rows: Array2<f64>,
    /// (t · ψ) × m: each centre's dot products with the block's rows.
    products: Array2<f64>,
    /// The block's rows' squared norms.
    norms: Vec<f64>,
}

impl Buffers {
    /// Centre `c`'s dot products with the block's rows.
    fn dots(&self, c: usize) -> &[f64] {
        let dots = self.products.row(c);
        dots.to_slice().expect("the products' rows are contiguous")
    }

    /// For `m` rows (row-major), what their squared distances to every centre are made of,
    /// as scikit-learn's `euclidean_distances(squared=True)` computes them (PyOD's INNE
    /// scores with it): ‖x‖² + ‖c‖² − 2 x·c, on the rows and centres less the model's
    /// first centre, the dot products one matrix product for the block (vector
    /// instructions picked at run time). A distance is that sum; scikit-learn's clamping
    /// at 0 changes no comparison with a radius (≥ 0), so only the nearest-centre search
    /// applies it.
    fn distances(&mut self, centres: &Shifted, rows: &[f64], m: usize) {
        let (k, d) = centres.centres.dim();
        if self.rows.dim() != (m, d) {
            self.rows = Array2::zeros((m, d));
            self.products = Array2::zeros((k, m));
        }
        let shifted = rows.chunks_exact(d.max(1)).take(m);
        for (mut out, row) in self.rows.rows_mut().into_iter().zip(shifted) {
            for ((o, v), c) in out.iter_mut().zip(row).zip(&centres.origin) {
                *o = v - c;
            }
        }
        self.norms.clear();
        self.norms
            .extend(self.rows.rows().into_iter().map(|r| r.dot(&r)));
        general_mat_mul(
            1.0,
            &centres.centres,
            &self.rows.t(),
            0.0,
            &mut self.products,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamGuard;
    use ndarray::Array2;

    #[test]
    fn a_far_row_is_isolated_and_the_seed_fixes_the_model() {
        let mut rows: Vec<f64> = (0..200)
            .flat_map(|i| {
                [
                    ((i * 37) % 101) as f64 / 101.0,
                    ((i * 53) % 97) as f64 / 97.0,
                ]
            })
            .collect();
        rows.extend([9.0, 9.0]);
        let x = Array2::from_shape_vec((201, 2), rows).unwrap();
        let p = InneParams::default().check().unwrap();
        let mut w = Vec::new();
        let (model, scores) = Inne::fit(&p, 7, x.view(), &mut w).unwrap();
        let top = scores[..200].iter().cloned().fold(f64::MIN, f64::max);
        assert!(scores[200] > top, "{} vs {top}", scores[200]);
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
        let (_, again) = Inne::fit(&p, 7, x.view(), &mut w).unwrap();
        assert_eq!(again, scores);
        assert_eq!(model.score(x.view()), scores);
    }

    /// A row's score from the definition: exact squared distances, every set searched.
    fn score_by_definition(model: &Inne, row: &[f64]) -> f64 {
        let (psi, d) = (model.psi, row.len());
        let t = model.radius.len() / psi;
        let mut total = 0.0;
        for s in 0..t {
            let mut best: Option<usize> = None;
            for at in s * psi..(s + 1) * psi {
                let dist = squared_distance(row, &model.centres[at * d..(at + 1) * d]);
                let r = model.radius[at];
                if dist <= r && best.is_none_or(|b| r < model.radius[b]) {
                    best = Some(at);
                }
            }
            total += best.map_or(1.0, |b| model.ratio[b]);
        }
        total / t as f64
    }

    #[test]
    fn blocked_scores_equal_the_definition_far_from_the_origin() {
        // A timestamp-like column: taken from the origin, ‖x‖² − 2 x·c + ‖c‖² would lose
        // every digit of these distances.
        let row = |i: usize| {
            [
                1.7e9 + ((i * 37) % 101) as f64 / 7.0,
                ((i * 53) % 97) as f64 / 97.0,
                ((i * 29) % 89) as f64 / 8.9,
            ]
        };
        let x = Array2::from_shape_vec((300, 3), (0..300).flat_map(row).collect()).unwrap();
        let p = InneParams::default().check().unwrap();
        let (model, _) = Inne::fit(&p, 11, x.view(), &mut Vec::new()).unwrap();
        // New rows (none on a radius), more than one block of them.
        let fresh: Vec<f64> = (0..150)
            .flat_map(|i| row(i * 7 + 1000))
            .map(|v| v + 0.013)
            .collect();
        let fresh = Array2::from_shape_vec((150, 3), fresh).unwrap();
        let scores = model.score(fresh.view());
        for (i, (r, got)) in fresh.outer_iter().zip(&scores).enumerate() {
            let want = score_by_definition(&model, r.as_slice().unwrap());
            assert_eq!(*got, want, "row {i}");
        }
        assert!(scores.iter().any(|&s| s < 1.0), "some rows are covered");
    }

    #[test]
    fn integer_rows_on_a_radius_are_covered_as_the_definition_says() {
        // Small integers with many repeats (as `breastw`): rows lie exactly on radii, where
        // only exact distances decide as the definition does.
        let x = Array2::from_shape_fn((400, 4), |(i, j)| ((i * (7 + 2 * j) + j) % 10) as f64 + 1.0);
        let p = InneParams::default().check().unwrap();
        let (model, scores) = Inne::fit(&p, 5, x.view(), &mut Vec::new()).unwrap();
        for (i, (r, got)) in x.outer_iter().zip(&scores).enumerate() {
            let want = score_by_definition(&model, r.as_slice().unwrap());
            assert_eq!(*got, want, "row {i}");
        }
    }

    #[test]
    fn feature_shares_sum_to_the_score_and_follow_the_far_feature() {
        let rows: Vec<f64> = (0..200)
            .flat_map(|i| {
                [
                    ((i * 37) % 101) as f64 / 101.0,
                    ((i * 53) % 97) as f64 / 97.0,
                ]
            })
            .collect();
        let x = Array2::from_shape_vec((200, 2), rows).unwrap();
        let p = InneParams::default().check().unwrap();
        let (model, _) = Inne::fit(&p, 3, x.view(), &mut Vec::new()).unwrap();
        let rows = ndarray::array![[0.5, 0.5], [0.5, 9.0], [-7.0, 0.4]];
        let shares = model.contributions(rows.view());
        let scores = model.score(rows.view());
        for (i, score) in scores.iter().enumerate() {
            let sum: f64 = shares.row(i).sum();
            assert!((sum - score).abs() < 1e-12, "{sum} vs {score}");
        }
        assert!(shares[[1, 1]] > 10.0 * shares[[1, 0]], "{shares}");
        assert!(shares[[2, 0]] > 10.0 * shares[[2, 1]], "{shares}");
    }
}
