//! k-means as scikit-learn's `KMeans(n_clusters=k, random_state=seed)` fits it, for
//! CBLOF, over rows laid out feature by feature so that every pass runs across rows in
//! vector lanes (`pulp`: AVX-512, AVX2 or scalar, chosen at run time).
//!
//! - Greedy k-means++ seeding (2 + ⌊ln k⌋ candidates per centre) drawn from NumPy's
//!   `RandomState` as scikit-learn draws it: each candidate is the first row whose
//!   cumulative nearest-centre distance reaches a uniform draw times the potential, and
//!   the candidate leaving the smallest potential becomes the centre.
//! - Lloyd iterations until the labels stop changing or the centres move less than
//!   1e-4 × the mean feature variance (at most 300), empty clusters given the rows
//!   farthest from their centres, and when the labels did not settle, the labels of the
//!   final centres.
//!
//! Every distance is Σ_f (x_f − c_f)² in feature order, without fused multiply-adds, so a
//! row's distances, labels and bounds are the same bit for bit whatever the width of the
//! CPU's vectors. Sums over rows (potentials, cluster sums) go to eight lanes by row
//! number, added in row order per lane, per block of [`BLOCK`] rows, then the lanes and
//! the blocks in a fixed order: the model does not depend on the CPU or the thread count.
//!
//! ## Cost
//! k-means++: per centre, one pass measuring every candidate against every row (the
//! candidates' sums advancing together) and one lowering the rows' nearest-centre
//! distances; the cumulative sums are searched from the blocks' totals, then within one
//! block. Lloyd: each pass measures a vector of rows against up to eight centres at once.
//! From [`BOUNDED_MIN_WIDTH`] features on, passes after the first keep Hamerly's bounds
//! ("Making k-means even faster", SDM 2010, see [`Bounds`]) and measure only the rows the
//! bounds cannot settle: with the rest of their vector of rows when they are many of it,
//! else gathered with other vectors' few. The cluster sums follow the rows that changed
//! cluster, and are summed afresh when many did (or a cluster emptied), so rounding does
//! not build up.

use pulp::Simd;
use rayon::prelude::*;

use crate::numpy_random::RandomState;

/// scikit-learn's `KMeans` defaults.
const MAX_ITER: usize = 300;
const TOL: f64 = 1e-4;
/// Rows per block of the parallel passes (a multiple of [`LANES`]).
const BLOCK: usize = 4096;
/// Lanes of every sum over rows: row i goes to lane i mod 8, whatever the vector width.
const LANES: usize = 8;
/// The relative margin of a row's bounds over their rounding.
const BOUND_MARGIN: f64 = 1e-9;
/// Rows at least this wide keep bounds between passes: below it, measuring a row against
/// every centre costs little more than checking its bounds.
const BOUNDED_MIN_WIDTH: usize = 8;
/// Cluster sums are summed afresh when more than 1 / this of the rows changed cluster.
const RESUM_SHARE: usize = 8;

/// Centred rows feature by feature: column f holds every row's f-th value, padded with
/// zeros to a multiple of [`LANES`] rows.
pub(super) struct Columns {
    values: Vec<f64>,
    n: usize,
    padded: usize,
    d: usize,
}

impl Columns {
    /// `data` (row-major, `d` values a row, at least one row) less its column means;
    /// also the means, and the mean of the columns' variances.
    pub(super) fn centred(data: &[f64], d: usize) -> (Self, Vec<f64>, f64) {
        let n = data.len() / d;
        let padded = n.div_ceil(LANES) * LANES;
        let mut values = vec![0.0; d * padded];
        // Transposed a block of rows at a time, the block staying in cache.
        const ROWS: usize = 512;
        for (b, rows) in data.chunks(ROWS * d).enumerate() {
            for f in 0..d {
                let column = &mut values[f * padded + b * ROWS..][..rows.len() / d];
                for (v, row) in column.iter_mut().zip(rows.chunks_exact(d)) {
                    *v = row[f];
                }
            }
        }
        let stats: Vec<(f64, f64)> = values
            .par_chunks_mut(padded)
            .map(|column| {
                let mean = lane_sum(column) / n as f64;
                let mut squares = [0.0; LANES];
                for chunk in column[..n].chunks_mut(LANES) {
                    for (v, s) in chunk.iter_mut().zip(&mut squares) {
                        *v -= mean;
                        *s += *v * *v;
                    }
                }
                (mean, reduce_lanes(&squares) / n as f64)
            })
            .collect();
        let variance_mean = stats.iter().map(|s| s.1).sum::<f64>() / d as f64;
        let columns = Self {
            values,
            n,
            padded,
            d,
        };
        (
            columns,
            stats.into_iter().map(|s| s.0).collect(),
            variance_mean,
        )
    }

