//! Row-parallel scoring shared by the detectors that score each row on its own (HBOS,
//! PCA, GMM, INNE, ECOD/COPOD's new rows), one row or one block of rows at a time, and the
//! matching per-feature contributions.

use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;

/// Rows per parallel work item: enough to amortise the split on small rows.
const MIN_ROWS_PER_TASK: usize = 1024;

/// `score` of every row of `x`, in row order, computed in parallel (each row by one
/// thread, so the result does not depend on the thread count). Each row comes as a slice
/// of the matrix (a matrix not in row-major order is copied into it first).
pub(crate) fn score_rows(x: ArrayView2<'_, f64>, score: impl Fn(&[f64]) -> f64 + Sync) -> Vec<f64> {
    score_rows_with(x, 0, |row, _| score(row))
}

/// [`score_rows`] with a buffer of `scratch` values for `score` to work in (one per
/// thread, not one per row; its contents are whatever the previous row left).
pub(crate) fn score_rows_with(
    x: ArrayView2<'_, f64>,
    scratch: usize,
    score: impl Fn(&[f64], &mut [f64]) -> f64 + Sync,
) -> Vec<f64> {
    let (n, d) = x.dim();
    if d == 0 {
        let mut buffer = vec![0.0; scratch];
        return (0..n).map(|_| score(&[], &mut buffer)).collect();
    }
    let x = x.as_standard_layout();
    let flat = x
        .as_slice()
        .expect("a standard-layout matrix is contiguous");
    flat.par_chunks_exact(d)
        .with_min_len(MIN_ROWS_PER_TASK)
        .map_init(|| vec![0.0; scratch], |buffer, row| score(row, buffer))
        .collect()
}

/// Rows per block of [`score_blocks`].
pub(crate) const BLOCK_ROWS: usize = 64;

/// A scorer that lays a block of rows out feature by feature, so that each step runs
/// across the block's rows (PCA, GMM).
pub(crate) trait BlockScorer: Sync {
    /// Writes the scores of `rows` (up to [`BLOCK_ROWS`], row-major) to `out`, working in
    /// `buffer` (`BLOCK_ROWS · d` values, holding whatever the previous block left).
    /// Implementations are `#[inline(always)]`, so that [`score_blocks`] compiles them
    /// for each level of vector instructions.
    fn score_block(&self, rows: &[f64], out: &mut [f64], buffer: &mut [f64]);
}

/// One block of [`score_blocks`], run by `pulp` with the widest vector instructions the
/// CPU has (AVX-512, AVX2 or the SSE2 every x86-64 has), chosen at run time. The results
/// are the same bit for bit on each: wider registers do more of the same operations at
/// once, and nothing is fused into FMA.
struct Block<'a, T> {
    scorer: &'a T,
    rows: &'a [f64],
    out: &'a mut [f64],
    buffer: &'a mut [f64],
}

impl<T: BlockScorer> pulp::WithSimd for Block<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        self.scorer.score_block(self.rows, self.out, self.buffer);
    }
}

/// Scores rows [`BLOCK_ROWS`] at a time with a [`BlockScorer`], in parallel (each block
/// by one thread, so the result does not depend on the thread count) from
/// [`SEQUENTIAL_MAX_VALUES`] on.
pub(crate) fn score_blocks<T: BlockScorer>(x: ArrayView2<'_, f64>, scorer: &T) -> Vec<f64> {
    let d = x.ncols();
    let arch = pulp::Arch::new();
    score_blocks_with(
        x,
        x.len() > SEQUENTIAL_MAX_VALUES,
        || vec![0.0; BLOCK_ROWS * d],
        |buffer, rows, out| {
            arch.dispatch(Block {
                scorer,
                rows,
                out,
                buffer,
            });
        },
    )
}

