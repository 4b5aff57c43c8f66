//! Per-feature explanations: which features make a row anomalous.
//!
//! Every detector splits a row's anomaly score over the features in its own natural way
//! (its `contributions`: one non-negative value per row and feature, larger = more
//! responsible for the score):
//!
//! - ECOD, COPOD ([`crate::tails`]): the per-feature terms of the score's sum — for ECOD
//!   the −ln tail probability of the tail the score picks; they sum to the score;
//! - HBOS ([`crate::hbos`]): each feature's −log₂(density + alpha) above the lowest its
//!   histogram allows; they sum to the score minus the lowest possible score;
//! - PCA ([`crate::pca`]): the per-feature summands of the row's distance to each selected
//!   component, in the standardized space; they sum to the score;
//! - GMM ([`crate::gmm`]): the conditional terms of the Mahalanobis distance (how far each
//!   feature is from what the others predict);
//! - MCD ([`crate::mcd`]): |c_f · (P c)_f| with c the row less the robust location and P the
//!   robust precision: the terms of the squared Mahalanobis distance, made non-negative
//!   (they sum to the score when none is negative);
//! - CBLOF ([`crate::cblof`]): the per-feature squared differences to the centre the score
//!   uses;
//! - KNN, LOF, DBSCAN, INNE ([`crate::knn`], [`crate::lof`], [`crate::dbscan`],
//!   [`crate::inne`]): the score split over the features in proportion to their parts of
//!   the (squared) distance to the neighbours, nearest core row or centres the score uses;
//!   they sum to the score;
//! - isolation forest ([`crate::iforest`]): Local-DIFFI, the depth-weighted importance of
//!   the features split on along the row's paths.
//!
//! [`crate::FittedModel::explain`] turns them into each row's `top_k` features, in
//! decreasing order of contribution (ties: the lower feature index first), each
//! contribution **normalised so that a row's contributions over all its features (not
//! only the top ones) sum to 1**. A row whose contributions are all 0 (a row nothing in
//! the model finds unusual, e.g. on a core row of DBSCAN) gets 1 / n_features for every
//! feature; where contributions are infinite (HBOS with `alpha` 0 and an empty bin), the
//! infinite ones share 1 equally and the others get 0.
//!
//! Cost: each detector's contributions walk the same trees, neighbours, histograms or
//! components as its score, plus a few operations per feature; then O(d k) per row to
//! keep its k top features. Rows go in chunks of 256 (in parallel when there
//! are more): a chunk's contributions are made and ranked while they are in the cache,
//! never as a matrix of all the rows. Ranking runs eight rows at a time across vector
//! lanes (`pulp`, the widest instructions the CPU has), with no branch on the values, and
//! all rows' lists share one allocation ([`Explanations`]). PCA, GMM, MCD and INNE make
//! their contributions a block of rows at a time, laid out feature by feature
//! (`rows::BlockContributor`), and the block is ranked from that layout.
//! `benches/score.rs` times the isolation forest's explanations beside its scoring, and
//! `bench-tools`' `explain-cost` every detector's (figures in BENCHMARKS.md).

use std::convert::Infallible;
use std::ops::Range;

use ndarray::{ArrayView2, s};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::rows::{BLOCK_ROWS, BlockContributor};

/// One feature's share of a row's anomaly: `feature` is the column index (0-based),
/// `contribution` its normalised share in [0, 1] (a row's shares over all features sum
/// to 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureContribution {
    pub feature: usize,
    pub contribution: f64,
}

/// How many features the service's `explain` options show per row when not told: 3, or
/// every feature when there are fewer.
pub const DEFAULT_TOP_K: usize = 3;

/// The name the service gives column `index` of data without feature names: `x0`, `x1`,
/// … (as drift reports name them).
pub fn column_name(index: usize) -> String {
    format!("x{index}")
}

/// A row's explanation as one CSV field (the batch outputs' and `pynomaly detect`'s
/// `explanation` column): `name:share` pairs joined by `;`, quoted as RFC 4180 quotes
/// when a name holds a comma, a quote or a line break.
pub fn csv_cell(row: &[FeatureContribution], names: &[String]) -> String {
    use std::fmt::Write as _;
    let mut cell = String::new();
    for (j, c) in row.iter().enumerate() {
        if j > 0 {
            cell.push(';');
        }
        let _ = write!(cell, "{}:{}", names[c.feature], c.contribution);
    }
    if cell.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", cell.replace('"', "\"\""))
    } else {
        cell
    }
}

