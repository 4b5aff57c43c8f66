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
//! side, without branches. The model keeps t ψ centres; the centres as scoring orders
//! them are made once per loaded model.
//!
//! Explaining measures a block as scoring does, finds each set's deciding centre per row
//! (the nearest centre only for vectors of rows that no hypersphere covers), then adds
//! O(t d) per row: each feature's coordinates of the deciding centres come from a chain of
//! vector selects over the set's ψ ≤ 8 centres (row by row for larger ψ).

use std::sync::OnceLock;

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use rand::seq::index;
use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::params::{Checked, InneParams, MaxSamples};
use crate::rows::{BLOCK_ROWS, BlockContributor};

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
    /// The centres as scoring and explaining measure them, made on first use (not part
    /// of the model format).
    #[serde(skip)]
    shifted: OnceLock<Shifted>,
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
            shifted: OnceLock::new(),
        };
        let scores = model.score(x.view());
        Ok((model, scores))
    }

    /// Scores rows (validated, with the model's width).
    pub(crate) fn score(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        let (psi, t) = (self.psi, self.radius.len() / self.psi);
        let centres = self.shifted();
        let arch = pulp::Arch::new();
        crate::rows::score_blocks_with(x, true, Buffers::default, |buffers, rows, out| {
            let distances = buffers.distances(centres, rows, out.len());
            arch.dispatch(Scores {
                centres,
                distances,
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
        crate::rows::contributions_by_blocks(x, self)
    }

    /// The centres as scoring measures them, made on first use.
    fn shifted(&self) -> &Shifted {
        self.shifted.get_or_init(|| Shifted::of(self))
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
    distances: Distances<'a>,
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
            distances,
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
                covering(simd, centres, &distances, c, &centres.ratio, term, None);
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

/// [`Inne::contributions`] a block of rows at a time, laid out feature by feature, so
/// that explaining ranks them as they are made (`explain::by_blocks`).
impl BlockContributor for Inne {
    fn scratch_len(&self, d: usize, rows: usize) -> usize {
        let (k, t) = (self.radius.len(), self.radius.len() / self.psi);
        rows * (k + 2 * t + 3 * d + 1)
    }

    /// The block's distances to every centre (as scoring measures them), each set's
    /// deciding centres ([`decide`]), then each set's term split over the features
    /// ([`split`]).
    #[inline(always)]
    fn contribute_block<S: pulp::Simd>(
        &self,
        simd: S,
        rows: &[f64],
        terms: &mut [f64],
        scratch: &mut [f64],
    ) {
        let (k, psi) = (self.radius.len(), self.psi);
        let (d, t) = (self.centres.len() / k, k / psi);
        let b = rows.len() / d;
        let centres = self.shifted();
        let (shifted, rest) = scratch.split_at_mut(b * d);
        let (products, rest) = rest.split_at_mut(k * b);
        let (norms, rest) = rest.split_at_mut(b);
        let (decided, rest) = rest.split_at_mut(t * b);
        let (set_terms, work) = rest.split_at_mut(t * b);
        let distances = measure(centres, rows, shifted, products, norms);
        let decided: &mut [u64] = pulp::bytemuck::cast_slice_mut(decided);
        decide(simd, centres, &distances, psi, decided, set_terms);
        split(simd, centres, rows, psi, decided, set_terms, work, terms);
    }
}

/// One block's deciding centres for [`Inne::contributions`]: per set (`psi` centres) and
/// row, the term as [`Scores`] finds it, over the number of sets ([`Shifted::weights`]),
/// and the centre (its place in [`Shifted`]) that decided it: the covering one, else the
/// nearest ([`nearest`]). `decided` and `terms` hold a row of m per set.
#[inline(always)]
fn decide<S: pulp::Simd>(
    simd: S,
    centres: &Shifted,
    distances: &Distances<'_>,
    psi: usize,
    decided: &mut [u64],
    terms: &mut [f64],
) {
    let m = distances.norms.len();
    let sets = decided.chunks_exact_mut(m).zip(terms.chunks_exact_mut(m));
    for (s, (decided, terms)) in sets.enumerate() {
        let set = s * psi..(s + 1) * psi;
        terms.fill(centres.uncovered);
        decided.fill(UNDECIDED);
        for c in set.clone().rev() {
            let weights = &centres.weights;
            covering(
                simd,
                centres,
                distances,
                c,
                weights,
                terms,
                Some(&mut *decided),
            );
        }
        nearest(simd, centres, distances, &centres.place[set], decided);
    }
}

/// What [`decide`] holds for a row no centre has decided yet.
const UNDECIDED: u64 = u64::MAX;

/// For the rows no hypersphere of a set covers ([`UNDECIDED`] in `decided`), the set's
/// nearest centre (`places`: the set's centres in the model's order): np.argmin over the
/// set's own order, the first nearest, each centre replacing only a farther one; the set's
/// first centre where every distance is infinite. A vector of rows all covered is skipped.
#[inline(always)]
fn nearest<S: pulp::Simd>(
    simd: S,
    centres: &Shifted,
    distances: &Distances<'_>,
    places: &[usize],
    decided: &mut [u64],
) {
    let lanes = std::mem::size_of::<S::u64s>() / std::mem::size_of::<u64>();
    let (xn, xn_tail) = S::as_simd_f64s(distances.norms);
    let (dec, dec_tail) = S::as_mut_simd_u64s(decided);
    let (zero, undecided) = (simd.splat_f64s(0.0), simd.splat_u64s(UNDECIDED));
    for (j, (dec, &xn)) in dec.iter_mut().zip(xn).enumerate() {
        let open = simd.equal_u64s(*dec, undecided);
        if simd.first_true_m64s(open) == lanes {
            continue;
        }
        let mut near = simd.splat_f64s(f64::INFINITY);
        let mut at = simd.splat_u64s(places[0] as u64);
        for &c in places {
            let p = S::as_simd_f64s(distances.dots(c)).0[j];
            let cn = simd.splat_f64s(centres.norms[c]);
            let dist = simd.max_f64s(expanded_simd(simd, xn, cn, p), zero);
            let ahead = simd.less_than_f64s(dist, near);
            near = simd.select_f64s(ahead, dist, near);
            at = simd.select_u64s(ahead, simd.splat_u64s(c as u64), at);
        }
        *dec = simd.select_u64s(open, at, *dec);
    }
    let done = distances.norms.len() - xn_tail.len();
    for (i, (dec, &xn)) in dec_tail.iter_mut().zip(xn_tail).enumerate() {
        if *dec != UNDECIDED {
            continue;
        }
        let (mut near, mut at) = (f64::INFINITY, places[0]);
        for &c in places {
            let dist = expanded(xn, centres.norms[c], distances.dots(c)[done + i]).max(0.0);
            if dist < near {
                (near, at) = (dist, c);
            }
        }
        *dec = at as u64;
    }
}

/// Sets of at most this many centres (the default ψ is 8) give each row its deciding
/// centre's coordinates by a chain of vector selects over [`Shifted::slots`]; larger
/// sets load them row by row.
const SLOTS: usize = 8;

/// One block's contributions ([`Inne::contributions`]) from its deciding centres
/// ([`decide`]), added to `out` (laid out feature by feature): per set, each row's
/// squared differences to its deciding centre, scaled to add up to the set's term over
/// the number of sets (split evenly where the row is the centre), added in set order.
/// `work` holds 2 · d · m values.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn split<S: pulp::Simd>(
    simd: S,
    centres: &Shifted,
    rows: &[f64],
    psi: usize,
    decided: &[u64],
    terms: &[f64],
    work: &mut [f64],
    out: &mut [f64],
) {
    let (k, d) = centres.centres.dim();
    let m = rows.len() / d;
    let (x, sq) = work.split_at_mut(d * m);
    let sq = &mut sq[..d * m];
    crate::rows::by_feature(rows, d, x, |_, v| v);
    let block = Block { x, m, k };
    let sets = decided.chunks_exact(m).zip(terms.chunks_exact(m));
    for (s, (decided, terms)) in sets.enumerate() {
        let vectors = if psi <= SLOTS {
            let slots = &centres.slots[s * d..(s + 1) * d];
            selected_shares(simd, slots, block, s * psi, decided, terms, sq, out)
        } else {
            0
        };
        gathered_shares(&centres.columns, block, vectors..m, decided, terms, out);
    }
}

/// A block's rows laid out feature by feature (`x`: d × m) and the number of centres `k`
/// (the columns of [`Shifted::columns`]).
#[derive(Clone, Copy)]
struct Block<'a> {
    x: &'a [f64],
    m: usize,
    k: usize,
}

/// A set's term over the number of sets (`weight`), split over a row's squared
/// differences to its deciding centre (`total` their sum): the factor of each difference
/// and the even share added to each (the whole of the weight where the row is the centre).
#[inline(always)]
fn shares(weight: f64, total: f64, d: usize) -> (f64, f64) {
    if total > 0.0 {
        (weight / total, 0.0)
    } else {
        (0.0, weight / d as f64)
    }
}

/// One set's part of [`split`] for the block's rows whose vectors of lanes are whole:
/// the squared differences to their deciding centres (`decided`: places in [`Shifted`],
/// the set's first centre at `start`), picked from the set's `slots` by a chain of
/// selects, summed in feature order, then scaled as [`shares`] says and added to `out`
/// (`sq`: d × m scratch). Returns how many rows it did (the rest are left to
/// [`gathered_shares`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn selected_shares<S: pulp::Simd>(
    simd: S,
    slots: &[[f64; SLOTS]],
    block: Block<'_>,
    start: usize,
    decided: &[u64],
    terms: &[f64],
    sq: &mut [f64],
    out: &mut [f64],
) -> usize {
    let Block { x, m, .. } = block;
    let d = slots.len();
    let lanes = std::mem::size_of::<S::u64s>() / std::mem::size_of::<u64>();
    let (labels, rest) = S::as_simd_u64s(decided);
    let (weights, _) = S::as_simd_f64s(terms);
    let zero = simd.splat_f64s(0.0);
    for (j, (&label, &weight)) in labels.iter().zip(weights).enumerate() {
        // Slot 0 is the default; a slot past the set's centres matches no row of it.
        let mine: [S::m64s; SLOTS] =
            std::array::from_fn(|p| simd.equal_u64s(label, simd.splat_u64s((start + p) as u64)));
        let mut total = zero;
        let features = slots
            .iter()
            .zip(x.chunks_exact(m))
            .zip(sq.chunks_exact_mut(m));
        for ((slot, x), sq) in features {
            let mut v = simd.splat_f64s(slot[0]);
            for p in 1..SLOTS {
                v = simd.select_f64s(mine[p], simd.splat_f64s(slot[p]), v);
            }
            let diff = simd.sub_f64s(S::as_simd_f64s(x).0[j], v);
            let square = simd.mul_f64s(diff, diff);
            S::as_mut_simd_f64s(sq).0[j] = square;
            total = simd.add_f64s(total, square);
        }
        // `shares`, lane by lane; the even shares only where a row is its centre.
        let apart = simd.greater_than_f64s(total, zero);
        let scale = simd.select_f64s(apart, simd.div_f64s(weight, total), zero);
        let on_centre = simd.less_than_or_equal_f64s(total, zero);
        let even = if simd.first_true_m64s(on_centre) == lanes {
            None
        } else {
            let even = simd.div_f64s(weight, simd.splat_f64s(d as f64));
            Some(simd.select_f64s(apart, zero, even))
        };
        for (out, sq) in out.chunks_exact_mut(m).zip(sq.chunks_exact(m)) {
            let out = &mut S::as_mut_simd_f64s(out).0[j];
            let mut share = simd.mul_f64s(S::as_simd_f64s(sq).0[j], scale);
            if let Some(even) = even {
                share = simd.add_f64s(share, even);
            }
            *out = simd.add_f64s(*out, share);
        }
    }
    m - rest.len()
}

/// One set's part of [`split`] for the block's rows in `rows`, row by row, each row's
/// deciding centre's coordinates read from `columns` ([`Shifted::columns`]).
#[inline(always)]
fn gathered_shares(
    columns: &[f64],
    block: Block<'_>,
    rows: std::ops::Range<usize>,
    decided: &[u64],
    terms: &[f64],
    out: &mut [f64],
) {
    let Block { x, m, k } = block;
    let d = x.len() / m.max(1);
    for i in rows {
        let c = decided[i] as usize;
        let difference = |f: usize| x[f * m + i] - columns[f * k + c];
        let total = (0..d).map(difference).fold(0.0, |a, b| a + b * b);
        let (scale, even) = shares(terms[i], total, d);
        for f in 0..d {
            let diff = difference(f);
            out[f * m + i] += diff * diff * scale + even;
        }
    }
}

/// For each of a block's rows that centre `c` covers, its term becomes the centre's value
/// in `values` ([`Shifted::ratio`] or [`Shifted::weights`]) and its deciding centre `c`,
/// where given.
#[inline(always)]
fn covering<S: pulp::Simd>(
    simd: S,
    centres: &Shifted,
    distances: &Distances<'_>,
    c: usize,
    values: &[f64],
    term: &mut [f64],
    decided: Option<&mut [u64]>,
) {
    let (cn, r, q) = (centres.norms[c], centres.radius[c], values[c]);
    let (cn_s, r_s, q_s) = (simd.splat_f64s(cn), simd.splat_f64s(r), simd.splat_f64s(q));
    let (xn, xn_tail) = S::as_simd_f64s(distances.norms);
    let (p, p_tail) = S::as_simd_f64s(distances.dots(c));
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
/// distances of [`measure`] keep their precision for data far from the origin, e.g. a
/// timestamp column, and stay exact for integer data, where rows often lie exactly on a
/// radius), with its squared norm, and each set's centres in increasing order of radius
/// (equal radii in the set's order): a row's covering centre of the smallest radius is
/// then the first one that covers it.
#[derive(Debug, Clone)]
struct Shifted {
    /// The model's first centre.
    origin: Vec<f64>,
    /// (t · ψ) × d.
    centres: Array2<f64>,
    norms: Vec<f64>,
    /// Per centre in the model's order, its place in this order.
    place: Vec<usize>,
    /// Per centre in this order: its squared radius and ratio.
    radius: Vec<f64>,
    ratio: Vec<f64>,
    /// Per centre in this order, its ratio over the number of sets (a covered row's term
    /// of the score), and the same of an uncovered row's 1: what explanations split.
    weights: Vec<f64>,
    uncovered: f64,
    /// The centres as the model holds them (not shifted), in this order, feature by
    /// feature: d × (t · ψ), what explanations measure exact differences to.
    columns: Vec<f64>,
    /// Where ψ ≤ [`SLOTS`], the same per set and feature (t · d of them), padded with
    /// zeros: what [`selected_shares`] picks from.
    slots: Vec<[f64; SLOTS]>,
}

impl Shifted {
    fn of(model: &Inne) -> Self {
        let (psi, k) = (model.psi, model.radius.len());
        let t = (k / psi) as f64;
        let d = model.centres.len() / k;
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
        let columns: Vec<f64> = (0..d)
            .flat_map(|f| index.iter().map(move |&i| all[[i, f]]))
            .collect();
        let mut slots = Vec::new();
        if psi <= SLOTS {
            for s in 0..k / psi {
                for f in 0..d {
                    let mut slot = [0.0; SLOTS];
                    slot[..psi].copy_from_slice(&columns[f * k + s * psi..][..psi]);
                    slots.push(slot);
                }
            }
        }
        Self {
            place,
            origin,
            norms: centres.rows().into_iter().map(|c| c.dot(&c)).collect(),
            centres,
            radius: index.iter().map(|&c| model.radius[c]).collect(),
            ratio: index.iter().map(|&c| model.ratio[c]).collect(),
            weights: index.iter().map(|&c| model.ratio[c] / t).collect(),
            uncovered: 1.0 / t,
            columns,
            slots,
        }
    }
}

/// What a block's squared distances to every centre are made of ([`measure`]).
struct Distances<'a> {
    /// The block's rows' squared norms (m).
    norms: &'a [f64],
    /// (t · ψ) × m: each centre's dot products with the block's rows.
    products: &'a [f64],
}

impl Distances<'_> {
    /// Centre `c`'s dot products with the block's rows.
    fn dots(&self, c: usize) -> &[f64] {
        let m = self.norms.len();
        &self.products[c * m..(c + 1) * m]
    }
}

/// For `rows` (row-major, of the centres' width d), what their squared distances to every
/// centre are made of, as scikit-learn's `euclidean_distances(squared=True)` computes
/// them (PyOD's INNE scores with it): ‖x‖² + ‖c‖² − 2 x·c, on the rows and centres less
/// the model's first centre, the dot products one matrix product for the block (vector
/// instructions picked at run time). A distance is that sum; scikit-learn's clamping at 0
/// changes no comparison with a radius (≥ 0), so only the nearest-centre search applies
/// it. Works in `shifted` (m · d values), `products` (t · ψ · m) and `norms` (m).
fn measure<'a>(
    centres: &Shifted,
    rows: &[f64],
    shifted: &mut [f64],
    products: &'a mut [f64],
    norms: &'a mut [f64],
) -> Distances<'a> {
    let (k, d) = centres.centres.dim();
    let m = norms.len();
    for (out, row) in shifted.chunks_exact_mut(d).zip(rows.chunks_exact(d)) {
        for ((o, v), c) in out.iter_mut().zip(row).zip(&centres.origin) {
            *o = v - c;
        }
    }
    let shifted = ArrayView2::from_shape((m, d), &*shifted).expect("m rows of d");
    for (norm, row) in norms.iter_mut().zip(shifted.rows()) {
        *norm = row.dot(&row);
    }
    let mut out = ArrayViewMut2::from_shape((k, m), &mut *products).expect("k × m products");
    general_mat_mul(1.0, &centres.centres, &shifted.t(), 0.0, &mut out);
    Distances { norms, products }
}

