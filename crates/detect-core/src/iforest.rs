//! # Isolation forest
//!
//! Liu, Ting & Zhou, "Isolation Forest" (ICDM 2008), with the semantics of
//! scikit-learn's `IsolationForest`:
//!
//! - each of `n_estimators` trees is grown on `max_samples` rows drawn without
//!   replacement (`"auto"` = min(256, n)), or with replacement when `bootstrap` is set
//!   (the tree then sees each drawn row once, as scikit-learn's sample weights do), over
//!   `max_features` columns drawn without replacement;
//! - a node splits on a feature drawn uniformly among those not constant in the node
//!   (spread above scikit-learn's 1e-7), at a threshold drawn uniformly in the node's
//!   [min, max) (rows `<=` threshold go left); nodes at depth ceil(log2(max_samples)),
//!   single rows and all-constant nodes are leaves;
//! - a row's path length in a tree is the leaf's depth plus c(n_leaf), the average path
//!   length of an unsuccessful search in a binary search tree of the leaf's rows
//!   ([`average_path_length`]); its score is 2^(−E[h(x)] / c(max_samples)), in (0, 1],
//!   higher = more anomalous (scikit-learn's `-score_samples`).
//!
//! ## Cost
//! Fitting is O(T · ψ log ψ) for T trees and ψ samples per tree, independent of n once the
//! subsample is drawn. Scoring is O(n · T · depth). Trees no deeper than
//! [`DENSE_MAX_DEPTH`] (the default ψ = 256 gives depth 8) are stored as *perfect* binary
//! trees in flat arrays: a leaf above the bottom level becomes a chain of pass-through
//! nodes (threshold +∞), so every walk takes exactly `depth` branch-free steps
//! `i = 2i + 1 + (x[f_i] > t_i)`. Scoring walks blocks of rows through one tree at a time
//! (the tree stays in L1 cache) and eight rows in lock-step, so the CPU overlaps their
//! loads. Deeper trees use a pointer layout. A matrix of at most four features scored in
//! its own memory (`pynomaly detect`, a fit's training scores) is first recoded to the
//! forest's threshold intervals, so rows no tree can tell apart are walked once (see
//! `cells`).
//!
//! ## Per-feature contributions
//! [`IsolationForest::contributions`] is Local-DIFFI (Carletti, Terzi & Susto,
//! "Interpretable Anomaly Detection with DIFFI: Depth-based Feature Importance of
//! Isolation Forest", Engineering Applications of Artificial Intelligence 119, 2023;
//! arXiv:2007.11117, 2020), as the authors' `local_diffi` computes it: in each tree, every
//! split on the row's path credits its feature 1/h − 1/h_max, with h the depth of the
//! leaf the row reaches (its number of splits) and h_max = ⌈log₂ ψ⌉ the trees' depth
//! limit, and counts one visit of that feature; a feature's contribution is its credit
//! divided by its visits. A feature that isolates the row early, in many trees, gets a
//! large average; one split on only in paths that run to the depth limit gets 0. The
//! contributions are ≥ 0 but are not shares of the score: they rank features. Cost: one
//! walk per row and tree, as scoring walks them, then each path's splits are read off a
//! table of every leaf's path, made on the model's first explanation and kept with it
//! (not saved; about the size of the trees themselves, 0.6 MB for 100 trees of 256
//! samples); for rows of at most 64 features the table holds each leaf's count per
//! feature instead, 16 bits each (1.8 MB for 36 features), added to the row's counts a
//! few words at once.
//!
//! ## Determinism
//! Tree `i` draws from its own generator seeded from the model's `random_state`, and
//! each row's path lengths are summed in tree order, so scores do not depend on the
//! number of threads.

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use ndarray::{Array2, ArrayView1, ArrayView2};
use rand::seq::index;
use rand::{Rng, RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

use crate::DetectError;

mod cells;
use crate::params::{Checked, IsolationForestParams, MaxFeatures, MaxSamples};

/// Trees up to this depth use the perfect, branch-free layout (2^depth leaves).
pub const DENSE_MAX_DEPTH: u32 = 12;
/// scikit-learn's `FEATURE_THRESHOLD`: a feature whose spread in a node is at most this
/// is treated as constant there.
const FEATURE_THRESHOLD: f64 = 1e-7;

/// Rows walked together through a tree.
const LANES: usize = 8;
/// Rows per parallel work item when scoring.
const BLOCK_ROWS: usize = 2048;
/// Rows per parallel work item when explaining: their split counts stay in cache.
const EXPLAIN_BLOCK_ROWS: usize = 256;

/// c(n): the average path length of an unsuccessful search in a binary search tree of
/// `n` keys, scikit-learn's `_average_path_length`: 0 for n <= 1, 1 for n = 2, else
/// 2 (ln(n − 1) + γ) − 2 (n − 1) / n.
pub fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// The Euler–Mascheroni constant (NumPy's `np.euler_gamma`).
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// A fitted isolation forest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IsolationForest {
    /// Rows each tree was grown on (after clamping to n).
    max_samples: usize,
    n_trees: usize,
    trees: Trees,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Trees {
    Dense(DenseForest),
    Sparse(Vec<SparseTree>),
}

/// All trees in the perfect layout, concatenated: tree `t`'s internal nodes are
/// `nodes[t * internal .. (t + 1) * internal]`, its leaves `leaves[t * 2^depth ..]`.
/// A leaf's value is its path-length contribution (depth + c(n_leaf)).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct DenseForest {
    depth: u32,
    /// Width of the rows the forest scores; every node's feature is below it.
    n_features: usize,
    nodes: Vec<DenseNode>,
    leaves: Vec<f64>,
    /// The leaves' paths for explanations, made on the first explanation (not part of
    /// the model format).
    #[serde(skip)]
    leaf_paths: OnceLock<LeafPaths>,
}

/// An internal node of the perfect layout; feature and threshold share a cache line.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct DenseNode {
    threshold: f64,
    feature: u32,
}

/// Per tree and leaf of a [`DenseForest`], the features split on along the path to it
/// ([`DenseForest::leaf_table`]).
#[derive(Debug, Clone)]
struct LeafPaths {
    /// `depth` slots per leaf, of which `heights` says how many count; empty when the
    /// counts are `packed`.
    features: Vec<u32>,
    heights: Vec<u8>,
    /// For narrow rows (at most [`COUNTED_MAX_WIDTH`] features, see [`Packed`]): per
    /// leaf, how many of its path's splits are on each feature, packed four features to
    /// a word, so a row adds a few words per tree instead of one count per split. Empty
    /// otherwise.
    packed: Vec<u64>,
}

