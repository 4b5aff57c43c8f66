//! Exact k-nearest-neighbour search: a k-d tree for low dimensions, blocked brute force
//! for high ones.
//!
//! Points are copied once into a row-major buffer in the index's own order (the tree's
//! leaf order, so a leaf's points are contiguous); callers work with *positions* in that
//! order and map back to input rows with [`NeighborIndex::original`].
//!
//! Distances are handled in their "reduced" form (squared for euclidean, the p-th power
//! for minkowski), as scikit-learn's `KDTree` does, and converted once at the end, so the
//! reported distances equal scikit-learn's exactly computed ones.
//!
//! The k-d tree splits each node at the median of its widest dimension and keeps a tight
//! bounding box per node; a query visits the nearer child first and prunes a node whose
//! box is no closer than the current k-th neighbour. Cost: O(n log n) to build; a query
//! is O(log n) on well-spread low-dimensional data, degrading towards O(n) as the
//! dimension grows, which is why [`BRUTE_FORCE_MIN_DIM`] switches to brute force
//! (scikit-learn's `algorithm="auto"` switches at the same point).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::params::Metric;

/// Rows per parallel work item of the batch searches.
const BLOCK: usize = 256;

/// From this many dimensions on, brute force beats the tree.
pub(crate) const BRUTE_FORCE_MIN_DIM: usize = 16;
const LEAF_SIZE: usize = 24;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct KdNode {
    start: u32,
    end: u32,
    /// Child node indices; `0` for a leaf (the root is never a child).
    left: u32,
    right: u32,
}

/// A neighbour index over a fixed set of points.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct NeighborIndex {
    dim: usize,
    metric: Metric,
    /// Points, row-major, in index order.
    points: Vec<f64>,
    /// Input row of each position.
    perm: Vec<u32>,
    /// k-d tree nodes (empty: brute force).
    nodes: Vec<KdNode>,
    /// Per node: `dim` lower bounds then `dim` upper bounds.
    bounds: Vec<f64>,
}

/// The k nearest found so far, sorted by reduced distance (ties keep the first found).
#[derive(Debug)]
pub(crate) struct Neighbors {
    k: usize,
    /// A reduced distance known to be above the k-th neighbour's (or +inf).
    limit: f64,
    pub(crate) items: Vec<(f64, u32)>,
}

impl Neighbors {
    pub(crate) fn new(k: usize) -> Self {
        Self {
            k,
            limit: f64::INFINITY,
            items: Vec::with_capacity(k + 1),
        }
    }

    fn clear(&mut self) {
        self.items.clear();
        self.limit = f64::INFINITY;
    }

    /// The distance a candidate must beat to enter.
    #[inline]
    fn bound(&self) -> f64 {
        if self.items.len() < self.k {
            self.limit
        } else {
            self.items[self.k - 1].0
        }
    }

    #[inline]
    fn push(&mut self, rdist: f64, pos: u32) {
        if rdist >= self.bound() {
            return;
        }
        let at = self.items.partition_point(|&(d, _)| d <= rdist);
        self.items.insert(at, (rdist, pos));
        self.items.truncate(self.k);
    }
}

/// Reduced distance of one metric, monomorphised into the search loops.
trait Reduced: Copy + Send + Sync {
    fn term(self, diff: f64) -> f64;
    fn to_distance(self, rdist: f64) -> f64;
    fn to_reduced(self, dist: f64) -> f64;

    #[inline]
    fn rdist(self, a: &[f64], b: &[f64]) -> f64 {
        let mut acc = 0.0;
        for (x, y) in a.iter().zip(b) {
            acc += self.term(x - y);
        }
        acc
    }
}

#[derive(Clone, Copy)]
struct Euclid;
#[derive(Clone, Copy)]
struct Manhattan;
#[derive(Clone, Copy)]
struct Minkowski(f64);