/// [`score_blocks`] with per-thread scratch of the scorer's own making: `score(scratch,
/// rows, out)`, `scratch` from `init` (one per thread, holding whatever the previous block
/// left); on the calling thread unless `parallel`.
pub(crate) fn score_blocks_with<S>(
    x: ArrayView2<'_, f64>,
    parallel: bool,
    init: impl Fn() -> S + Sync + Send,
    score: impl Fn(&mut S, &[f64], &mut [f64]) + Sync,
) -> Vec<f64> {
    let (n, d) = x.dim();
    let mut scores = vec![0.0; n];
    if d == 0 {
        let mut scratch = init();
        for out in scores.chunks_mut(BLOCK_ROWS) {
            score(&mut scratch, &[], out);
        }
        return scores;
    }
    let x = x.as_standard_layout();
    let flat = x
        .as_slice()
        .expect("a standard-layout matrix is contiguous");
    if parallel {
        scores
            .par_chunks_mut(BLOCK_ROWS)
            .zip(flat.par_chunks(BLOCK_ROWS * d))
            .with_min_len(16)
            .for_each_init(init, |scratch, (out, rows)| score(scratch, rows, out));
    } else {
        let mut scratch = init();
        for (out, rows) in scores
            .chunks_mut(BLOCK_ROWS)
            .zip(flat.chunks(BLOCK_ROWS * d))
        {
            score(&mut scratch, rows, out);
        }
    }
    scores
}

/// Below this many values a pass costing a few nanoseconds per value runs on the calling
/// thread: handing it to the thread pool and waiting for it (a wake-up, tens of
/// microseconds) would cost more than the pass.
pub(crate) const SEQUENTIAL_MAX_VALUES: usize = 1 << 17;

/// `f` of each chunk of `size` values of `flat`, in order: on the calling thread below
/// [`SEQUENTIAL_MAX_VALUES`] (for cheap passes only), else in parallel.
pub(crate) fn map_chunks<T: Send>(
    flat: &[f64],
    size: usize,
    f: impl Fn(&[f64]) -> T + Sync + Send,
) -> Vec<T> {
    if flat.len() <= SEQUENTIAL_MAX_VALUES {
        flat.chunks(size).map(f).collect()
    } else {
        flat.par_chunks(size).map(f).collect()
    }
}

/// The contributions of [`contribution_rows`] (a row × `width` matrix) filled
/// [`BLOCK_ROWS`] rows at a time, as [`score_blocks_with`] scores: `fill(scratch, rows,
/// out)` gets up to `BLOCK_ROWS` rows (row-major) and their zeroed rows of `out`.
pub(crate) fn contribution_blocks<S>(
    x: ArrayView2<'_, f64>,
    width: usize,
    init: impl Fn() -> S + Sync + Send,
    fill: impl Fn(&mut S, &[f64], &mut [f64]) + Sync,
) -> Array2<f64> {
    let (n, d) = x.dim();
    let mut out = Array2::zeros((n, width));
    if width == 0 {
        return out;
    }
    let out_flat = out.as_slice_mut().expect("a fresh matrix is contiguous");
    if d == 0 {
        let mut scratch = init();
        for out in out_flat.chunks_mut(BLOCK_ROWS * width) {
            fill(&mut scratch, &[], out);
        }
        return out;
    }
    let x = x.as_standard_layout();
    let flat = x
        .as_slice()
        .expect("a standard-layout matrix is contiguous");
    out_flat
        .par_chunks_mut(BLOCK_ROWS * width)
        .zip(flat.par_chunks(BLOCK_ROWS * d))
        .with_min_len(16)
        .for_each_init(init, |scratch, (out, rows)| fill(scratch, rows, out));
    out
}

/// A detector whose contributions are computed for a block of rows at once, laid out
/// feature by feature as [`BlockScorer`]'s scores are (PCA, GMM, MCD, INNE).
pub(crate) trait BlockContributor: Sync {
    /// Values of scratch [`BlockContributor::contribute_block`] works in, for blocks of
    /// up to `rows` rows of `d` features.
    fn scratch_len(&self, d: usize, rows: usize) -> usize;