    fn column(&self, f: usize) -> &[f64] {
        &self.values[f * self.padded..(f + 1) * self.padded]
    }

    fn value(&self, i: usize, f: usize) -> f64 {
        self.values[f * self.padded + i]
    }

    fn row(&self, i: usize) -> impl Iterator<Item = f64> + '_ {
        (0..self.d).map(move |f| self.value(i, f))
    }

    /// The padded row range of each block.
    fn blocks(&self) -> impl IndexedParallelIterator<Item = std::ops::Range<usize>> + '_ {
        (0..self.padded.div_ceil(BLOCK))
            .into_par_iter()
            .map(|b| b * BLOCK..((b + 1) * BLOCK).min(self.padded))
    }

    /// Each column's rows in `range`.
    fn slices(&self, range: std::ops::Range<usize>) -> Vec<&[f64]> {
        (0..self.d)
            .map(|f| &self.column(f)[range.clone()])
            .collect()
    }
}

/// Σ `values` (a multiple of [`LANES`] long) by lanes, then the lanes pairwise.
#[inline(always)]
fn lane_sum(values: &[f64]) -> f64 {
    let mut lanes = [0.0; LANES];
    for chunk in values.chunks_exact(LANES) {
        for (s, v) in lanes.iter_mut().zip(chunk) {
            *s += v;
        }
    }
    reduce_lanes(&lanes)
}

fn reduce_lanes(lanes: &[f64; LANES]) -> f64 {
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
}

/// The rows of one tile (one vector of rows), feature by feature.
#[inline(always)]
fn load_tile<S: Simd>(columns: &[&[S::f64s]], t: usize, tile: &mut [S::f64s]) {
    for (x, column) in tile.iter_mut().zip(columns) {
        *x = column[t];
    }
}

/// Centres measured at once: their sums advance together, feature by feature.
const GROUP: usize = 8;

/// Evaluates `$body` with the constant `$g` set to `$m` (1 to [`GROUP`]).
macro_rules! with_group {
    ($m:expr, $g:ident, $body:expr) => {
        match $m {
            1 => {
                const $g: usize = 1;
                $body
            }
            2 => {
                const $g: usize = 2;
                $body
            }
            3 => {
                const $g: usize = 3;
                $body
            }
            4 => {
                const $g: usize = 4;
                $body
            }
            5 => {
                const $g: usize = 5;
                $body
            }
            6 => {
                const $g: usize = 6;
                $body
            }
            7 => {
                const $g: usize = 7;
                $body
            }
            _ => {
                const $g: usize = GROUP;
                $body
            }
        }
    };
}

/// Centres (k × d, row-major) in groups of up to [`GROUP`], each group feature by feature
/// (d × its size), for [`distances`].
fn grouped(centres: &[f64], d: usize) -> Vec<Vec<f64>> {
    centres
        .chunks(GROUP * d)
        .map(|group| {
            let m = group.len() / d;
            (0..d * m).map(|i| group[(i % m) * d + i / m]).collect()
        })
        .collect()
}

/// The tile's squared distances to the `M` centres of a group ([`grouped`]): per centre
/// Σ_f (x_f − c_f)² in feature order, the centres' sums advancing together.
#[inline(always)]
fn distances<S: Simd, const M: usize>(simd: S, tile: &[S::f64s], group: &[f64]) -> [S::f64s; M] {
    let mut s = [simd.splat_f64s(0.0); M];
    for (&x, centres) in tile.iter().zip(group.chunks_exact(M)) {
        let centres: &[f64; M] = centres.try_into().expect("M values a feature");
        for (s, &c) in s.iter_mut().zip(centres) {
            let t = simd.sub_f64s(x, simd.splat_f64s(c));
            *s = simd.add_f64s(*s, simd.mul_f64s(t, t));
        }
    }
    s
}

/// Per row of the tile, the nearest centre (the first on ties), the squared distance to
/// it and the smallest squared distance to another; the centres as [`grouped`] lays
/// them out.
#[inline(always)]
fn nearest_two<S: Simd>(
    simd: S,
    tile: &[S::f64s],
    groups: &[Vec<f64>],
) -> (S::u64s, S::f64s, S::f64s) {
    let d = tile.len();
    let mut label = simd.splat_u64s(0);
    let mut best = simd.splat_f64s(f64::INFINITY);
    let mut second = best;
    let mut j = 0u64;
    for group in groups {
        with_group!(group.len() / d, M, {
            for s in distances::<S, M>(simd, tile, group) {
                let closer = simd.less_than_f64s(s, best);
                second = simd.min_f64s(simd.max_f64s(s, best), second);
                label = simd.select_u64s(closer, simd.splat_u64s(j), label);
                best = simd.select_f64s(closer, s, best);
                j += 1;
            }
        });
    }
    (label, best, second)
}

