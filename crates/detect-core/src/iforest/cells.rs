//! Scoring by cell: a row's walk through a forest of perfect trees depends only on which
//! side of each node's threshold its values lie. Per feature, the forest's distinct
//! thresholds `t_0 < t_1 < … < t_{K-1}` cut the line into K + 1 intervals; a value's
//! *code* is its interval, the number of thresholds below it. Then
//! `v > t_r  ⇔  code(v) > r` (if `t_r < v`, the r + 1 thresholds `t_0..=t_r` are below `v`;
//! if `v ≤ t_r`, only thresholds below `t_r` can be below `v`), so a walk over codes takes
//! exactly the turns the walk over values takes, and gives bit-for-bit the same path
//! lengths, summed in the same tree order.
//!
//! With at most [`MAX_FEATURES`] features and fewer than 2^16 − 1 thresholds per feature,
//! a row's codes pack into one `u64` (16 bits per feature), which pays twice:
//! - rows that differ only in ways no tree can see share a key, so deduplicating keys
//!   walks fewer rows than deduplicating values (on the `http` set, 157,557 distinct
//!   cells against 221,900 distinct rows, of 567,498);
//! - a step of the walk reads the row's value from a register (`key >> shift`) instead of
//!   memory, and a node is 4 bytes instead of 16.

use rayon::prelude::*;

use super::DenseForest;

/// Most features a packed key holds (16 bits each).
pub(super) const MAX_FEATURES: usize = 4;
/// The rank of a node no value goes right of (threshold +∞ or NaN): above every code,
/// since a feature has at most `PASS - 1` thresholds and a code is at most their number.
const PASS: u32 = 0xFFFF;
/// Keys walked together through a tree.
const LANES: usize = 8;
/// Keys per parallel work item.
const BLOCK: usize = 2048;

/// A forest of perfect trees, recoded to compare interval codes.
pub(super) struct CellForest<'a> {
    forest: &'a DenseForest,
    /// Per feature, the distinct thresholds (NaN and +∞ left out), ascending.
    cuts: Vec<Vec<f64>>,
    /// Per internal node of `forest`: the threshold's rank among its feature's cuts in
    /// the low 16 bits ([`PASS`] when nothing goes right), the feature's bit offset in
    /// the key (16 · feature) in the high 16.
    nodes: Vec<u32>,
}

impl<'a> CellForest<'a> {
    /// The recoded forest, or `None` when rows do not fit a key: more than
    /// [`MAX_FEATURES`] features, or a feature with too many distinct thresholds.
    pub(super) fn new(forest: &'a DenseForest) -> Option<Self> {
        let d = forest.n_features;
        if d == 0 || d > MAX_FEATURES {
            return None;
        }
        let goes_right_somewhere = |t: f64| !t.is_nan() && t != f64::INFINITY;
        let mut cuts = vec![Vec::new(); d];
        for node in &forest.nodes {
            if goes_right_somewhere(node.threshold) {
                cuts[node.feature as usize].push(node.threshold);
            }
        }
        for c in &mut cuts {
            c.sort_unstable_by(f64::total_cmp);
            // -0.0 and 0.0 compare equal, and are one cut.
            c.dedup_by(|a, b| a == b);
            if c.len() >= PASS as usize {
                return None;
            }
        }
        let nodes = forest
            .nodes
            .iter()
            .map(|node| {
                let f = node.feature as usize;
                if goes_right_somewhere(node.threshold) {
                    // The threshold is one of the cuts: its rank is the number below it.
                    let rank = cuts[f].partition_point(|&t| t < node.threshold) as u32;
                    rank | ((16 * f as u32) << 16)
                } else {
                    PASS
                }
            })
            .collect();
        Some(Self {
            forest,
            cuts,
            nodes,
        })
    }

    /// The packed codes of one row (as wide as the forest's rows).
    #[inline]
    pub(super) fn key(&self, row: &[f64]) -> u64 {
        row.iter()
            .zip(&self.cuts)
            .enumerate()
            .fold(0, |k, (f, (&v, cuts))| {
                k | ((cuts.partition_point(|&t| t < v) as u64) << (16 * f))
            })
    }