/// A row's contributions normalised to sum to 1 (see the module docs for all-zero and
/// infinite rows).
pub fn normalise(raw: &[f64]) -> Vec<f64> {
    let shares = Shares::of(raw.iter().copied());
    raw.iter().map(|&c| shares.of_one(c)).collect()
}

/// What [`normalise`] divides by, read off a row once.
struct Shares {
    infinite: usize,
    total: f64,
    width: usize,
}

impl Shares {
    fn of(row: impl Iterator<Item = f64> + Clone) -> Self {
        Self {
            infinite: row.clone().filter(|c| c.is_infinite()).count(),
            total: row.clone().map(|c| c.max(0.0)).sum(),
            width: row.count(),
        }
    }

    /// The order of a contribution `c` among the row's: its share up to the factor that
    /// all the row's shares have in common (the infinite ones rank first where there are
    /// any).
    fn key(&self, c: f64) -> f64 {
        if self.infinite > 0 {
            f64::from(u8::from(c.is_infinite()))
        } else {
            c.max(0.0)
        }
    }

    /// The share of a contribution whose [`Shares::key`] is `key`.
    fn of_key(&self, key: f64) -> f64 {
        let over = if self.infinite > 0 {
            self.infinite as f64
        } else {
            self.total
        };
        if over > 0.0 {
            key / over
        } else {
            1.0 / self.width as f64
        }
    }

    /// The share of a contribution `c` of the row.
    fn of_one(&self, c: f64) -> f64 {
        self.of_key(self.key(c))
    }
}

/// Every row's top features, in one allocation: `top_k` per row, row `i`'s at
/// [`Explanations::row`]`(i)` (or `explanations[i]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Explanations {
    rows: usize,
    top_k: usize,
    items: Vec<FeatureContribution>,
}

impl Explanations {
    /// The number of rows explained.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row is explained.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Features per row.
    pub fn top_k(&self) -> usize {
        self.top_k
    }

    /// Row `i`'s top features, most responsible first.
    ///
    /// # Panics
    /// When `i` is not below [`Explanations::len`].
    pub fn row(&self, i: usize) -> &[FeatureContribution] {
        assert!(i < self.rows, "row {i} of {} explained", self.rows);
        &self.items[i * self.top_k..(i + 1) * self.top_k]
    }

    /// The rows' top features, in row order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &[FeatureContribution]> + '_ {
        (0..self.rows).map(|i| self.row(i))
    }
}

impl std::ops::Index<usize> for Explanations {
    type Output = [FeatureContribution];

    fn index(&self, i: usize) -> &[FeatureContribution] {
        self.row(i)
    }
}

/// Each row's `top_k` features by contribution (`top_k` at most the row width),
/// normalised as [`normalise`] does, in decreasing order (ties: lower index first).
///
/// A row's features are ranked by their contributions (infinite ones first when it has
/// any) and only the kept ones are normalised: the order is the shares' order, since a
/// row's shares are its contributions over one positive total.
pub fn top_features(contributions: ArrayView2<'_, f64>, top_k: usize) -> Explanations {
    let (rows, d) = contributions.dim();
    let ranked = by_chunks(rows, top_k.min(d), |range, scratch, out| {
        rank_rows(contributions.slice(s![range, ..]), scratch, out);
        Ok::<_, Infallible>(())
    });
    match ranked {
        Ok(explanations) => explanations,
        Err(never) => match never {},
    }
}

/// Rows ranked as one piece of work: their contributions are made and ranked while they
/// are in the cache.
const CHUNK_ROWS: usize = 256;

/// Explanations of `rows` rows, `top_k` each, made [`CHUNK_ROWS`] rows at a time (in
/// parallel when there are more) by `rank_chunk(rows of the chunk, scratch, their
/// places)`.
pub(crate) fn by_chunks<E: Send>(
    rows: usize,
    top_k: usize,
    rank_chunk: impl Fn(Range<usize>, &mut Vec<f64>, &mut [FeatureContribution]) -> Result<(), E> + Sync,
) -> Result<Explanations, E> {
    let unset = FeatureContribution {
        feature: 0,
        contribution: 0.0,
    };
    let mut items = vec![unset; rows * top_k];
    if top_k > 0 && rows > 0 {
        // Entering the thread pool costs more than ranking a few rows.
        if rows <= CHUNK_ROWS {
            rank_chunk(0..rows, &mut Vec::new(), &mut items)?;
        } else {
            items
                .par_chunks_mut(CHUNK_ROWS * top_k)
                .enumerate()
                .try_for_each_init(Vec::new, |scratch, (i, out)| {
                    let start = i * CHUNK_ROWS;
                    rank_chunk(start..start + out.len() / top_k, scratch, out)
                })?;
        }
    }
    Ok(Explanations { rows, top_k, items })
}

