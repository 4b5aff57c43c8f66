//! Data drift and data quality: reference statistics from training, window statistics from
//! scoring, and their comparison (PSI, KS) with a plain verdict.
//!
//! # What is kept
//!
//! At training, [`ReferenceProfile::from_matrix`] records per feature the training
//! distribution as **quantile bins**: up to 99 edges at the training percentiles (fewer when
//! the feature has ties, as discrete features do), the training count strictly between two
//! edges and exactly at each edge (so a tied value, which discrete features are full of,
//! is a bin of its own and nothing is lost about it), and the
//! mean, variance, minimum, maximum and missing (non-finite) count. It is small (about
//! 1 KB per feature, stored with postcard) and serializable, so it is stored beside the model.
//!
//! At scoring time a [`WindowStats`] accumulates what a model sees against those same
//! edges: per feature the count in each bin (a binary search over at most 99 edges, about
//! 7 comparisons), the count of values outside the training range, and the sum and sum of
//! squares of the values centred on the training mean (so variances stay accurate). Two
//! windows merge by adding counts, so a window can be sharded between threads and
//! merged when read.
//!
//! # What is compared
//!
//! - **PSI** (population stability index) over about 10 bins of equal training mass (the
//!   fine bins grouped by decile): `Σ (a − e) · ln(a / e)` with `e`, `a` the training and
//!   window shares; a share of 0 is floored at [`PSI_EPSILON`] so an emptied bin gives a
//!   large but finite value. Conventions: < 0.1 stable, 0.1–0.25 moderate, ≥ 0.25 drift.
//! - **KS** (two-sample Kolmogorov–Smirnov `D`, the largest gap between the two
//!   cumulative distributions), evaluated at the training percentiles. Why not a stored
//!   reference sample: `D` would then need the window's raw values too (a sort per read and
//!   memory growing with traffic), while the binned CDFs cost nothing extra per row. The
//!   price is bounded and reported: the exact `D` between the training rows and the window's
//!   rows lies in `[ks, ks + ks_max_error]`, where `ks_max_error` is the largest training
//!   share strictly between two consecutive edges (about 0.01 for continuous features, 0
//!   for a discrete feature whose values are all edges). Proof: `ks` is evaluated at every
//!   edge `e` and just below it (`e⁻`); for `x` in an open interval `(e_i, e_{i+1})` both
//!   CDFs are non-decreasing, so `F_cur(x) − F_ref(x) ≤ F_cur(e_{i+1}⁻) − F_ref(e_i) =
//!   (F_cur(e_{i+1}⁻) − F_ref(e_{i+1}⁻)) + m_i` and `F_ref(x) − F_cur(x) ≤ F_ref(e_{i+1}⁻) −
//!   F_cur(e_i) ≤ (F_ref(e_i) − F_cur(e_i)) + m_i`, with `m_i` the training share inside.
//! - **Anomaly rate** of the window against the share of training rows labelled anomalous
//!   (the contamination, for a fractional contamination).
//!
//! # Verdicts: effect sizes, gated by significance
//!
//! A p-value alone flags any tiny, harmless shift once samples are large; an effect size
//! alone flags noise when samples are small. A statistic counts only when it is both
//! **large** (PSI ≥ 0.1 / 0.25, `D` ≥ 0.1 / 0.2 for moderate / drift) **and significant** at
//! the 0.1% level (`D` above the two-sample KS critical value; PSI × n·m/(n+m) above the
//! χ² quantile with bins − 1 degrees of freedom, PSI being the symmetric Kullback–Leibler
//! divergence, whose scaled value is asymptotically χ² under no change). Below
//! `min_samples` window rows there is no verdict (`insufficient_data`).
//!
//! # Data quality
//!
//! A score in `[0, 1]`: the share of the window's cells that are usable, i.e. finite and
//! inside the training range `[min, max]` of their feature:
//! `1 − (missing + non-finite + out-of-range cells) / cells`. Rows from the same
//! distribution as the training set score close to 1 (a fresh value falls outside the
//! training range with probability about 2 / n_train).
//!
//! Cost: building a reference sorts each feature, `O(n log n)` per feature (in parallel);
//! adding a row is `O(features · log bins)`; comparing is `O(features · bins)`.

use ndarray::{ArrayView1, ArrayView2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Version of the serialized [`ReferenceProfile`].
pub const REFERENCE_FORMAT_VERSION: u16 = 1;
const REFERENCE_MAGIC: &[u8; 4] = b"PNRF";
/// Share given to an empty bin in the PSI, so the logarithm stays finite.
pub const PSI_EPSILON: f64 = 1e-4;
/// Bins (of about equal training mass) over which the PSI is computed.
pub const PSI_BINS: usize = 10;
/// Most fine quantile bins per feature (the KS resolution).
pub const MAX_FINE_BINS: usize = 100;

/// The training distribution of each feature, as stored beside a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceProfile {
    /// [`REFERENCE_FORMAT_VERSION`] when written.
    pub format: u16,
    /// Training rows.
    pub n_samples: u64,
    /// Share of the training rows labelled anomalous.
    pub training_anomaly_rate: f64,
    /// One entry per feature, in column order.
    pub features: Vec<FeatureReference>,
}

