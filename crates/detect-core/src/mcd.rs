//! # MCD: minimum covariance determinant
//!
//! PyOD's `MCD`, which fits scikit-learn's `MinCovDet` (FastMCD, Rousseeuw & Van Driessen
//! 1999) and scores a row by its squared Mahalanobis distance to the robust estimate
//! (`dist_` for the training rows, `mahalanobis` for new ones). The steps are
//! scikit-learn's:
//!
//! - h = `support_fraction` · n rows (truncated), or by default min(n, ⌈(n + d + 1) / 2⌉);
//! - a C-step: from a support (h rows) take its mean and covariance, then the h rows with
//!   the smallest Mahalanobis distances under them, until the covariance's log-determinant
//!   stops falling (a rise keeps the previous estimate), with `pinvh` (the symmetric
//!   pseudo-inverse) as precision and −∞ for the log-determinant of a singular covariance;
//! - n ≤ 500: 30 random supports, two C-steps each, the 10 lowest determinants refined by up
//!   to 30 C-steps, the lowest kept;
//! - n > 500: the rows shuffled into ⌊n / 300⌋ subsets; in each, max(10, 500 / subsets)
//!   random supports of two C-steps, its 10 best kept; those refined on a random
//!   min(1500, n) rows (10 kept above 1,500 rows, else 1), and above 1,500 rows refined
//!   again on all rows;
//! - one feature: the exact univariate MCD (the shortest half), as scikit-learn does;
//! - the raw distances divided by the consistency factor α / F_{d+2}(F_d⁻¹(α)), α = h / n;
//!   the rows whose distance is below the χ²_d 0.975 quantile reweighted into the final
//!   location and covariance (times the 0.975 consistency factor), whose `pinvh` scores;
//! - `assume_centered`: location 0, covariances taken about the origin.
//!
//! Randomized: the random supports and shuffles are NumPy's `RandomState(random_state)`
//! draws in scikit-learn's order (`permutation`; [`crate::numpy_random`]), with the seed
//! drawn and stored when not given, so a seed picks the same rows as scikit-learn's and
//! gives the same model on any machine and thread count. The scores then equal
//! scikit-learn's to rounding, except where rounding decides between near-equal
//! determinants or distances (duplicate rows, near-singular supports).
//!
//! A support whose covariance is zero is an error naming `support_fraction` (scikit-learn's
//! "The covariance matrix of the support data is equal to 0"), as is a support of no rows
//! or a reweighting that keeps none. A singular but nonzero covariance is scikit-learn's
//! case too: the pseudo-inverse scores it.
//!
//! ## Cost
//! The C-steps are independent and run in parallel: on `http` (567,498 × 3) about 19,000
//! refinements on 1,500 rows and 10 on all rows. A chain's course from a support depends
//! on that support alone, so the chains of one refinement record the supports they
//! iterated from, and a chain reaching one of them ends where that one ended (on `http`
//! most do, once they have settled) — the same estimates, fewer C-steps. O(d²) per scored
//! row; from 8 features on, the covariances and the distances are matrix products over
//! blocks of rows (ndarray's, with the CPU's vector instructions), below that plain sums
//! per row. The model keeps the location and the precision (d + d² values).

use nalgebra::{DMatrix, SymmetricEigen};
use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::DetectError;
use crate::chi2;
use crate::numpy_random::RandomState;
use crate::params::{Checked, McdParams};

/// scikit-learn's reweighting quantile: rows beyond χ²_d(1 − 0.025) are left out.
const REWEIGHT_QUANTILE: f64 = 0.025;
/// Rows per parallel work item in the distance passes.
const MIN_ROWS_PER_TASK: usize = 4096;

/// A fitted MCD model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mcd {
    /// The reweighted robust location.
    location: Vec<f64>,
    /// `pinvh` of the reweighted covariance, row-major (d × d).
    precision: Vec<f64>,
}

/// Rows of a matrix, row-major.
#[derive(Clone, Copy)]
struct Rows<'a> {
    x: &'a [f64],
    d: usize,
}

impl<'a> Rows<'a> {
    fn n(&self) -> usize {
        self.x.len() / self.d
    }

    fn row(&self, i: usize) -> &'a [f64] {
        &self.x[i * self.d..(i + 1) * self.d]
    }

    /// The rows at `at`, gathered.
    fn gather(&self, at: &[usize]) -> Vec<f64> {
        let mut out = Vec::with_capacity(at.len() * self.d);
        for &i in at {
            out.extend_from_slice(self.row(i));
        }
        out
    }
}