impl Reduced for Euclid {
    #[inline]
    fn term(self, diff: f64) -> f64 {
        diff * diff
    }
    fn to_distance(self, rdist: f64) -> f64 {
        rdist.sqrt()
    }
    fn to_reduced(self, dist: f64) -> f64 {
        dist * dist
    }
}
impl Reduced for Manhattan {
    #[inline]
    fn term(self, diff: f64) -> f64 {
        diff.abs()
    }
    fn to_distance(self, rdist: f64) -> f64 {
        rdist
    }
    fn to_reduced(self, dist: f64) -> f64 {
        dist
    }
}
impl Reduced for Minkowski {
    #[inline]
    fn term(self, diff: f64) -> f64 {
        diff.abs().powf(self.0)
    }
    fn to_distance(self, rdist: f64) -> f64 {
        rdist.powf(1.0 / self.0)
    }
    fn to_reduced(self, dist: f64) -> f64 {
        dist.powf(self.0)
    }
}

/// Calls `$body` with `$m` bound to the metric's monomorphised distance.
macro_rules! with_metric {
    ($metric:expr, $m:ident => $body:expr) => {
        match $metric {
            Metric::Euclidean => {
                let $m = Euclid;
                $body
            }
            Metric::Manhattan => {
                let $m = Manhattan;
                $body
            }
            Metric::Minkowski(p) => {
                let $m = Minkowski(p);
                $body
            }
        }
    };
}

impl NeighborIndex {
    /// Builds the index over `data` (`n` rows of `dim` values, row-major).
    pub(crate) fn build(data: &[f64], dim: usize, metric: Metric) -> Self {
        let n = data.len() / dim;
        let mut perm: Vec<u32> = (0..n as u32).collect();
        let mut nodes = Vec::new();
        let mut bounds = Vec::new();
        if dim < BRUTE_FORCE_MIN_DIM {
            build_node(data, dim, &mut perm, 0, n, &mut nodes, &mut bounds);
        }
        let mut points = Vec::with_capacity(n * dim);
        for &i in &perm {
            let i = i as usize;
            points.extend_from_slice(&data[i * dim..(i + 1) * dim]);
        }
        Self {
            dim,
            metric,
            points,
            perm,
            nodes,
            bounds,
        }
    }