/// One feature's training distribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureReference {
    /// Strictly increasing bin edges.
    pub edges: Vec<f64>,
    /// Training values per bin, `2 · edges.len() + 1` bins: bin `2i` holds the open
    /// interval below `edges[i]` (above `edges[i-1]`), bin `2i + 1` the value `edges[i]`
    /// itself, the last bin everything above the last edge.
    pub counts: Vec<u64>,
    /// Finite training values.
    pub n: u64,
    /// Missing (non-finite) training values.
    pub missing: u64,
    pub mean: f64,
    /// Population variance.
    pub variance: f64,
    pub min: f64,
    pub max: f64,
}

/// Fine bins per feature for `n_features` features: 100 up to 64 features, fewer beyond
/// (at least 20) so a window stays a few hundred KB for wide models.
pub fn fine_bins_for(n_features: usize) -> usize {
    if n_features <= 64 {
        MAX_FINE_BINS
    } else {
        (6400 / n_features).clamp(20, MAX_FINE_BINS)
    }
}

impl FeatureReference {
    /// The bin of `x` (finite): a binary search for the first edge at or above it.
    #[inline]
    pub fn bin(&self, x: f64) -> usize {
        let i = self.edges.partition_point(|&e| e < x);
        if self.edges.get(i) == Some(&x) {
            2 * i + 1
        } else {
            2 * i
        }
    }

    fn from_values(values: &mut [f64], missing: u64, bins: usize) -> Self {
        values.sort_unstable_by(f64::total_cmp);
        let n = values.len();
        if n == 0 {
            return Self {
                edges: Vec::new(),
                counts: vec![0],
                n: 0,
                missing,
                mean: 0.0,
                variance: 0.0,
                min: 0.0,
                max: 0.0,
            };
        }
        let mut edges: Vec<f64> = Vec::with_capacity(bins);
        for k in 1..bins {
            // The lower empirical quantile k/bins: the smallest value with at least that
            // share of values at or below it.
            let idx = (k * n).div_ceil(bins).saturating_sub(1).min(n - 1);
            let e = values[idx];
            if edges.last().is_none_or(|&last| e > last) {
                edges.push(e);
            }
        }
        let mut counts = Vec::with_capacity(2 * edges.len() + 1);
        let mut below = 0usize;
        for &e in &edges {
            let under = values.partition_point(|&v| v < e);
            let upto = values.partition_point(|&v| v <= e);
            counts.push((under - below) as u64);
            counts.push((upto - under) as u64);
            below = upto;
        }
        counts.push((n - below) as u64);
        let mean = values.iter().sum::<f64>() / n as f64;
        let variance = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
        Self {
            edges,
            counts,
            n: n as u64,
            missing,
            mean,
            variance,
            min: values[0],
            max: values[n - 1],
        }
    }

    /// Largest training share strictly between two edges: the bound on how much the
    /// binned KS statistic can understate the exact one.
    pub fn ks_max_error(&self) -> f64 {
        if self.n == 0 {
            return 1.0;
        }
        let inside = self.counts.iter().step_by(2).copied().max().unwrap_or(0);
        inside as f64 / self.n as f64
    }

    /// Groups of consecutive bins with about equal training mass (at most [`PSI_BINS`]):
    /// `group[i]` is the PSI bin of fine bin `i`.
    fn psi_groups(&self) -> (Vec<usize>, usize) {
        let n = self.n.max(1) as f64;
        let mut group = Vec::with_capacity(self.counts.len());
        let mut g = 0usize;
        let mut cum = 0u64;
        let mut mass_in_group = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            group.push(g);
            cum += c;
            mass_in_group += c;
            let last = i + 1 == self.counts.len();
            if !last && mass_in_group > 0 && cum as f64 / n >= (g + 1) as f64 / PSI_BINS as f64 {
                g += 1;
                mass_in_group = 0;
            }
        }
        // A thin last group (the top tail after the final decile) joins the one before.
        if g > 0 && (mass_in_group as f64 / n) < 0.5 / PSI_BINS as f64 {
            for x in group.iter_mut().filter(|x| **x == g) {
                *x = g - 1;
            }
            g -= 1;
        }
        (group, g + 1)
    }
}