/// How an explanation finds each row's splits: a dense forest's rows walk to their
/// leaves and read the leaf table; a sparse forest's record their paths as they walk.
#[derive(Clone, Copy)]
enum Walk<'a> {
    Table(&'a DenseForest, &'a LeafPaths),
    Paths(&'a [SparseTree]),
}

/// The widest rows whose explanations add [`LeafPaths::packed`] counts.
const COUNTED_MAX_WIDTH: usize = 64;

/// Split counts packed 16 bits per feature, four features per `u64`: adding two packed
/// vectors adds every feature's count at once, as long as no sum passes `u16::MAX` —
/// which holds when the trees times the longest path stay below it (a row's count for a
/// feature is at most one per split of each of its paths).
struct Packed;

impl Packed {
    const PER_WORD: usize = 4;

    fn words(d: usize) -> usize {
        d.div_ceil(Self::PER_WORD)
    }

    /// Whether rows of `d` features walking `n_trees` trees of paths up to `depth` long
    /// have their counts packed.
    fn fits(d: usize, n_trees: usize, depth: usize) -> bool {
        d <= COUNTED_MAX_WIDTH && n_trees.saturating_mul(depth) <= usize::from(u16::MAX)
    }

    fn one(feature: usize) -> u64 {
        1 << (16 * (feature % Self::PER_WORD))
    }

    /// Adds the packed counts `leaf` to `counts` (as many words, at most 16: a width of
    /// [`COUNTED_MAX_WIDTH`]), the word count fixed at compile time so the adds unroll.
    #[inline(always)]
    fn add(counts: &mut [u64], leaf: &[u64]) {
        fn add_words<const W: usize>(counts: &mut [u64], leaf: &[u64]) {
            for (c, &k) in counts[..W].iter_mut().zip(&leaf[..W]) {
                *c += k;
            }
        }
        match counts.len() {
            0 => {}
            1 => add_words::<1>(counts, leaf),
            2 => add_words::<2>(counts, leaf),
            3 => add_words::<3>(counts, leaf),
            4 => add_words::<4>(counts, leaf),
            5 => add_words::<5>(counts, leaf),
            6 => add_words::<6>(counts, leaf),
            7 => add_words::<7>(counts, leaf),
            8 => add_words::<8>(counts, leaf),
            9 => add_words::<9>(counts, leaf),
            10 => add_words::<10>(counts, leaf),
            11 => add_words::<11>(counts, leaf),
            12 => add_words::<12>(counts, leaf),
            13 => add_words::<13>(counts, leaf),
            14 => add_words::<14>(counts, leaf),
            15 => add_words::<15>(counts, leaf),
            _ => add_words::<16>(counts, leaf),
        }
    }

    fn get(words: &[u64], feature: usize) -> u32 {
        let word = words[feature / Self::PER_WORD];
        ((word >> (16 * (feature % Self::PER_WORD))) & 0xFFFF) as u32
    }
}

/// A tree in the pointer layout; node 0 is the root.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SparseTree {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Node {
    Split {
        feature: u32,
        threshold: f64,
        left: u32,
        right: u32,
    },
    Leaf {
        /// depth + c(n_leaf)
        value: f64,
    },
}

impl IsolationForest {
    /// Grows the forest on `x` (already validated: finite, at least 2 rows).
    ///
    /// # Errors
    /// [`DetectError::InvalidParameter`] when `max_features` exceeds the number of columns.
    pub(crate) fn fit(
        params: &Checked<IsolationForestParams>,
        seed: u64,
        x: ArrayView2<'_, f64>,
        warnings: &mut Vec<String>,
    ) -> Result<Self, DetectError> {
        let (n, d) = x.dim();
        let max_samples = match params.max_samples {
            MaxSamples::Auto => n.min(256),
            MaxSamples::Count(c) if c > n => {
                warnings.push(format!(
                    "max_samples ({c}) is greater than the total number of samples ({n}); \
                     max_samples will be set to n_samples for estimation"
                ));
                n
            }
            MaxSamples::Count(c) => c,
            MaxSamples::Fraction(f) => ((f * n as f64) as usize).max(1),
        };
        let n_features = match params.max_features {
            MaxFeatures::Count(c) => c,
            MaxFeatures::Fraction(f) => ((f * d as f64) as usize).max(1),
        };
        if n_features > d {
            return Err(DetectError::InvalidParameter {
                name: "max_features".into(),
                reason: format!(
                    "got {n_features} features but the data has {d}; accepted: 1..={d} or a fraction in (0, 1]"
                ),
            });
        }
        let max_depth = (max_samples.max(2) as f64).log2().ceil() as u32;
        let mut master = Xoshiro256PlusPlus::seed_from_u64(seed);
        let tree_seeds: Vec<u64> = (0..params.n_estimators)
            .map(|_| master.next_u64())
            .collect();
        let x = x.as_standard_layout();
        let x = x.view();
        let sparse: Vec<SparseTree> = tree_seeds
            .par_iter()
            .map(|&s| grow_tree(x, max_samples, n_features, params.bootstrap, max_depth, s))
            .collect();
        let trees = if max_depth <= DENSE_MAX_DEPTH {
            Trees::Dense(DenseForest::from_sparse(&sparse, max_depth, d))
        } else {
            Trees::Sparse(sparse)
        };
        Ok(Self {
            max_samples,
            n_trees: params.n_estimators,
            trees,
        })
    }

