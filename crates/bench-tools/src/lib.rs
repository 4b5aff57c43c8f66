//! # bench-tools: how close detect-core is to scikit-learn on real data
//!
//! The shared benchmark folder (`../shared/datasets` beside the clone; the repository does
//! not carry the data) holds classic ODDS/ADBench outlier-detection sets, a `MANIFEST.csv`
//! listing them, and `sklearn_baseline.txt`: scikit-learn 1.9.1's ROC-AUC on each, fitted
//! and scored on all rows ("Part A"). The `accuracy` binary runs our detectors the same way
//! and compares; this library holds the parts worth testing on their own: reading the
//! manifest and the baseline, and the pass/fail rules.
//!
//! The rules (issue 2), with scikit-learn's Part A numbers as the reference:
//! - isolation forest: on every set, our ROC-AUC averaged over `random_state` 0..4 is at
//!   least scikit-learn's minus [`IF_PER_SET_MARGIN`], and the mean over all sets at least
//!   scikit-learn's mean minus [`IF_MEAN_MARGIN`] (the forests are random and our generator
//!   is not NumPy's, so only the averages can be compared);
//! - LOF (`n_neighbors` = 20): ROC-AUC within [`LOF_MARGIN`] of scikit-learn's on every set
//!   (exact neighbours make LOF deterministic; only the order among equidistant neighbours
//!   and the last digits of sums may differ).
//!
//! - PyOD's deterministic detectors (ECOD, COPOD, HBOS, KNN, PCA, one-component GMM;
//!   PyOD's defaults): ROC-AUC
//!   within [`PYOD_MARGIN`] of PyOD 3.6.7's on every set `pyod_baseline.csv` has a figure
//!   for (its `roc_auc` column; the file and the script that made it sit beside the data);
//!   the randomized ones (INNE, MCD, CBLOF): our ROC-AUC averaged over the seeds at least PyOD's minus
//!   [`PYOD_RANDOMIZED_MARGIN`] (MCD and CBLOF draw NumPy's generator as scikit-learn
//!   does, so each seed usually gives PyOD's own figure; INNE's generator is not NumPy's).
//!
//! The baselines print four decimals, so every comparison carries up to 5e-5 of rounding.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Largest allowed shortfall of our isolation-forest ROC-AUC on one set.
pub const IF_PER_SET_MARGIN: f64 = 0.03;
/// Largest allowed shortfall of our isolation-forest ROC-AUC averaged over all sets.
pub const IF_MEAN_MARGIN: f64 = 0.01;
/// Largest allowed |our LOF ROC-AUC − scikit-learn's| on one set.
pub const LOF_MARGIN: f64 = 0.005;
/// Largest allowed |our ROC-AUC − PyOD's| for a deterministic PyOD detector on one set.
pub const PYOD_MARGIN: f64 = 0.005;

/// PyOD's deterministic detectors: our algorithm name and PyOD's class name (the
/// `detector` column of `pyod_baseline.csv`).
pub const PYOD_DETECTORS: [(&str, &str); 6] = [
    ("ecod", "ECOD"),
    ("copod", "COPOD"),
    ("hbos", "HBOS"),
    ("knn", "KNN"),
    ("pca", "PCA"),
    ("gmm", "GMM"),
];

/// PyOD's randomized detectors: our mean ROC-AUC over the seeds may not fall more than
/// [`PYOD_RANDOMIZED_MARGIN`] below PyOD's mean over the same seeds
/// (`bench/pyod_randomized_baseline.csv`; where it has no line, `pyod_baseline.csv`'s
/// `random_state=0` figure).
pub const PYOD_RANDOMIZED: [(&str, &str); 3] =
    [("inne", "INNE"), ("mcd", "MCD"), ("cblof", "CBLOF")];
/// Largest allowed shortfall of a randomized PyOD detector's mean ROC-AUC on one set.
pub const PYOD_RANDOMIZED_MARGIN: f64 = 0.01;