impl ReferenceProfile {
    /// The reference of a training matrix whose rows were labelled with
    /// `training_anomaly_rate` anomalies.
    pub fn from_matrix(x: ArrayView2<'_, f64>, training_anomaly_rate: f64) -> Self {
        let bins = fine_bins_for(x.ncols());
        let features = x
            .axis_iter(Axis(1))
            .into_par_iter()
            .map(|column| {
                let mut values: Vec<f64> =
                    column.iter().copied().filter(|v| v.is_finite()).collect();
                let missing = (column.len() - values.len()) as u64;
                FeatureReference::from_values(&mut values, missing, bins)
            })
            .collect();
        Self {
            format: REFERENCE_FORMAT_VERSION,
            n_samples: x.nrows() as u64,
            training_anomaly_rate: if training_anomaly_rate.is_finite() {
                training_anomaly_rate
            } else {
                0.0
            },
            features,
        }
    }

    /// The reference of a training matrix and the fit's labels of its rows.
    pub fn from_training(x: ArrayView2<'_, f64>, training: &crate::Detection) -> Self {
        let rate = training.anomaly_count as f64 / x.nrows().max(1) as f64;
        Self::from_matrix(x, rate)
    }

    /// Serializes the profile: `PNRF`, then postcard (exact: JSON text would round the
    /// last bit of some edges, and a value equal to an edge must fall in the same bin).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.features.len() * 1700);
        out.extend_from_slice(REFERENCE_MAGIC);
        // Serializing plain data into a Vec cannot fail.
        postcard::to_io(self, &mut out).expect("postcard serialization into a Vec");
        out
    }

    /// Reads a profile written by [`ReferenceProfile::to_bytes`] and checks it.
    ///
    /// # Errors
    /// Not a profile, a corrupt one, or a format this build does not read.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let body = bytes
            .strip_prefix(REFERENCE_MAGIC.as_slice())
            .ok_or_else(|| "not a pynomaly reference profile (bad magic bytes)".to_string())?;
        let profile: Self = postcard::from_bytes(body).map_err(|e| e.to_string())?;
        profile.check()?;
        Ok(profile)
    }

    /// Number of features.
    pub fn n_features(&self) -> usize {
        self.features.len()
    }

    /// Checks the invariants comparisons rely on (for profiles read back from storage).
    ///
    /// # Errors
    /// A description of the first broken invariant.
    pub fn check(&self) -> Result<(), String> {
        if self.format != REFERENCE_FORMAT_VERSION {
            return Err(format!(
                "reference format {} is not supported (this build reads {REFERENCE_FORMAT_VERSION})",
                self.format
            ));
        }
        for (i, f) in self.features.iter().enumerate() {
            if f.counts.len() != 2 * f.edges.len() + 1 {
                return Err(format!(
                    "feature {i}: {} counts for {} edges",
                    f.counts.len(),
                    f.edges.len()
                ));
            }
            if f.edges.windows(2).any(|w| w[0] >= w[1]) || f.edges.iter().any(|e| !e.is_finite()) {
                return Err(format!("feature {i}: edges are not finite and increasing"));
            }
            if f.counts.iter().sum::<u64>() != f.n {
                return Err(format!("feature {i}: bin counts do not add up to {}", f.n));
            }
        }
        Ok(())
    }
}

/// One feature's accumulated window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureWindow {
    /// Values per reference bin.
    pub counts: Vec<u64>,
    /// Finite values.
    pub n: u64,
    /// Missing or non-finite values.
    pub missing: u64,
    /// Finite values outside the training `[min, max]`.
    pub out_of_range: u64,
    /// Σ (x − reference mean).
    pub sum: f64,
    /// Σ (x − reference mean)².
    pub sum_sq: f64,
}

/// What a model saw over a window: rows, anomalies, and per feature the counts in the
/// reference's bins and the moments. Mergeable: counts and sums add.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowStats {
    pub rows: u64,
    pub anomalies: u64,
    pub features: Vec<FeatureWindow>,
}

impl WindowStats {
    /// An empty window shaped for `reference`.
    pub fn new(reference: &ReferenceProfile) -> Self {
        Self {
            rows: 0,
            anomalies: 0,
            features: reference
                .features
                .iter()
                .map(|f| FeatureWindow {
                    counts: vec![0; f.counts.len()],
                    n: 0,
                    missing: 0,
                    out_of_range: 0,
                    sum: 0.0,
                    sum_sq: 0.0,
                })
                .collect(),
        }
    }

    /// Adds one row (its length must be the reference's feature count; extra values are
    /// ignored, missing ones are not counted).
    #[inline]
    pub fn add_row(&mut self, reference: &ReferenceProfile, row: ArrayView1<'_, f64>) {
        match row.as_slice() {
            Some(values) => self.add_values(reference, values),
            None => self.add_values(reference, &row.to_vec()),
        }
    }