    /// Checks a deserialized forest's invariants against the model's width.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        match &self.trees {
            Trees::Dense(f) => f.check(n_features),
            Trees::Sparse(ts) => {
                // Children come after their parent (pre-order), so walks end.
                let bad = |i: usize, node: &Node, n: usize| match node {
                    Node::Split {
                        feature,
                        left,
                        right,
                        ..
                    } => {
                        *feature as usize >= n_features
                            || (*left as usize) <= i
                            || (*right as usize) <= i
                            || *left as usize >= n
                            || *right as usize >= n
                    }
                    Node::Leaf { .. } => false,
                };
                for t in ts {
                    if t.nodes.is_empty()
                        || t.nodes
                            .iter()
                            .enumerate()
                            .any(|(i, nd)| bad(i, nd, t.nodes.len()))
                    {
                        return Err("a split refers to a missing node or feature".into());
                    }
                }
                Ok(())
            }
        }
    }

    /// Anomaly scores of `x` (validated, with the model's width).
    ///
    /// Identical rows have identical scores, so a large input dominated by repeated rows
    /// (counters, categorical codes, network logs) is scored once per distinct row: the
    /// result is bit-for-bit the same, only cheaper. See [`distinct_rows`].
    pub(crate) fn score(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        let x = x.as_standard_layout();
        match distinct_rows(x.view()) {
            Some(Distinct { first, mut scores }) => {
                let distinct_scores = self.score_rows(x.view(), Some(&first));
                drop(first);
                // Each slot holds its row's distinct index until replaced by its score.
                for s in &mut scores {
                    *s = distinct_scores[s.to_bits() as usize];
                }
                scores
            }
            None => self.score_rows(x.view(), None),
        }
    }

    /// Anomaly scores of `x`, computed in `x`'s own memory: the matrix is consumed in
    /// waves of [`WAVE_ROWS`] rows, and each wave's scores overwrite values of rows already
    /// scored, so scoring a matrix the caller no longer needs costs no second buffer of n
    /// values (this is what keeps `pynomaly detect` near the size of the data). The scores
    /// are bit-for-bit those of [`IsolationForest::score`]; repeated rows are deduplicated
    /// within each wave.
    pub(crate) fn score_owned(&self, x: Array2<f64>) -> Vec<f64> {
        self.score_owned_in_waves(x, WAVE_ROWS)
    }

    fn score_owned_in_waves(&self, x: Array2<f64>, wave_rows: usize) -> Vec<f64> {
        let x = if x.is_standard_layout() {
            x
        } else {
            x.as_standard_layout().into_owned()
        };
        let (n, d) = x.dim();
        let (mut buf, offset) = x.into_raw_vec_and_offset();
        let base = offset.unwrap_or(0);
        if let Trees::Dense(forest) = &self.trees
            && let Some(cells) = cells::CellForest::new(forest)
        {
            cells.score_in_place(&mut buf, base, n, |sums| self.normalize(sums));
            buf.truncate(n);
            buf.shrink_to_fit();
            return buf;
        }
        let wave_rows = wave_rows.max(1);
        let mut start = 0;
        while start < n {
            let end = (start + wave_rows).min(n);
            let rows =
                ArrayView2::from_shape((end - start, d), &buf[base + start * d..base + end * d])
                    .expect("a standard-layout matrix holds its rows contiguously");
            let wave = self.score(rows);
            // Slot i lies in row (i - base) / d <= i < end: every row it can overlap has
            // been scored already (d >= 1), so overwriting it loses nothing still needed.
            buf[start..end].copy_from_slice(&wave);
            start = end;
        }
        buf.truncate(n);
        buf.shrink_to_fit();
        buf
    }

    /// Anomaly scores of every row of `x`, one walk per row.
    /// With `select`, scores only those rows (in that order), gathering each block of
    /// them into a small buffer.
    fn score_rows(&self, x: ArrayView2<'_, f64>, select: Option<&[u32]>) -> Vec<f64> {
        let x = x.as_standard_layout();
        let x = x.view();
        let n = select.map_or(x.nrows(), <[u32]>::len);
        let mut sums = vec![0.0; n];
        let score_block = |start: usize, out: &mut [f64]| {
            let gathered;
            let rows = match select {
                None => x.slice(ndarray::s![start..start + out.len(), ..]),
                Some(select) => {
                    let mut buf = Vec::with_capacity(out.len() * x.ncols());
                    for &i in &select[start..start + out.len()] {
                        buf.extend(x.row(i as usize).iter());
                    }
                    gathered = ndarray::Array2::from_shape_vec((out.len(), x.ncols()), buf)
                        .expect("gathered block has out.len() rows");
                    gathered.view()
                }
            };
            match &self.trees {
                Trees::Dense(f) => f.path_length_sums(rows, out),
                Trees::Sparse(ts) => {
                    for (row, o) in rows.outer_iter().zip(out.iter_mut()) {
                        *o = ts.iter().map(|t| t.path_length(row)).sum();
                    }
                }
            }
        };
        if n <= BLOCK_ROWS {
            score_block(0, &mut sums);
        } else {
            sums.par_chunks_mut(BLOCK_ROWS)
                .enumerate()
                .for_each(|(i, out)| score_block(i * BLOCK_ROWS, out));
        }
        self.normalize(&mut sums);
        sums
    }

    /// Each row's per-feature Local-DIFFI importances (rows validated, with the model's
    /// width); see the module docs.
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let x = x.as_standard_layout();
        let (n, d) = x.dim();
        let flat = x.as_slice().expect("standard layout is contiguous");
        let max_depth = (self.max_samples.max(2) as f64).log2().ceil() as usize;
        // A path's splits are counted per (path length, feature): one increment per
        // split, and the weights 1/h − 1/h_max applied once per row at the end.
        let lengths = max_depth + 1;
        let weights: Vec<f64> = (0..lengths)
            .map(|h| {
                if h == 0 {
                    0.0
                } else {
                    1.0 / h as f64 - 1.0 / max_depth as f64
                }
            })
            .collect();
        let mut importance = vec![0.0; n * d];
        // The leaves' paths as a table, made once per model: a row's explanation then
        // walks each tree to its leaf, as scoring does, and adds the leaf's counts.
        let walk = match &self.trees {
            Trees::Dense(forest) => Walk::Table(forest, forest.leaf_table()),
            Trees::Sparse(trees) => Walk::Paths(trees),
        };
        let explain_block = |start: usize, importance: &mut [f64]| {
            let rows = importance.len() / d;
            let block = &flat[start * d..(start + rows) * d];
            // Counts by path length, then row: most paths have the full length, so the
            // rows' counts for it lie together (and stay in cache) while a tree is walked.
            // Packed counts (see `Packed`) when the leaf table has them, else one each.
            let packs = matches!(walk, Walk::Table(_, t) if !t.packed.is_empty());
            let (mut counts, mut packed) = if packs {
                (Vec::new(), vec![0u64; lengths * rows * Packed::words(d)])
            } else {
                (vec![0u32; lengths * rows * d], Vec::new())
            };
            let visit = |counts: &mut [u32], row: usize, path: &[u32]| {
                let h = path.len().min(max_depth);
                let c = &mut counts[(h * rows + row) * d..(h * rows + row + 1) * d];
                for &f in path {
                    c[f as usize] += 1;
                }
            };
            match walk {
                Walk::Table(forest, table) => {
                    let depth = forest.depth as usize;
                    if packs {
                        let words = Packed::words(d);
                        forest.leaves_by_row(block, d, &mut |row, at| {
                            let h = usize::from(table.heights[at]).min(max_depth);
                            let start = (h * rows + row) * words;
                            let leaf = &table.packed[at * words..(at + 1) * words];
                            Packed::add(&mut packed[start..start + words], leaf);
                        });
                    } else {
                        forest.leaves_by_row(block, d, &mut |row, at| {
                            let height = usize::from(table.heights[at]);
                            let path = &table.features[at * depth..at * depth + height];
                            visit(&mut counts, row, path);
                        });
                    }
                }
                Walk::Paths(trees) => {
                    let mut path = Vec::new();
                    for tree in trees {
                        for (r, row) in block.chunks_exact(d).enumerate() {
                            tree.path(row, &mut path);
                            visit(&mut counts, r, &path);
                        }
                    }
                }
            }
            // Per feature, credit Σₕ wₕ · countₕ (in order of h) over its visits; the
            // features side by side, so the sums run across them. A path length the row
            // has no count for adds nothing (credit stays ≥ +0), so packed rows skip it.
            let words = Packed::words(d);
            let (mut credit, mut visits) = (vec![0.0; d], vec![0u32; d]);
            let mut unpacked = vec![0u32; d];
            for (row, out) in importance.chunks_exact_mut(d).enumerate() {
                credit.fill(0.0);
                visits.fill(0);
                for (h, w) in weights.iter().enumerate() {
                    let at = h * rows + row;
                    let counts = if !packs {
                        &counts[at * d..(at + 1) * d]
                    } else {
                        let p = &packed[at * words..(at + 1) * words];
                        if p.iter().all(|&p| p == 0) {
                            continue;
                        }
                        for (f, c) in unpacked.iter_mut().enumerate() {
                            *c = Packed::get(p, f);
                        }
                        &unpacked
                    };
                    for ((cr, v), &c) in credit.iter_mut().zip(visits.iter_mut()).zip(counts) {
                        *cr += w * f64::from(c);
                        *v += c;
                    }
                }
                for ((o, &cr), &v) in out.iter_mut().zip(&credit).zip(&visits) {
                    if v > 0 {
                        *o = cr / f64::from(v);
                    }
                }
            }
        };
        if n <= EXPLAIN_BLOCK_ROWS {
            explain_block(0, &mut importance);
        } else {
            importance
                .par_chunks_mut(EXPLAIN_BLOCK_ROWS * d)
                .enumerate()
                .for_each(|(i, c)| explain_block(i * EXPLAIN_BLOCK_ROWS, c));
        }
        Array2::from_shape_vec((n, d), importance).expect("one importance per feature and row")
    }

    /// Turns each row's path lengths summed over the trees into its score,
    /// 2^(−E[h(x)] / c(max_samples)).
    fn normalize(&self, sums: &mut [f64]) {
        let denominator = self.n_trees as f64 * average_path_length(self.max_samples);
        sums.iter_mut().for_each(|s| {
            let ratio = if denominator != 0.0 {
                *s / denominator
            } else {
                1.0
            };
            *s = 2f64.powf(-ratio);
        });
    }
}