/// (randomized detector, dataset) pairs whose shortfall is reported but does not fail the
/// check, and why (see BENCHMARKS.md).
pub const PYOD_NOT_GATED: [(&str, &str, &str); 1] = [(
    "mcd",
    "mammography.csv",
    "180 of the 370 merged FastMCD candidates are singular (log-det -inf) and scikit-learn \
     takes the first in NumPy's unstable argsort order; on seed 0 that is another support \
     than ours (0.8060 vs 0.5647), and scikit-learn under a stable sort reaches ours",
)];

/// PyOD's ROC-AUC keyed by (dataset as `pyod_baseline.csv` names it, PyOD class name).
pub type PyodBaseline = BTreeMap<(String, String), f64>;

/// A CSV's non-blank lines after its header, and the positions of the named columns.
fn csv_columns<'a, const N: usize>(
    text: &'a str,
    what: &str,
    names: [&str; N],
) -> Result<(impl Iterator<Item = &'a str>, [usize; N])> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .with_context(|| format!("{what} is empty"))?
        .split(',')
        .collect();
    let mut at = [0; N];
    for (slot, name) in at.iter_mut().zip(names) {
        *slot = header
            .iter()
            .position(|h| h.trim() == name)
            .with_context(|| format!("{what} has no '{name}' column"))?;
    }
    Ok((lines, at))
}

/// Reads `pyod_baseline.csv` (`dataset,n,d,detector,roc_auc,…`); rows without a ROC-AUC
/// (a fit that failed or was capped) are left out.
///
/// # Errors
/// A missing column or a ROC-AUC that is not a number.
pub fn parse_pyod_baseline(text: &str) -> Result<PyodBaseline> {
    parse_roc_auc_table(text, "pyod_baseline.csv", "roc_auc")
}

/// Reads `bench/pyod_randomized_baseline.csv` (`dataset,detector,seeds,roc_auc_mean,…`):
/// PyOD's randomized detectors averaged over `random_state` 0..seeds, written by
/// `bench/pyod_randomized_baseline.py`.
///
/// # Errors
/// A missing column or a ROC-AUC that is not a number.
pub fn parse_pyod_randomized_baseline(text: &str) -> Result<PyodBaseline> {
    parse_roc_auc_table(text, "pyod_randomized_baseline.csv", "roc_auc_mean")
}

fn parse_roc_auc_table(text: &str, what: &str, roc_column: &str) -> Result<PyodBaseline> {
    let (lines, [dataset, detector, roc]) =
        csv_columns(text, what, ["dataset", "detector", roc_column])?;
    let last = dataset.max(detector).max(roc);
    let mut out = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.splitn(last + 2, ',').collect();
        if fields.len() <= last || fields[roc].trim().is_empty() {
            continue;
        }
        let value = fields[roc]
            .trim()
            .parse::<f64>()
            .with_context(|| format!("{what}: '{}' is not a ROC-AUC", fields[roc]))?;
        out.insert(
            (
                fields[dataset].trim().into(),
                fields[detector].trim().into(),
            ),
            value,
        );
    }
    Ok(out)
}

/// The name `pyod_baseline.csv` gives a manifest file: without `.csv` / `.csv.gz`.
pub fn pyod_dataset_name(file: &str) -> &str {
    file.trim_end_matches(".gz").trim_end_matches(".csv")
}

/// One PyOD detector on one dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct PyodOutcome {
    /// Our algorithm name.
    pub algorithm: &'static str,
    pub roc_auc: f64,
    /// PyOD's figure, where the baseline has one.
    pub pyod: Option<f64>,
    /// Wall time of our fit (which scores the training rows), seconds (for a randomized
    /// detector, the mean over the seeds).
    pub seconds: f64,
    /// Randomized: `roc_auc` is the mean over the seeds, held to the one-sided rule.
    pub randomized: bool,
}