/// Vector views of each column slice.
#[inline(always)]
fn as_vectors<'a, S: Simd>(slices: &[&'a [f64]]) -> Vec<&'a [S::f64s]> {
    slices.iter().map(|c| S::as_simd_f64s(c).0).collect()
}

/// One block of the nearest-centre distances of k-means++: each row's squared distance
/// to `centre` where it is smaller than `closest` (or in its place, when `replace`), and
/// the block's sum of them.
struct Lower<'a> {
    columns: Vec<&'a [f64]>,
    centre: &'a [f64],
    closest: &'a mut [f64],
    replace: bool,
}

impl pulp::WithSimd for Lower<'_> {
    type Output = f64;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> f64 {
        let columns = as_vectors::<S>(&self.columns);
        let mut tile = vec![simd.splat_f64s(0.0); self.centre.len()];
        let mut sums = Lanes::<S, 1>::new(simd);
        let closest = S::as_mut_simd_f64s(self.closest).0;
        for (t, old) in closest.iter_mut().enumerate() {
            load_tile::<S>(&columns, t, &mut tile);
            let [v] = distances::<S, 1>(simd, &tile, self.centre);
            if !self.replace {
                *old = simd.select_f64s(simd.less_than_f64s(v, *old), v, *old);
            } else {
                *old = v;
            }
            sums.add(simd, t, [*old]);
        }
        sums.totals()[0]
    }
}

/// Sums over rows of `M` quantities at once, a row's value going to lane (row mod
/// [`LANES`]) whatever the vector width: `LANES / width` vectors of each, kept in
/// registers.
struct Lanes<S: Simd, const M: usize> {
    sums: [[S::f64s; M]; LANES],
}

impl<S: Simd, const M: usize> Lanes<S, M> {
    #[inline(always)]
    fn new(simd: S) -> Self {
        Self {
            sums: [[simd.splat_f64s(0.0); M]; LANES],
        }
    }

    /// Adds the values of tile `t`.
    #[inline(always)]
    fn add(&mut self, simd: S, t: usize, values: [S::f64s; M]) {
        let slot = &mut self.sums[t % (LANES / S::F64_LANES)];
        for (s, v) in slot.iter_mut().zip(values) {
            *s = simd.add_f64s(*s, v);
        }
    }

    /// Each quantity's sum: its lanes added pairwise.
    #[inline(always)]
    fn totals(&self) -> [f64; M] {
        let w = S::F64_LANES;
        std::array::from_fn(|q| {
            let mut lanes = [0.0; LANES];
            for (v, slot) in self.sums[..LANES / w].iter().enumerate() {
                let values: &[f64] = pulp::bytemuck::cast_slice(std::slice::from_ref(&slot[q]));
                lanes[v * w..(v + 1) * w].copy_from_slice(values);
            }
            reduce_lanes(&lanes)
        })
    }
}

/// One block of the candidates' potentials: per candidate (`groups` as [`grouped`] lays
/// them out), Σ over the rows of min(squared distance to it, `closest`).
struct Capped<'a> {
    columns: Vec<&'a [f64]>,
    groups: &'a [Vec<f64>],
    closest: &'a [f64],
}

impl pulp::WithSimd for Capped<'_> {
    type Output = Vec<f64>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Vec<f64> {
        let d = self.columns.len();
        let columns = as_vectors::<S>(&self.columns);
        let mut tile = vec![simd.splat_f64s(0.0); d];
        let closest = S::as_simd_f64s(self.closest).0;
        let mut potentials = Vec::new();
        for group in self.groups {
            with_group!(group.len() / d, M, {
                let mut sums = Lanes::<S, M>::new(simd);
                for (t, &old) in closest.iter().enumerate() {
                    load_tile::<S>(&columns, t, &mut tile);
                    let mut capped = distances::<S, M>(simd, &tile, group);
                    // A loop, not a closure (which would lose the vector instructions).
                    for v in &mut capped {
                        *v = simd.select_f64s(simd.less_than_f64s(*v, old), *v, old);
                    }
                    sums.add(simd, t, capped);
                }
                potentials.extend(sums.totals());
            });
        }
        potentials
    }
}

/// The block totals' running sums searched for `target`: the first row whose cumulative
/// sum of `closest` (the blocks before it by their totals, then row by row) reaches it,
/// else the last row.
fn search(closest: &[f64], totals: &[f64], target: f64, n: usize) -> usize {
    let mut before = 0.0;
    for (b, &total) in totals.iter().enumerate() {
        if before + total >= target {
            let mut running = before;
            for (i, &v) in closest[b * BLOCK..].iter().take(BLOCK).enumerate() {
                running += v;
                if running >= target {
                    return (b * BLOCK + i).min(n - 1);
                }
            }
        }
        before += total;
    }
    n - 1
}