/// Rows per wave when scoring a matrix in its own memory ([`IsolationForest::score_owned`]).
const WAVE_ROWS: usize = 1 << 17;

/// Inputs smaller than this are scored row by row.
const DEDUP_MIN_ROWS: usize = 1 << 15;
/// Rows sampled to decide whether deduplication pays.
const DEDUP_PROBE_ROWS: usize = 8192;

/// The distinct rows of an input: the first occurrence of each, and for every row the
/// index (into `first`) of its distinct row, stored as the bits of an `f64` in what becomes
/// the output score vector (so deduplication costs no extra per-row buffer).
struct Distinct {
    first: Vec<u32>,
    scores: Vec<f64>,
}

/// When `x` is large and its first rows repeat often (at least one in five a repeat),
/// finds its distinct rows. Beyond the output vector, costs one `u32` per distinct row and
/// a hash table of `u32`s; the rows themselves are not copied.
///
/// Rows are hashed by their bit patterns and compared exactly.
fn distinct_rows(x: ArrayView2<'_, f64>) -> Option<Distinct> {
    let n = x.nrows();
    if n < DEDUP_MIN_ROWS || n > u32::MAX as usize {
        return None;
    }
    let d = x.ncols();
    let flat = x.as_slice()?;
    let row = |i: usize| &flat[i * d..(i + 1) * d];
    let hash = |r: &[f64]| {
        r.iter().fold(0x243F_6A88_85A3_08D3u64, |h, v| {
            (h ^ v.to_bits())
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .rotate_left(29)
        })
    };
    let probe: std::collections::HashSet<u64> =
        (0..DEDUP_PROBE_ROWS).map(|i| hash(row(i))).collect();
    if probe.len() * 5 > DEDUP_PROBE_ROWS * 4 {
        return None;
    }
    // Size the table from the probe's distinct share, to avoid regrowing it.
    let expected = n / DEDUP_PROBE_ROWS * probe.len() + probe.len();
    // Entries are indices into `first`; hashes are recomputed from the rows.
    let mut table: HashTable<u32> = HashTable::with_capacity(expected);
    let mut first: Vec<u32> = Vec::with_capacity(expected);
    let mut scores = Vec::with_capacity(n);
    for i in 0..n {
        let r = row(i);
        let entry = table.entry(
            hash(r),
            |&u| row(first[u as usize] as usize) == r,
            |&u| hash(row(first[u as usize] as usize)),
        );
        let u = match entry {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                let u = first.len() as u32;
                first.push(i as u32);
                e.insert(u);
                u
            }
        };
        scores.push(f64::from_bits(u64::from(u)));
    }
    Some(Distinct { first, scores })
}

