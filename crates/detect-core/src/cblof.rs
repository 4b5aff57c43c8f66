//! # CBLOF: cluster-based local outlier factor
//!
//! He, Xu & Deng, "Discovering cluster-based local outliers" (Pattern Recognition Letters
//! 2003), as PyOD's `CBLOF` with its default clustering, scikit-learn's `KMeans`:
//!
//! - k-means with `n_clusters` (default 8) as scikit-learn's defaults run it: the data
//!   centred on its mean, greedy k-means++ seeding (2 + ⌊ln k⌋ candidates per centre), one
//!   initialisation (`n_init="auto"`), Lloyd iterations until the labels stop changing or
//!   the centres move less than 1e-4 × the mean feature variance (at most 300), empty
//!   clusters given the rows farthest from their centres, and the labels of the final
//!   centres;
//! - the clusters sorted by size, largest first (ties in cluster order); the split b is the
//!   first i where the i largest clusters hold at least `alpha` (0.9) of the rows *and* the
//!   i-th is at least `beta` (5) times the next, else the first i meeting the `alpha`
//!   rule, else the first meeting the `beta` rule; the first b clusters are large;
//! - a row's score is its Euclidean distance to its own centre when its cluster is large,
//!   to the nearest large centre when small; with `use_weights`, times its cluster's size.
//!   A new row's cluster is its nearest centre (`KMeans.predict`).
//!
//! Where no split meets either rule (PyOD raises "Could not form valid cluster separation")
//! every cluster counts as large, so each row scores by the distance to its own centre,
//! and the fit warns; which partition k-means ends in depends on the seed, so a service
//! fit does not fail on a draw. `n_clusters` above the number of rows is an error naming
//! it. With fewer distinct rows than clusters, a cluster no row ends in counts as small.
//!
//! Randomized: k-means++ draws from NumPy's `RandomState(random_state)` exactly as
//! scikit-learn does (`choice` of the first centre, `uniform` candidates;
//! [`crate::numpy_random`]), the seed drawn and stored when not given, so a seed gives the
//! partition PyOD's does and the scores equal PyOD's (golden tests), unless rounding
//! decides a draw or a label between near-equal distances.
//!
//! ## Cost
//! k-means++: per centre, every candidate's potential (block by block, each block read
//! once per candidate while it is in cache) and one pass updating the nearest-centre
//! distances. Lloyd: O(n k d) for the first
//! iteration; after it, Hamerly's bounds spare the distances of the rows that cannot have
//! changed cluster (the labels stay exactly Lloyd's, see `Bounds`), and the distances a
//! row does need are summed across the centres at once. Rows run in parallel, with
//! partial sums per fixed block of rows added in block order, so the result does not
//! depend on the thread count. O(k d) per scored row. The model keeps the k centres.

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::numpy_random::RandomState;
use crate::params::{CblofParams, Checked};

/// scikit-learn's `KMeans` defaults.
const MAX_ITER: usize = 300;
const TOL: f64 = 1e-4;
/// Rows per block of the parallel passes.
const BLOCK: usize = 4096;

/// A fitted CBLOF model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cblof {
    /// k centres, row-major (k × d).
    centres: Vec<f64>,
    /// Rows per cluster in the training data.
    sizes: Vec<u64>,
    /// Per cluster: whether it is large.
    large: Vec<bool>,
    use_weights: bool,
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// The nearest centre (the first on ties) and the squared distance to it.
fn nearest(row: &[f64], centres: &[f64], d: usize) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (j, c) in centres.chunks_exact(d).enumerate() {
        let s = squared_distance(row, c);
        if s < best.1 {
            best = (j, s);
        }
    }
    best
}