/// Greedy k-means++ (scikit-learn's `_kmeans_plusplus` with unit weights): the indices of
/// the rows chosen as centres.
fn kmeans_plusplus(x: &Columns, k: usize, rng: &mut RandomState, arch: pulp::Arch) -> Vec<usize> {
    let (n, d) = (x.n, x.d);
    let trials = 2 + (k as f64).ln() as usize;
    let first = rng.choice_uniform(n);
    let mut chosen = vec![first];
    let mut closest = vec![0.0; x.padded];
    let lower = |closest: &mut [f64], centre: &[f64], replace: bool| -> Vec<f64> {
        x.blocks()
            .zip(closest.par_chunks_mut(BLOCK))
            .map(|(range, closest)| {
                arch.dispatch(Lower {
                    columns: x.slices(range),
                    centre,
                    closest,
                    replace,
                })
            })
            .collect()
    };
    let centre: Vec<f64> = x.row(first).collect();
    // The padding rows stay at 0, adding nothing to any sum.
    let mut totals = {
        let mut totals = lower(&mut closest, &centre, true);
        let last = totals.len() - 1;
        closest[n..].fill(0.0);
        totals[last] = lane_sum(&closest[last * BLOCK..]);
        totals
    };
    let mut potential: f64 = totals.iter().sum();
    for _ in 1..k {
        let candidates: Vec<usize> = (0..trials)
            .map(|_| search(&closest, &totals, rng.random_sample() * potential, n))
            .collect();
        let centres: Vec<f64> = candidates.iter().flat_map(|&c| x.row(c)).collect();
        let groups = grouped(&centres, d);
        let per_block: Vec<Vec<f64>> = x
            .blocks()
            .zip(closest.par_chunks(BLOCK))
            .map(|(range, closest)| {
                arch.dispatch(Capped {
                    columns: x.slices(range),
                    groups: &groups,
                    closest,
                })
            })
            .collect();
        let mut potentials = vec![0.0; trials];
        for block in per_block {
            for (p, s) in potentials.iter_mut().zip(block) {
                *p += s;
            }
        }
        // The first candidate of the lowest potential.
        let (mut at, mut pot) = (0, potentials[0]);
        for (t, &p) in potentials.iter().enumerate().skip(1) {
            if p < pot {
                (at, pot) = (t, p);
            }
        }
        totals = lower(&mut closest, &centres[at * d..(at + 1) * d], false);
        potential = pot;
        chosen.push(candidates[at]);
    }
    chosen
}

/// Hamerly's bounds ("Making k-means even faster", SDM 2010) without a write for the rows
/// they keep. Measuring a row gives u, the distance to its nearest centre, and l, the
/// distance to the next; since then its own centre has moved at most `travelled[a]` −
/// (the same at its measuring) and every other at most `drift` − (the same then), the sums
/// of each centre's moves and of the largest move of each pass. A row keeps its label
/// unmeasured while its upper bound u + that move of its own centre stays below both its
/// lower bound l − that drift and half the distance from its centre to the nearest other,
/// by a margin far above the rounding of the bounds; rows store `upper` = u − the own
/// centre's travel and `lower` = l + the drift, so a kept row is only read.
struct Bounds {
    upper: Vec<f64>,
    lower: Vec<f64>,
    travelled: Vec<f64>,
    drift: f64,
}

impl Bounds {
    /// Bounds for `padded` rows and `k` centres (none kept for rows when `kept` is false).
    fn new(padded: usize, k: usize, kept: bool) -> Self {
        let padded = if kept { padded } else { 0 };
        Self {
            upper: vec![0.0; padded],
            lower: vec![0.0; padded],
            travelled: vec![0.0; k],
            drift: 0.0,
        }
    }

    /// Adds each centre's move from `old` to `new` to its travel, and the largest to the
    /// drift.
    fn moved(&mut self, old: &[f64], new: &[f64], d: usize) {
        let mut farthest: f64 = 0.0;
        for ((a, b), travelled) in old
            .chunks_exact(d)
            .zip(new.chunks_exact(d))
            .zip(&mut self.travelled)
        {
            let shift = squared_distance(a, b).sqrt();
            *travelled += shift;
            farthest = farthest.max(shift);
        }
        self.drift += farthest;
    }
}

pub(super) fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// How a Lloyd pass finds the rows' labels: measuring only the rows whose bounds have run
/// out, or every row against every centre.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    Bounded,
    Plain,
}

/// A row that changed cluster in a pass: (row, old label, new label).
type Move = (usize, u64, u64);

/// What every block of a Lloyd pass reads: the centres, whether the rows keep bounds,
/// the centres' moves since the bounds began ([`Bounds`]), and unless every row is to be
/// measured, half the distance from each centre to the nearest other.
struct Centres<'a> {
    groups: Vec<Vec<f64>>,
    kept: bool,
    travelled: &'a [f64],
    drift: f64,
    half_gap: Option<Vec<f64>>,
}