/// Grows one tree on a fresh subsample, in the pointer layout.
fn grow_tree(
    x: ArrayView2<'_, f64>,
    max_samples: usize,
    n_features: usize,
    bootstrap: bool,
    max_depth: u32,
    seed: u64,
) -> SparseTree {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let (n, d) = x.dim();
    let mut rows: Vec<usize> = if bootstrap {
        let mut r: Vec<usize> = (0..max_samples).map(|_| rng.random_range(0..n)).collect();
        r.sort_unstable();
        r.dedup();
        r
    } else {
        index::sample(&mut rng, n, max_samples).into_vec()
    };
    let features: Vec<usize> = if n_features == d {
        (0..d).collect()
    } else {
        index::sample(&mut rng, d, n_features).into_vec()
    };
    // Gather the subsample's selected columns into a compact row-major buffer.
    let w = features.len();
    let mut data = Vec::with_capacity(rows.len() * w);
    for &r in &rows {
        let row = x.row(r);
        data.extend(features.iter().map(|&f| row[f]));
    }
    let mut local: Vec<usize> = (0..rows.len()).collect();
    rows.clear();
    let mut builder = Builder {
        data: &data,
        width: w,
        features: &features,
        max_depth,
        rng,
        nodes: Vec::new(),
        feature_order: (0..w).collect(),
    };
    builder.grow(&mut local, 0);
    SparseTree {
        nodes: builder.nodes,
    }
}

struct Builder<'a> {
    data: &'a [f64],
    width: usize,
    /// Column of the original matrix for each local column.
    features: &'a [usize],
    max_depth: u32,
    rng: Xoshiro256PlusPlus,
    nodes: Vec<Node>,
    feature_order: Vec<usize>,
}

impl Builder<'_> {
    /// Grows the subtree over `rows` at `depth`, returning its node index.
    fn grow(&mut self, rows: &mut [usize], depth: u32) -> u32 {
        let id = self.nodes.len() as u32;
        self.nodes.push(Node::Leaf { value: 0.0 });
        let leaf_value = depth as f64 + average_path_length(rows.len());
        if depth >= self.max_depth || rows.len() < 2 {
            self.nodes[id as usize] = Node::Leaf { value: leaf_value };
            return id;
        }
        // Draw features without replacement until one is not constant in this node.
        let mut remaining = self.width;
        let split = loop {
            if remaining == 0 {
                break None;
            }
            let pick = self.rng.random_range(0..remaining);
            remaining -= 1;
            self.feature_order.swap(pick, remaining);
            let f = self.feature_order[remaining];
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for &r in rows.iter() {
                let v = self.data[r * self.width + f];
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if hi > lo + FEATURE_THRESHOLD {
                let u: f64 = self.rng.random();
                let mut t = lo + (hi - lo) * u;
                if t >= hi {
                    t = lo;
                }
                break Some((f, t));
            }
        };
        let Some((f, threshold)) = split else {
            self.nodes[id as usize] = Node::Leaf { value: leaf_value };
            return id;
        };
        // Partition: rows <= threshold first.
        let mut mid = 0;
        for i in 0..rows.len() {
            if self.data[rows[i] * self.width + f] <= threshold {
                rows.swap(i, mid);
                mid += 1;
            }
        }
        let (left_rows, right_rows) = rows.split_at_mut(mid);
        let left = self.grow(left_rows, depth + 1);
        let right = self.grow(right_rows, depth + 1);
        self.nodes[id as usize] = Node::Split {
            feature: self.features[f] as u32,
            threshold,
            left,
            right,
        };
        id
    }
}

impl SparseTree {
    /// The features of the splits on `row`'s path, root first, into `path`.
    fn path(&self, row: &[f64], path: &mut Vec<u32>) {
        path.clear();
        let mut i = 0usize;
        while let Node::Split {
            feature,
            threshold,
            left,
            right,
        } = &self.nodes[i]
        {
            path.push(*feature);
            i = if row[*feature as usize] <= *threshold {
                *left as usize
            } else {
                *right as usize
            };
        }
    }

    fn path_length(&self, row: ArrayView1<'_, f64>) -> f64 {
        let mut i = 0usize;
        loop {
            match &self.nodes[i] {
                Node::Leaf { value } => return *value,
                Node::Split {
                    feature,
                    threshold,
                    left,
                    right,
                } => {
                    i = if row[*feature as usize] <= *threshold {
                        *left as usize
                    } else {
                        *right as usize
                    };
                }
            }
        }
    }
}

impl DenseForest {
    fn internal(depth: u32) -> usize {
        (1usize << depth) - 1
    }

    fn from_sparse(trees: &[SparseTree], depth: u32, n_features: usize) -> Self {
        let internal = Self::internal(depth);
        let n_leaves = 1usize << depth;
        let pass_through = DenseNode {
            threshold: f64::INFINITY,
            feature: 0,
        };
        let mut nodes = vec![pass_through; trees.len() * internal];
        let mut leaves = vec![0.0; trees.len() * n_leaves];
        for (t, tree) in trees.iter().enumerate() {
            let nd = &mut nodes[t * internal..(t + 1) * internal];
            let lv = &mut leaves[t * n_leaves..(t + 1) * n_leaves];
            // (sparse node, dense position) pairs still to place.
            let mut stack = vec![(0usize, 0usize)];
            while let Some((s, pos)) = stack.pop() {
                match &tree.nodes[s] {
                    Node::Split {
                        feature,
                        threshold,
                        left,
                        right,
                    } => {
                        nd[pos] = DenseNode {
                            threshold: *threshold,
                            feature: *feature,
                        };
                        stack.push((*left as usize, 2 * pos + 1));
                        stack.push((*right as usize, 2 * pos + 2));
                    }
                    Node::Leaf { value } => {
                        // Pass-through: every walk from here turns left (x > +inf is
                        // false) and ends at the leftmost bottom leaf below `pos`.
                        let mut p = pos;
                        while p < internal {
                            nd[p] = pass_through;
                            p = 2 * p + 1;
                        }
                        lv[p - internal] = *value;
                    }
                }
            }
        }
        Self {
            depth,
            n_features,
            nodes,
            leaves,
            leaf_paths: OnceLock::new(),
        }
    }

    fn n_trees(&self) -> usize {
        self.leaves.len() >> self.depth
    }