/// Greedy k-means++ (scikit-learn's `_kmeans_plusplus` with unit weights): the indices of
/// the rows chosen as centres.
fn kmeans_plusplus(x: &[f64], d: usize, k: usize, rng: &mut RandomState) -> Vec<usize> {
    let n = x.len() / d;
    let trials = 2 + (k as f64).ln() as usize;
    let row = |i: usize| &x[i * d..(i + 1) * d];
    let first = rng.choice_uniform(n);
    let mut chosen = vec![first];
    let mut closest: Vec<f64> = x
        .par_chunks(d)
        .with_min_len(BLOCK)
        .map(|r| squared_distance(r, row(first)))
        .collect();
    let mut potential: f64 = closest.iter().sum();
    let mut cumulative = Vec::with_capacity(n);
    for _ in 1..k {
        cumulative.clear();
        let mut acc = 0.0;
        for v in &closest {
            acc += v;
            cumulative.push(acc);
        }
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                let target = rng.random_sample() * potential;
                // NumPy's searchsorted (left): the first cumulative sum >= target.
                cumulative.partition_point(|&c| c < target).min(n - 1)
            })
            .collect();
        // Every candidate's potential: per block of rows, the sums of min(distance to the
        // candidate, distance to the nearest centre so far), then the blocks added in
        // order (the same sums whatever the thread count).
        let per_block: Vec<Vec<f64>> = x
            .par_chunks(BLOCK * d)
            .zip(closest.par_chunks(BLOCK))
            .map(|(rows, old)| {
                candidates
                    .iter()
                    .map(|&c| with_const_width!(d, W, capped_potential::<W>(rows, old, row(c))))
                    .collect()
            })
            .collect();
        let mut potentials = vec![0.0; candidates.len()];
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
        let c = candidates[at];
        closest
            .par_chunks_mut(BLOCK)
            .zip(x.par_chunks(BLOCK * d))
            .for_each(|(old, rows)| with_const_width!(d, W, lower_to::<W>(old, rows, row(c))));
        potential = pot;
        chosen.push(c);
    }
    chosen
}

/// ‖a − b‖² over `W` features (`W` = 0: as many as `a` has), in feature order.
#[inline(always)]
fn squared_distance_w<const W: usize>(a: &[f64], b: &[f64]) -> f64 {
    if W == 0 {
        return squared_distance(a, b);
    }
    let mut s = 0.0;
    for j in 0..W {
        let t = a[j] - b[j];
        s += t * t;
    }
    s
}

/// Σ over `rows` of min(‖row − centre‖², the row's `old` distance): four partial sums over
/// the rows in turn, added as (s₀ + s₁) + (s₂ + s₃), so the additions overlap. `W` is the
/// width when known at compile time, else 0.
fn capped_potential<const W: usize>(rows: &[f64], old: &[f64], centre: &[f64]) -> f64 {
    let d = centre.len();
    let capped = |r: &[f64], o: f64| {
        let v = squared_distance_w::<W>(r, centre);
        if v < o { v } else { o }
    };
    let mut s = [0.0; 4];
    let quads = rows.chunks_exact(4 * d).zip(old.chunks_exact(4));
    for (r, o) in quads {
        for (lane, s) in s.iter_mut().enumerate() {
            *s += capped(&r[lane * d..(lane + 1) * d], o[lane]);
        }
    }
    let done = old.len() / 4 * 4;
    for (lane, (r, &o)) in rows[done * d..]
        .chunks_exact(d)
        .zip(&old[done..])
        .enumerate()
    {
        s[lane] += capped(r, o);
    }
    (s[0] + s[1]) + (s[2] + s[3])
}

/// Each row's `old` distance lowered to its distance to `centre` where that is smaller.
fn lower_to<const W: usize>(old: &mut [f64], rows: &[f64], centre: &[f64]) {
    let d = centre.len();
    for (o, r) in old.iter_mut().zip(rows.chunks_exact(d)) {
        let v = squared_distance_w::<W>(r, centre);
        *o = if v < *o { v } else { *o };
    }
}

/// `centres` (k × d, row-major) transposed to d × k, so the distances of one row to every
/// centre are summed feature by feature over contiguous memory (vectorised across the
/// centres).
fn transpose(centres: &[f64], d: usize) -> Vec<f64> {
    let k = centres.len() / d;
    (0..d * k).map(|i| centres[(i % k) * d + i / k]).collect()
}