/// Squared Mahalanobis distance of `row` to `location` under `precision`, summed as NumPy's
/// `(np.dot(X - loc, P) * (X - loc)).sum(1)`: t = cᵀP, then Σ t_k c_k. `c` holds d
/// values. Each t_k is a sum in a register, which suits the narrow rows this serves
/// ([`mahalanobis`] takes wide ones as a matrix product). `W` is the width when known at
/// compile time, else 0.
#[inline(always)]
fn mahalanobis_row<const W: usize>(
    row: &[f64],
    location: &[f64],
    precision: &[f64],
    c: &mut [f64],
) -> f64 {
    let d = if W == 0 { location.len() } else { W };
    let (row, location, c) = (&row[..d], &location[..d], &mut c[..d]);
    for ((c, v), l) in c.iter_mut().zip(row).zip(location) {
        *c = v - l;
    }
    let mut total = 0.0;
    for k in 0..d {
        let mut t = 0.0;
        for j in 0..d {
            t += c[j] * precision[j * d + k];
        }
        total += t * c[k];
    }
    total
}

/// From this width on, [`mahalanobis`] multiplies blocks of rows by the precision as a
/// matrix product (ndarray's, which picks the CPU's vector instructions at run time)
/// instead of row by row.
const PRODUCT_MIN_WIDTH: usize = 8;
/// Rows per block of that product.
const PRODUCT_ROWS: usize = 1024;

/// Every row's squared Mahalanobis distance. Each block of rows gives its rows the same
/// sums whatever the other blocks hold, so the result does not depend on the thread count.
fn mahalanobis(rows: Rows<'_>, location: &[f64], precision: &[f64]) -> Vec<f64> {
    let d = rows.d;
    if d < PRODUCT_MIN_WIDTH {
        return rows
            .x
            .par_chunks(d)
            .with_min_len(MIN_ROWS_PER_TASK)
            .map_init(
                || vec![0.0; d],
                |c, row| with_const_width!(d, W, mahalanobis_row::<W>(row, location, precision, c)),
            )
            .collect();
    }
    let p = ArrayView2::from_shape((d, d), precision).expect("a d × d precision");
    let blocks: Vec<Vec<f64>> = rows
        .x
        .par_chunks(PRODUCT_ROWS * d)
        .map(|block| {
            let m = block.len() / d;
            let c = Array2::from_shape_fn((m, d), |(i, j)| block[i * d + j] - location[j]);
            let t = c.dot(&p);
            t.outer_iter()
                .zip(c.outer_iter())
                .map(|(t, c)| t.iter().zip(c).fold(0.0, |total, (t, c)| total + t * c))
                .collect()
        })
        .collect();
    blocks.concat()
}

/// The `h` rows with the smallest distances (NumPy's `argpartition`; ties by row index).
fn smallest(dist: &[f64], h: usize) -> Vec<usize> {
    let mut at: Vec<usize> = (0..dist.len()).collect();
    if h < at.len() {
        at.select_nth_unstable_by(h - 1, |&a, &b| dist[a].total_cmp(&dist[b]).then(a.cmp(&b)));
        at.truncate(h);
    }
    at
}

/// Mean and covariance (divided by the count, NumPy's `cov(bias=1)`) of the rows at `at`;
/// about the origin when `centered`.
fn mean_cov(rows: Rows<'_>, at: &[usize], centered: bool) -> (Vec<f64>, Vec<f64>) {
    let d = rows.d;
    let m = at.len() as f64;
    let mut mean = vec![0.0; d];
    if !centered {
        for &i in at {
            for (s, v) in mean.iter_mut().zip(rows.row(i)) {
                *s += v;
            }
        }
        for s in &mut mean {
            *s /= m;
        }
    }
    let both = crate::standardize::deviations(at.len(), |k| rows.row(at[k]), &mean);
    let mut cov = both[d..].to_vec();
    for a in 0..d {
        for b in a..d {
            let v = cov[a * d + b] / m;
            cov[a * d + b] = v;
            cov[b * d + a] = v;
        }
    }
    (mean, cov)
}

/// NumPy's `slogdet` turned into scikit-learn's `fast_logdet`: ln det, or −∞ when the
/// determinant is not positive. LU with partial pivoting, as LAPACK's `getrf`.
fn log_det(matrix: &[f64], d: usize) -> f64 {
    let mut a = matrix.to_vec();
    let mut sign = 1.0;
    let mut log = 0.0;
    for col in 0..d {
        let pivot = (col..d)
            .max_by(|&p, &q| a[p * d + col].abs().total_cmp(&a[q * d + col].abs()))
            .unwrap_or(col);
        if a[pivot * d + col] == 0.0 {
            return f64::NEG_INFINITY;
        }
        if pivot != col {
            for k in 0..d {
                a.swap(pivot * d + k, col * d + k);
            }
            sign = -sign;
        }
        let p = a[col * d + col];
        if p < 0.0 {
            sign = -sign;
        }
        log += p.abs().ln();
        for r in col + 1..d {
            let f = a[r * d + col] / p;
            if f != 0.0 {
                for k in col..d {
                    a[r * d + k] -= f * a[col * d + k];
                }
            }
        }
    }
    if sign > 0.0 { log } else { f64::NEG_INFINITY }
}