/// One thread's scratch space for scoring a block ([`measure`]).
#[derive(Default)]
struct Buffers {
    shifted: Vec<f64>,
    products: Vec<f64>,
    norms: Vec<f64>,
}

impl Buffers {
    /// [`measure`] of `m` rows (row-major).
    fn distances(&mut self, centres: &Shifted, rows: &[f64], m: usize) -> Distances<'_> {
        let (k, d) = centres.centres.dim();
        self.shifted.resize(m * d, 0.0);
        self.products.resize(k * m, 0.0);
        self.norms.resize(m, 0.0);
        measure(
            centres,
            &rows[..m * d],
            &mut self.shifted,
            &mut self.products,
            &mut self.norms,
        )
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

    /// A row's contributions from the definition: per set, the covering centre of the
    /// smallest radius (exact distances), else the first nearest in the set's order, and
    /// the set's term over the sets split by the squared differences to it; with the
    /// number of sets where no centre covers the row and where the row is the centre.
    fn contributions_by_definition(model: &Inne, row: &[f64]) -> (Vec<f64>, usize, usize) {
        let (psi, d) = (model.psi, row.len());
        let t = model.radius.len() / psi;
        let (mut out, mut uncovered, mut on_centre) = (vec![0.0; d], 0, 0);
        for s in 0..t {
            let set = s * psi..(s + 1) * psi;
            let centre = |at: usize| &model.centres[at * d..(at + 1) * d];
            let covering = set
                .clone()
                .filter(|&at| squared_distance(row, centre(at)) <= model.radius[at])
                .min_by(|&a, &b| model.radius[a].total_cmp(&model.radius[b]));
            let nearest = set
                .clone()
                .min_by(|&a, &b| {
                    squared_distance(row, centre(a)).total_cmp(&squared_distance(row, centre(b)))
                })
                .unwrap();
            let (at, term) = covering.map_or((nearest, 1.0), |c| (c, model.ratio[c]));
            let sq: Vec<f64> = row
                .iter()
                .zip(centre(at))
                .map(|(x, c)| (x - c) * (x - c))
                .collect();
            let total = sq.iter().fold(0.0, |a, b| a + b);
            uncovered += usize::from(covering.is_none());
            on_centre += usize::from(total == 0.0);
            let (scale, even) = shares(term / t as f64, total, d);
            for (o, sq) in out.iter_mut().zip(&sq) {
                *o += sq * scale + even;
            }
        }
        (out, uncovered, on_centre)
    }