/// One block of a Lloyd pass: the labels (and when kept, the bounds) of its rows, and the
/// rows (of the first `real` rows of the block) whose label changed from an earlier one.
struct Assign<'a> {
    pass: &'a Centres<'a>,
    columns: Vec<&'a [f64]>,
    start: usize,
    real: usize,
    labels: &'a mut [u64],
    upper: &'a mut [f64],
    lower: &'a mut [f64],
}

/// Per lane, `table[label]`.
#[inline(always)]
fn pick<S: Simd>(simd: S, label: S::u64s, table: &[f64]) -> S::f64s {
    let mut v = simd.splat_f64s(0.0);
    for (j, &t) in table.iter().enumerate() {
        let mine = simd.equal_u64s(label, simd.splat_u64s(j as u64));
        v = simd.select_f64s(mine, simd.splat_f64s(t), v);
    }
    v
}

/// A tile's upper and lower bounds, as [`Bounds`] stores them.
type RowBounds<S> = (<S as Simd>::f64s, <S as Simd>::f64s);

/// The tile's rows measured against every centre: their nearest centres and, when the
/// pass keeps bounds, their upper and lower bounds as [`Bounds`] stores them.
#[inline(always)]
fn measure<S: Simd>(
    simd: S,
    pass: &Centres<'_>,
    tile: &[S::f64s],
) -> (S::u64s, Option<RowBounds<S>>) {
    let (found, best, second) = nearest_two(simd, tile, &pass.groups);
    // Not a closure: its body would be compiled without the vector instructions.
    let bounds = if pass.kept {
        let u = simd.sub_f64s(simd.sqrt_f64s(best), pick(simd, found, pass.travelled));
        let l = simd.add_f64s(simd.sqrt_f64s(second), simd.splat_f64s(pass.drift));
        Some((u, l))
    } else {
        None
    };
    (found, bounds)
}

impl pulp::WithSimd for Assign<'_> {
    type Output = Vec<Move>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Vec<Move> {
        let Self {
            pass,
            columns,
            start,
            real,
            labels,
            upper,
            lower,
        } = self;
        let w = S::F64_LANES;
        let vectors = as_vectors::<S>(&columns);
        let mut tile = vec![simd.splat_f64s(0.0); columns.len()];
        let mut moved = Vec::new();
        // Rows (in the block) to measure apart from their tile's other rows.
        let mut pending = Vec::new();
        let now = simd.splat_f64s(pass.drift);
        let margin = simd.splat_f64s(BOUND_MARGIN);
        let (one, zero) = (simd.splat_u64s(1), simd.splat_u64s(0));
        // Every lane true.
        let every = simd.equal_u64s(zero, zero);
        {
            // Empty when the pass keeps no bounds.
            let uppers = S::as_mut_simd_f64s(upper).0;
            let lowers = S::as_mut_simd_f64s(lower).0;
            for (t, label) in S::as_mut_simd_u64s(labels).0.iter_mut().enumerate() {
                let need = match &pass.half_gap {
                    Some(half_gap) => {
                        let (upper, lower) = (uppers[t], lowers[t]);
                        let own = pick(simd, *label, pass.travelled);
                        let u = simd.add_f64s(upper, own);
                        let l = simd.sub_f64s(lower, now);
                        let m = simd.max_f64s(pick(simd, *label, half_gap), l);
                        let scale = simd.add_f64s(
                            simd.add_f64s(simd.abs_f64s(upper), own),
                            simd.add_f64s(simd.abs_f64s(lower), now),
                        );
                        let need = simd.greater_than_or_equal_f64s(
                            simd.add_f64s(u, simd.mul_f64s(scale, margin)),
                            m,
                        );
                        let flags = simd.select_u64s(need, one, zero);
                        let flags: &[u64] =
                            pulp::bytemuck::cast_slice(std::slice::from_ref(&flags));
                        let count = flags.iter().sum::<u64>() as usize;
                        if count == 0 {
                            continue;
                        }
                        if 2 * count < w {
                            // Few rows: measured with other tiles' few.
                            pending.extend(
                                (0..w)
                                    .filter(|&lane| flags[lane] == 1)
                                    .map(|lane| t * w + lane),
                            );
                            continue;
                        }
                        need
                    }
                    None => every,
                };
                load_tile::<S>(&vectors, t, &mut tile);
                let old = *label;
                let (found, bounds) = measure(simd, pass, &tile);
                *label = simd.select_u64s(need, found, old);
                if let Some((u, l)) = bounds {
                    uppers[t] = simd.select_f64s(need, u, uppers[t]);
                    lowers[t] = simd.select_f64s(need, l, lowers[t]);
                }
                // Which rows changed cluster, lane by lane only where one did.
                let kept = simd.select_u64s(simd.equal_u64s(old, *label), one, zero);
                if simd.first_true_m64s(simd.equal_u64s(kept, zero)) == w {
                    continue;
                }
                let (old, new): (&[u64], &[u64]) = (
                    pulp::bytemuck::cast_slice(std::slice::from_ref(&old)),
                    pulp::bytemuck::cast_slice(std::slice::from_ref(label)),
                );
                for (lane, (&was, &now)) in old.iter().zip(new).enumerate() {
                    let row = t * w + lane;
                    if was != now && was != u64::MAX && row < real {
                        moved.push((start + row, was, now));
                    }
                }
            }
        }
        // The pending rows (only with bounds), a vector of them at a time (the last
        // repeating its last row).
        let mut values = [0.0; LANES];
        for group in pending.chunks(w) {
            let row = |lane: usize| group[lane.min(group.len() - 1)];
            for (f, x) in tile.iter_mut().enumerate() {
                for (lane, v) in values[..w].iter_mut().enumerate() {
                    *v = columns[f][row(lane)];
                }
                *x = S::as_simd_f64s(&values[..w]).0[0];
            }
            let (found, bounds) = measure(simd, pass, &tile);
            let (u, l) = bounds.expect("rows are pending only where bounds are kept");
            let found: &[u64] = pulp::bytemuck::cast_slice(std::slice::from_ref(&found));
            let u: &[f64] = pulp::bytemuck::cast_slice(std::slice::from_ref(&u));
            let l: &[f64] = pulp::bytemuck::cast_slice(std::slice::from_ref(&l));
            for (lane, &r) in group.iter().enumerate() {
                let was = labels[r];
                if was != found[lane] && r < real {
                    moved.push((start + r, was, found[lane]));
                }
                labels[r] = found[lane];
                upper[r] = u[lane];
                lower[r] = l[lane];
            }
        }
        moved.sort_unstable_by_key(|m| m.0);
        moved
    }
}