    /// Writes the contributions of `rows` (b rows, up to [`BLOCK_ROWS`], row-major, of
    /// the model's width d) to the first d · b values of `terms` (zeroed), laid out as
    /// [`by_feature`] lays rows out, working in `scratch` (holding whatever the previous
    /// block left), with `simd`'s vector instructions. Implementations are
    /// `#[inline(always)]`, as [`BlockScorer::score_block`]'s are.
    fn contribute_block<S: pulp::Simd>(
        &self,
        simd: S,
        rows: &[f64],
        terms: &mut [f64],
        scratch: &mut [f64],
    );
}

/// One block of [`contributions_by_blocks`], run by `pulp` as [`Block`] is.
struct ContributionBlock<'a, T> {
    contributor: &'a T,
    rows: &'a [f64],
    d: usize,
    out: &'a mut [f64],
    terms: &'a mut [f64],
    scratch: &'a mut [f64],
}

impl<T: BlockContributor> pulp::WithSimd for ContributionBlock<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        self.terms.fill(0.0);
        self.contributor
            .contribute_block(simd, self.rows, self.terms, self.scratch);
        by_row(self.terms, self.d, self.out);
    }
}

/// The contributions of a [`BlockContributor`] (as wide as the rows), a row × feature
/// matrix filled [`BLOCK_ROWS`] rows at a time as [`contribution_blocks`] fills it.
pub(crate) fn contributions_by_blocks<T: BlockContributor>(
    x: ArrayView2<'_, f64>,
    contributor: &T,
) -> Array2<f64> {
    let d = x.ncols();
    let arch = pulp::Arch::new();
    let block = x.nrows().min(BLOCK_ROWS);
    let scratch = contributor.scratch_len(d, block);
    contribution_blocks(
        x,
        d,
        || (vec![0.0; scratch], vec![0.0; d * block]),
        |(scratch, terms), rows, out| {
            arch.dispatch(ContributionBlock {
                contributor,
                rows,
                d,
                out,
                terms,
                scratch,
            });
        },
    )
}

/// Transposes b rows of `d` values (row-major) into `into`, feature by feature: value k
/// of row i goes to `into[k * b + i]`, as `value(k, v)`.
#[inline(always)]
pub(crate) fn by_feature(
    rows: &[f64],
    d: usize,
    into: &mut [f64],
    value: impl Fn(usize, f64) -> f64,
) {
    let b = rows.len() / d;
    for (i, row) in rows.chunks_exact(d).enumerate() {
        for (k, &v) in row.iter().enumerate() {
            into[k * b + i] = value(k, v);
        }
    }
}

/// Writes `from` (laid out as [`by_feature`] lays rows out) back row by row into `out`
/// (rows of `d` values).
#[inline(always)]
pub(crate) fn by_row(from: &[f64], d: usize, out: &mut [f64]) {
    let b = out.len() / d;
    for (i, row) in out.chunks_exact_mut(d).enumerate() {
        for (k, o) in row.iter_mut().enumerate() {
            *o = from[k * b + i];
        }
    }
}

/// A row × `width` matrix whose row i is written by `fill(row i of x, out)` (`out`
/// zeroed), rows computed in parallel as [`score_rows`] does.
pub(crate) fn contribution_rows(
    x: ArrayView2<'_, f64>,
    width: usize,
    fill: impl Fn(&[f64], &mut [f64]) + Sync,
) -> Array2<f64> {
    let (n, d) = x.dim();
    let mut out = Array2::zeros((n, width));
    if width == 0 {
        return out;
    }
    if d == 0 {
        for mut o in out.axis_iter_mut(Axis(0)) {
            fill(
                &[],
                o.as_slice_mut()
                    .expect("a fresh matrix's rows are contiguous"),
            );
        }
        return out;
    }
    let x = x.as_standard_layout();
    let flat = x
        .as_slice()
        .expect("a standard-layout matrix is contiguous");
    out.as_slice_mut()
        .expect("a fresh matrix is contiguous")
        .par_chunks_exact_mut(width)
        .zip(flat.par_chunks_exact(d))
        .with_min_len(MIN_ROWS_PER_TASK)
        .for_each(|(o, row)| fill(row, o));
    out
}