/// SciPy's `pinvh`: the pseudo-inverse of a symmetric matrix from its eigenvalues, those
/// not above d · ε · max |λ| left out.
fn pinvh(matrix: &[f64], d: usize) -> Vec<f64> {
    let eigen = SymmetricEigen::new(DMatrix::from_row_slice(d, d, matrix));
    let max = eigen
        .eigenvalues
        .iter()
        .fold(0.0_f64, |m, v| m.max(v.abs()));
    let cutoff = max * d as f64 * f64::EPSILON;
    let mut out = vec![0.0; d * d];
    for (k, &lambda) in eigen.eigenvalues.iter().enumerate() {
        if lambda.abs() > cutoff {
            let u = eigen.eigenvectors.column(k);
            for a in 0..d {
                let ua = u[a] / lambda;
                for b in 0..d {
                    out[a * d + b] += ua * u[b];
                }
            }
        }
    }
    out
}

/// NumPy's `allclose(a, b)` for two numbers (infinities equal only themselves).
fn allclose(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-8 + 1e-5 * b.abs()
}

/// An estimate: location, covariance, its log-determinant, the support (row indices) and
/// the rows' distances.
#[derive(Clone)]
struct Estimate {
    location: Vec<f64>,
    covariance: Vec<f64>,
    det: f64,
    support: Vec<usize>,
    dist: Vec<f64>,
}

/// Where a C-step starts.
enum Start<'a> {
    /// These h rows (scikit-learn's random start: a permutation's first h).
    Support(Vec<usize>),
    /// The h rows nearest this location and covariance.
    From(&'a [f64], &'a [f64]),
}

/// Where a C-step chain went from a support it iterated from (see [`Chains`]).
struct Outcome {
    estimate: Arc<Estimate>,
    /// The iterations left when the chain iterated from that support, and at its end.
    entered_with: usize,
    remaining_end: usize,
}

impl Outcome {
    /// Whether a chain iterating from the same support with `remaining` iterations left
    /// ends the same way: it takes the same steps, and its end is decided the same way
    /// (by the determinant, with iterations left, or by running out at the same point).
    fn holds_for(&self, remaining: usize) -> bool {
        let steps = self.entered_with - self.remaining_end;
        remaining == self.entered_with || (self.remaining_end > 0 && remaining > steps)
    }
}

/// The C-step chains of one [`select_candidates`] call, by the supports they iterated
/// from. From a support (its rows, in the order the mean and covariance add them) a
/// chain's every later step is a function of that support and the iterations left, so a
/// chain that reaches a support another has iterated from ends where that one ended; the
/// candidates a refinement starts from often meet once they have settled on one set of
/// rows. Shared by the parallel C-steps; what it holds is the same whichever thread
/// computed it first.
struct Chains {
    /// `None`: nothing recorded (see [`Chains::over`]).
    seen: Option<Mutex<HashMap<Vec<u16>, Outcome>>>,
}

/// The most rows whose chains [`Chains`] records (row indices kept as `u16`): the merged
/// set's refinement, where thousands of candidates meet. On all rows, ten chains seldom
/// meet and each support kept would take O(n) memory.
const SHARED_MAX_ROWS: usize = 1500;

impl Chains {
    /// The record for chains over `n` rows.
    fn over(n: usize) -> Self {
        Self {
            seen: (n <= SHARED_MAX_ROWS).then(Mutex::default),
        }
    }

    /// A support's key, when chains are recorded.
    fn key(&self, support: &[usize]) -> Option<Vec<u16>> {
        self.seen.as_ref()?;
        let key = support
            .iter()
            .map(|&i| u16::try_from(i).expect("recorded chains have at most 1,500 rows"))
            .collect();
        Some(key)
    }

    fn lookup(&self, key: &[u16], remaining: usize) -> Option<(Arc<Estimate>, usize)> {
        let seen = self.seen.as_ref()?;
        let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        let o = seen.get(key).filter(|o| o.holds_for(remaining))?;
        let steps = o.entered_with - o.remaining_end;
        Some((Arc::clone(&o.estimate), remaining - steps))
    }

    /// Records where a chain that iterated from `visited` (supports with the iterations
    /// left then) ended.
    fn record(&self, visited: Vec<(Vec<u16>, usize)>, remaining_end: usize, end: &Arc<Estimate>) {
        let Some(seen) = &self.seen else {
            return;
        };
        let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        for (key, entered_with) in visited {
            seen.entry(key).or_insert_with(|| Outcome {
                estimate: Arc::clone(end),
                entered_with,
                remaining_end,
            });
        }
    }
}