    /// Tree `t`'s internal nodes and leaves.
    #[inline]
    fn tree(&self, t: usize) -> (&[DenseNode], &[f64]) {
        let internal = Self::internal(self.depth);
        let n_leaves = 1usize << self.depth;
        (
            &self.nodes[t * internal..(t + 1) * internal],
            &self.leaves[t * n_leaves..(t + 1) * n_leaves],
        )
    }

    /// Checks the invariants [`Self::path_length_sums`] relies on, for a forest read
    /// from bytes: array sizes agree with the depth, and every feature index is below
    /// the model's width.
    fn check(&self, n_features: usize) -> Result<(), String> {
        if self.depth == 0 || self.depth > DENSE_MAX_DEPTH {
            return Err(format!("tree depth {} out of range", self.depth));
        }
        let n_trees = self.n_trees();
        if n_trees == 0
            || self.leaves.len() != n_trees << self.depth
            || self.nodes.len() != n_trees * Self::internal(self.depth)
        {
            return Err("tree arrays do not match their depth".into());
        }
        if self.n_features != n_features
            || self.nodes.iter().any(|n| n.feature as usize >= n_features)
        {
            return Err("a split refers to a feature the model does not have".into());
        }
        Ok(())
    }

    /// Each row's path lengths summed over all trees, in tree order, into `out`.
    ///
    /// Full groups of [`LANES`] rows walk each tree in lock-step (independent loads the
    /// CPU overlaps); the last few rows walk [`LANES`] trees in lock-step instead, so a
    /// single row (the `predict` hot path) gets the same overlap. Both add a row's
    /// trees in the same order, so a row's score does not depend on its group.
    ///
    /// This is the innermost loop of the product, so its indexing is unchecked. Why
    /// every access is in bounds:
    /// - node positions: a walk starts at 0 and takes exactly `depth` steps
    ///   `i -> 2i + 1 + {0, 1}`, so before each step `i < 2^depth - 1 = internal`, and
    ///   after the last `internal <= i < 2 internal + 1`, i.e. `i - internal < 2^depth`,
    ///   the tree's leaf count;
    /// - features: every node's feature is below `n_features` (fitted models are built
    ///   from the fitting data's columns; [`Self::check`] verifies deserialized ones),
    ///   and the rows' width is asserted to equal `n_features`;
    /// - rows: `rows` is `out.len()` rows of `width` values.
    #[allow(unsafe_code)]
    fn path_length_sums(&self, rows: ArrayView2<'_, f64>, out: &mut [f64]) {
        let width = rows.ncols();
        let flat = rows
            .as_slice()
            .expect("scoring rows are in standard layout");
        assert_eq!(flat.len(), out.len() * width);
        assert_eq!(width, self.n_features);
        let internal = Self::internal(self.depth);
        let n_leaves = 1usize << self.depth;
        let n_trees = self.n_trees();
        assert!(self.nodes.len() == n_trees * internal && self.leaves.len() == n_trees * n_leaves);
        let depth = self.depth;
        // SAFETY (for every `get_unchecked` below): see the function's documentation.
        let walk = |nodes: &[DenseNode], row: &[f64]| -> usize {
            let mut i = 0usize;
            for _ in 0..depth {
                let node = unsafe { *nodes.get_unchecked(i) };
                let v = unsafe { *row.get_unchecked(node.feature as usize) };
                i = 2 * i + 1 + usize::from(v > node.threshold);
            }
            i - internal
        };
        out.fill(0.0);
        let full = out.len() / LANES * LANES;
        let (grouped, rest) = out.split_at_mut(full);
        let grouped_rows = &flat[..full * width];
        with_const_width!(
            width,
            W,
            self.walk_groups::<W>(grouped_rows, width, grouped)
        );
        for (r, o) in rest.iter_mut().enumerate() {
            let row = &flat[(full + r) * width..(full + r + 1) * width];
            let mut t0 = 0;
            while t0 + LANES <= n_trees {
                let trees: [(&[DenseNode], &[f64]); LANES] =
                    std::array::from_fn(|lane| self.tree(t0 + lane));
                let mut idx = [0usize; LANES];
                for _ in 0..depth {
                    for (i, (nodes, _)) in idx.iter_mut().zip(&trees) {
                        let node = unsafe { *nodes.get_unchecked(*i) };
                        let v = unsafe { *row.get_unchecked(node.feature as usize) };
                        *i = 2 * *i + 1 + usize::from(v > node.threshold);
                    }
                }
                for (i, (_, leaves)) in idx.iter().zip(&trees) {
                    *o += unsafe { *leaves.get_unchecked(i - internal) };
                }
                t0 += LANES;
            }
            for t in t0..n_trees {
                let (nodes, leaves) = self.tree(t);
                *o += unsafe { *leaves.get_unchecked(walk(nodes, row)) };
            }
        }
    }

    /// Adds each row's path length over all trees to `out`, [`LANES`] rows walking each
    /// tree in lock-step; rows are `width` values wide, and `W` is that width as a
    /// constant (0: known only at run time). Same invariants as
    /// [`Self::path_length_sums`], and `flat.len() == out.len() * width`, `out.len()` a
    /// multiple of [`LANES`].
    #[allow(unsafe_code)]
    fn walk_groups<const W: usize>(&self, flat: &[f64], width: usize, out: &mut [f64]) {
        // A constant for W > 0, so `lane * w` folds into the load's address.
        let w = if W == 0 { width } else { W };
        assert!(
            w == width
                && w == self.n_features
                && flat.len() == out.len() * w
                && out.len().is_multiple_of(LANES)
        );
        let internal = Self::internal(self.depth);
        for t in 0..self.n_trees() {
            let (nodes, leaves) = self.tree(t);
            for (block, chunk) in flat
                .chunks_exact(LANES * w)
                .zip(out.chunks_exact_mut(LANES))
            {
                for (o, i) in chunk
                    .iter_mut()
                    .zip(self.lanes_to_nodes::<W>(nodes, block, w))
                {
                    // SAFETY: after `depth` steps `i` is a leaf: internal <= i < 2 * internal + 1.
                    *o += unsafe { *leaves.get_unchecked(i - internal) };
                }
            }
        }
    }