/// [`nearest`] against centres given as [`transpose`] makes them: the same sums in the
/// same order, so the same answer bit for bit; also the smallest distance and the smallest
/// to any other centre (both squared). `distances` holds k values; `W` is the row's width
/// when known at compile time, else 0.
#[inline(always)]
fn nearest_two<const W: usize>(
    row: &[f64],
    by_feature: &[f64],
    distances: &mut [f64],
) -> (usize, f64, f64) {
    let k = distances.len();
    let d = if W == 0 { row.len() } else { W };
    distances.fill(0.0);
    for f in 0..d {
        let v = row[f];
        for (s, &c) in distances.iter_mut().zip(&by_feature[f * k..(f + 1) * k]) {
            *s += (v - c) * (v - c);
        }
    }
    // The first smallest and the next, chosen without branches (which centre wins is
    // data, not a pattern the branch predictor learns).
    let (mut best, mut smallest, mut second) = (0, f64::INFINITY, f64::INFINITY);
    for (j, &s) in distances.iter().enumerate() {
        let closer = s < smallest;
        second = if closer {
            smallest
        } else if s < second {
            s
        } else {
            second
        };
        best = if closer { j } else { best };
        smallest = if closer { s } else { smallest };
    }
    (best, smallest, second)
}

/// Adds `row` to its cluster's sum.
#[inline(always)]
fn add_row<const W: usize>(sums: &mut [f64], j: usize, row: &[f64]) {
    let d = if W == 0 { row.len() } else { W };
    for (s, v) in sums[j * d..(j + 1) * d].iter_mut().zip(&row[..d]) {
        *s += v;
    }
}

/// One Lloyd pass: every row's nearest centre, and per cluster the sum of its rows and
/// their count (added block by block in row order).
fn assign(x: &[f64], d: usize, centres: &[f64], labels: &mut [usize]) -> (Vec<f64>, Vec<u64>) {
    let k = centres.len() / d;
    let by_feature = transpose(centres, d);
    let partial: Vec<(Vec<f64>, Vec<u64>)> = x
        .par_chunks(BLOCK * d)
        .zip(labels.par_chunks_mut(BLOCK))
        .map(|(rows, labels)| {
            let mut sums = vec![0.0; k * d];
            let mut counts = vec![0u64; k];
            let mut distances = vec![0.0; k];
            for (r, label) in rows.chunks_exact(d).zip(labels.iter_mut()) {
                let (j, _, _) =
                    with_const_width!(d, W, nearest_two::<W>(r, &by_feature, &mut distances));
                *label = j;
                counts[j] += 1;
                add_row::<0>(&mut sums, j, r);
            }
            (sums, counts)
        })
        .collect();
    add_blocks(partial, k, d)
}

/// Hamerly's bounds for each row ("Making k-means even faster", SDM 2010): an upper
/// bound on the distance to its centre and a lower bound on the distance to every other.
/// A row whose upper bound is below both its lower bound and half the gap from its centre
/// to the nearest other centre keeps its label without measuring a distance, so late
/// Lloyd iterations, where few rows change cluster, cost a few comparisons per row. The
/// labels are Lloyd's: a row is searched in full (every centre, the first of equal
/// distances) whenever the bounds cannot prove its centre strictly the nearest, with a
/// margin far above the bounds' rounding.
struct Bounds {
    upper: Vec<f64>,
    lower: Vec<f64>,
    /// Whether the bounds hold for the current labels (not before the first pass).
    valid: bool,
    /// How far each centre moved since the bounds were set, and for a row of cluster j
    /// the largest move of the other centres: `farthest` (the largest move, of centre
    /// `of`) or, for the rows of `of`, `next` (the second largest). The next pass
    /// loosens each row's bounds by them before using them.
    shifts: Vec<f64>,
    farthest: f64,
    of: usize,
    next: f64,
}

/// A bound must clear the other by this factor to keep a label unsearched.
const BOUND_MARGIN: f64 = 1.0 + 1e-9;

impl Bounds {
    fn new(n: usize) -> Self {
        Self {
            upper: vec![f64::INFINITY; n],
            lower: vec![0.0; n],
            valid: false,
            shifts: Vec::new(),
            farthest: 0.0,
            of: usize::MAX,
            next: 0.0,
        }
    }