    /// Checks a deserialized index's invariants (sizes, node ranges, permutation).
    pub(crate) fn check(&self, dim: usize) -> Result<(), String> {
        let n = self.perm.len();
        let bad = || Err("neighbour index is inconsistent".to_string());
        if self.dim != dim || self.points.len() != n * dim || n == 0 {
            return bad();
        }
        if self.perm.iter().any(|&p| p as usize >= n)
            || self.bounds.len() != self.nodes.len() * 2 * dim
        {
            return bad();
        }
        let m = self.nodes.len() as u32;
        for nd in &self.nodes {
            if nd.start > nd.end || nd.end as usize > n || nd.left >= m || nd.right >= m {
                return bad();
            }
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.perm.len()
    }

    /// The point at `pos`.
    pub(crate) fn point(&self, pos: usize) -> &[f64] {
        &self.points[pos * self.dim..(pos + 1) * self.dim]
    }

    /// Points `start..end`, row-major.
    pub(crate) fn points(&self, start: usize, end: usize) -> &[f64] {
        &self.points[start * self.dim..end * self.dim]
    }

    /// Whether [`Self::knn_block_euclidean`] applies: brute force with the euclidean metric.
    pub(crate) fn blocked_euclidean(&self) -> bool {
        self.nodes.is_empty() && self.metric == Metric::Euclidean
    }

    /// The k nearest points of each row of `queries` (`dim` values per row), for a
    /// brute-force euclidean index: candidates are ranked by ‖q‖² + ‖p‖² − 2 q·p, computed
    /// a block at a time with matrix products (as scikit-learn's brute force does), and
    /// the k kept are then measured exactly. With `first_pos`, the queries are this
    /// index's own points from that position on, and each skips itself.
    ///
    /// Writes k distances (ascending) and positions per query.
    pub(crate) fn knn_block_euclidean(
        &self,
        queries: &[f64],
        first_pos: Option<usize>,
        k: usize,
        dist_out: &mut [f64],
        pos_out: &mut [u32],
    ) {
        use ndarray::linalg::general_mat_mul;
        use ndarray::{Array2, ArrayView2, s};
        const POINT_BLOCK: usize = 512;
        let dim = self.dim;
        let nq = queries.len() / dim;
        let q = ArrayView2::from_shape((nq, dim), queries).expect("queries are rows of dim");
        let q_norms: Vec<f64> = q.rows().into_iter().map(|r| r.dot(&r)).collect();
        let mut heaps: Vec<Neighbors> = (0..nq).map(|_| Neighbors::new(k)).collect();
        let mut products = Array2::<f64>::zeros((nq, POINT_BLOCK));
        let mut reduced = vec![0.0; POINT_BLOCK];
        for start in (0..self.len()).step_by(POINT_BLOCK) {
            let end = (start + POINT_BLOCK).min(self.len());
            let p = ArrayView2::from_shape((end - start, dim), self.points(start, end))
                .expect("points are rows of dim");
            let p_norms: Vec<f64> = p.rows().into_iter().map(|r| r.dot(&r)).collect();
            let mut g = products.slice_mut(s![.., ..end - start]);
            general_mat_mul(1.0, &q, &p.t(), 0.0, &mut g);
            for (i, (heap, g_row)) in heaps.iter_mut().zip(g.rows()).enumerate() {
                let skip = first_pos.map_or(usize::MAX, |f| f + i);
                // The block's distances first (a loop the compiler vectorizes), then the
                // few below the bound pushed.
                let reduced = &mut reduced[..end - start];
                let g_row = g_row.as_slice().expect("the products' rows are contiguous");
                for ((r, &dot), &pn) in reduced.iter_mut().zip(g_row).zip(&p_norms) {
                    let rd = q_norms[i] + pn - 2.0 * dot;
                    *r = if rd > 0.0 { rd } else { 0.0 };
                }
                let mut bound = heap.bound();
                for (j, &rd) in reduced.iter().enumerate() {
                    if rd < bound && start + j != skip {
                        heap.push(rd, (start + j) as u32);
                        bound = heap.bound();
                    }
                }
            }
        }
        for (i, heap) in heaps.iter().enumerate() {
            let query = &queries[i * dim..(i + 1) * dim];
            let mut exact: Vec<(f64, u32)> = heap
                .items
                .iter()
                .map(|&(_, p)| (Euclid.rdist(query, self.point(p as usize)), p))
                .collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (j, (rd, p)) in exact.into_iter().enumerate() {
                dist_out[i * k + j] = rd.sqrt();
                pos_out[i * k + j] = p;
            }
        }
    }

    /// The k nearest neighbours of every indexed point, itself excluded, in index order:
    /// `n · k` distances (ascending per point) and positions. The LOF and KNN fits.
    ///
    /// Deterministic and independent of thread count: each point's search runs on one
    /// thread in a fixed order.
    pub(crate) fn training_neighbors(&self, k: usize) -> (Vec<f64>, Vec<u32>) {
        let n = self.len();
        let mut dist = vec![0.0; n * k];
        let mut pos = vec![0u32; n * k];
        dist.par_chunks_mut(BLOCK * k)
            .zip(pos.par_chunks_mut(BLOCK * k))
            .enumerate()
            .for_each(|(block, (dist, pos))| {
                if self.blocked_euclidean() {
                    let (start, end) = (block * BLOCK, block * BLOCK + dist.len() / k);
                    self.knn_block_euclidean(self.points(start, end), Some(start), k, dist, pos);
                    return;
                }
                let mut heap = Neighbors::new(k);
                // Consecutive positions are neighbours in the tree, so the previous
                // point's k-distance bounds this one's (triangle inequality: its k
                // neighbours, or itself, lie within d(prev, row) + k-distance(prev)).
                let mut previous: Option<(usize, f64)> = None;
                for (j, (d, p)) in dist.chunks_mut(k).zip(pos.chunks_mut(k)).enumerate() {
                    let at = block * BLOCK + j;
                    let row = self.point(at);
                    let upper = previous.map_or(f64::INFINITY, |(prev, k_dist)| {
                        self.distance(row, self.point(prev)) + k_dist
                    });
                    self.knn_within(row, Some(at), upper, &mut heap, d, p);
                    previous = Some((at, d[k - 1]));
                }
            });
        (dist, pos)
    }

    /// For each row of `data` (row-major, `dim` values each; new rows, not indexed ones),
    /// `f` of its k nearest indexed points' distances (ascending) and positions. The
    /// novelty scores of LOF and KNN.
    pub(crate) fn map_query_neighbors<T: Send + Default + Clone>(
        &self,
        data: &[f64],
        k: usize,
        f: impl Fn(&[f64], &[u32]) -> T + Sync,
    ) -> Vec<T> {
        self.map_query_rows(data, k, |_, d, p| f(d, p))
    }

    /// As [`Self::map_query_neighbors`], `f` also given the row itself (the per-feature
    /// contributions, which compare the row with its neighbours).
    pub(crate) fn map_query_rows<T: Send + Default + Clone>(
        &self,
        data: &[f64],
        k: usize,
        f: impl Fn(&[f64], &[f64], &[u32]) -> T + Sync,
    ) -> Vec<T> {
        let dim = self.dim;
        let n = data.len() / dim;
        let mut out = vec![T::default(); n];
        let block = |start: usize, out: &mut [T]| {
            if self.blocked_euclidean() {
                let rows = &data[start * dim..(start + out.len()) * dim];
                let (mut d, mut p) = (vec![0.0; out.len() * k], vec![0u32; out.len() * k]);
                self.knn_block_euclidean(rows, None, k, &mut d, &mut p);
                for (j, ((o, d), p)) in out.iter_mut().zip(d.chunks(k)).zip(p.chunks(k)).enumerate()
                {
                    *o = f(&rows[j * dim..(j + 1) * dim], d, p);
                }
                return;
            }
            let mut heap = Neighbors::new(k);
            let (mut d, mut p) = (vec![0.0; k], vec![0u32; k]);
            for (j, o) in out.iter_mut().enumerate() {
                let row = &data[(start + j) * dim..(start + j + 1) * dim];
                self.knn(row, None, &mut heap, &mut d, &mut p);
                *o = f(row, &d, &p);
            }
        };
        if n <= BLOCK {
            block(0, &mut out);
        } else {
            out.par_chunks_mut(BLOCK)
                .enumerate()
                .for_each(|(b, out)| block(b * BLOCK, out));
        }
        out
    }

    /// Adds `weight` to `out`, split over the dimensions in proportion to each one's term
    /// of the reduced distance between `query` and the point at `pos` (the squared
    /// difference for euclidean, |difference| for manhattan, its p-th power for
    /// minkowski); evenly when the two coincide.
    pub(crate) fn add_shares(&self, query: &[f64], pos: usize, weight: f64, out: &mut [f64]) {
        let point = self.point(pos);
        with_metric!(self.metric, m => {
            let total = m.rdist(query, point);
            if total > 0.0 {
                let scale = weight / total;
                for ((o, a), b) in out.iter_mut().zip(query).zip(point) {
                    *o += m.term(a - b) * scale;
                }
            } else {
                let share = weight / out.len() as f64;
                out.iter_mut().for_each(|o| *o += share);
            }
        });
    }

    /// The true distance between two points (for triangle-inequality bounds).
    pub(crate) fn distance(&self, a: &[f64], b: &[f64]) -> f64 {
        with_metric!(self.metric, m => m.to_distance(m.rdist(a, b)))
    }

    /// The input row of the point at `pos`.
    pub(crate) fn original(&self, pos: usize) -> usize {
        self.perm[pos] as usize
    }

    /// Finds the k nearest points to `query` (skipping position `exclude`), writing
    /// their true distances (ascending) and positions.
    pub(crate) fn knn(
        &self,
        query: &[f64],
        exclude: Option<usize>,
        heap: &mut Neighbors,
        dist_out: &mut [f64],
        pos_out: &mut [u32],
    ) {
        self.knn_within(query, exclude, f64::INFINITY, heap, dist_out, pos_out);
    }

    /// As [`Self::knn`], given `upper`, a true distance that the k-th neighbour's is known
    /// not to exceed (at least k points other than `exclude` lie within it); nodes
    /// farther than it are pruned from the start.
    pub(crate) fn knn_within(
        &self,
        query: &[f64],
        exclude: Option<usize>,
        upper: f64,
        heap: &mut Neighbors,
        dist_out: &mut [f64],
        pos_out: &mut [u32],
    ) {
        heap.clear();
        let skip = exclude.map_or(u32::MAX, |e| e as u32);
        with_metric!(self.metric, m => {
            if upper.is_finite() {
                // Slack for rounding in the caller's triangle inequality; the next float
                // up keeps a bound of 0 (duplicates) admitting distance 0.
                heap.limit = m.to_reduced(upper * (1.0 + 1e-9)).next_up();
            }
            // Dimensions known at compile time let the distance loops unroll.
            macro_rules! search {
                ($($d:literal)*) => {
                    match self.dim {
                        $($d => self.search::<_, $d>(m, query, skip, heap),)*
                        _ => self.search::<_, 0>(m, query, skip, heap),
                    }
                };
            }
            search!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
            for ((&(rd, p), d), o) in heap.items.iter().zip(dist_out.iter_mut()).zip(pos_out.iter_mut()) {
                *d = m.to_distance(rd);
                *o = p;
            }
        });
    }

    /// Positions of every point within `radius` of `query` (distance ≤ radius, the query
    /// itself included when indexed), appended to `out` in no particular order. DBSCAN's
    /// ε-neighbourhoods (scikit-learn's `radius_neighbors`, also inclusive).
    pub(crate) fn within(&self, query: &[f64], radius: f64, out: &mut Vec<u32>) {
        with_metric!(self.metric, m => {
            let limit = m.to_reduced(radius);
            if self.nodes.is_empty() {
                self.scan_within(m, query, 0, self.len(), limit, out);
            } else {
                self.descend_within(m, 0, query, limit, out);
            }
        });
    }

    fn scan_within<M: Reduced>(
        &self,
        m: M,
        query: &[f64],
        start: usize,
        end: usize,
        limit: f64,
        out: &mut Vec<u32>,
    ) {
        let dim = self.dim;
        for (off, p) in self.points[start * dim..end * dim]
            .chunks_exact(dim)
            .enumerate()
        {
            if m.rdist(query, p) <= limit {
                out.push((start + off) as u32);
            }
        }
    }

    fn descend_within<M: Reduced>(
        &self,
        m: M,
        node: usize,
        query: &[f64],
        limit: f64,
        out: &mut Vec<u32>,
    ) {
        if self.min_rdist::<M, 0>(m, node, query) > limit {
            return;
        }
        let nd = &self.nodes[node];
        if nd.left == 0 {
            self.scan_within(m, query, nd.start as usize, nd.end as usize, limit, out);
            return;
        }
        self.descend_within(m, nd.left as usize, query, limit, out);
        self.descend_within(m, nd.right as usize, query, limit, out);
    }

    /// Exact search; `D` is the dimension when known at compile time, else 0.
    fn search<M: Reduced, const D: usize>(
        &self,
        m: M,
        query: &[f64],
        skip: u32,
        heap: &mut Neighbors,
    ) {
        if self.nodes.is_empty() {
            self.scan::<M, D>(m, query, 0, self.len(), skip, heap);
        } else {
            self.descend::<M, D>(m, 0, query, skip, heap);
        }
    }

    #[inline]
    fn scan<M: Reduced, const D: usize>(
        &self,
        m: M,
        query: &[f64],
        start: usize,
        end: usize,
        skip: u32,
        heap: &mut Neighbors,
    ) {
        let dim = if D == 0 { self.dim } else { D };
        let query = &query[..dim];
        for (off, p) in self.points[start * dim..end * dim]
            .chunks_exact(dim)
            .enumerate()
        {
            let pos = (start + off) as u32;
            if pos == skip {
                continue;
            }
            let rd = m.rdist(query, p);
            if rd < heap.bound() {
                heap.push(rd, pos);
            }
        }
    }

    /// [`Self::scan`] of a leaf of more than [`LEAF_SIZE`] rows, which only rows without
    /// any spread make (see `build_node`): every row is at the same distance, measured
    /// once, and the rows are taken in order while that distance is below the bound —
    /// the pushes the full scan makes, without measuring each of many duplicates.
    fn scan_identical<M: Reduced, const D: usize>(
        &self,
        m: M,
        query: &[f64],
        start: usize,
        end: usize,
        skip: u32,
        heap: &mut Neighbors,
    ) {
        let dim = if D == 0 { self.dim } else { D };
        let rd = m.rdist(&query[..dim], self.point(start));
        for pos in start as u32..end as u32 {
            if pos == skip {
                continue;
            }
            if rd >= heap.bound() {
                return;
            }
            heap.push(rd, pos);
        }
    }

    #[inline]
    fn min_rdist<M: Reduced, const D: usize>(&self, m: M, node: usize, query: &[f64]) -> f64 {
        let dim = if D == 0 { self.dim } else { D };
        let b = &self.bounds[node * 2 * dim..(node + 1) * 2 * dim];
        let (lo, hi) = b.split_at(dim);
        let query = &query[..dim];
        let mut acc = 0.0;
        for ((&q, &l), &h) in query.iter().zip(lo).zip(hi) {
            // max(l − q, q − h, 0) by comparisons: the bounds and queries are finite, so
            // no NaN handling is needed.
            let (below, above) = (l - q, q - h);
            let diff = if below > above { below } else { above };
            acc += m.term(if diff > 0.0 { diff } else { 0.0 });
        }
        acc
    }

    fn descend<M: Reduced, const D: usize>(
        &self,
        m: M,
        node: usize,
        query: &[f64],
        skip: u32,
        heap: &mut Neighbors,
    ) {
        let nd = &self.nodes[node];
        if nd.left == 0 {
            let (start, end) = (nd.start as usize, nd.end as usize);
            if end - start > LEAF_SIZE {
                self.scan_identical::<M, D>(m, query, start, end, skip, heap);
            } else {
                self.scan::<M, D>(m, query, start, end, skip, heap);
            }
            return;
        }
        let (l, r) = (nd.left as usize, nd.right as usize);
        let (dl, dr) = (
            self.min_rdist::<M, D>(m, l, query),
            self.min_rdist::<M, D>(m, r, query),
        );
        let (first, d_first, second, d_second) = if dl <= dr {
            (l, dl, r, dr)
        } else {
            (r, dr, l, dl)
        };
        if d_first < heap.bound() {
            self.descend::<M, D>(m, first, query, skip, heap);
        }
        if d_second < heap.bound() {
            self.descend::<M, D>(m, second, query, skip, heap);
        }
    }
}

fn build_node(
    data: &[f64],
    dim: usize,
    perm: &mut [u32],
    start: usize,
    end: usize,
    nodes: &mut Vec<KdNode>,
    bounds: &mut Vec<f64>,
) -> u32 {
    let id = nodes.len();
    nodes.push(KdNode {
        start: start as u32,
        end: end as u32,
        left: 0,
        right: 0,
    });
    let mut lo = vec![f64::INFINITY; dim];
    let mut hi = vec![f64::NEG_INFINITY; dim];
    for &i in &perm[start..end] {
        let row = &data[i as usize * dim..(i as usize + 1) * dim];
        for j in 0..dim {
            lo[j] = lo[j].min(row[j]);
            hi[j] = hi[j].max(row[j]);
        }
    }
    let (split_dim, spread) = (0..dim)
        .map(|j| (j, hi[j] - lo[j]))
        .fold((0, -1.0), |best, c| if c.1 > best.1 { c } else { best });
    bounds.extend_from_slice(&lo);
    bounds.extend_from_slice(&hi);
    if end - start <= LEAF_SIZE || spread <= 0.0 {
        return id as u32;
    }
    let mid = start + (end - start) / 2;
    perm[start..end].select_nth_unstable_by(mid - start, |&a, &b| {
        data[a as usize * dim + split_dim].total_cmp(&data[b as usize * dim + split_dim])
    });
    let left = build_node(data, dim, perm, start, mid, nodes, bounds);
    let right = build_node(data, dim, perm, mid, end, nodes, bounds);
    nodes[id].left = left;
    nodes[id].right = right;
    id as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(data: &[f64], dim: usize, q: &[f64], k: usize, skip: Option<usize>) -> Vec<f64> {
        let mut d: Vec<f64> = data
            .chunks_exact(dim)
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .map(|(_, p)| {
                p.iter()
                    .zip(q)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        d.sort_by(f64::total_cmp);
        d.truncate(k);
        d
    }

    #[test]
    fn kd_tree_finds_the_same_distances_as_a_full_scan() {
        let dim = 3;
        let n = 1000;
        let data: Vec<f64> = (0..n * dim)
            .map(|i| ((i * 2654435761usize) % 1000) as f64 / 37.0)
            .collect();
        let index = NeighborIndex::build(&data, dim, Metric::Euclidean);
        assert!(!index.nodes.is_empty());
        let k = 7;
        let mut heap = Neighbors::new(k);
        let (mut dist, mut pos) = (vec![0.0; k], vec![0u32; k]);
        for p in (0..n).step_by(37) {
            let q = index.point(p).to_vec();
            index.knn(&q, Some(p), &mut heap, &mut dist, &mut pos);
            let expect = brute(&data, dim, &q, k, Some(index.original(p)));
            assert_eq!(dist, expect);
            assert!(pos.iter().all(|&x| x as usize != p));
        }
    }

    #[test]
    fn many_identical_rows_are_searched_as_one_leaf_with_the_same_answers() {
        // 300 copies of one row (a leaf of 300: no spread to split), 40 copies of
        // another, and 200 spread rows.
        let dim = 2;
        let mut data: Vec<f64> = Vec::new();
        for i in 0..540 {
            let row = match i % 9 {
                0..=4 => [1.5, -2.0],
                5 if i < 360 => [1.5, -2.0 + 1e-3],
                _ => [
                    ((i * 37) % 101) as f64 / 20.0,
                    ((i * 53) % 89) as f64 / 30.0,
                ],
            };
            data.extend_from_slice(&row);
        }
        let index = NeighborIndex::build(&data, dim, Metric::Euclidean);
        let big = index.nodes.iter().filter(|n| n.left == 0);
        assert!(big.clone().any(|n| (n.end - n.start) as usize > LEAF_SIZE));
        for k in [1, 5, 30] {
            let (dist, _) = index.training_neighbors(k);
            for (at, d) in dist.chunks(k).enumerate() {
                let q = index.point(at).to_vec();
                assert_eq!(
                    d,
                    brute(&data, dim, &q, k, Some(index.original(at))),
                    "{k} {at}"
                );
            }
            let queries = [1.5, -2.0, 1.5001, -1.9995, 0.7, 1.2];
            let mut heap = Neighbors::new(k);
            let (mut d, mut p) = (vec![0.0; k], vec![0u32; k]);
            for q in queries.chunks_exact(dim) {
                index.knn(q, None, &mut heap, &mut d, &mut p);
                assert_eq!(d, brute(&data, dim, q, k, None), "{k} {q:?}");
            }
        }
    }

    #[test]
    fn radius_search_finds_exactly_the_points_within() {
        for dim in [2, 20] {
            let n = 600;
            let data: Vec<f64> = (0..n * dim)
                .map(|i| ((i * 2654435761usize) % 1000) as f64 / 97.0)
                .collect();
            let index = NeighborIndex::build(&data, dim, Metric::Manhattan);
            let mut found = Vec::new();
            for p in (0..n).step_by(29) {
                let q = index.point(p).to_vec();
                found.clear();
                index.within(&q, 4.0 * dim as f64 / 2.0, &mut found);
                let mut got: Vec<usize> =
                    found.iter().map(|&i| index.original(i as usize)).collect();
                got.sort_unstable();
                let want: Vec<usize> = data
                    .chunks_exact(dim)
                    .enumerate()
                    .filter(|(_, r)| {
                        r.iter().zip(&q).map(|(a, b)| (a - b).abs()).sum::<f64>()
                            <= 4.0 * dim as f64 / 2.0
                    })
                    .map(|(i, _)| i)
                    .collect();
                assert_eq!(got, want, "dim {dim}, point {p}");
            }
        }
    }

    #[test]
    fn blocked_euclidean_search_matches_a_full_exact_scan() {
        let dim = 20;
        let n = 700;
        let data: Vec<f64> = (0..n * dim)
            .map(|i| ((i * 2654435761usize) % 1009) as f64 / 101.0)
            .collect();
        let index = NeighborIndex::build(&data, dim, Metric::Euclidean);
        assert!(index.blocked_euclidean());
        let k = 9;
        let (start, end) = (40, 110);
        let (mut dist, mut pos) = (vec![0.0; (end - start) * k], vec![0u32; (end - start) * k]);
        index.knn_block_euclidean(
            index.points(start, end),
            Some(start),
            k,
            &mut dist,
            &mut pos,
        );
        for (i, at) in (start..end).enumerate() {
            let expect = brute(&data, dim, index.point(at), k, Some(index.original(at)));
            let got = &dist[i * k..(i + 1) * k];
            for (g, e) in got.iter().zip(&expect) {
                assert!(
                    (g - e).abs() <= 1e-9 * e.max(1.0),
                    "row {at}: {got:?} vs {expect:?}"
                );
            }
            assert!(pos[i * k..(i + 1) * k].iter().all(|&p| p as usize != at));
        }
    }
}