/// scikit-learn's `_c_step`, line by line; `chains` spares iterating again from a
/// support another chain iterated from.
fn c_step(rows: Rows<'_>, h: usize, start: &Start<'_>, n_iter: usize, chains: &Chains) -> Estimate {
    let d = rows.d;
    let mut dist: Vec<f64> = Vec::new();
    let mut support = match start {
        Start::Support(rows) => rows.clone(),
        Start::From(location, covariance) => {
            let precision = pinvh(covariance, d);
            dist = mahalanobis(rows, location, &precision);
            smallest(&dist, h)
        }
    };
    let (mut location, mut covariance) = mean_cov(rows, &support, false);
    let mut det = log_det(&covariance, d);
    let mut precision = if det.is_infinite() {
        pinvh(&covariance, d)
    } else {
        Vec::new()
    };
    let mut previous_det = f64::INFINITY;
    let mut previous: Option<(Vec<f64>, Vec<f64>, Vec<usize>)> = None;
    let mut remaining = n_iter;
    let mut visited = Vec::new();
    while det < previous_det && remaining > 0 && det.is_finite() {
        if let Some(key) = chains.key(&support) {
            if let Some((end, remaining_end)) = chains.lookup(&key, remaining) {
                chains.record(visited, remaining_end, &end);
                return (*end).clone();
            }
            visited.push((key, remaining));
        }
        previous_det = det;
        precision = pinvh(&covariance, d);
        dist = mahalanobis(rows, &location, &precision);
        let next = smallest(&dist, h);
        let (next_location, next_covariance) = mean_cov(rows, &next, false);
        previous = Some((
            std::mem::replace(&mut location, next_location),
            std::mem::replace(&mut covariance, next_covariance),
            std::mem::replace(&mut support, next),
        ));
        det = log_det(&covariance, d);
        remaining -= 1;
    }
    let previous_dist = dist;
    // As scikit-learn: the last precision (the previous covariance's) with the new location.
    let dist = mahalanobis(rows, &location, &precision);
    // A determinant that rose keeps the previous estimate, unless the iterations ran out.
    let rose = det > previous_det && !allclose(det, previous_det) && remaining > 0;
    let end = match previous {
        Some((location, covariance, support)) if rose => Estimate {
            location,
            covariance,
            det: previous_det,
            support,
            dist: previous_dist,
        },
        _ => Estimate {
            location,
            covariance,
            det,
            support,
            dist,
        },
    };
    if visited.is_empty() {
        return end;
    }
    let end = Arc::new(end);
    chains.record(visited, remaining, &end);
    Arc::unwrap_or_clone(end)
}