    /// Records how far each centre moved from `old` to `new`.
    fn moved(&mut self, old: &[f64], new: &[f64], d: usize) {
        self.shifts = old
            .chunks_exact(d)
            .zip(new.chunks_exact(d))
            .map(|(a, b)| squared_distance(a, b).sqrt())
            .collect();
        (self.farthest, self.of, self.next) = (0.0, usize::MAX, 0.0);
        for (j, &p) in self.shifts.iter().enumerate() {
            if p > self.farthest {
                (self.next, self.farthest, self.of) = (self.farthest, p, j);
            } else {
                self.next = self.next.max(p);
            }
        }
    }
}

/// What every block of [`assign_bounded`] reads.
struct BoundedPass<'a> {
    centres: &'a [f64],
    by_feature: &'a [f64],
    half_gap: &'a [f64],
    /// Whether the bounds hold (false before the first pass).
    valid: bool,
    /// [`Bounds`]' centre shifts of the last update.
    shifts: &'a [f64],
    farthest: f64,
    of: usize,
    next: f64,
}

impl BoundedPass<'_> {
    /// One block of rows with their labels and bounds: the rows the bounds cannot keep
    /// are searched in full; every row added to its cluster's sum.
    fn block<const W: usize>(
        &self,
        rows: &[f64],
        labels: &mut [usize],
        upper: &mut [f64],
        lower: &mut [f64],
    ) -> (Vec<f64>, Vec<u64>) {
        let k = self.half_gap.len();
        let d = if W == 0 { self.centres.len() / k } else { W };
        let (shifts, farthest, of, next) = (self.shifts, self.farthest, self.of, self.next);
        let mut sums = vec![0.0; k * d];
        let mut counts = vec![0u64; k];
        let mut distances = vec![0.0; k];
        let walk = rows
            .chunks_exact(d)
            .zip(labels.iter_mut())
            .zip(upper)
            .zip(lower);
        for (((r, label), u), l) in walk {
            let keep = self.valid && {
                let a = *label;
                *u += shifts[a];
                *l -= if a == of { next } else { farthest };
                let m = self.half_gap[a].max(*l);
                *u * BOUND_MARGIN < m || {
                    *u = squared_distance_w::<W>(r, &self.centres[a * d..(a + 1) * d]).sqrt();
                    *u * BOUND_MARGIN < m
                }
            };
            if !keep {
                let (j, smallest, second) = nearest_two::<W>(r, self.by_feature, &mut distances);
                *label = j;
                *u = smallest.sqrt();
                *l = second.sqrt();
            }
            let j = *label;
            counts[j] += 1;
            add_row::<W>(&mut sums, j, r);
        }
        (sums, counts)
    }
}

/// [`assign`] with Hamerly's bounds (see [`Bounds`]): the same labels, sums and counts.
fn assign_bounded(
    x: &[f64],
    d: usize,
    centres: &[f64],
    labels: &mut [usize],
    bounds: &mut Bounds,
) -> (Vec<f64>, Vec<u64>) {
    let k = centres.len() / d;
    let by_feature = transpose(centres, d);
    // Half the distance from each centre to the nearest other one.
    let half_gap: Vec<f64> = (0..k)
        .map(|j| {
            let c = &centres[j * d..(j + 1) * d];
            let nearest = (0..k)
                .filter(|&o| o != j)
                .map(|o| squared_distance(c, &centres[o * d..(o + 1) * d]))
                .fold(f64::INFINITY, f64::min);
            0.5 * nearest.sqrt()
        })
        .collect();
    let pass = BoundedPass {
        centres,
        by_feature: &by_feature,
        half_gap: &half_gap,
        valid: bounds.valid,
        shifts: &bounds.shifts,
        farthest: bounds.farthest,
        of: bounds.of,
        next: bounds.next,
    };
    let partial: Vec<(Vec<f64>, Vec<u64>)> = x
        .par_chunks(BLOCK * d)
        .zip(labels.par_chunks_mut(BLOCK))
        .zip(bounds.upper.par_chunks_mut(BLOCK))
        .zip(bounds.lower.par_chunks_mut(BLOCK))
        .map(|(((rows, labels), upper), lower)| {
            with_const_width!(d, W, pass.block::<W>(rows, labels, upper, lower))
        })
        .collect();
    bounds.valid = true;
    add_blocks(partial, k, d)
}