impl PyodOutcome {
    /// The broken rule, if any.
    fn failure(&self, file: &str) -> Option<String> {
        let theirs = self.pyod?;
        let diff = self.roc_auc - theirs;
        if self.randomized && diff < -PYOD_RANDOMIZED_MARGIN {
            Some(format!(
                "{file}: {} mean ROC-AUC {:.4} is more than {PYOD_RANDOMIZED_MARGIN} below PyOD's {theirs:.4}",
                self.algorithm, self.roc_auc
            ))
        } else if !self.randomized && diff.abs() > PYOD_MARGIN {
            Some(format!(
                "{file}: {} ROC-AUC {:.4} differs from PyOD's {theirs:.4} by more than {PYOD_MARGIN}",
                self.algorithm, self.roc_auc
            ))
        } else {
            None
        }
    }
}

/// One dataset as `MANIFEST.csv` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    pub file: String,
    pub n_samples: usize,
    pub n_features: usize,
}

/// Reads `MANIFEST.csv`: a header naming `file`, `n_samples` and `n_features`, then one
/// line per dataset. Only those columns are read (later ones hold free text).
///
/// # Errors
/// A missing column or a line whose counts are not integers.
pub fn parse_manifest(text: &str) -> Result<Vec<ManifestEntry>> {
    let (lines, [file, n, d]) =
        csv_columns(text, "MANIFEST.csv", ["file", "n_samples", "n_features"])?;
    let last = file.max(n).max(d);
    lines
        .enumerate()
        .map(|(i, line)| {
            // The columns we read come before any quoted free text, so a plain split works.
            let fields: Vec<&str> = line.splitn(last + 2, ',').collect();
            if fields.len() <= last {
                bail!("MANIFEST.csv line {}: too few fields", i + 2);
            }
            let int = |at: usize| {
                fields[at].trim().parse::<usize>().with_context(|| {
                    format!(
                        "MANIFEST.csv line {}: '{}' is not a count",
                        i + 2,
                        fields[at]
                    )
                })
            };
            Ok(ManifestEntry {
                file: fields[file].trim().to_string(),
                n_samples: int(n)?,
                n_features: int(d)?,
            })
        })
        .collect()
}

/// scikit-learn's Part A ROC-AUCs for one dataset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// Isolation forest, mean over `random_state` 0..4.
    pub isolation_forest: f64,
    /// LOF, `n_neighbors` = 20, raw features.
    pub lof: f64,
}

/// Reads the `A:IF_roc` and `A:LOF_roc` columns of `sklearn_baseline.txt`, keyed by file.
///
/// The file is a whitespace-aligned table: comment lines start with `#`, the header line
/// starts with `file`, a rule of dashes follows, then one line per dataset.
///
/// # Errors
/// No header, a missing column, or a value that is not a number.
pub fn parse_baseline(text: &str) -> Result<BTreeMap<String, Baseline>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .by_ref()
        .find(|l| l.split_whitespace().next() == Some("file"))
        .context("sklearn_baseline.txt: no header line starting with 'file'")?
        .split_whitespace()
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("sklearn_baseline.txt: no '{name}' column"))
    };
    let (if_at, lof_at) = (column("A:IF_roc")?, column("A:LOF_roc")?);
    let mut out = BTreeMap::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // The table ends at the first blank or comment line; the rule is all dashes.
        if fields.is_empty() || fields[0].starts_with('#') {
            break;
        }
        if fields[0].chars().all(|c| c == '-') {
            continue;
        }
        if fields.len() != header.len() {
            bail!(
                "sklearn_baseline.txt: line for {} has {} fields, the header {}",
                fields[0],
                fields.len(),
                header.len()
            );
        }
        let number = |at: usize| {
            fields[at].parse::<f64>().with_context(|| {
                format!(
                    "sklearn_baseline.txt: {} {}: '{}'",
                    fields[0], header[at], fields[at]
                )
            })
        };
        out.insert(
            fields[0].to_string(),
            Baseline {
                isolation_forest: number(if_at)?,
                lof: number(lof_at)?,
            },
        );
    }
    if out.is_empty() {
        bail!("sklearn_baseline.txt: no dataset lines");
    }
    Ok(out)
}