/// scikit-learn's `select_candidates`: a C-step from each start, the `select` lowest
/// determinants kept (ties by start order), in order. The C-steps run in parallel.
fn select_candidates(
    rows: Rows<'_>,
    h: usize,
    starts: &[Start<'_>],
    select: usize,
    n_iter: usize,
) -> Vec<Estimate> {
    let chains = Chains::over(rows.n());
    let keep = |mut best: Vec<(usize, Estimate)>, (i, e): (usize, Estimate)| {
        best.push((i, e));
        best.sort_by(|(i, a), (j, b)| a.det.total_cmp(&b.det).then(i.cmp(j)));
        best.truncate(select);
        best
    };
    starts
        .par_iter()
        .enumerate()
        .map(|(i, s)| (i, c_step(rows, h, s, n_iter, &chains)))
        .fold(Vec::new, keep)
        .reduce(Vec::new, |a, b| b.into_iter().fold(a, keep))
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

/// The raw estimate: location, covariance, support (a flag per row) and distances.
struct Raw {
    location: Vec<f64>,
    covariance: Vec<f64>,
    support: Vec<bool>,
    dist: Vec<f64>,
}

fn flags(n: usize, at: &[usize]) -> Vec<bool> {
    let mut out = vec![false; n];
    for &i in at {
        out[i] = true;
    }
    out
}

/// The univariate MCD (scikit-learn's one-feature branch of `fast_mcd`): the location is
/// the midpoint of the shortest half (averaged over ties), the support the h rows nearest
/// it, the covariance their variance.
fn univariate(values: &[f64], h: usize) -> Raw {
    let n = values.len();
    let (location, support) = if h < n {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let diff: Vec<f64> = (0..n - h).map(|i| sorted[h + i] - sorted[i]).collect();
        let min = diff.iter().copied().fold(f64::INFINITY, f64::min);
        let starts: Vec<usize> = (0..n - h).filter(|&i| diff[i] == min).collect();
        let mid = starts
            .iter()
            .map(|&i| sorted[h + i] + sorted[i])
            .sum::<f64>()
            / starts.len() as f64;
        let location = 0.5 * mid;
        let mut at: Vec<usize> = (0..n).collect();
        at.sort_by(|&a, &b| {
            (values[a] - location)
                .abs()
                .total_cmp(&(values[b] - location).abs())
        });
        at.truncate(h);
        (location, flags(n, &at))
    } else {
        let mean = values.iter().sum::<f64>() / n as f64;
        (mean, vec![true; n])
    };
    let kept: Vec<f64> = values
        .iter()
        .zip(&support)
        .filter(|(_, s)| **s)
        .map(|(v, _)| *v)
        .collect();
    let mean = kept.iter().sum::<f64>() / kept.len() as f64;
    let variance = kept.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / kept.len() as f64;
    let precision = pinvh(&[variance], 1);
    let dist = values
        .iter()
        .map(|v| (v - location) * precision[0] * (v - location))
        .collect();
    Raw {
        location: vec![location],
        covariance: vec![variance],
        support,
        dist,
    }
}

/// `_c_step`'s random start: `permutation(n)[:h]`.
fn random_support(random: &mut RandomState, n: usize, h: usize) -> Start<'static> {
    let mut order = random.permutation(n);
    order.truncate(h);
    Start::Support(order)
}

/// scikit-learn's `fast_mcd` for d > 1.
fn fast_mcd(rows: Rows<'_>, h: usize, seed: u64) -> Raw {
    let (n, d) = (rows.n(), rows.d);
    // One generator drawn in scikit-learn's order: the shuffle, every subset's random
    // supports, then the merged set's rows. The C-steps then run in parallel.
    let mut random = RandomState::from_seed(seed);
    let refine = |on: Rows<'_>, h: usize, best: &[Estimate], select: usize| {
        let starts: Vec<Start<'_>> = best
            .iter()
            .map(|e| Start::From(&e.location, &e.covariance))
            .collect();
        select_candidates(on, h, &starts, select, 30)
    };
    if n <= 500 {
        let starts: Vec<Start<'_>> = (0..30).map(|_| random_support(&mut random, n, h)).collect();
        let best = select_candidates(rows, h, &starts, 10, 2);
        let full = refine(rows, h, &best, 1).remove(0);
        return Raw {
            location: full.location,
            covariance: full.covariance,
            support: flags(n, &full.support),
            dist: full.dist,
        };
    }
    let n_subsets = n / 300;
    let per_subset = n / n_subsets;
    let shuffle = random.permutation(n);
    let h_subset = (per_subset as f64 * (h as f64 / n as f64)).ceil() as usize;
    let n_trials = (500 / n_subsets).max(10);
    let subset_starts: Vec<Vec<Start<'_>>> = (0..n_subsets)
        .map(|_| {
            (0..n_trials)
                .map(|_| random_support(&mut random, per_subset, h_subset))
                .collect()
        })
        .collect();
    let best: Vec<Estimate> = subset_starts
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, starts)| {
            let subset = rows.gather(&shuffle[i * per_subset..(i + 1) * per_subset]);
            let subset = Rows { x: &subset, d };
            select_candidates(subset, h_subset, starts, 10, 2)
                .into_iter()
                .map(|e| Estimate {
                    support: Vec::new(),
                    dist: Vec::new(),
                    ..e
                })
        })
        .collect();
    let n_merged = n.min(1500);
    let h_merged = (n_merged as f64 * (h as f64 / n as f64)).ceil() as usize;
    let n_best_merged = if n > 1500 { 10 } else { 1 };
    // A random permutation's first n_merged rows, in its order (all rows below 1,500).
    let mut selection = random.permutation(n);
    selection.truncate(n_merged);
    let merged_rows = rows.gather(&selection);
    let merged = refine(Rows { x: &merged_rows, d }, h_merged, &best, n_best_merged);
    if n < 1500 {
        let m = merged.into_iter().next().expect("one merged candidate");
        let mut support = vec![false; n];
        let mut dist = vec![0.0; n];
        for &j in &m.support {
            support[selection[j]] = true;
        }
        for (j, &i) in selection.iter().enumerate() {
            dist[i] = m.dist[j];
        }
        return Raw {
            location: m.location,
            covariance: m.covariance,
            support,
            dist,
        };
    }
    let full = refine(rows, h, &merged, 1).remove(0);
    Raw {
        location: full.location,
        covariance: full.covariance,
        support: flags(n, &full.support),
        dist: full.dist,
    }
}

fn support_error(reason: String) -> DetectError {
    DetectError::InvalidParameter {
        name: "support_fraction".into(),
        reason,
    }
}

