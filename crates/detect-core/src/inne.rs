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
//!   sets. Higher = more anomalous, in [0, 1].
//!
//! Randomized: the sets come from generators seeded by `random_state` (drawn and stored when
//! not given) and the set's index, so a seed gives the same model on any machine and thread
//! count; our generator is not NumPy's, so single scores differ from PyOD's and only
//! ROC-AUC over seeds is compared (`bench-tools accuracy`).
//!
//! ## Cost
//! O(t ψ² d) to fit, O(t ψ d) per scored row (t sets); the model keeps t ψ centres.

use ndarray::{Array2, ArrayView2};
use rand::seq::index;
use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::params::{Checked, InneParams, MaxSamples};

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
        };
        let scores = model.score(x.view());
        Ok((model, scores))
    }

    /// Scores rows (validated, with the model's width).
    pub(crate) fn score(&self, x: ArrayView2<'_, f64>) -> Vec<f64> {
        let psi = self.psi;
        let t = self.radius.len() / psi;
        let d = self.centres.len() / (t * psi);
        // Each set's centres feature by feature (t × d × ψ), so a row's ψ distances to a
        // set are summed across the centres at once, each in feature order.
        let mut by_feature = vec![0.0; self.centres.len()];
        for (set, out) in self
            .centres
            .chunks_exact(psi * d)
            .zip(by_feature.chunks_exact_mut(psi * d))
        {
            for (c, centre) in set.chunks_exact(d).enumerate() {
                for (f, &v) in centre.iter().enumerate() {
                    out[f * psi + c] = v;
                }
            }
        }
        crate::rows::score_rows_with(x, psi, |row, dist| {
            let mut total = 0.0;
            for (s, set) in by_feature.chunks_exact(psi * d).enumerate() {
                dist.fill(0.0);
                for (&v, column) in row.iter().zip(set.chunks_exact(psi)) {
                    for (acc, &c) in dist.iter_mut().zip(column) {
                        *acc += (v - c) * (v - c);
                    }
                }
                // The covering centre of the smallest radius (the first of equal ones).
                let radius = &self.radius[s * psi..(s + 1) * psi];
                let mut best: Option<usize> = None;
                for (c, (&dc, &r)) in dist.iter().zip(radius).enumerate() {
                    if dc <= r && best.is_none_or(|b| r < radius[b]) {
                        best = Some(c);
                    }
                }
                total += best.map_or(1.0, |b| self.ratio[s * psi + b]);
            }
            total / t as f64
        })
    }

    /// Each row's per-feature shares of its score (rows validated, with the model's
    /// width). A set's term of the score (the covering centre's ratio, or 1 when no
    /// hypersphere covers the row) is split over the features in proportion to the
    /// squared differences between the row and the centre that decided it: the covering
    /// centre, or, for an uncovered row, the set's nearest centre (the hypersphere it
    /// came closest to). A row's shares are ≥ 0 and sum to its score.
    pub fn contributions(&self, x: ArrayView2<'_, f64>) -> Array2<f64> {
        let psi = self.psi;
        let t = self.radius.len() / psi;
        let d = self.centres.len() / (t * psi);
        crate::rows::contribution_rows(x, d, |row, out| {
            for s in 0..t {
                let mut best: Option<usize> = None;
                let mut nearest = (s * psi, f64::INFINITY);
                for c in 0..psi {
                    let at = s * psi + c;
                    let r = self.radius[at];
                    let dist = squared_distance(row, &self.centres[at * d..(at + 1) * d]);
                    if dist <= r && best.is_none_or(|b| r < self.radius[b]) {
                        best = Some(at);
                    }
                    if dist < nearest.1 {
                        nearest = (at, dist);
                    }
                }
                let (at, term) = best.map_or((nearest.0, 1.0), |b| (b, self.ratio[b]));
                let centre = &self.centres[at * d..(at + 1) * d];
                let total = squared_distance(row, centre);
                let weight = term / t as f64;
                if total > 0.0 {
                    for ((o, a), b) in out.iter_mut().zip(row).zip(centre) {
                        *o += (a - b) * (a - b) / total * weight;
                    }
                } else {
                    out.iter_mut().for_each(|o| *o += weight / d as f64);
                }
            }
        })
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