    /// [`WindowStats::add_row`] on a row's values.
    #[inline]
    pub fn add_values(&mut self, reference: &ReferenceProfile, row: &[f64]) {
        self.rows += 1;
        for ((w, r), &x) in self.features.iter_mut().zip(&reference.features).zip(row) {
            if !x.is_finite() {
                w.missing += 1;
                continue;
            }
            let bin = r.bin(x);
            if let Some(c) = w.counts.get_mut(bin) {
                *c += 1;
            }
            w.n += 1;
            w.out_of_range += u64::from(x < r.min || x > r.max);
            let d = x - r.mean;
            w.sum += d;
            w.sum_sq += d * d;
        }
    }

    /// Adds the rows of `x` and the number of them labelled anomalous.
    pub fn add_rows(
        &mut self,
        reference: &ReferenceProfile,
        x: ArrayView2<'_, f64>,
        anomalies: usize,
    ) {
        match x.as_slice() {
            // Row-major rows (what the API and the readers build): plain slices.
            Some(flat) if x.ncols() > 0 => {
                for row in flat.chunks_exact(x.ncols()) {
                    self.add_values(reference, row);
                }
            }
            _ => {
                for row in x.outer_iter() {
                    self.add_row(reference, row);
                }
            }
        }
        self.anomalies += anomalies as u64;
    }

    /// Adds another window of the same reference.
    pub fn merge(&mut self, other: &WindowStats) {
        self.merge_weighted(other, 1);
    }

    /// Adds another window of the same reference as if each of its rows had been seen
    /// `weight` times: a sample standing for `weight` times its size (every count, sum and
    /// sum of squares scaled), so that bins, means, variances, the KS CDFs and the anomaly
    /// rate estimate the traffic it was sampled from without bias.
    pub fn merge_weighted(&mut self, other: &WindowStats, weight: u64) {
        let w = weight as f64;
        self.rows += other.rows * weight;
        self.anomalies += other.anomalies * weight;
        for (a, b) in self.features.iter_mut().zip(&other.features) {
            for (x, y) in a.counts.iter_mut().zip(&b.counts) {
                *x += y * weight;
            }
            a.n += b.n * weight;
            a.missing += b.missing * weight;
            a.out_of_range += b.out_of_range * weight;
            a.sum += b.sum * w;
            a.sum_sq += b.sum_sq * w;
        }
    }

    /// Share of usable cells: finite and inside the training range (see the module docs).
    /// 1 for an empty window.
    pub fn data_quality(&self) -> f64 {
        let cells: u64 = self.features.iter().map(|f| f.n + f.missing).sum();
        if cells == 0 {
            return 1.0;
        }
        let bad: u64 = self
            .features
            .iter()
            .map(|f| f.missing + f.out_of_range)
            .sum();
        (1.0 - bad as f64 / cells as f64).clamp(0.0, 1.0)
    }
}

/// A plain-words verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Fewer window rows than the minimum: no verdict yet.
    InsufficientData,
    Stable,
    ModerateDrift,
    Drift,
}

impl Verdict {
    /// The verdict as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::InsufficientData => "insufficient_data",
            Verdict::Stable => "stable",
            Verdict::ModerateDrift => "moderate_drift",
            Verdict::Drift => "drift",
        }
    }
}

/// The anomaly rate against training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateVerdict {
    InsufficientData,
    /// Within a factor of 2 of the training rate, or not significantly different.
    AsTrained,
    /// At least twice the training rate (and significantly so).
    Elevated,
    /// At most half the training rate (and significantly so).
    Reduced,
}

/// Thresholds of the verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DriftThresholds {
    pub psi_moderate: f64,
    pub psi_drift: f64,
    pub ks_moderate: f64,
    pub ks_drift: f64,
    /// Window rows needed before any verdict.
    pub min_samples: u64,
}

impl Default for DriftThresholds {
    fn default() -> Self {
        Self {
            psi_moderate: 0.1,
            psi_drift: 0.25,
            ks_moderate: 0.1,
            ks_drift: 0.2,
            min_samples: 200,
        }
    }
}

/// One feature's comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    pub index: usize,
    pub psi: f64,
    /// KS `D` at the training percentiles (a lower bound of the exact `D`).
    pub ks: f64,
    /// The exact `D` is at most `ks + ks_max_error`.
    pub ks_max_error: f64,
    pub reference_mean: f64,
    pub reference_std: f64,
    /// `None` while the window has no value for the feature.
    pub current_mean: Option<f64>,
    pub current_std: Option<f64>,
    pub reference_missing_rate: f64,
    pub current_missing_rate: f64,
    /// Share of the window's values outside the training range.
    pub out_of_range_rate: f64,
    pub reference_count: u64,
    pub current_count: u64,
    pub verdict: Verdict,
}