/// Writes each row's top features (`out.len()` / rows of them) into `out`, working in
/// `scratch`.
pub(crate) fn rank_rows(
    contributions: ArrayView2<'_, f64>,
    scratch: &mut Vec<f64>,
    out: &mut [FeatureContribution],
) {
    let (rows, d) = contributions.dim();
    if rows == 0 || out.is_empty() {
        return;
    }
    let top_k = out.len() / rows;
    let contributions = contributions.as_standard_layout();
    let flat = contributions
        .as_slice()
        .expect("a standard-layout matrix is contiguous");
    // A few rows cost less one at a time than the vector ranking's setup.
    if top_k <= LANES_MAX_K && rows >= LANES {
        pulp::Arch::new().dispatch(RankRows {
            rows: flat,
            d,
            out,
            by_feature: scratch,
        });
    } else {
        for (row, out) in flat.chunks_exact(d).zip(out.chunks_exact_mut(top_k)) {
            rank(row, out);
        }
    }
}

/// Writes a row's `out.len()` top features into `out`.
fn rank(row: &[f64], out: &mut [FeatureContribution]) {
    let k = out.len();
    let shares = Shares::of(row.iter().copied());
    // The k largest keys so far, largest first, each held as its entry's contribution
    // until the shares are written: a feature goes after every one whose key is at least
    // its own, so equal keys keep the lower index first.
    let mut filled = 0;
    for (feature, &c) in row.iter().enumerate() {
        let key = shares.key(c);
        let mut at = if filled < k {
            filled += 1;
            filled - 1
        } else if out[k - 1].contribution < key {
            k - 1
        } else {
            continue;
        };
        while at > 0 && out[at - 1].contribution < key {
            out[at] = out[at - 1];
            at -= 1;
        }
        out[at] = FeatureContribution {
            feature,
            contribution: key,
        };
    }
    for o in out {
        o.contribution = shares.of_key(o.contribution);
    }
}

/// Rows [`rank_block`] ranks together, one per vector lane.
const LANES: usize = 8;

/// The most features per row [`rank_block`] keeps; longer lists are ranked by [`rank`].
const LANES_MAX_K: usize = 8;

/// [`rank`] for rows of contributions, made [`BLOCK_ROWS`] at a time by [`rank_block`],
/// run by `pulp` with the widest vector instructions the CPU has.
struct RankRows<'a> {
    /// Whole rows of `d` contributions.
    rows: &'a [f64],
    d: usize,
    /// `top_k` (at most [`LANES_MAX_K`]) per row.
    out: &'a mut [FeatureContribution],
    /// Scratch.
    by_feature: &'a mut Vec<f64>,
}

impl pulp::WithSimd for RankRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let d = self.d;
        let k = self.out.len() / (self.rows.len() / d);
        // Room for the last group's lanes past the rows.
        self.by_feature.resize(d * BLOCK_ROWS + LANES, 0.0);
        let blocks = self.rows.chunks(BLOCK_ROWS * d);
        for (rows, out) in blocks.zip(self.out.chunks_mut(BLOCK_ROWS * k)) {
            crate::rows::by_feature(rows, d, self.by_feature, |_, c| c);
            rank_block(simd, self.by_feature, d, k, out);
        }
    }
}