/// The blocks' partial sums and counts added in block order.
fn add_blocks(partial: Vec<(Vec<f64>, Vec<u64>)>, k: usize, d: usize) -> (Vec<f64>, Vec<u64>) {
    let mut sums = vec![0.0; k * d];
    let mut counts = vec![0u64; k];
    for (s, c) in partial {
        for (a, b) in sums.iter_mut().zip(s) {
            *a += b;
        }
        for (a, b) in counts.iter_mut().zip(c) {
            *a += b;
        }
    }
    (sums, counts)
}

/// scikit-learn's `_relocate_empty_clusters_dense`: each empty cluster takes the row
/// farthest from its (old) centre, the farthest first.
fn relocate_empty(
    x: &[f64],
    d: usize,
    old: &[f64],
    labels: &[usize],
    sums: &mut [f64],
    counts: &mut [u64],
) {
    let empty: Vec<usize> = (0..counts.len()).filter(|&j| counts[j] == 0).collect();
    if empty.is_empty() {
        return;
    }
    let dist: Vec<f64> = x
        .chunks_exact(d)
        .zip(labels)
        .map(|(r, &l)| squared_distance(r, &old[l * d..(l + 1) * d]))
        .collect();
    if dist.iter().all(|&v| v == 0.0) {
        return;
    }
    let mut far: Vec<usize> = (0..dist.len()).collect();
    far.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
    for (&new, &i) in empty.iter().zip(&far) {
        let row = &x[i * d..(i + 1) * d];
        let was = labels[i];
        for f in 0..d {
            sums[was * d + f] -= row[f];
            sums[new * d + f] = row[f];
        }
        counts[new] = 1;
        counts[was] -= 1;
    }
}

/// k-means as scikit-learn's `KMeans(n_clusters=k, random_state=seed)` fits it (on data
/// already centred): the centres and every row's label under them.
fn kmeans(x: &[f64], d: usize, k: usize, seed: u64) -> (Vec<f64>, Vec<usize>) {
    kmeans_with(x, d, k, seed, Pass::Bounded)
}

/// How [`kmeans_with`] assigns rows: with Hamerly's bounds, or by measuring every
/// distance (the plain Lloyd pass the bounds must reproduce).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    Bounded,
    #[cfg(test)]
    Plain,
}

fn kmeans_with(x: &[f64], d: usize, k: usize, seed: u64, pass: Pass) -> (Vec<f64>, Vec<usize>) {
    let n = x.len() / d;
    let mut means = vec![0.0; d];
    for r in x.chunks_exact(d) {
        for (m, v) in means.iter_mut().zip(r) {
            *m += v;
        }
    }
    let variance_mean = (0..d)
        .map(|f| {
            let mean = means[f] / n as f64;
            x.chunks_exact(d)
                .map(|r| (r[f] - mean) * (r[f] - mean))
                .sum::<f64>()
                / n as f64
        })
        .sum::<f64>()
        / d as f64;
    let tol = variance_mean * TOL;
    let mut rng = RandomState::from_seed(seed);
    let mut centres: Vec<f64> = kmeans_plusplus(x, d, k, &mut rng)
        .into_iter()
        .flat_map(|i| x[i * d..(i + 1) * d].iter().copied())
        .collect();
    let mut labels = vec![usize::MAX; n];
    let mut labels_old = labels.clone();
    let mut strict = false;
    let mut bounds = Bounds::new(n);
    for _ in 0..MAX_ITER {
        let (mut sums, mut counts) = match pass {
            Pass::Bounded => assign_bounded(x, d, &centres, &mut labels, &mut bounds),
            #[cfg(test)]
            Pass::Plain => assign(x, d, &centres, &mut labels),
        };
        relocate_empty(x, d, &centres, &labels, &mut sums, &mut counts);
        let mut shift = 0.0;
        for j in 0..k {
            if counts[j] > 0 {
                let w = 1.0 / counts[j] as f64;
                for s in &mut sums[j * d..(j + 1) * d] {
                    *s *= w;
                }
            }
            shift += squared_distance(&sums[j * d..(j + 1) * d], &centres[j * d..(j + 1) * d]);
        }
        bounds.moved(&centres, &sums, d);
        centres = sums;
        if labels == labels_old {
            strict = true;
            break;
        }
        if shift <= tol {
            break;
        }
        labels_old.copy_from_slice(&labels);
    }
    if !strict {
        assign(x, d, &centres, &mut labels);
    }
    (centres, labels)
}