/// One Lloyd pass over every block: the rows' labels and bounds updated, and the rows
/// that changed cluster from an earlier label, in row order. The bounds hold from the
/// first pass on; `Pass::Plain` measures every row all the same.
fn assign(
    x: &Columns,
    centres: &[f64],
    labels: &mut [u64],
    bounds: &mut Bounds,
    pass: Pass,
    arch: pulp::Arch,
) -> Vec<Move> {
    let (n, d) = (x.n, x.d);
    let k = centres.len() / d;
    let first = labels.first().is_some_and(|&l| l == u64::MAX);
    let half_gap = (pass == Pass::Bounded && !first).then(|| {
        (0..k)
            .map(|j| {
                let c = &centres[j * d..(j + 1) * d];
                let nearest = (0..k)
                    .filter(|&o| o != j)
                    .map(|o| squared_distance(c, &centres[o * d..(o + 1) * d]))
                    .fold(f64::INFINITY, f64::min);
                0.5 * nearest.sqrt()
            })
            .collect()
    });
    let kept = !bounds.upper.is_empty();
    let pass = Centres {
        groups: grouped(centres, d),
        kept,
        travelled: &bounds.travelled,
        drift: bounds.drift,
        half_gap,
    };
    let block = |range: std::ops::Range<usize>,
                 labels: &mut [u64],
                 upper: &mut [f64],
                 lower: &mut [f64]| {
        arch.dispatch(Assign {
            pass: &pass,
            start: range.start,
            real: n.saturating_sub(range.start).min(range.len()),
            columns: x.slices(range),
            labels,
            upper,
            lower,
        })
    };
    let moved: Vec<Vec<Move>> = if kept {
        x.blocks()
            .zip(labels.par_chunks_mut(BLOCK))
            .zip(bounds.upper.par_chunks_mut(BLOCK))
            .zip(bounds.lower.par_chunks_mut(BLOCK))
            .map(|(((range, labels), upper), lower)| block(range, labels, upper, lower))
            .collect()
    } else {
        x.blocks()
            .zip(labels.par_chunks_mut(BLOCK))
            .map(|(range, labels)| block(range, labels, &mut [], &mut []))
            .collect()
    };
    moved.concat()
}

/// Per cluster the sum of its rows (k × d) and their number: per block, the rows added
/// into eight sets by row number, the sets then the blocks added in order.
fn cluster_sums(x: &Columns, labels: &[u64], k: usize) -> (Vec<f64>, Vec<u64>) {
    let d = x.d;
    let mut counts = vec![0u64; k];
    for &l in &labels[..x.n] {
        counts[l as usize] += 1;
    }
    let per_block: Vec<Vec<f64>> = x
        .blocks()
        .map(|range| {
            let mut sets = vec![0.0; LANES * k * d];
            let rows = range.start..range.end.min(x.n);
            for (i, &label) in rows.clone().zip(&labels[rows]) {
                let at = (i % LANES) * k * d + label as usize * d;
                for (f, s) in sets[at..at + d].iter_mut().enumerate() {
                    *s += x.value(i, f);
                }
            }
            let mut sums = vec![0.0; k * d];
            for (s, v) in sums.iter_mut().enumerate() {
                let lanes: [f64; LANES] = std::array::from_fn(|l| sets[l * k * d + s]);
                *v = reduce_lanes(&lanes);
            }
            sums
        })
        .collect();
    let mut sums = vec![0.0; k * d];
    for block in per_block {
        for (a, b) in sums.iter_mut().zip(block) {
            *a += b;
        }
    }
    (sums, counts)
}