impl Mcd {
    /// Fits on `x` (validated, at least 2 rows) with `seed` and returns the model and the
    /// training rows' scores (squared Mahalanobis distances).
    ///
    /// # Errors
    /// [`DetectError::InvalidParameter`] naming `support_fraction` when the support holds no
    /// row, when its covariance is zero, or when the reweighting keeps no row.
    pub(crate) fn fit(
        params: &Checked<McdParams>,
        seed: u64,
        x: ArrayView2<'_, f64>,
        warnings: &mut Vec<String>,
    ) -> Result<(Self, Vec<f64>), DetectError> {
        let (n, d) = x.dim();
        let h = match params.support_fraction {
            None => ((0.5 * (n + d + 1) as f64).ceil() as usize).min(n),
            Some(f) => (f * n as f64) as usize,
        };
        if h == 0 {
            return Err(support_error(format!(
                "{:?} of {n} rows selects no row",
                params.support_fraction
            )));
        }
        let x = x.as_standard_layout();
        let data = x.as_slice().expect("standard layout");
        let rows = Rows { x: data, d };
        if !full_rank(rows) {
            warnings
                .push("The covariance matrix associated to your dataset is not full rank".into());
        }
        let mut raw = if d == 1 {
            univariate(data, h)
        } else {
            fast_mcd(rows, h, seed)
        };
        let support: Vec<usize> = (0..n).filter(|&i| raw.support[i]).collect();
        if params.assume_centered {
            let (_, covariance) = mean_cov(rows, &support, true);
            let precision = pinvh(&covariance, d);
            raw.location = vec![0.0; d];
            raw.dist = mahalanobis(rows, &raw.location, &precision);
            raw.covariance = covariance;
        }
        // correct_covariance: only the distances' scaling reaches the result.
        if support.len() < n && raw.covariance.iter().all(|v| v.abs() <= 1e-8) {
            return Err(support_error(
                "the covariance matrix of the support data is equal to 0; increase \
                 support_fraction"
                    .into(),
            ));
        }
        let k = d as u64;
        let correction = chi2::consistency_factor(k, support.len() as f64 / n as f64);
        let cut = chi2::ppf(1.0 - REWEIGHT_QUANTILE, k);
        let kept: Vec<usize> = (0..n).filter(|&i| raw.dist[i] / correction < cut).collect();
        if kept.is_empty() {
            return Err(support_error(
                "the reweighting step keeps no row; increase support_fraction".into(),
            ));
        }
        let (location, mut covariance) = mean_cov(rows, &kept, params.assume_centered);
        let factor = chi2::consistency_factor(k, 1.0 - REWEIGHT_QUANTILE);
        for v in &mut covariance {
            *v *= factor;
        }
        let precision = pinvh(&covariance, d);
        let model = Self {
            location,
            precision,
        };
        let scores = model.score(x.view());
        Ok((model, scores))
    }

    /// Scores rows (validated, with the model's width): squared Mahalanobis distances.
    pub(crate) fn score(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        let d = self.location.len();
        let x = x.as_standard_layout();
        let x = x
            .as_slice()
            .expect("a standard-layout matrix is contiguous");
        mahalanobis(Rows { x, d }, &self.location, &self.precision)
    }

    /// Per row and feature, that feature's share of the row's squared Mahalanobis
    /// distance: |c_f · (P c)_f| with c = x − μ and P the precision.
    ///
    /// Σ_f c_f (P c)_f is the distance itself, so where no term is negative the shares add
    /// up to the score; a negative term (a feature that, through its correlations, pulls
    /// the row towards the centre) is reported by its size. Unlike the terms of a Cholesky
    /// factor, these do not depend on the order of the features. Rows are validated, with
    /// the model's width.
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        crate::rows::contributions_by_blocks(x, self)
    }

    /// Checks a deserialized model's invariants against the model's width.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        let d = n_features;
        let finite = self
            .location
            .iter()
            .chain(&self.precision)
            .all(|v| v.is_finite());
        if self.location.len() != d || self.precision.len() != d * d || !finite {
            return Err("MCD location and precision do not match the model's width".into());
        }
        Ok(())
    }
}

impl crate::rows::BlockContributor for Mcd {
    fn scratch_len(&self, d: usize, rows: usize) -> usize {
        rows * (d + 1)
    }

    /// Per feature f, the rows' (P c)_f = Σⱼ P_fj cⱼ, then |c_f · (P c)_f|: for narrow
    /// rows added in order of j (each row's arithmetic as one row at a time); from
    /// [`PRODUCT_MIN_WIDTH`] on as the matrix product C Pᵀ, as [`mahalanobis`] scores.
    #[inline(always)]
    fn contribute_block<S: pulp::Simd>(
        &self,
        _: S,
        rows: &[f64],
        terms: &mut [f64],
        scratch: &mut [f64],
    ) {
        let d = self.location.len();
        let b = rows.len() / d;
        if d >= PRODUCT_MIN_WIDTH {
            let c = Array2::from_shape_fn((b, d), |(i, j)| rows[i * d + j] - self.location[j]);
            let p = ArrayView2::from_shape((d, d), &self.precision).expect("a d × d precision");
            let pc = c.dot(&p.t());
            for ((i, f), &t) in pc.indexed_iter() {
                terms[f * b + i] = (c[[i, f]] * t).abs();
            }
            return;
        }
        let (c, pc) = scratch.split_at_mut(b * d);
        let pc = &mut pc[..b];
        crate::rows::by_feature(rows, d, c, |k, v| v - self.location[k]);
        for (f, precision) in self.precision.chunks_exact(d).enumerate() {
            pc.fill(0.0);
            for (j, &p) in precision.iter().enumerate() {
                for (s, &cj) in pc.iter_mut().zip(&c[j * b..][..b]) {
                    *s += p * cj;
                }
            }
            let cf = &c[f * b..][..b];
            for ((t, &s), &cf) in terms[f * b..][..b].iter_mut().zip(pc.iter()).zip(cf) {
                *t = (cf * s).abs();
            }
        }
    }
}