/// Our numbers on one dataset beside scikit-learn's.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub file: String,
    pub n_samples: usize,
    pub n_features: usize,
    /// Our isolation-forest ROC-AUC, mean over the seeds.
    pub isolation_forest: f64,
    /// Our isolation-forest ROC-AUC per seed.
    pub isolation_forest_per_seed: Vec<f64>,
    pub lof: f64,
    pub sklearn: Baseline,
    /// Mean wall time of one isolation-forest fit + score, seconds.
    pub isolation_forest_seconds: f64,
    /// Wall time of the LOF fit (which scores the training rows), seconds.
    pub lof_seconds: f64,
    /// PyOD's deterministic detectors, in [`PYOD_DETECTORS`] order.
    pub pyod: Vec<PyodOutcome>,
}

impl Outcome {
    pub fn isolation_forest_difference(&self) -> f64 {
        self.isolation_forest - self.sklearn.isolation_forest
    }

    pub fn lof_difference(&self) -> f64 {
        self.lof - self.sklearn.lof
    }
}

/// Applies the rules in the crate docs; returns one line per broken rule (empty = pass).
pub fn failures(outcomes: &[Outcome]) -> Vec<String> {
    let mut out = Vec::new();
    for o in outcomes {
        if o.isolation_forest_difference() < -IF_PER_SET_MARGIN {
            out.push(format!(
                "{}: isolation forest ROC-AUC {:.4} is more than {IF_PER_SET_MARGIN} below scikit-learn's {:.4}",
                o.file, o.isolation_forest, o.sklearn.isolation_forest
            ));
        }
        if o.lof_difference().abs() > LOF_MARGIN {
            out.push(format!(
                "{}: LOF ROC-AUC {:.4} differs from scikit-learn's {:.4} by more than {LOF_MARGIN}",
                o.file, o.lof, o.sklearn.lof
            ));
        }
        out.extend(
            o.pyod
                .iter()
                .filter(|p| not_gated(p.algorithm, &o.file).is_none())
                .filter_map(|p| p.failure(&o.file)),
        );
    }
    if let Some((ours, theirs)) = isolation_forest_means(outcomes)
        && ours < theirs - IF_MEAN_MARGIN
    {
        out.push(format!(
            "isolation forest ROC-AUC over all sets {ours:.4} is more than {IF_MEAN_MARGIN} below scikit-learn's {theirs:.4}"
        ));
    }
    out
}

/// Why the shortfall of `algorithm` on `file` is not gated, if it is not.
fn not_gated(algorithm: &str, file: &str) -> Option<&'static str> {
    PYOD_NOT_GATED
        .iter()
        .find(|(a, f, _)| *a == algorithm && *f == file)
        .map(|(_, _, why)| *why)
}

/// The shortfalls [`PYOD_NOT_GATED`] exempts, each with why it does not fail the check.
pub fn ungated_shortfalls(outcomes: &[Outcome]) -> Vec<String> {
    let mut out = Vec::new();
    for o in outcomes {
        for p in &o.pyod {
            if let Some(why) = not_gated(p.algorithm, &o.file)
                && let Some(f) = p.failure(&o.file)
            {
                out.push(format!("{f} (not gated: {why})"));
            }
        }
    }
    out
}

/// Mean isolation-forest ROC-AUC over all sets: (ours, scikit-learn's).
pub fn isolation_forest_means(outcomes: &[Outcome]) -> Option<(f64, f64)> {
    if outcomes.is_empty() {
        return None;
    }
    let n = outcomes.len() as f64;
    Some((
        outcomes.iter().map(|o| o.isolation_forest).sum::<f64>() / n,
        outcomes
            .iter()
            .map(|o| o.sklearn.isolation_forest)
            .sum::<f64>()
            / n,
    ))
}