    /// Walks the [`LANES`] rows of `block` (`w` values each, `W` its constant or 0) down
    /// the tree whose internal nodes are `nodes`, in lock-step, and gives the node each
    /// ends at (a leaf: internal ≤ i < 2 · internal + 1). The caller upholds
    /// [`Self::path_length_sums`]'s invariants and `block.len() == LANES * w`.
    #[allow(unsafe_code)]
    #[inline(always)]
    fn lanes_to_nodes<const W: usize>(
        &self,
        nodes: &[DenseNode],
        block: &[f64],
        w: usize,
    ) -> [usize; LANES] {
        let w = if W == 0 { w } else { W };
        debug_assert!(block.len() == LANES * w && nodes.len() == Self::internal(self.depth));
        let mut idx = [0usize; LANES];
        for _ in 0..self.depth {
            for (lane, i) in idx.iter_mut().enumerate() {
                // SAFETY: see `path_length_sums`; `lane * w + feature < LANES * w`.
                let node = unsafe { *nodes.get_unchecked(*i) };
                let v = unsafe { *block.get_unchecked(lane * w + node.feature as usize) };
                *i = 2 * *i + 1 + usize::from(v > node.threshold);
            }
        }
        idx
    }

    /// The leaves' paths ([`Self::leaf_paths_of`]), made on the first call.
    fn leaf_table(&self) -> &LeafPaths {
        self.leaf_paths.get_or_init(|| self.leaf_paths_of())
    }

    /// For every tree and leaf, the features of the real splits on the path to the leaf
    /// (root first; a path ends at its first pass-through node): `depth` slots per leaf in
    /// the first list, of which the second gives how many count; or, for narrow rows,
    /// their counts per feature, packed.
    fn leaf_paths_of(&self) -> LeafPaths {
        let depth = self.depth as usize;
        let n_leaves = 1usize << depth;
        let n_trees = self.n_trees();
        let mut features = vec![0u32; n_trees * n_leaves * depth];
        let mut heights = vec![0u8; n_trees * n_leaves];
        let paths = features.chunks_exact_mut(depth).zip(heights.iter_mut());
        for (at, (path, height)) in paths.enumerate() {
            let (nodes, _) = self.tree(at / n_leaves);
            // The leaf's number counting the root as 1 (children of j: 2j, 2j + 1); its
            // ancestor `s` steps below the root is that number shifted right by depth − s.
            let leaf = n_leaves + at % n_leaves;
            let mut h = depth;
            for (s, f) in path.iter_mut().enumerate() {
                let node = nodes[(leaf >> (depth - s)) - 1];
                *f = node.feature;
                h -= usize::from(node.threshold == f64::INFINITY);
            }
            *height = u8::try_from(h).expect("a dense tree's depth fits in u8");
        }
        let d = self.n_features;
        let mut packed = Vec::new();
        if Packed::fits(d, n_trees, depth) {
            let words = Packed::words(d);
            packed = vec![0u64; n_trees * n_leaves * words];
            let leaves = packed
                .chunks_exact_mut(words)
                .zip(features.chunks_exact(depth));
            for ((counts, path), &h) in leaves.zip(&heights) {
                for &f in &path[..usize::from(h)] {
                    counts[f as usize / Packed::PER_WORD] += Packed::one(f as usize);
                }
            }
            features = Vec::new();
        }
        LeafPaths {
            features,
            heights,
            packed,
        }
    }