/// scikit-learn's `_relocate_empty_clusters_dense`: each empty cluster takes the row
/// farthest from its (old) centre, the farthest first. Whether any cluster was.
fn relocate_empty(
    x: &Columns,
    old: &[f64],
    labels: &[u64],
    sums: &mut [f64],
    counts: &mut [u64],
) -> bool {
    let d = x.d;
    let empty: Vec<usize> = (0..counts.len()).filter(|&j| counts[j] == 0).collect();
    if empty.is_empty() {
        return false;
    }
    let dist: Vec<f64> = (0..x.n)
        .map(|i| {
            let centre = &old[labels[i] as usize * d..][..d];
            x.row(i).zip(centre).map(|(v, c)| (v - c) * (v - c)).sum()
        })
        .collect();
    if dist.iter().all(|&v| v == 0.0) {
        return false;
    }
    let mut far: Vec<usize> = (0..dist.len()).collect();
    far.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
    for (&new, &i) in empty.iter().zip(&far) {
        let was = labels[i] as usize;
        for (f, v) in x.row(i).enumerate() {
            sums[was * d + f] -= v;
            sums[new * d + f] = v;
        }
        counts[new] = 1;
        counts[was] -= 1;
    }
    true
}

/// k-means on `x` as scikit-learn's `KMeans(n_clusters=k, random_state=seed)` fits it
/// (on data already centred): the centres (k × d) and every row's label under them.
pub(super) fn kmeans(x: &Columns, k: usize, variance_mean: f64, seed: u64) -> (Vec<f64>, Vec<u64>) {
    let pass = if x.d >= BOUNDED_MIN_WIDTH {
        Pass::Bounded
    } else {
        Pass::Plain
    };
    kmeans_with(x, k, variance_mean, seed, pass, pulp::Arch::new())
}