/// Explanations of a detector whose contributions come a block of rows at a time
/// ([`BlockContributor`]): each block's contributions are ranked as they are made, laid
/// out feature by feature, without a matrix of all the rows' contributions.
pub(crate) fn by_blocks<T: BlockContributor>(
    x: ArrayView2<'_, f64>,
    top_k: usize,
    contributor: &T,
) -> Explanations {
    let x = x.as_standard_layout();
    let d = x.ncols();
    let flat = x
        .as_slice()
        .expect("a standard-layout matrix is contiguous");
    let block = x.nrows().min(BLOCK_ROWS);
    let scratch = contributor.scratch_len(d, block);
    let arch = pulp::Arch::new();
    let ranked = by_chunks(x.nrows(), top_k, |range, work, out| {
        let rows = &flat[range.start * d..range.end * d];
        if top_k > LANES_MAX_K {
            let c = crate::rows::contributions_by_blocks(
                ArrayView2::from_shape((range.len(), d), rows).expect("whole rows"),
                contributor,
            );
            rank_rows(c.view(), work, out);
        } else {
            work.resize(scratch + d * block + LANES, 0.0);
            let (scratch, terms) = work.split_at_mut(scratch);
            arch.dispatch(ExplainBlocks {
                contributor,
                rows,
                d,
                out,
                scratch,
                terms,
            });
        }
        Ok::<_, Infallible>(())
    });
    match ranked {
        Ok(explanations) => explanations,
        Err(never) => match never {},
    }
}

/// A chunk of [`by_blocks`]: per block of rows, the contributions, then their ranking.
struct ExplainBlocks<'a, T> {
    contributor: &'a T,
    rows: &'a [f64],
    d: usize,
    out: &'a mut [FeatureContribution],
    scratch: &'a mut [f64],
    terms: &'a mut [f64],
}

impl<T: BlockContributor> pulp::WithSimd for ExplainBlocks<'_, T> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let d = self.d;
        let k = self.out.len() / (self.rows.len() / d);
        let blocks = self.rows.chunks(BLOCK_ROWS * d);
        for (rows, out) in blocks.zip(self.out.chunks_mut(BLOCK_ROWS * k)) {
            self.terms[..rows.len()].fill(0.0);
            self.contributor
                .contribute_block(simd, rows, self.terms, self.scratch);
            if rows.len() == d {
                // One row's contributions are laid out as a row.
                rank(&self.terms[..d], out);
            } else {
                rank_block(simd, self.terms, d, k, out);
            }
        }
    }
}