    /// Each row's leaf in every tree, as its index in the table of [`Self::leaf_table`]
    /// (tree · leaves + leaf), as scoring walks them: full groups of [`LANES`] rows
    /// through one tree, then each remaining row through [`LANES`] trees at a time.
    fn leaves_by_row(&self, flat: &[f64], width: usize, visit: &mut impl FnMut(usize, usize)) {
        assert_eq!(width, self.n_features);
        let n_leaves = 1usize << self.depth;
        let internal = Self::internal(self.depth);
        let n_trees = self.n_trees();
        let n = flat.len() / width;
        let full = n / LANES * LANES;
        for t in 0..n_trees {
            let (nodes, _) = self.tree(t);
            for (group, block) in flat[..full * width].chunks_exact(LANES * width).enumerate() {
                let ends =
                    with_const_width!(width, W, self.lanes_to_nodes::<W>(nodes, block, width));
                for (lane, end) in ends.into_iter().enumerate() {
                    visit(group * LANES + lane, t * n_leaves + end - internal);
                }
            }
        }
        for (r, row) in flat[full * width..].chunks_exact(width).enumerate() {
            for t0 in (0..n_trees).step_by(LANES) {
                let m = LANES.min(n_trees - t0);
                let trees: [&[DenseNode]; LANES] =
                    std::array::from_fn(|lane| self.tree((t0 + lane).min(n_trees - 1)).0);
                let mut idx = [0usize; LANES];
                for _ in 0..self.depth {
                    for (i, nodes) in idx.iter_mut().zip(&trees) {
                        let node = nodes[*i];
                        let v = row[node.feature as usize];
                        *i = 2 * *i + 1 + usize::from(v > node.threshold);
                    }
                }
                for (lane, &end) in idx[..m].iter().enumerate() {
                    visit(full + r, (t0 + lane) * n_leaves + end - internal);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamGuard;
    use ndarray::Array2;

    fn defaults() -> Checked<IsolationForestParams> {
        IsolationForestParams::default().check().unwrap()
    }

    #[test]
    fn average_path_length_matches_the_closed_form() {
        assert_eq!(average_path_length(0), 0.0);
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        let c256 = 2.0 * (255f64.ln() + EULER_GAMMA) - 2.0 * 255.0 / 256.0;
        assert_eq!(average_path_length(256), c256);
    }

    fn grid(n: usize, d: usize) -> Array2<f64> {
        Array2::from_shape_fn((n, d), |(i, j)| ((i * 7 + j * 13) % 97) as f64 / 9.7)
    }

    #[test]
    fn dense_and_sparse_layouts_give_the_same_scores() {
        // 3 and 36 features: the leaf table's per-feature counts (1 and 9 words); 68: its
        // paths.
        for d in [3, 36, COUNTED_MAX_WIDTH + 4] {
            let x = grid(500, d);
            let mut w = Vec::new();
            let forest = IsolationForest::fit(&defaults(), 3, x.view(), &mut w).unwrap();
            let Trees::Dense(_) = &forest.trees else {
                panic!("default forest should be dense")
            };
            // Rebuild the same trees in the pointer layout and compare.
            let mut master = Xoshiro256PlusPlus::seed_from_u64(3);
            let sparse: Vec<SparseTree> = (0..100)
                .map(|_| grow_tree(x.view(), 256, d, false, 8, master.next_u64()))
                .collect();
            let sparse_forest = IsolationForest {
                max_samples: 256,
                n_trees: 100,
                trees: Trees::Sparse(sparse),
            };
            assert_eq!(forest.score(x.view()), sparse_forest.score(x.view()));
            // Both layouts walk the same real splits: the same importances, bit for bit
            // (500 rows, not a multiple of the lanes: the dense forest reads its paths off
            // its leaf table).
            let all = forest.contributions(x.view());
            assert_eq!(all, sparse_forest.contributions(x.view()), "{d}");
            // Fewer rows (one, fewer than the lanes, a few groups and a rest): each row's
            // own importances again.
            for m in [1, 5, 100] {
                let few = x.slice(ndarray::s![..m, ..]);
                assert_eq!(
                    forest.contributions(few),
                    all.slice(ndarray::s![..m, ..]).to_owned()
                );
            }
        }
    }

    #[test]
    fn local_diffi_credits_the_features_split_on_by_depth() {
        // One tree: the root splits feature 1, its left child feature 0; ψ = 4 (h_max 2).
        let leaf = |value| Node::Leaf { value };
        let tree = SparseTree {
            nodes: vec![
                Node::Split {
                    feature: 1,
                    threshold: 0.5,
                    left: 1,
                    right: 4,
                },
                Node::Split {
                    feature: 0,
                    threshold: 0.5,
                    left: 2,
                    right: 3,
                },
                leaf(2.0),
                leaf(2.0),
                leaf(1.0),
            ],
        };
        let forest = IsolationForest {
            max_samples: 4,
            n_trees: 1,
            trees: Trees::Sparse(vec![tree]),
        };
        let rows = ndarray::array![[0.0, 0.0, 0.0], [0.0, 9.0, 0.0]];
        let c = forest.contributions(rows.view());
        // Row 0 ends at depth 2 = h_max: weight 0 for both splits. Row 1 is isolated at
        // depth 1 by feature 1: 1/1 - 1/2.
        assert_eq!(c, ndarray::array![[0.0, 0.0, 0.0], [0.0, 0.5, 0.0]]);
    }

    #[test]
    fn every_row_width_walks_the_same_trees_as_the_pointer_layout() {
        // Widths 1-12 take a walk specialised for the width, wider ones the generic walk;
        // 203 rows: 25 full groups of eight plus a remainder.
        for width in 1..=14 {
            let x = Array2::from_shape_fn((203, width), |(i, j)| {
                ((i * 7 + j * 13 + i * j) % 97) as f64 / 9.7
            });
            let mut w = Vec::new();
            let forest = IsolationForest::fit(&defaults(), 11, x.view(), &mut w).unwrap();
            let Trees::Dense(_) = &forest.trees else {
                panic!("default forest should be dense")
            };
            let mut master = Xoshiro256PlusPlus::seed_from_u64(11);
            let sparse: Vec<SparseTree> = (0..100)
                .map(|_| grow_tree(x.view(), 203, width, false, 8, master.next_u64()))
                .collect();
            let sparse_forest = IsolationForest {
                max_samples: 203,
                n_trees: 100,
                trees: Trees::Sparse(sparse),
            };
            assert_eq!(
                forest.score(x.view()),
                sparse_forest.score(x.view()),
                "width {width}"
            );
        }
    }

    #[test]
    fn deduplicated_scoring_gives_bit_identical_scores() {
        // 40k rows drawn from 500 distinct ones: the dedup path is taken.
        let distinct = grid(500, 3);
        let x = Array2::from_shape_fn((40_000, 3), |(i, j)| distinct[[(i * 31) % 500, j]]);
        assert!(distinct_rows(x.view()).is_some());
        let mut w = Vec::new();
        let forest = IsolationForest::fit(&defaults(), 5, x.view(), &mut w).unwrap();
        assert_eq!(forest.score(x.view()), forest.score_rows(x.view(), None));
    }

    #[test]
    fn scoring_in_the_matrix_own_memory_gives_bit_identical_scores() {
        // Width 3 is recoded to cells (see `cells`), width 6 is walked by value in waves.
        for width in [3, 6] {
            scores_in_own_memory_match(width);
        }
    }

    fn scores_in_own_memory_match(width: usize) {
        // 90k rows from 500 distinct ones, in waves of 40k (dedup inside each) and of 7.
        let distinct =
            Array2::from_shape_fn((500, width), |(i, j)| ((i * 7 + j * 13) % 97) as f64 / 9.7);
        let x = Array2::from_shape_fn((90_000, width), |(i, j)| distinct[[(i * 31) % 500, j]]);
        let mut w = Vec::new();
        let forest = IsolationForest::fit(&defaults(), 5, x.view(), &mut w).unwrap();
        let expected = forest.score(x.view());
        assert_eq!(forest.score_owned_in_waves(x.clone(), 40_000), expected);
        let small = x.slice(ndarray::s![..1000, ..]).to_owned();
        assert_eq!(
            forest.score_owned_in_waves(small.clone(), 7),
            forest.score(small.view())
        );
        // A matrix whose first element is not at the start of its buffer, and a
        // column-major one.
        let mut shifted = x.slice(ndarray::s![..2000, ..]).to_owned();
        shifted.slice_collapse(ndarray::s![3.., ..]);
        assert_eq!(
            forest.score_owned_in_waves(shifted.clone(), 500),
            forest.score(shifted.view())
        );
        let fortran = small.t().as_standard_layout().t().to_owned();
        assert!(!fortran.is_standard_layout());
        assert_eq!(
            forest.score_owned_in_waves(fortran, 100),
            forest.score(small.view())
        );
    }

    #[test]
    fn constant_data_scores_one_half_everywhere_it_cannot_split() {
        let x = Array2::from_elem((50, 2), 1.0);
        let mut w = Vec::new();
        let forest = IsolationForest::fit(&defaults(), 0, x.view(), &mut w).unwrap();
        // Every tree is a single leaf of 50 rows: h = c(50), so score = 2^-(c(50)/c(50)).
        for s in forest.score(x.view()) {
            assert!((s - 0.5).abs() < 1e-12);
        }
    }
}