pub(super) fn kmeans_with(
    x: &Columns,
    k: usize,
    variance_mean: f64,
    seed: u64,
    pass: Pass,
    arch: pulp::Arch,
) -> (Vec<f64>, Vec<u64>) {
    let (n, d) = (x.n, x.d);
    let tol = variance_mean * TOL;
    let mut rng = RandomState::from_seed(seed);
    let mut centres: Vec<f64> = kmeans_plusplus(x, k, &mut rng, arch)
        .into_iter()
        .flat_map(|i| x.row(i))
        .collect();
    let mut labels = vec![u64::MAX; x.padded];
    let mut bounds = Bounds::new(x.padded, k, pass == Pass::Bounded);
    let mut sums = vec![0.0; k * d];
    let mut counts = vec![0u64; k];
    let mut resum = true;
    let mut strict = false;
    for iteration in 0..MAX_ITER {
        let moved = assign(x, &centres, &mut labels, &mut bounds, pass, arch);
        // The sums and counts of the new labels: summed afresh after a relocation, when
        // many rows moved or a cluster emptied, else moved row by row.
        if !resum {
            for &(_, old, new) in &moved {
                counts[old as usize] -= 1;
                counts[new as usize] += 1;
            }
            resum = moved.len() > n / RESUM_SHARE || counts.contains(&0);
        }
        if resum {
            (sums, counts) = cluster_sums(x, &labels, k);
        } else {
            for &(i, old, new) in &moved {
                for (f, v) in x.row(i).enumerate() {
                    sums[old as usize * d + f] -= v;
                    sums[new as usize * d + f] += v;
                }
            }
        }
        // A relocated row's sums no longer follow its label: sum afresh next time.
        let (mut next, mut sizes) = (sums.clone(), counts.clone());
        resum = relocate_empty(x, &centres, &labels, &mut next, &mut sizes);
        let mut shift = 0.0;
        for j in 0..k {
            if sizes[j] > 0 {
                let w = 1.0 / sizes[j] as f64;
                for s in &mut next[j * d..(j + 1) * d] {
                    *s *= w;
                }
            }
            shift += squared_distance(&next[j * d..(j + 1) * d], &centres[j * d..(j + 1) * d]);
        }
        bounds.moved(&centres, &next, d);
        centres = next;
        if iteration > 0 && moved.is_empty() {
            strict = true;
            break;
        }
        if shift <= tol {
            break;
        }
    }
    if !strict {
        assign(x, &centres, &mut labels, &mut bounds, pass, arch);
    }
    labels.truncate(n);
    (centres, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Overlapping blobs, repeated rows and a spread-out tail over two blocks (not a
    /// multiple of the lanes): many rows change cluster over the iterations, many keep it.
    fn rows(d: usize) -> Vec<f64> {
        let mut rows = Vec::new();
        for i in 0..5000usize {
            let t = (i * 7919 % 3001) as f64 / 3001.0;
            let u = (i * 104_729 % 2999) as f64 / 2999.0;
            let blob = (i % 5) as f64;
            for f in 0..d {
                rows.push(match f % 3 {
                    0 => blob * 1.5 + t + f as f64,
                    1 => (blob * 0.7).sin() * 3.0 + u,
                    _ if i % 17 == 0 => 40.0 * t,
                    _ => u * t * f as f64,
                });
            }
        }
        rows.extend_from_within(..900 * d);
        rows
    }

    fn bits(c: &[f64]) -> Vec<u64> {
        c.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn bounded_passes_reproduce_the_plain_ones_on_every_vector_width() {
        for d in [3, 11] {
            let data = rows(d);
            let (x, _, variance) = Columns::centred(&data, d);
            for (k, seed) in [(8, 0), (8, 1), (3, 7), (20, 2), (1, 0)] {
                let plain = kmeans_with(&x, k, variance, seed, Pass::Plain, pulp::Arch::new());
                for arch in [pulp::Arch::new(), pulp::Arch::Scalar] {
                    let bounded = kmeans_with(&x, k, variance, seed, Pass::Bounded, arch);
                    assert_eq!(bounded.1, plain.1, "labels, d {d}, k {k}, seed {seed}");
                    assert_eq!(
                        bits(&bounded.0),
                        bits(&plain.0),
                        "d {d}, k {k}, seed {seed}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_thread_count_does_not_change_the_model() {
        let data = rows(5);
        let (x, _, variance) = Columns::centred(&data, 5);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let single = one.install(|| kmeans(&x, 8, variance, 3));
        let many = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let multi = many.install(|| kmeans(&x, 8, variance, 3));
        assert_eq!(single.1, multi.1);
        assert_eq!(bits(&single.0), bits(&multi.0));
    }

    /// Lloyd written out row by row from the same seeding: the same labels, and centres
    /// within rounding of the means of their rows.
    #[test]
    fn lloyd_matches_a_row_by_row_reference() {
        for d in [2, 7] {
            let data = rows(d);
            let (x, _, variance) = Columns::centred(&data, d);
            let n = data.len() / d;
            let row = |i: usize| x.row(i).collect::<Vec<_>>();
            for (k, seed) in [(8, 0), (4, 5)] {
                let (centres, labels) = kmeans(&x, k, variance, seed);
                let mut rng = RandomState::from_seed(seed);
                let seeds = kmeans_plusplus(&x, k, &mut rng, pulp::Arch::new());
                let mut reference: Vec<f64> = seeds.iter().flat_map(|&i| row(i)).collect();
                let mut expected = vec![0u64; n];
                for _ in 0..MAX_ITER {
                    let mut sums = vec![0.0; k * d];
                    let mut counts = vec![0.0; k];
                    let before = expected.clone();
                    for (i, label) in expected.iter_mut().enumerate() {
                        let r = row(i);
                        let mut best = (0, f64::INFINITY);
                        for (j, c) in reference.chunks_exact(d).enumerate() {
                            let s = squared_distance(&r, c);
                            if s < best.1 {
                                best = (j, s);
                            }
                        }
                        *label = best.0 as u64;
                        counts[best.0] += 1.0;
                        for (s, v) in sums[best.0 * d..].iter_mut().zip(&r) {
                            *s += v;
                        }
                    }
                    assert!(counts.iter().all(|&c| c > 0.0), "no cluster empties here");
                    let next: Vec<f64> = sums
                        .chunks_exact(d)
                        .zip(&counts)
                        .flat_map(|(s, c)| s.iter().map(move |v| v / c))
                        .collect();
                    let shift = squared_distance(&next, &reference);
                    reference = next;
                    if expected == before || shift <= variance * TOL {
                        break;
                    }
                }
                let settled: Vec<u64> = (0..n)
                    .map(|i| {
                        let r = row(i);
                        let distances = reference.chunks_exact(d).map(|c| squared_distance(&r, c));
                        let mut best = (0, f64::INFINITY);
                        for (j, s) in distances.enumerate() {
                            if s < best.1 {
                                best = (j, s);
                            }
                        }
                        best.0 as u64
                    })
                    .collect();
                assert_eq!(labels, settled, "d {d}, k {k}, seed {seed}");
                for (a, b) in centres.iter().zip(&reference) {
                    assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
                }
            }
        }
    }
}