    /// Each key's path length summed over all trees, in tree order, into `out`.
    #[allow(unsafe_code)]
    pub(super) fn path_length_sums(&self, keys: &[u64], out: &mut [f64]) {
        assert_eq!(keys.len(), out.len());
        let depth = self.forest.depth;
        let internal = DenseForest::internal(depth);
        let n_leaves = 1usize << depth;
        let n_trees = self.forest.n_trees();
        assert!(
            self.nodes.len() == n_trees * internal
                && self.forest.leaves.len() == n_trees * n_leaves
        );
        out.fill(0.0);
        let (groups, rest) = keys.as_chunks::<LANES>();
        let (group_sums, rest_sums) = out.as_chunks_mut::<LANES>();
        // The last keys walk padded to a full group (the padding's sums are dropped).
        let mut tail_keys = [0u64; LANES];
        let mut tail_sums = [0.0; LANES];
        tail_keys[..rest.len()].copy_from_slice(rest);
        for t in 0..n_trees {
            let nodes = &self.nodes[t * internal..(t + 1) * internal];
            let leaves = &self.forest.leaves[t * n_leaves..(t + 1) * n_leaves];
            let walk = |group: &[u64; LANES], sums: &mut [f64; LANES]| {
                let mut idx = [0usize; LANES];
                for _ in 0..depth {
                    for lane in 0..LANES {
                        // SAFETY: a walk starts at 0 and takes `depth` steps
                        // i -> 2i + 1 + {0, 1}, so before each step i < internal.
                        let node = unsafe { *nodes.get_unchecked(idx[lane]) };
                        let code = (group[lane] >> (node >> 16)) & 0xFFFF;
                        idx[lane] =
                            2 * idx[lane] + 1 + usize::from(code > u64::from(node & 0xFFFF));
                    }
                }
                for lane in 0..LANES {
                    // SAFETY: after `depth` steps internal <= i < 2 internal + 1, and
                    // i - internal < 2^depth = leaves.len().
                    sums[lane] += unsafe { *leaves.get_unchecked(idx[lane] - internal) };
                }
            };
            for (group, sums) in groups.iter().zip(group_sums.iter_mut()) {
                walk(group, sums);
            }
            if !rest.is_empty() {
                walk(&tail_keys, &mut tail_sums);
            }
        }
        rest_sums.copy_from_slice(&tail_sums[..rest.len()]);
    }

    /// Anomaly scores of `x`'s rows, written into `x`'s own buffer (see
    /// `IsolationForest::score_owned`): `buf[base + r·d ..][..d]` is row `r` of `n`; on
    /// return `buf[..n]` holds the scores. `normalize` turns path-length sums into scores.
    ///
    /// The rows are first replaced by their keys (`buf[r]`, by waves: a slot is
    /// overwritten only once every row it overlaps has been coded); then, when keys
    /// repeat, each key is walked once, the distinct keys and their hash table kept in
    /// the rest of the buffer (see [`distinct_keys`]).
    pub(super) fn score_in_place(
        &self,
        buf: &mut [f64],
        base: usize,
        n: usize,
        normalize: impl Fn(&mut [f64]) + Sync,
    ) {
        let d = self.forest.n_features;
        assert!(buf.len() >= base + n * d);
        const WAVE: usize = 1 << 15;
        let mut coded = vec![0u64; WAVE.min(n)];
        let mut start = 0;
        while start < n {
            let end = (start + WAVE).min(n);
            let rows = &buf[base + start * d..base + end * d];
            coded[..end - start]
                .par_chunks_mut(BLOCK)
                .zip(rows.par_chunks(BLOCK * d))
                .for_each(|(keys, rows)| {
                    for (k, row) in keys.iter_mut().zip(rows.chunks_exact(d)) {
                        *k = self.key(row);
                    }
                });
            // Slot s < end lies in row (s - base) / d <= s < end: already coded.
            for (slot, &k) in buf[start..end].iter_mut().zip(&coded) {
                *slot = f64::from_bits(k);
            }
            start = end;
        }
        drop(coded);
        // Deduplicate in the rows' own memory where it is large enough (two or more
        // features); one feature borrows half a column.
        let (keys, free) = buf.split_at_mut(n);
        let mut borrowed;
        let scratch: &mut [f64] = if free.len() >= n / 2 {
            free
        } else {
            borrowed = vec![0.0; n / 2];
            &mut borrowed
        };
        let walk = |block: &mut [f64]| {
            let own: Vec<u64> = block.iter().map(|s| s.to_bits()).collect();
            self.path_length_sums(&own, block);
            normalize(block);
        };
        match distinct_keys(keys, scratch) {
            Some(m) => {
                // Each slot of `keys` holds its key's index among the distinct keys.
                let distinct = &mut scratch[..m];
                distinct.par_chunks_mut(BLOCK).for_each(walk);
                let scores = &*distinct;
                keys.par_iter_mut()
                    .for_each(|s| *s = scores[s.to_bits() as usize]);
            }
            None => keys.par_chunks_mut(BLOCK).for_each(walk),
        }
    }
}