/// A window compared with its reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// The worst feature verdict (`insufficient_data` below the minimum rows).
    pub verdict: Verdict,
    pub rows: u64,
    pub anomaly_rate: Option<f64>,
    pub training_anomaly_rate: f64,
    pub anomaly_rate_verdict: RateVerdict,
    pub data_quality: f64,
    pub features: Vec<FeatureDrift>,
}

/// Upper `0.999` quantile of χ² with `k` degrees of freedom (Wilson–Hilferty; within a
/// few percent for k ≥ 1, which is all a significance gate needs).
fn chi2_999(k: usize) -> f64 {
    let k = k.max(1) as f64;
    let z = 3.090_232_306; // standard normal 0.999 quantile
    let h = 2.0 / (9.0 * k);
    k * (1.0 - h + z * h.sqrt()).powi(3)
}

/// Two-sample KS critical value at the 0.1% level: `c(α) · sqrt((n + m) / (n m))`.
fn ks_critical(n: f64, m: f64) -> f64 {
    let c = (-(0.001f64 / 2.0).ln() / 2.0).sqrt(); // 1.949
    c * ((n + m) / (n * m)).sqrt()
}

fn level(value: f64, significant: bool, moderate: f64, drift: f64) -> Verdict {
    if !significant || value < moderate {
        Verdict::Stable
    } else if value < drift {
        Verdict::ModerateDrift
    } else {
        Verdict::Drift
    }
}

/// PSI and KS of one feature (`None`: no values on one side).
pub fn psi_and_ks(
    reference: &FeatureReference,
    window: &FeatureWindow,
) -> Option<(f64, f64, usize)> {
    if reference.n == 0 || window.n == 0 {
        return None;
    }
    let (n, m) = (reference.n as f64, window.n as f64);
    let (mut cr, mut cc, mut ks) = (0u64, 0u64, 0.0f64);
    for (r, c) in reference.counts.iter().zip(&window.counts) {
        cr += r;
        cc += c;
        ks = ks.max((cr as f64 / n - cc as f64 / m).abs());
    }
    let (group, groups) = reference.psi_groups();
    let mut e = vec![0u64; groups];
    let mut a = vec![0u64; groups];
    for ((g, r), c) in group.iter().zip(&reference.counts).zip(&window.counts) {
        e[*g] += r;
        a[*g] += c;
    }
    let psi = e
        .iter()
        .zip(&a)
        .map(|(&ei, &ai)| {
            let p = (ei as f64 / n).max(PSI_EPSILON);
            let q = (ai as f64 / m).max(PSI_EPSILON);
            (q - p) * (q / p).ln()
        })
        .sum::<f64>();
    Some((psi, ks, groups))
}