/// Mean LOF ROC-AUC over all sets: (ours, scikit-learn's).
pub fn lof_means(outcomes: &[Outcome]) -> Option<(f64, f64)> {
    if outcomes.is_empty() {
        return None;
    }
    let n = outcomes.len() as f64;
    Some((
        outcomes.iter().map(|o| o.lof).sum::<f64>() / n,
        outcomes.iter().map(|o| o.sklearn.lof).sum::<f64>() / n,
    ))
}

/// The comparison as a Markdown table (for BENCHMARKS.md), with a mean row.
pub fn markdown_table(outcomes: &[Outcome]) -> String {
    let mut s = String::from(
        "| dataset | n | d | IF ours | IF sklearn | diff | LOF ours | LOF sklearn | diff | IF s (fit+score) | LOF s |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for o in outcomes {
        s.push_str(&format!(
            "| {} | {} | {} | {:.4} | {:.4} | {:+.4} | {:.4} | {:.4} | {:+.4} | {:.3} | {:.3} |\n",
            o.file,
            o.n_samples,
            o.n_features,
            o.isolation_forest,
            o.sklearn.isolation_forest,
            signed(o.isolation_forest_difference()),
            o.lof,
            o.sklearn.lof,
            signed(o.lof_difference()),
            o.isolation_forest_seconds,
            o.lof_seconds,
        ));
    }
    if let (Some((if_ours, if_sk)), Some((lof_ours, lof_sk))) =
        (isolation_forest_means(outcomes), lof_means(outcomes))
    {
        s.push_str(&format!(
            "| **mean** | | | {if_ours:.4} | {if_sk:.4} | {:+.4} | {lof_ours:.4} | {lof_sk:.4} | {:+.4} | | |\n",
            signed(if_ours - if_sk),
            signed(lof_ours - lof_sk),
        ));
    }
    s.push_str(&pyod_table(outcomes));
    s
}

/// PyOD's detectors: our ROC-AUC, PyOD's and the difference per set, then our fit times.
fn pyod_table(outcomes: &[Outcome]) -> String {
    let mut s = String::from("\n| dataset |");
    let mut rule = String::from("|---|");
    for (ours, theirs) in PYOD_DETECTORS.iter().chain(&PYOD_RANDOMIZED) {
        s.push_str(&format!(" {ours} | {theirs} (PyOD) | diff |"));
        rule.push_str("---:|---:|---:|");
    }
    s.push_str(&format!("\n{rule}\n"));
    for o in outcomes {
        s.push_str(&format!("| {} |", o.file));
        for p in &o.pyod {
            match p.pyod {
                Some(t) => s.push_str(&format!(
                    " {:.4} | {t:.4} | {:+.4} |",
                    p.roc_auc,
                    signed(p.roc_auc - t)
                )),
                None => s.push_str(&format!(" {:.4} | – | |", p.roc_auc)),
            }
        }
        s.push('\n');
    }
    s.push_str("\n| dataset |");
    let mut rule = String::from("|---|");
    for (ours, _) in PYOD_DETECTORS.iter().chain(&PYOD_RANDOMIZED) {
        s.push_str(&format!(" {ours} s |"));
        rule.push_str("---:|");
    }
    s.push_str(&format!("\n{rule}\n"));
    for o in outcomes {
        s.push_str(&format!("| {} |", o.file));
        for p in &o.pyod {
            s.push_str(&format!(" {:.3} |", p.seconds));
        }
        s.push('\n');
    }
    s
}

/// A difference rounded to the 4 decimals shown, without a "-0.0000".
fn signed(d: f64) -> f64 {
    (d * 1e4).round() / 1e4 + 0.0
}