fn n_clusters_error(reason: String) -> DetectError {
    DetectError::InvalidParameter {
        name: "n_clusters".into(),
        reason,
    }
}

impl Cblof {
    /// Fits on `x` (validated, at least 2 rows) with `seed` and returns the model and the
    /// training rows' scores.
    ///
    /// # Errors
    /// [`DetectError::InvalidParameter`] naming `n_clusters` when it is above the number of
    /// rows.
    pub(crate) fn fit(
        params: &Checked<CblofParams>,
        seed: u64,
        x: ArrayView2<'_, f64>,
        warnings: &mut Vec<String>,
    ) -> Result<(Self, Vec<f64>), DetectError> {
        let (n, d) = x.dim();
        let k = params.n_clusters;
        if k > n {
            return Err(n_clusters_error(format!(
                "{k} clusters for {n} rows; at most one cluster per row"
            )));
        }
        let x = x.as_standard_layout();
        let data = x.as_slice().expect("standard layout");
        // scikit-learn centres the data before k-means and adds the mean back.
        let mut mean = vec![0.0; d];
        for r in data.chunks_exact(d) {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v;
            }
        }
        for m in &mut mean {
            *m /= n as f64;
        }
        let mut centred = data.to_vec();
        for r in centred.chunks_exact_mut(d) {
            for (v, m) in r.iter_mut().zip(&mean) {
                *v -= m;
            }
        }
        let (mut centres, labels) = kmeans(&centred, d, k, seed);
        for c in centres.chunks_exact_mut(d) {
            for (v, m) in c.iter_mut().zip(&mean) {
                *v += m;
            }
        }
        let mut sizes = vec![0u64; k];
        for &l in &labels {
            sizes[l] += 1;
        }
        let large = split(&sizes, n, params.alpha, params.beta).unwrap_or_else(|| {
            warnings.push(format!(
                "could not form a valid separation of the {k} clusters into large and small \
                 ones with alpha = {} and beta = {}; every cluster is scored as large \
                 (change n_clusters, alpha or beta)",
                params.alpha, params.beta
            ));
            vec![true; k]
        });
        let model = Self {
            centres,
            sizes,
            large,
            use_weights: params.use_weights,
        };
        // As PyOD: the training rows score in the clusters k-means put them in.
        let scores = data
            .par_chunks(d)
            .zip(labels.par_iter())
            .with_min_len(BLOCK)
            .map(|(row, &label)| model.score_in(row, label))
            .collect();
        Ok((model, scores))
    }

    /// The centre a row's score is measured to, and the row's cluster.
    fn scoring_centre(&self, row: &[f64]) -> (usize, usize) {
        let (label, _) = nearest(row, &self.centres, row.len());
        (self.measured_to(row, label), label)
    }

    /// The centre a row of cluster `label` is measured to: its own when large, else the
    /// nearest large one.
    fn measured_to(&self, row: &[f64], label: usize) -> usize {
        let d = row.len();
        if self.large[label] {
            return label;
        }
        let mut best = (label, f64::INFINITY);
        for (j, c) in self.centres.chunks_exact(d).enumerate() {
            if self.large[j] {
                let s = squared_distance(row, c);
                if s < best.1 {
                    best = (j, s);
                }
            }
        }
        best.0
    }

    /// A row's score in cluster `label`.
    fn score_in(&self, row: &[f64], label: usize) -> f64 {
        let d = row.len();
        let centre = self.measured_to(row, label);
        let distance = squared_distance(row, &self.centres[centre * d..(centre + 1) * d]).sqrt();
        if self.use_weights {
            distance * self.sizes[label] as f64
        } else {
            distance
        }
    }

    /// Scores rows (validated, with the model's width).
    pub(crate) fn score(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        let d = self.centres.len() / self.sizes.len();
        crate::rows::score_rows(x, |row| {
            let (label, _) = nearest(row, &self.centres, d);
            self.score_in(row, label)
        })
    }

    /// Per row and feature, the squared difference between the row and the centre its
    /// score is measured to (its own for a large cluster, the nearest large one for a
    /// small): their sum is the square of the unweighted score. Rows are validated, with
    /// the model's width.
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let d = self.centres.len() / self.sizes.len();
        crate::rows::contribution_rows(x, d, |row, shares| {
            let (centre, _) = self.scoring_centre(row);
            let c = &self.centres[centre * d..(centre + 1) * d];
            for ((s, v), c) in shares.iter_mut().zip(row).zip(c) {
                *s = (v - c) * (v - c);
            }
        })
    }

    /// Checks a deserialized model's invariants against the model's width.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        let k = self.sizes.len();
        let ok = k >= 1
            && self.large.len() == k
            && self.large.iter().any(|&l| l)
            && self.centres.len() == k * n_features
            && self.centres.iter().all(|v| v.is_finite());
        if ok {
            Ok(())
        } else {
            Err("CBLOF centres do not match the model's width".into())
        }
    }
}