/// Compares a window with its reference.
pub fn compare(
    reference: &ReferenceProfile,
    window: &WindowStats,
    thresholds: &DriftThresholds,
) -> DriftReport {
    let enough = window.rows >= thresholds.min_samples.max(1);
    let features: Vec<FeatureDrift> = reference
        .features
        .iter()
        .zip(&window.features)
        .enumerate()
        .map(|(index, (r, w))| {
            let stats = psi_and_ks(r, w);
            let (psi, ks) = stats.map_or((0.0, 0.0), |(p, k, _)| (p, k));
            let verdict = match stats {
                Some((psi, ks, groups)) if enough => {
                    let (n, m) = (r.n as f64, w.n as f64);
                    let psi_significant = psi * n * m / (n + m) > chi2_999(groups - 1);
                    let ks_significant = ks > ks_critical(n, m);
                    level(
                        psi,
                        psi_significant,
                        thresholds.psi_moderate,
                        thresholds.psi_drift,
                    )
                    .max(level(
                        ks,
                        ks_significant,
                        thresholds.ks_moderate,
                        thresholds.ks_drift,
                    ))
                }
                _ => Verdict::InsufficientData,
            };
            let (current_mean, current_std) = if w.n > 0 {
                let m = w.n as f64;
                let mean_d = w.sum / m;
                let var = (w.sum_sq / m - mean_d * mean_d).max(0.0);
                (Some(r.mean + mean_d), Some(var.sqrt()))
            } else {
                (None, None)
            };
            let seen = w.n + w.missing;
            let trained = r.n + r.missing;
            FeatureDrift {
                index,
                psi,
                ks,
                ks_max_error: r.ks_max_error(),
                reference_mean: r.mean,
                reference_std: r.variance.max(0.0).sqrt(),
                current_mean,
                current_std,
                reference_missing_rate: ratio(r.missing, trained),
                current_missing_rate: ratio(w.missing, seen),
                out_of_range_rate: ratio(w.out_of_range, w.n),
                reference_count: r.n,
                current_count: w.n,
                verdict,
            }
        })
        .collect();
    let verdict = if enough {
        features
            .iter()
            .map(|f| f.verdict)
            .max()
            .unwrap_or(Verdict::Stable)
    } else {
        Verdict::InsufficientData
    };
    let anomaly_rate = (window.rows > 0).then(|| window.anomalies as f64 / window.rows as f64);
    DriftReport {
        verdict,
        rows: window.rows,
        anomaly_rate,
        training_anomaly_rate: reference.training_anomaly_rate,
        anomaly_rate_verdict: rate_verdict(window, reference.training_anomaly_rate, enough),
        data_quality: window.data_quality(),
        features,
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Elevated or reduced when the rate is at least 2× (at most ½×) the training rate and
/// differs from it by more than 3.29 binomial standard errors (0.1%, two-sided).
fn rate_verdict(window: &WindowStats, trained: f64, enough: bool) -> RateVerdict {
    if !enough || window.rows == 0 {
        return RateVerdict::InsufficientData;
    }
    let n = window.rows as f64;
    let rate = window.anomalies as f64 / n;
    // A training rate of 0 ("auto" threshold that labelled nothing) still has a floor of
    // one row in n so the test is defined.
    let p = trained.clamp(1.0 / n, 1.0 - 1.0 / n);
    let z = (rate - p) / (p * (1.0 - p) / n).sqrt();
    if rate >= 2.0 * p && z > 3.29 {
        RateVerdict::Elevated
    } else if rate <= 0.5 * p && z < -3.29 {
        RateVerdict::Reduced
    } else {
        RateVerdict::AsTrained
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// Standard normal draws by Box–Muller.
    fn normal(rng: &mut Xoshiro256PlusPlus) -> f64 {
        let u1: f64 = rng.random::<f64>().max(1e-300);
        let u2: f64 = rng.random();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn sample(seed: u64, n: usize, d: usize, shift: &[f64]) -> Array2<f64> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        Array2::from_shape_fn((n, d), |(_, j)| {
            normal(&mut rng) + shift.get(j).copied().unwrap_or(0.0)
        })
    }

    fn window_of(reference: &ReferenceProfile, x: &Array2<f64>) -> WindowStats {
        let mut w = WindowStats::new(reference);
        w.add_rows(reference, x.view(), 0);
        w
    }

    #[test]
    fn reference_bins_hold_the_training_percentiles() {
        let x = Array2::from_shape_fn((1000, 1), |(i, _)| i as f64);
        let r = ReferenceProfile::from_matrix(x.view(), 0.1);
        let f = &r.features[0];
        assert_eq!(f.edges.len(), 99);
        assert_eq!(f.edges[0], 9.0);
        assert_eq!(f.counts.len(), 199);
        // 0..=8 below the first edge, each edge once, 9 values between edges, 990..=999
        // above the last.
        assert!(
            f.counts.iter().skip(1).step_by(2).all(|&c| c == 1),
            "{:?}",
            f.counts
        );
        assert!(
            f.counts[..198].iter().step_by(2).all(|&c| c == 9),
            "{:?}",
            f.counts
        );
        assert_eq!(f.counts[198], 10);
        assert_eq!(
            (f.bin(9.0), f.bin(8.5), f.bin(9.5), f.bin(1e9)),
            (1, 0, 2, 198)
        );
        assert_eq!((f.min, f.max, f.n), (0.0, 999.0, 1000));
        assert!((f.mean - 499.5).abs() < 1e-9);
        assert!((f.ks_max_error() - 0.01).abs() < 1e-12);
        assert_eq!(r.check(), Ok(()));
    }

    #[test]
    fn discrete_features_get_one_bin_per_tied_value() {
        let x = Array2::from_shape_fn((900, 1), |(i, _)| (i % 3) as f64);
        let r = ReferenceProfile::from_matrix(x.view(), 0.0);
        let f = &r.features[0];
        assert_eq!(f.edges, vec![0.0, 1.0, 2.0]);
        assert_eq!(f.counts, vec![0, 300, 0, 300, 0, 300, 0]);
        // Every value is an edge: the binned KS is the exact one.
        assert_eq!(f.ks_max_error(), 0.0);
        // The same values again: nothing moved.
        let w = window_of(&r, &x);
        let (psi, ks, _) = psi_and_ks(f, &w.features[0]).unwrap();
        assert!(psi.abs() < 1e-12 && ks.abs() < 1e-12);
    }

    #[test]
    fn a_constant_feature_that_moves_is_flagged() {
        let x = Array2::from_elem((500, 1), 3.0);
        let r = ReferenceProfile::from_matrix(x.view(), 0.0);
        let moved = Array2::from_elem((500, 1), 4.0);
        let report = compare(&r, &window_of(&r, &moved), &DriftThresholds::default());
        assert_eq!(report.verdict, Verdict::Drift);
        assert!((report.features[0].ks - 1.0).abs() < 1e-12);
        assert_eq!(report.data_quality, 0.0, "every value is out of range");
    }

    #[test]
    fn few_rows_give_no_verdict() {
        let r = ReferenceProfile::from_matrix(sample(1, 2000, 2, &[]).view(), 0.05);
        let small = sample(2, 50, 2, &[5.0, 5.0]);
        let report = compare(&r, &window_of(&r, &small), &DriftThresholds::default());
        assert_eq!(report.verdict, Verdict::InsufficientData);
        assert_eq!(report.anomaly_rate_verdict, RateVerdict::InsufficientData);
        assert!(
            report.features[0].psi > 1.0,
            "the statistics are still reported"
        );
    }

    #[test]
    fn merged_windows_equal_one_window_over_all_rows() {
        let r = ReferenceProfile::from_matrix(sample(3, 1000, 3, &[]).view(), 0.1);
        let a = sample(4, 300, 3, &[0.5]);
        let b = sample(5, 200, 3, &[0.5]);
        let mut wa = window_of(&r, &a);
        wa.merge(&window_of(&r, &b));
        let all = ndarray::concatenate(Axis(0), &[a.view(), b.view()]).unwrap();
        let wall = window_of(&r, &all);
        assert_eq!(wa.rows, wall.rows);
        for (x, y) in wa.features.iter().zip(&wall.features) {
            assert_eq!(x.counts, y.counts);
            assert!((x.sum - y.sum).abs() < 1e-9 && (x.sum_sq - y.sum_sq).abs() < 1e-9);
        }
    }

    #[test]
    fn a_window_merged_with_weight_k_equals_it_merged_k_times() {
        let r = ReferenceProfile::from_matrix(sample(3, 1000, 2, &[]).view(), 0.1);
        let part = window_of(&r, &sample(8, 250, 2, &[1.0]));
        let mut weighted = WindowStats::new(&r);
        weighted.merge_weighted(&part, 3);
        let mut repeated = WindowStats::new(&r);
        for _ in 0..3 {
            repeated.merge(&part);
        }
        assert_eq!(
            (weighted.rows, weighted.anomalies),
            (750, repeated.anomalies)
        );
        for (x, y) in weighted.features.iter().zip(&repeated.features) {
            assert_eq!((&x.counts, x.n, x.missing), (&y.counts, y.n, y.missing));
            assert!((x.sum - y.sum).abs() < 1e-9 && (x.sum_sq - y.sum_sq).abs() < 1e-6);
        }
    }

    #[test]
    fn window_moments_match_the_rows() {
        let r = ReferenceProfile::from_matrix(sample(6, 1000, 1, &[]).view(), 0.1);
        let x = sample(7, 4000, 1, &[2.0]);
        let report = compare(&r, &window_of(&r, &x), &DriftThresholds::default());
        let col: Vec<f64> = x.column(0).to_vec();
        let mean = col.iter().sum::<f64>() / col.len() as f64;
        let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / col.len() as f64;
        let f = &report.features[0];
        assert!((f.current_mean.unwrap() - mean).abs() < 1e-9);
        assert!((f.current_std.unwrap() - var.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn binned_ks_is_within_its_stated_error_of_the_exact_ks() {
        let train = sample(8, 3000, 1, &[]);
        let r = ReferenceProfile::from_matrix(train.view(), 0.1);
        for (seed, shift) in [(9, 0.0), (10, 0.3), (11, 1.0)] {
            let cur = sample(seed, 2000, 1, &[shift]);
            let w = window_of(&r, &cur);
            let (_, ks, _) = psi_and_ks(&r.features[0], &w.features[0]).unwrap();
            let exact = exact_ks(&train.column(0).to_vec(), &cur.column(0).to_vec());
            let bound = r.features[0].ks_max_error();
            assert!(ks <= exact + 1e-12, "binned {ks} > exact {exact}");
            assert!(
                exact <= ks + bound + 1e-12,
                "exact {exact} > {ks} + {bound}"
            );
        }
    }

    #[test]
    fn binned_ks_is_exact_on_discrete_features() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(16);
        let train: Vec<f64> = (0..3000).map(|_| rng.random_range(0..10) as f64).collect();
        let cur: Vec<f64> = (0..2000).map(|_| rng.random_range(1..12) as f64).collect();
        let x = Array2::from_shape_vec((3000, 1), train.clone()).unwrap();
        let r = ReferenceProfile::from_matrix(x.view(), 0.0);
        assert_eq!(r.features[0].ks_max_error(), 0.0);
        let w = window_of(&r, &Array2::from_shape_vec((2000, 1), cur.clone()).unwrap());
        let (_, ks, _) = psi_and_ks(&r.features[0], &w.features[0]).unwrap();
        assert!((ks - exact_ks(&train, &cur)).abs() < 1e-12);
    }

    fn exact_ks(a: &[f64], b: &[f64]) -> f64 {
        let (mut a, mut b) = (a.to_vec(), b.to_vec());
        a.sort_by(f64::total_cmp);
        b.sort_by(f64::total_cmp);
        let (mut i, mut j, mut d) = (0, 0, 0.0f64);
        while i < a.len() && j < b.len() {
            let x = a[i].min(b[j]);
            while i < a.len() && a[i] <= x {
                i += 1;
            }
            while j < b.len() && b[j] <= x {
                j += 1;
            }
            d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
        }
        d
    }

    #[test]
    fn anomaly_rate_far_above_training_is_elevated() {
        let r = ReferenceProfile::from_matrix(sample(12, 1000, 1, &[]).view(), 0.05);
        let mut w = window_of(&r, &sample(13, 1000, 1, &[]));
        w.anomalies = 200;
        let report = compare(&r, &w, &DriftThresholds::default());
        assert_eq!(report.anomaly_rate_verdict, RateVerdict::Elevated);
        w.anomalies = 55;
        let report = compare(&r, &w, &DriftThresholds::default());
        assert_eq!(report.anomaly_rate_verdict, RateVerdict::AsTrained);
    }

    #[test]
    fn non_finite_values_count_as_missing_and_lower_quality() {
        let r = ReferenceProfile::from_matrix(sample(14, 500, 2, &[]).view(), 0.1);
        let mut w = WindowStats::new(&r);
        w.add_row(&r, ndarray::array![f64::NAN, 0.0].view());
        w.add_row(&r, ndarray::array![0.0, 0.0].view());
        assert_eq!(w.features[0].missing, 1);
        assert!((w.data_quality() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn a_profile_reads_back_exactly_and_a_broken_one_is_refused() {
        let r = ReferenceProfile::from_matrix(sample(15, 300, 3, &[]).view(), 0.1);
        assert_eq!(ReferenceProfile::from_bytes(&r.to_bytes()).unwrap(), r);
        let mut broken = r.clone();
        broken.features[1].counts.pop();
        let err = ReferenceProfile::from_bytes(&broken.to_bytes()).unwrap_err();
        assert!(err.contains("feature 1"), "{err}");
        assert!(ReferenceProfile::from_bytes(b"PNMY...").is_err());
        let bytes = r.to_bytes();
        assert!(ReferenceProfile::from_bytes(&bytes[..bytes.len() / 2]).is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(24))]

            /// Large unshifted samples: PSI near 0 and no alarm, whatever the size.
            #[test]
            fn identical_distributions_are_stable(seed in 0u64..1_000_000, n in 500usize..20_000, d in 1usize..5) {
                let r = ReferenceProfile::from_matrix(sample(seed, 5000, d, &[]).view(), 0.1);
                let report = compare(&r, &window_of(&r, &sample(seed + 1, n, d, &[])), &DriftThresholds::default());
                prop_assert_eq!(report.verdict, Verdict::Stable);
                for f in &report.features {
                    prop_assert!(f.psi < 0.05, "psi {}", f.psi);
                    prop_assert!(f.ks < 0.1, "ks {}", f.ks);
                }
            }

            /// A feature moved by at least one standard deviation is flagged as drift;
            /// the unmoved ones are not.
            #[test]
            fn shifted_features_are_flagged_and_only_they(
                seed in 0u64..1_000_000,
                shift in prop_oneof![1.0f64..4.0, -4.0f64..-1.0],
                scale_only in any::<bool>(),
            ) {
                let r = ReferenceProfile::from_matrix(sample(seed, 5000, 3, &[]).view(), 0.1);
                let mut cur = sample(seed + 1, 2000, 3, &[]);
                if scale_only {
                    cur.column_mut(1).mapv_inplace(|v| v * (1.0 + shift.abs()));
                } else {
                    cur.column_mut(1).mapv_inplace(|v| v + shift);
                }
                let report = compare(&r, &window_of(&r, &cur), &DriftThresholds::default());
                prop_assert_eq!(report.features[1].verdict, Verdict::Drift);
                prop_assert_eq!(report.features[0].verdict, Verdict::Stable);
                prop_assert_eq!(report.features[2].verdict, Verdict::Stable);
                prop_assert_eq!(report.verdict, Verdict::Drift);
            }
        }
    }
}