/// The comparison as JSON: every dataset, the means, the margins and the failures.
pub fn json_report(outcomes: &[Outcome]) -> Value {
    let sets: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            json!({
                "file": o.file,
                "n_samples": o.n_samples,
                "n_features": o.n_features,
                "isolation_forest": {
                    "roc_auc": o.isolation_forest,
                    "roc_auc_per_seed": o.isolation_forest_per_seed,
                    "sklearn_roc_auc": o.sklearn.isolation_forest,
                    "difference": o.isolation_forest_difference(),
                    "seconds_per_fit": o.isolation_forest_seconds,
                },
                "lof": {
                    "roc_auc": o.lof,
                    "sklearn_roc_auc": o.sklearn.lof,
                    "difference": o.lof_difference(),
                    "seconds": o.lof_seconds,
                },
                "pyod": o.pyod.iter().map(|p| json!({
                    "algorithm": p.algorithm,
                    "roc_auc": p.roc_auc,
                    "pyod_roc_auc": p.pyod,
                    "difference": p.pyod.map(|t| p.roc_auc - t),
                    "seconds": p.seconds,
                    "randomized": p.randomized,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let pair = |m: Option<(f64, f64)>| m.map(|(ours, sk)| json!({"ours": ours, "sklearn": sk}));
    json!({
        "datasets": sets,
        "isolation_forest_mean": pair(isolation_forest_means(outcomes)),
        "lof_mean": pair(lof_means(outcomes)),
        "margins": {
            "isolation_forest_per_set": IF_PER_SET_MARGIN,
            "isolation_forest_mean": IF_MEAN_MARGIN,
            "lof": LOF_MARGIN,
            "pyod": PYOD_MARGIN,
            "pyod_randomized": PYOD_RANDOMIZED_MARGIN,
        },
        "failures": failures(outcomes),
    })
}

/// Reads a dataset folder's `pyod_baseline.csv`.
///
/// # Errors
/// A missing or malformed file.
pub fn load_pyod_baseline(dir: &Path) -> Result<PyodBaseline> {
    let path = dir.join("pyod_baseline.csv");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    parse_pyod_baseline(&text)
}

/// Reads a dataset folder's manifest and baseline, checking every listed file has a
/// baseline line and exists.
///
/// # Errors
/// A missing or malformed `MANIFEST.csv` or `sklearn_baseline.txt`, a dataset without a
/// baseline line, or a listed file that is not there.
pub fn load_folder(dir: &Path) -> Result<(Vec<ManifestEntry>, BTreeMap<String, Baseline>)> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
    };
    let manifest = parse_manifest(&read("MANIFEST.csv")?)?;
    let baseline = parse_baseline(&read("sklearn_baseline.txt")?)?;
    for entry in &manifest {
        if !baseline.contains_key(&entry.file) {
            bail!("sklearn_baseline.txt has no line for {}", entry.file);
        }
        if !dir.join(&entry.file).is_file() {
            bail!(
                "{} is listed in MANIFEST.csv but missing",
                dir.join(&entry.file).display()
            );
        }
    }
    Ok((manifest, baseline))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASELINE: &str = "\
# sklearn baseline  python 3.11.7
# A = transductive
file                         n    d   out | A:IF_roc    ±sd A:IF_ap A:LOF_roc A:LOF_ap | IF_s
-------------------------------------------------------------------------------------------
annthyroid.csv            7200    6   534 |   0.8274 0.0137  0.3150    0.7373   0.2055 |  0.131
http.csv.gz             567498    3  2211 |   0.9995 0.0005  0.8990    0.3527   0.0065 |  2.053

# IsolationForest(...) on the largest file http.csv.gz (567498 x 3), single thread:
";

    fn outcome(file: &str, ours: (f64, f64), sklearn: (f64, f64)) -> Outcome {
        Outcome {
            file: file.into(),
            n_samples: 10,
            n_features: 2,
            isolation_forest: ours.0,
            isolation_forest_per_seed: vec![ours.0],
            lof: ours.1,
            sklearn: Baseline {
                isolation_forest: sklearn.0,
                lof: sklearn.1,
            },
            isolation_forest_seconds: 0.0,
            lof_seconds: 0.0,
            pyod: Vec::new(),
        }
    }

    #[test]
    fn baseline_columns_are_found_by_name() {
        let b = parse_baseline(BASELINE).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(
            b["http.csv.gz"],
            Baseline {
                isolation_forest: 0.9995,
                lof: 0.3527
            }
        );
        assert_eq!(b["annthyroid.csv"].lof, 0.7373);
    }

    #[test]
    fn manifest_reads_file_and_shape_before_free_text() {
        let m = parse_manifest(
            "file,n_samples,n_features,note\nglass.csv,214,7,\"ADBench variant, 7 features\"\n",
        )
        .unwrap();
        assert_eq!(
            m,
            vec![ManifestEntry {
                file: "glass.csv".into(),
                n_samples: 214,
                n_features: 7
            }]
        );
    }

    #[test]
    fn a_forest_far_below_scikit_learn_fails_one_set_and_the_mean() {
        let f = failures(&[outcome("a", (0.80, 0.5), (0.84, 0.5))]);
        assert_eq!(f.len(), 2, "{f:?}");
    }

    #[test]
    fn a_small_shortfall_on_one_set_can_pass() {
        let f = failures(&[
            outcome("a", (0.82, 0.5), (0.84, 0.5)),
            outcome("b", (0.95, 0.5), (0.94, 0.5)),
        ]);
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn pyod_baseline_rows_are_keyed_by_dataset_and_class_and_failed_fits_left_out() {
        let b = parse_pyod_baseline(
            "dataset,n,d,detector,roc_auc,avg_precision,fit_seconds,note\n\
             glass,214,7,ECOD,0.7046,0.1859,0.0040,\n\
             http,567498,3,MCD,,,,\"skipped: fit did not finish, killed\"\n",
        )
        .unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[&("glass".to_string(), "ECOD".to_string())], 0.7046);
        assert_eq!(pyod_dataset_name("http.csv.gz"), "http");
        assert_eq!(pyod_dataset_name("glass.csv"), "glass");
    }

    #[test]
    fn a_pyod_detector_must_match_within_the_margin_either_way() {
        let with = |roc_auc| {
            let mut o = outcome("a", (0.9, 0.5), (0.9, 0.5));
            o.pyod.push(PyodOutcome {
                algorithm: "ecod",
                roc_auc,
                pyod: Some(0.8),
                seconds: 0.0,
                randomized: false,
            });
            failures(&[o])
        };
        assert!(with(0.804).is_empty());
        assert!(with(0.796).is_empty());
        assert_eq!(with(0.806).len(), 1);
        assert_eq!(with(0.794).len(), 1);
    }

    #[test]
    fn a_randomized_pyod_detector_may_only_fall_short_by_its_margin() {
        let with = |roc_auc| {
            let mut o = outcome("a", (0.9, 0.5), (0.9, 0.5));
            o.pyod.push(PyodOutcome {
                algorithm: "inne",
                roc_auc,
                pyod: Some(0.8),
                seconds: 0.0,
                randomized: true,
            });
            failures(&[o])
        };
        assert!(with(0.95).is_empty());
        assert!(with(0.791).is_empty());
        assert_eq!(with(0.789).len(), 1);
    }

    #[test]
    fn only_a_listed_detector_and_set_is_exempt() {
        let short = |file, algorithm| {
            let mut o = outcome(file, (0.9, 0.5), (0.9, 0.5));
            o.pyod.push(PyodOutcome {
                algorithm,
                roc_auc: 0.5,
                pyod: Some(0.8),
                seconds: 0.0,
                randomized: true,
            });
            o
        };
        let exempt = [short("mammography.csv", "mcd")];
        assert!(failures(&exempt).is_empty());
        assert_eq!(ungated_shortfalls(&exempt).len(), 1);
        for gated in [
            short("cardio.csv", "mcd"),
            short("mammography.csv", "cblof"),
        ] {
            assert_eq!(failures(std::slice::from_ref(&gated)).len(), 1);
            assert!(ungated_shortfalls(&[gated]).is_empty());
        }
    }

    #[test]
    fn lof_must_match_within_the_margin_either_way() {
        assert!(failures(&[outcome("a", (0.9, 0.504), (0.9, 0.5))]).is_empty());
        assert_eq!(failures(&[outcome("a", (0.9, 0.494), (0.9, 0.5))]).len(), 1);
    }
}