/// scikit-learn's rank warning: fewer than d singular values of XᵀX above 1e-8.
fn full_rank(rows: Rows<'_>) -> bool {
    let d = rows.d;
    let gram = rows
        .x
        .par_chunks(d)
        .with_min_len(MIN_ROWS_PER_TASK)
        .fold(
            || vec![0.0; d * d],
            |mut g, row| {
                for a in 0..d {
                    for b in 0..d {
                        g[a * d + b] += row[a] * row[b];
                    }
                }
                g
            },
        )
        .reduce(
            || vec![0.0; d * d],
            |mut a, b| {
                for (s, v) in a.iter_mut().zip(b) {
                    *s += v;
                }
                a
            },
        );
    let eigen = SymmetricEigen::new(DMatrix::from_row_slice(d, d, &gram));
    eigen.eigenvalues.iter().filter(|v| v.abs() > 1e-8).count() == d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamGuard;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// `n` rows of `d` roughly normal features (sums of uniforms), correlated through a
    /// mix of the first feature.
    fn cloud(n: usize, d: usize, seed: u64) -> Array2<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut x = Array2::from_shape_fn((n, d), |_| {
            (0..6).map(|_| rng.random::<f64>()).sum::<f64>() - 3.0
        });
        for mut row in x.outer_iter_mut() {
            let first = row[0];
            for f in 1..d {
                row[f] += 0.5 * first;
            }
        }
        x
    }

    #[test]
    fn chains_that_meet_end_as_each_would_alone() {
        // Rows in a few tight clumps: chains from different starts settle on the same rows,
        // as they do on the refinements of large data sets.
        let mut x = cloud(1500, 3, 9);
        for (i, mut row) in x.outer_iter_mut().enumerate() {
            row[0] += 6.0 * (i % 3) as f64;
        }
        let rows = Rows {
            x: x.as_slice().unwrap(),
            d: 3,
        };
        let h = 800;
        let mut random = RandomState::from_seed(5);
        let supports: Vec<Start<'_>> = (0..40)
            .map(|_| random_support(&mut random, 1500, h))
            .collect();
        let firsts: Vec<Estimate> = supports
            .iter()
            .map(|s| c_step(rows, h, s, 2, &Chains::over(usize::MAX)))
            .collect();
        let starts: Vec<Start<'_>> = firsts
            .iter()
            .map(|e| Start::From(&e.location, &e.covariance))
            .chain(supports.iter().map(|s| match s {
                Start::Support(at) => Start::Support(at.clone()),
                Start::From(..) => unreachable!("random starts are supports"),
            }))
            .collect();
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for n_iter in [30, 3] {
            let shared = Chains::over(1500);
            let (mut alone_keys, mut shared_results) = (0, Vec::new());
            for start in &starts {
                let alone = Chains::over(1500);
                let want = c_step(rows, h, start, n_iter, &alone);
                alone_keys += alone.seen.as_ref().unwrap().lock().unwrap().len();
                let got = c_step(rows, h, start, n_iter, &shared);
                assert_eq!(got.support, want.support);
                assert_eq!(got.det.to_bits(), want.det.to_bits());
                assert_eq!(bits(&got.location), bits(&want.location));
                assert_eq!(bits(&got.covariance), bits(&want.covariance));
                assert_eq!(bits(&got.dist), bits(&want.dist));
                shared_results.push(got);
            }
            // Given the steps to settle, the chains did meet: the shared record holds
            // fewer supports than the chains iterated from between them.
            let shared_keys = shared.seen.as_ref().unwrap().lock().unwrap().len();
            if n_iter == 30 {
                assert!(shared_keys < alone_keys, "{shared_keys} vs {alone_keys}");
            }
        }
    }

    fn fit(x: &Array2<f64>, params: McdParams, seed: u64) -> Result<(Mcd, Vec<f64>), DetectError> {
        Mcd::fit(&params.check().unwrap(), seed, x.view(), &mut Vec::new())
    }

    #[test]
    fn wide_rows_take_a_matrix_product_equal_to_the_row_by_row_sums() {
        let d = 12;
        assert!(d >= PRODUCT_MIN_WIDTH);
        let x = cloud(3000, d, 4);
        let flat = x.as_slice().unwrap();
        let rows = Rows { x: flat, d };
        let at: Vec<usize> = (0..3000).step_by(3).collect();
        let (mean, cov) = mean_cov(rows, &at, false);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs()).max(1e-300);
        for a in 0..d {
            let want = at.iter().map(|&i| flat[i * d + a]).sum::<f64>() / at.len() as f64;
            assert!(close(mean[a], want), "mean {a}");
            for b in 0..d {
                let want = at
                    .iter()
                    .map(|&i| (flat[i * d + a] - mean[a]) * (flat[i * d + b] - mean[b]))
                    .sum::<f64>()
                    / at.len() as f64;
                assert!(close(cov[a * d + b], want), "cov ({a}, {b})");
                assert_eq!(cov[a * d + b].to_bits(), cov[b * d + a].to_bits());
            }
        }
        let precision = pinvh(&cov, d);
        let product = mahalanobis(rows, &mean, &precision);
        let mut c = vec![0.0; d];
        for (i, got) in product.iter().enumerate() {
            let want = mahalanobis_row::<0>(&flat[i * d..(i + 1) * d], &mean, &precision, &mut c);
            assert!(close(*got, want), "row {i}: {got} vs {want}");
        }
    }

    #[test]
    fn far_rows_score_highest_and_the_seed_fixes_the_model() {
        let mut x = cloud(600, 3, 1);
        for i in 0..20 {
            x.row_mut(i).fill(25.0 + i as f64);
        }
        let (model, scores) = fit(&x, McdParams::default(), 9).unwrap();
        let top_clean = scores[20..].iter().cloned().fold(f64::MIN, f64::max);
        assert!(
            scores[..20].iter().all(|&s| s > 10.0 * top_clean),
            "{scores:?}"
        );
        assert_eq!(model.score(x.view()), scores);
        let (_, again) = fit(&x, McdParams::default(), 9).unwrap();
        assert_eq!(again, scores);
    }

    #[test]
    fn block_contributions_are_each_rows_own() {
        // 150 rows: two full blocks and a part block.
        let x = cloud(150, 4, 5);
        let (model, _) = fit(&x, McdParams::default(), 3).unwrap();
        let terms = model.contributions(x.view());
        for (i, row) in x.rows().into_iter().enumerate() {
            let c: Vec<f64> = (0..4).map(|j| row[j] - model.location[j]).collect();
            let want: Vec<f64> = (0..4)
                .map(|f| {
                    let pc: f64 = (0..4).map(|j| model.precision[f * 4 + j] * c[j]).sum();
                    (c[f] * pc).abs()
                })
                .collect();
            assert_eq!(terms.row(i).to_vec(), want, "row {i}");
        }
    }

    #[test]
    fn wide_block_contributions_are_the_terms_of_the_distance() {
        // From PRODUCT_MIN_WIDTH on the terms come from a matrix product: its sums may be
        // ordered otherwise than a row's, so they are compared within rounding.
        let d = PRODUCT_MIN_WIDTH + 2;
        let x = cloud(150, d, 6);
        let (model, _) = fit(&x, McdParams::default(), 3).unwrap();
        let terms = model.contributions(x.view());
        for (i, row) in x.rows().into_iter().enumerate() {
            let c: Vec<f64> = (0..d).map(|j| row[j] - model.location[j]).collect();
            for f in 0..d {
                let pc: f64 = (0..d).map(|j| model.precision[f * d + j] * c[j]).sum();
                let want = (c[f] * pc).abs();
                let got = terms[[i, f]];
                assert!(
                    (got - want).abs() <= 1e-9 * want.max(1e-9),
                    "{i}, {f}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn contributions_name_the_shifted_feature() {
        let x = cloud(300, 4, 2);
        let (model, _) = fit(&x, McdParams::default(), 3).unwrap();
        for shifted in 0..4 {
            let mut row = Array2::from_shape_vec((1, 4), model.location.clone()).unwrap();
            row[[0, shifted]] += 8.0;
            let c = model.contributions(row.view());
            assert!(c.iter().all(|v| *v >= 0.0));
            let top = (0..4)
                .max_by(|&a, &b| c[[0, a]].total_cmp(&c[[0, b]]))
                .unwrap();
            assert_eq!(top, shifted, "{c:?}");
            // One term only is nonzero: it is the whole score.
            let score = model.score(row.view())[0];
            assert!((c.sum() - score).abs() <= 1e-9 * score, "{c:?} vs {score}");
        }
    }

    #[test]
    fn a_zero_covariance_support_names_support_fraction() {
        let mut rows = vec![[1.0, 1.0]; 30];
        rows.extend((0..10).map(|i| [i as f64 * 3.0, 7.0 - i as f64]));
        let x = Array2::from_shape_vec((40, 2), rows.concat()).unwrap();
        let err = fit(&x, McdParams::default(), 0).unwrap_err();
        assert!(
            matches!(err, DetectError::InvalidParameter { ref name, .. } if name == "support_fraction"),
            "{err}"
        );
        // A fraction that selects no row is refused the same way.
        let p = McdParams {
            support_fraction: Some(0.01),
            ..McdParams::default()
        };
        let err = fit(&x, p, 0).unwrap_err();
        assert!(
            matches!(err, DetectError::InvalidParameter { ref name, .. } if name == "support_fraction")
        );
    }

    #[test]
    fn collinear_features_score_through_the_pseudo_inverse() {
        let mut x = cloud(200, 3, 4);
        for mut row in x.outer_iter_mut() {
            row[2] = 2.0 * row[1] - row[0];
        }
        let mut warnings = Vec::new();
        let p = McdParams::default().check().unwrap();
        let (model, scores) = Mcd::fit(&p, 5, x.view(), &mut warnings).unwrap();
        assert!(
            scores.iter().all(|s| s.is_finite() && *s >= -1e-9),
            "{scores:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("not full rank")),
            "{warnings:?}"
        );
        assert!(model.check(3).is_ok());
        assert!(model.check(2).is_err());
    }
}