/// Keys sampled to decide whether deduplication pays.
const PROBE: usize = 8192;
/// Fewer keys than this are walked as they are.
const DEDUP_MIN: usize = 1 << 15;

/// splitmix64's finalizer: every key bit reaches the low bits (the table's slots).
fn mix(k: u64) -> u64 {
    let k = (k ^ (k >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let k = (k ^ (k >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    k ^ (k >> 31)
}

/// When keys (as `f64` bits) repeat often enough (at least one in five of the first
/// [`PROBE`] a repeat), replaces each by its index among the distinct keys, which it
/// writes to the front of `scratch` in order of first appearance, and returns how many
/// there are; else `None`, with `keys` as they were.
///
/// The hash table lives in `scratch` too: a well-kept table (hashbrown) allocates its
/// own memory, and the point here is to add none to the matrix being scored. It is open
/// addressing with linear probing over `u32` slots, two per word, each 0 (empty) or a
/// distinct key's index + 1, at most 7/8 full; the largest power of two of slots that
/// fits half of `scratch` is used, the rest holds the distinct keys. When they do not fit,
/// the keys are restored and `None` returned.
fn distinct_keys(keys: &mut [f64], scratch: &mut [f64]) -> Option<usize> {
    let n = keys.len();
    if n < DEDUP_MIN || n >= u32::MAX as usize || scratch.len() < 2 {
        return None;
    }
    let probe: hashbrown::HashSet<u64> = keys[..PROBE].iter().map(|s| s.to_bits()).collect();
    if probe.len() * 5 > PROBE * 4 {
        return None;
    }
    drop(probe);
    let words = 1usize << (usize::BITS - 1 - (scratch.len() / 2).leading_zeros());
    let split = scratch.len() - words;
    let (distinct, table) = scratch.split_at_mut(split);
    table.fill(0.0);
    let slots = 2 * words;
    let capacity = (slots / 8 * 7).min(distinct.len());
    let mut m = 0usize;
    for i in 0..n {
        let k = keys[i].to_bits();
        let mut j = (mix(k) as usize) & (slots - 1);
        let index = loop {
            let word = table[j / 2].to_bits();
            let shift = 32 * (j % 2);
            let entry = (word >> shift) as u32;
            if entry == 0 {
                if m == capacity {
                    for s in &mut keys[..i] {
                        *s = distinct[s.to_bits() as usize];
                    }
                    return None;
                }
                distinct[m] = f64::from_bits(k);
                m += 1;
                table[j / 2] = f64::from_bits(word | ((m as u64) << shift));
                break m - 1;
            }
            if distinct[entry as usize - 1].to_bits() == k {
                break entry as usize - 1;
            }
            j = (j + 1) & (slots - 1);
        };
        keys[i] = f64::from_bits(index as u64);
    }
    Some(m)
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;

    use super::super::{IsolationForest, Trees};
    use super::*;
    use crate::params::{IsolationForestParams, ParamGuard};

    fn fit(x: &Array2<f64>, seed: u64) -> IsolationForest {
        let mut w = Vec::new();
        IsolationForest::fit(
            &IsolationForestParams::default().check().unwrap(),
            seed,
            x.view(),
            &mut w,
        )
        .unwrap()
    }

    fn dense(forest: &IsolationForest) -> &DenseForest {
        match &forest.trees {
            Trees::Dense(f) => f,
            Trees::Sparse(_) => panic!("default forest should be dense"),
        }
    }

    /// Rows that sit exactly on the forest's thresholds, just above them, on both signed
    /// zeros and far outside; drawn from the first `choices` such values per feature
    /// (few: the rows repeat and are deduplicated).
    fn on_the_cuts(
        forest: &IsolationForest,
        width: usize,
        n: usize,
        choices: usize,
    ) -> Array2<f64> {
        let f = dense(forest);
        let mut per_feature: Vec<Vec<f64>> = vec![vec![0.0, -0.0, 1e9, -1e9]; width];
        for node in &f.nodes {
            if node.threshold.is_finite() {
                per_feature[node.feature as usize].push(node.threshold);
                per_feature[node.feature as usize].push(node.threshold + 1e-9);
            }
        }
        Array2::from_shape_fn((n, width), |(i, j)| {
            let vals = &per_feature[j];
            vals[(i * 7919 + j * 104_729) % vals.len().min(choices)]
        })
    }

    #[test]
    fn codes_take_the_same_turns_as_values_for_every_width_that_fits_a_key() {
        for width in 1..=MAX_FEATURES {
            let train = Array2::from_shape_fn((600, width), |(i, j)| {
                ((i * 7 + j * 13 + i * j) % 97) as f64 / 9.7 - 3.0
            });
            let forest = fit(&train, 17 + width as u64);
            assert!(CellForest::new(dense(&forest)).is_some(), "width {width}");
            // Scored as it is (fewer rows than deduplication needs) and repeated
            // (deduplicated), and rows on the thresholds themselves.
            for x in [
                train.clone(),
                Array2::from_shape_fn((70_000, width), |(i, j)| train[[(i * 31) % 600, j]]),
                on_the_cuts(&forest, width, 50_000, 40),
                on_the_cuts(&forest, width, 50_000, usize::MAX),
            ] {
                let expected = forest.score_rows(x.view(), None);
                assert_eq!(forest.score_owned(x), expected, "width {width}");
            }
        }
    }

    #[test]
    fn rows_wider_than_a_key_are_not_recoded() {
        let x = Array2::from_shape_fn((300, MAX_FEATURES + 1), |(i, j)| (i * (j + 1)) as f64);
        let forest = fit(&x, 3);
        assert!(CellForest::new(dense(&forest)).is_none());
    }

    #[test]
    fn a_threshold_of_minus_infinity_sends_every_value_right_and_nan_none() {
        // Deserialized models can hold any threshold; the walks must still agree.
        let x = Array2::from_shape_fn((400, 2), |(i, j)| ((i * 13 + j) % 41) as f64);
        let mut forest = fit(&x, 9);
        let Trees::Dense(f) = &mut forest.trees else {
            panic!("dense")
        };
        f.nodes[0].threshold = f64::NEG_INFINITY;
        f.nodes[1].threshold = f64::NAN;
        let expected = forest.score_rows(x.view(), None);
        assert_eq!(forest.score_owned(x), expected);
    }

    #[test]
    fn keys_order_intervals() {
        let x = Array2::from_shape_fn((500, 2), |(i, j)| ((i * 17 + j * 5) % 89) as f64);
        let forest = fit(&x, 1);
        let cells = CellForest::new(dense(&forest)).unwrap();
        let k = |a: f64, b: f64| cells.key(&[a, b]);
        // Below every cut: code 0; above every cut: the number of cuts.
        assert_eq!(k(-1e300, -1e300), 0);
        let top = k(1e300, 1e300);
        assert_eq!(top & 0xFFFF, cells.cuts[0].len() as u64);
        assert_eq!(top >> 16, cells.cuts[1].len() as u64);
        // A value on a cut is coded with the values just below it.
        let t = cells.cuts[0][3];
        assert_eq!(k(t, 0.0) & 0xFFFF, 3);
        assert_eq!(k(f64::from_bits(t.to_bits() - 1), 0.0) & 0xFFFF, 3);
        assert_eq!(k(f64::from_bits(t.to_bits() + 1), 0.0) & 0xFFFF, 4);
    }

    #[test]
    fn keys_are_deduplicated_in_the_scratch_or_left_as_they_were() {
        // 40k keys: 100 distinct ones repeated, then 4,000 new ones.
        let keys: Vec<f64> = (0..40_000u64)
            .map(|i| f64::from_bits(if i < 36_000 { (i * 7) % 100 } else { i << 20 }))
            .collect();
        let mut deduplicated = keys.clone();
        let mut scratch = vec![0.0; 20_000];
        let m = distinct_keys(&mut deduplicated, &mut scratch).unwrap();
        assert_eq!(m, 4_100);
        for (k, index) in keys.iter().zip(&deduplicated) {
            assert_eq!(scratch[index.to_bits() as usize].to_bits(), k.to_bits());
        }
        // Room for 2,000 distinct keys only: given up, keys restored.
        let mut restored = keys.clone();
        let mut small = vec![0.0; 4_000];
        assert_eq!(distinct_keys(&mut restored, &mut small), None);
        assert!(
            restored
                .iter()
                .zip(&keys)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
    }
}