/// Ranks a block's b rows (`out.len() / k` of them) from their contributions laid out
/// feature by feature (row i's contribution of feature f at `by_feature[f * b + i]`,
/// followed by at least [`LANES`] values of room), [`LANES`] rows at a time across vector
/// lanes,
/// without branching on the values. Each feature in turn passes down the lanes' top
/// lists (largest first), swapping with every entry it goes ahead of (a larger key, or an
/// equal key at a higher index). Shares as [`Shares`] gives them: the result is
/// [`rank`]'s.
#[inline(always)]
fn rank_block<S: pulp::Simd>(
    simd: S,
    by_feature: &[f64],
    d: usize,
    k: usize,
    out: &mut [FeatureContribution],
) {
    let zero = simd.splat_f64s(0.0);
    let one = simd.splat_f64s(1.0);
    let infinity = simd.splat_f64s(f64::INFINITY);
    let even = simd.splat_f64s(1.0 / d as f64);
    let is_infinite = |c| simd.equal_f64s(simd.abs_f64s(c), infinity);
    let b = out.len() / k;
    // Per place in the top lists, the lanes' features and shares.
    let mut placed_feature = [0; LANES * LANES_MAX_K];
    let mut placed_share = [0.0; LANES * LANES_MAX_K];
    // Lanes past the block's rows read other values; they are not written out.
    for (g, out) in out.chunks_mut(LANES * k).enumerate() {
        for v in 0..LANES / S::F64_LANES {
            let lanes = |f: usize| S::as_simd_f64s(&by_feature[f * b + g * LANES..][..LANES]).0[v];
            // The infinite contributions share 1 when there are any, else each has its
            // part of the total, or all an equal part when that is 0.
            let (mut infinite, mut total) = (zero, zero);
            for f in 0..d {
                let c = lanes(f);
                infinite = simd.add_f64s(infinite, simd.select_f64s(is_infinite(c), one, zero));
                total = simd.add_f64s(total, simd.max_f64s(c, zero));
            }
            let any_infinite = simd.greater_than_f64s(infinite, zero);
            let over = simd.select_f64s(any_infinite, infinite, total);
            let mut top_key = [simd.splat_f64s(-1.0); LANES_MAX_K];
            let mut top_feature = [simd.splat_u64s(0); LANES_MAX_K];
            for f in 0..d {
                let c = lanes(f);
                let mut key = simd.select_f64s(
                    any_infinite,
                    simd.select_f64s(is_infinite(c), one, zero),
                    simd.max_f64s(c, zero),
                );
                let mut feature = simd.splat_u64s(f as u64);
                for (held, held_feature) in top_key.iter_mut().zip(&mut top_feature).take(k) {
                    let ahead = simd.or_m64s(
                        simd.greater_than_f64s(key, *held),
                        simd.and_m64s(
                            simd.equal_f64s(key, *held),
                            simd.less_than_u64s(feature, *held_feature),
                        ),
                    );
                    (*held, key) = (
                        simd.select_f64s(ahead, key, *held),
                        simd.select_f64s(ahead, *held, key),
                    );
                    (*held_feature, feature) = (
                        simd.select_u64s(ahead, feature, *held_feature),
                        simd.select_u64s(ahead, *held_feature, feature),
                    );
                }
            }
            let shared = simd.greater_than_f64s(over, zero);
            let places = placed_feature.chunks_exact_mut(LANES);
            let shares = placed_share.chunks_exact_mut(LANES);
            let tops = top_feature.iter().zip(&top_key);
            for ((place, share), (feature, key)) in places.zip(shares).zip(tops).take(k) {
                S::as_mut_simd_u64s(place).0[v] = *feature;
                S::as_mut_simd_f64s(share).0[v] =
                    simd.select_f64s(shared, simd.div_f64s(*key, over), even);
            }
        }
        for (l, out) in out.chunks_exact_mut(k).enumerate() {
            for (s, o) in out.iter_mut().enumerate() {
                *o = FeatureContribution {
                    feature: placed_feature[s * LANES + l] as usize,
                    contribution: placed_share[s * LANES + l],
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn rows_are_normalised_over_all_features_and_ranked() {
        let c = array![
            [1.0, 3.0, 0.0, 4.0],
            [0.0, 0.0, 0.0, 0.0],
            [2.0, f64::INFINITY, 1.0, f64::INFINITY]
        ];
        let top = top_features(c.view(), 2);
        let f = |r: &[FeatureContribution]| {
            r.iter()
                .map(|c| (c.feature, c.contribution))
                .collect::<Vec<_>>()
        };
        assert_eq!(f(&top[0]), vec![(3, 0.5), (1, 0.375)]);
        assert_eq!(f(&top[1]), vec![(0, 0.25), (1, 0.25)]);
        assert_eq!(f(&top[2]), vec![(1, 0.5), (3, 0.5)]);
        let names: Vec<String> = ["a", "b,c", "d", "e"].map(String::from).to_vec();
        assert_eq!(csv_cell(&top[0], &names), "\"e:0.5;b,c:0.375\"");
        let quoted: Vec<String> = ["a", "b\"c", "d", "e"].map(String::from).to_vec();
        assert_eq!(csv_cell(&top[1], &quoted), "\"a:0.25;b\"\"c:0.25\"");
        let plain: Vec<String> = (0..4).map(column_name).collect();
        assert_eq!(csv_cell(&top[0], &plain), "x3:0.5;x1:0.375");
    }

    #[test]
    fn the_top_features_are_the_head_of_the_fully_sorted_shares() {
        // Rows of 11: top lists ranked in vector lanes (up to LANES_MAX_K) and one row at
        // a time (longer), rows with infinite contributions, all-zero rows, and enough
        // rows for parallel chunks and part blocks.
        let values = [
            0.0,
            0.5,
            0.5,
            2.0,
            -1.0,
            3.25,
            0.5,
            1e-300,
            7.0,
            2.0,
            f64::INFINITY,
        ];
        let d = 11;
        let rows = ndarray::Array2::from_shape_fn((700, d), |(i, j)| match i % 9 {
            0 => 0.0,
            1 | 2 => values[(i * d + j * 3 + i / 5) % values.len()],
            _ => values[(i * d + j * 3 + i / 5) % (values.len() - 1)],
        });
        for k in 1..=d {
            let top = top_features(rows.view(), k);
            assert_eq!((top.len(), top.top_k()), (700, k));
            for (row, got) in rows.outer_iter().zip(top.rows()) {
                let shares = normalise(&row.to_vec());
                let mut order: Vec<usize> = (0..shares.len()).collect();
                order.sort_by(|&a, &b| shares[b].total_cmp(&shares[a]).then(a.cmp(&b)));
                let want: Vec<FeatureContribution> = order[..k]
                    .iter()
                    .map(|&feature| FeatureContribution {
                        feature,
                        contribution: shares[feature],
                    })
                    .collect();
                assert_eq!(got, want.as_slice(), "{row}, top {k}");
            }
        }
    }
}