    #[test]
    fn blocked_contributions_equal_the_definition() {
        // ψ = 8 picks each deciding centre's coordinates by vector selects, ψ = 20 row by
        // row; 150 rows end in a block that is not a whole number of vectors. Small
        // integers keep the expanded distances exact (so covering decides as the
        // definition does) and repeat rows, so that many rows are centres (even shares).
        let x = Array2::from_shape_fn((300, 4), |(i, j)| ((i * (7 + 2 * j) + j) % 10) as f64 + 1.0);
        let fresh =
            Array2::from_shape_fn((150, 4), |(i, j)| x[[(i * 7) % 300, j]] + (i % 3) as f64);
        for psi in [8, 20] {
            let p = InneParams {
                max_samples: MaxSamples::Count(psi),
                n_estimators: 30,
                ..InneParams::default()
            };
            let (model, _) = Inne::fit(&p.check().unwrap(), 2, x.view(), &mut Vec::new()).unwrap();
            let got = model.contributions(fresh.view());
            let (mut uncovered, mut on_centre) = (0, 0);
            for (i, r) in fresh.outer_iter().enumerate() {
                let (want, u, c) = contributions_by_definition(&model, r.as_slice().unwrap());
                (uncovered, on_centre) = (uncovered + u, on_centre + c);
                for (f, (g, w)) in got.row(i).iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-15 * w.abs().max(1e-300),
                        "ψ {psi} row {i} feature {f}: {g} vs {w}"
                    );
                }
            }
            assert!(
                uncovered > 100 && on_centre > 100,
                "ψ {psi}: {uncovered} uncovered, {on_centre} on a centre"
            );
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