/// PyOD's `_set_small_large_clusters`: per cluster whether it is large, or `None` when no
/// split meets either rule. Clusters past the last one any row ends in (PyOD's
/// `np.bincount` stops there) are small.
fn split(sizes: &[u64], n: usize, alpha: f64, beta: f64) -> Option<Vec<bool>> {
    let counted = sizes.iter().rposition(|&s| s > 0).map_or(0, |p| p + 1);
    let mut order: Vec<usize> = (0..counted).collect();
    // `np.argsort(-sizes)`: descending, ties in cluster order.
    order.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]));
    let mut by_alpha = None;
    let mut by_beta = None;
    let mut both = None;
    let mut held = 0u64;
    for i in 1..counted {
        held += sizes[order[i - 1]];
        let a = held as f64 >= n as f64 * alpha;
        let b = sizes[order[i - 1]] as f64 / sizes[order[i]] as f64 >= beta;
        if a && by_alpha.is_none() {
            by_alpha = Some(i);
        }
        if b && by_beta.is_none() {
            by_beta = Some(i);
        }
        if a && b && both.is_none() {
            both = Some(i);
        }
    }
    let threshold = both.or(by_alpha).or(by_beta)?;
    let mut large = vec![false; sizes.len()];
    for &j in &order[..threshold] {
        large[j] = true;
    }
    Some(large)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamGuard;

    /// Three tight clusters of 60, 30 and 4 rows.
    #[test]
    fn bounded_lloyd_passes_reproduce_the_plain_ones() {
        // Overlapping blobs, repeated rows and a spread-out tail: many rows change
        // cluster over the iterations, many keep it.
        let mut rows = Vec::new();
        for i in 0..3000usize {
            let t = (i * 7919 % 3001) as f64 / 3001.0;
            let u = (i * 104_729 % 2999) as f64 / 2999.0;
            let blob = (i % 5) as f64;
            rows.extend([
                blob * 1.5 + t,
                (blob * 0.7).sin() * 3.0 + u,
                if i % 17 == 0 { 40.0 * t } else { u * t },
            ]);
        }
        rows.extend_from_within(..900);
        for (k, seed) in [(8, 0), (8, 1), (3, 7), (20, 2), (1, 0)] {
            let plain = kmeans_with(&rows, 3, k, seed, Pass::Plain);
            let bounded = kmeans_with(&rows, 3, k, seed, Pass::Bounded);
            assert_eq!(bounded.1, plain.1, "labels, k = {k}, seed {seed}");
            let bits = |c: &[f64]| c.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&bounded.0),
                bits(&plain.0),
                "centres, k = {k}, seed {seed}"
            );
        }
    }

    fn clusters() -> Array2<f64> {
        let mut rows = Vec::new();
        for (centre, count) in [
            ([0.0, 0.0, 0.0], 60),
            ([20.0, 0.0, 5.0], 30),
            ([0.0, 30.0, 0.0], 4),
        ] {
            for i in 0..count {
                let jitter = |m: usize| ((i * 7 + m * 3) % 11) as f64 / 11.0 - 0.5;
                rows.extend([
                    centre[0] + jitter(0),
                    centre[1] + jitter(1),
                    centre[2] + jitter(2),
                ]);
            }
        }
        Array2::from_shape_vec((94, 3), rows).unwrap()
    }

    fn params(k: usize) -> Checked<CblofParams> {
        CblofParams {
            n_clusters: k,
            ..CblofParams::default()
        }
        .check()
        .unwrap()
    }

    #[test]
    fn the_small_cluster_scores_by_its_distance_to_the_nearest_large_centre() {
        let x = clusters();
        let (model, scores) = Cblof::fit(&params(3), 1, x.view(), &mut Vec::new()).unwrap();
        assert_eq!(
            model.large.iter().filter(|&&l| l).count(),
            2,
            "{:?}",
            model.sizes
        );
        // The 4 rows of the small cluster are about 30 from the nearest large centre.
        assert!(
            scores[90..].iter().all(|&s| s > 25.0),
            "{:?}",
            &scores[90..]
        );
        assert!(scores[..90].iter().all(|&s| s < 1.0));
        assert_eq!(model.score(x.view()), scores);
        let (_, again) = Cblof::fit(&params(3), 1, x.view(), &mut Vec::new()).unwrap();
        assert_eq!(again, scores);
    }

    #[test]
    fn split_follows_pyod() {
        // 90 % reached at 2 clusters, 50/20 < 5: alpha alone decides.
        assert_eq!(
            split(&[50, 40, 5, 5], 100, 0.9, 5.0),
            Some(vec![true, true, false, false])
        );
        // Both rules at 1.
        assert_eq!(split(&[5, 95], 100, 0.9, 5.0), Some(vec![false, true]));
        // Neither rule anywhere.
        assert_eq!(split(&[34, 33, 33], 100, 0.99, 5.0), None);
        // A cluster no row ends in is small.
        assert_eq!(
            split(&[70, 25, 5, 0], 100, 0.9, 5.0),
            Some(vec![true, true, false, false])
        );
    }

    #[test]
    fn too_many_clusters_is_an_error_and_no_separation_a_warning() {
        let x = clusters();
        let err = Cblof::fit(&params(95), 0, x.view(), &mut Vec::new()).unwrap_err();
        assert!(
            matches!(err, DetectError::InvalidParameter { ref name, .. } if name == "n_clusters")
        );
        let even = Array2::from_shape_fn((40, 1), |(i, _)| (i / 10) as f64 * 100.0);
        let p = CblofParams {
            n_clusters: 4,
            alpha: 0.99,
            ..CblofParams::default()
        };
        let mut warnings = Vec::new();
        let (model, scores) =
            Cblof::fit(&p.check().unwrap(), 0, even.view(), &mut warnings).unwrap();
        assert!(warnings[0].contains("separation"), "{warnings:?}");
        // Every cluster is large: each row scores by its distance to its own centre, 0 here.
        assert!(model.large.iter().all(|&l| l));
        assert!(scores.iter().all(|&s| s == 0.0), "{scores:?}");
    }

    #[test]
    fn contributions_name_the_shifted_feature() {
        let x = clusters();
        let (model, _) = Cblof::fit(&params(3), 2, x.view(), &mut Vec::new()).unwrap();
        for f in 0..3 {
            let mut row = x.slice(ndarray::s![0..1, ..]).to_owned();
            row[[0, f]] += 6.0;
            let c = model.contributions(row.view());
            let top = (0..3)
                .max_by(|&a, &b| c[[0, a]].total_cmp(&c[[0, b]]))
                .unwrap();
            assert_eq!(top, f, "{c:?}");
            let score = model.score(row.view())[0];
            assert!((c.sum().sqrt() - score).abs() <= 1e-9 * score);
        }
    }
}
