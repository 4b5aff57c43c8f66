//! `pynomaly detect FILE`: fit a detector on a file and label every row.
//!
//! Reads CSV, gzip CSV or JSON Lines (with or without a header; a `label` column, or the
//! one named by `--label-column`, is kept out of the features), fits the detector on all
//! rows, and writes `row,prediction,score` — one line per input row, in order, `row`
//! 0-based, `prediction` −1 for an anomaly and 1 otherwise, `score` higher = more anomalous
//! with every digit needed to read back the same `f64` — to `--output` or stdout. A summary
//! goes to stderr; with labels (1 = outlier) it includes ROC-AUC and average precision,
//! which is how an operator checks a detector on their own data.
//!
//! With `--explain` each line gains a fourth field, `explanation`: the row's top
//! `--top-k` features (default 3) as `name:share` pairs joined by `;` (shares of the row's
//! anomaly; over all of a row's features they sum to 1), named by the file's header, else
//! `x0`, `x1`, … (`detect_core::explain`).
//!
//! Memory: the feature matrix is the only large thing held while fitting; it is freed
//! before the output is written, and labels are kept as one byte per row.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::builder::PossibleValuesParser;
use data_source::{LabelColumn, ReadOptions, Table};
use detect_core::metrics::RankingMetrics;
use detect_core::params::ALGORITHM_NAMES;
use detect_core::{Detection, DetectorConfig, Explanations, FeatureContribution};
use serde_json::{Map, Value};

use super::InputError;

/// Arguments of `pynomaly detect`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    pynomaly detect http.csv.gz --output scores.csv\n  \
    pynomaly detect data.jsonl --algorithm lof --param n_neighbors=35 --contamination 0.05")]
pub struct DetectArgs {
    /// Input file: CSV, gzip CSV or JSON Lines (gzip is recognised by content); `-` reads stdin
    pub file: PathBuf,

    /// Detector to fit
    #[arg(long, default_value = "isolation_forest", value_parser = PossibleValuesParser::new(ALGORITHM_NAMES))]
    pub algorithm: String,

    /// Expected share of anomalies: `auto` (scikit-learn's fixed threshold) or a number in (0, 0.5]
    #[arg(long, default_value = "auto", value_name = "auto|FRACTION")]
    pub contamination: String,

    /// Seed of the isolation forest (drawn at random and reported when absent)
    #[arg(long, value_name = "N")]
    pub random_state: Option<u64>,

    /// An algorithm parameter, e.g. `n_estimators=200` or `max_samples=auto` (repeatable);
    /// values are read as JSON when they parse (numbers, true/false), as text otherwise
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, Value)>,

    /// Column holding the labels (1 = outlier); it must exist. Default: a column named `label`, if any
    #[arg(long, value_name = "NAME")]
    pub label_column: Option<String>,

    /// Where to write `row,prediction,score` [default: stdout]
    #[arg(long, short, value_name = "OUT.csv")]
    pub output: Option<PathBuf>,

    /// Add an `explanation` column: each row's top features and their shares of its anomaly
    #[arg(long)]
    pub explain: bool,

    /// Features per row with --explain, 1 to the number of features [default: 3, or all when fewer]
    #[arg(long, value_name = "N", requires = "explain", value_parser = clap::value_parser!(u64).range(1..))]
    pub top_k: Option<u64>,
}

/// `name=value`, the value as JSON when it parses, else as a string.
pub(crate) fn parse_param(s: &str) -> Result<(String, Value), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got '{s}'"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("expected NAME=VALUE, got '{s}'"));
    }
    let value = value.trim();
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((name.to_string(), value))
}

/// Builds the detector configuration from the arguments, rejecting unknown parameters and
/// out-of-range values before any data is read.
///
/// # Errors
/// [`InputError`] or an input [`detect_core::DetectError`].
pub fn config(args: &DetectArgs) -> anyhow::Result<DetectorConfig> {
    detector_config(
        &args.algorithm,
        &args.contamination,
        args.random_state,
        &args.params,
    )
}

/// The detector configuration of `--algorithm`, `--contamination`, `--random-state` and
/// `--param` (shared by `detect` and `stream`).
///
/// # Errors
/// [`InputError`] or an input [`detect_core::DetectError`].
pub(crate) fn detector_config(
    algorithm: &str,
    contamination: &str,
    random_state: Option<u64>,
    param_list: &[(String, Value)],
) -> anyhow::Result<DetectorConfig> {
    let mut params = Map::new();
    for (name, value) in param_list {
        if params.insert(name.clone(), value.clone()).is_some() {
            return Err(InputError(format!("parameter '{name}' is given twice")).into());
        }
    }
    if let Some(seed) = random_state {
        if params.contains_key("random_state") {
            return Err(InputError(
                "random_state is given both as --random-state and as --param".into(),
            )
            .into());
        }
        params.insert("random_state".into(), Value::from(seed));
    }
    let contamination = Value::String(contamination.to_string());
    Ok(DetectorConfig::from_json(
        algorithm,
        &params,
        &contamination,
    )?)
}

/// Runs `pynomaly detect`.
///
/// # Errors
/// Bad parameters or input (exit status 2), or an output that cannot be written.
pub fn run(args: &DetectArgs) -> anyhow::Result<()> {
    let start = Instant::now();
    let config = config(args)?;

    let options = ReadOptions {
        label: match &args.label_column {
            Some(name) => LabelColumn::Required(name.clone()),
            None => LabelColumn::default(),
        },
        ..ReadOptions::default()
    };
    let table = if args.file == Path::new("-") {
        data_source::read_all(io::stdin(), &options)
    } else {
        data_source::read_path(&args.file, &options)
    }
    .with_context(|| format!("reading {}", args.file.display()))?;
    let read_time = start.elapsed();

    let Table {
        features,
        labels,
        feature_names,
    } = table;
    // 1 = outlier, anything else inlier.
    let labels = labels.map(|l| Labels {
        outlier: l.outlier_flags(),
        unusual: l.other_values() > 0,
    });
    let (n_rows, n_features) = features.dim();

    let top_k = match args.top_k {
        _ if !args.explain => None,
        None => Some(detect_core::explain::DEFAULT_TOP_K.min(n_features)),
        Some(k) if k as usize <= n_features => Some(k as usize),
        Some(k) => {
            return Err(InputError(format!(
                "--top-k {k}: accepted 1..={n_features} (the file has {n_features} features)"
            ))
            .into());
        }
    };

    let fit_start = Instant::now();
    let (fit, explained) = match top_k {
        // The matrix is handed over: the training scores are written into its memory.
        None => (detect_core::fit_owned(&config, features)?, None),
        Some(k) => {
            let fit = detect_core::fit(&config, features.view())?;
            let explained = fit.model.explain(features.view(), k)?;
            drop(features);
            (fit, Some(explained))
        }
    };
    let fit_time = fit_start.elapsed();
    let names: Vec<String> = match &feature_names {
        Some(names) if names.len() == n_features => names.clone(),
        _ => (0..n_features)
            .map(detect_core::explain::column_name)
            .collect(),
    };
    let explained = explained.as_ref().map(|rows| Explained {
        rows,
        names: &names,
    });

    // Writing and the metrics only read the scores: do both at once.
    let after_fit = Instant::now();
    let ((written, write_time), (metrics, metrics_time)) = rayon::join(
        || {
            let written = write_scores(args.output.as_deref(), &fit.training, explained);
            (written, after_fit.elapsed())
        },
        || {
            let metrics = labels
                .as_ref()
                .map(|l| detect_core::metrics::ranking_metrics(&l.outlier, &fit.training.scores));
            (metrics, after_fit.elapsed())
        },
    );
    written?;

    let summary = Summary {
        file: &args.file,
        n_rows,
        n_features,
        feature_names: feature_names.as_deref(),
        config: fit.model.config(),
        detection: &fit.training,
        warnings: &fit.warnings,
        labels: labels.as_ref(),
        metrics,
        times: [
            read_time,
            fit_time,
            write_time,
            metrics_time,
            start.elapsed(),
        ],
    };
    eprint!("{summary}");
    Ok(())
}

/// Labels as outlier flags, with a note when values other than 0 and 1 were seen.
struct Labels {
    outlier: Vec<bool>,
    unusual: bool,
}

/// Rows per block when formatting the output in parallel.
const WRITE_BLOCK_ROWS: usize = 16 * 1024;

/// Each row's explanation and the features' names.
#[derive(Clone, Copy)]
struct Explained<'a> {
    rows: &'a Explanations,
    names: &'a [String],
}

/// Writes `row,prediction,score` lines (and `explanation`) to `path` or stdout.
fn write_scores(
    path: Option<&Path>,
    detection: &Detection,
    explained: Option<Explained<'_>>,
) -> anyhow::Result<()> {
    let result = match path {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            write_csv(file, detection, explained)
                .with_context(|| format!("writing {}", path.display()))
        }
        None => write_csv(io::stdout(), detection, explained).context("writing to stdout"),
    };
    match result {
        // `pynomaly detect big.csv | head` is not a failure.
        Err(e)
            if e.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Formats windows of rows on the rayon pool and writes them in order, writing one window
/// while the next is formatted; memory stays at two windows whatever the row count.
fn write_csv(
    mut out: impl Write + Send,
    detection: &Detection,
    explained: Option<Explained<'_>>,
) -> io::Result<()> {
    use rayon::prelude::*;

    out.write_all(if explained.is_some() {
        b"row,prediction,score,explanation\n".as_slice()
    } else {
        b"row,prediction,score\n".as_slice()
    })?;
    let n = detection.scores.len();
    let window = WRITE_BLOCK_ROWS * rayon::current_num_threads().max(1);
    let format_window = |start: usize, buffers: &mut Vec<Vec<u8>>| {
        let end = (start + window).min(n);
        buffers.resize_with(
            end.saturating_sub(start).div_ceil(WRITE_BLOCK_ROWS),
            Vec::new,
        );
        buffers.par_iter_mut().enumerate().for_each(|(b, buf)| {
            let from = start + b * WRITE_BLOCK_ROWS;
            let to = (from + WRITE_BLOCK_ROWS).min(end);
            buf.clear();
            format_rows(
                buf,
                from,
                &detection.predictions[from..to],
                &detection.scores[from..to],
            );
            if let Some(e) = explained {
                explain_rows(buf, (from..to).map(|i| e.rows.row(i)), e.names);
            }
        });
    };
    let (mut ready, mut next) = (Vec::new(), Vec::new());
    format_window(0, &mut ready);
    let mut start = window;
    while !ready.is_empty() {
        let (written, ()) = rayon::join(
            || ready.iter().try_for_each(|buf| out.write_all(buf)),
            || format_window(start, &mut next),
        );
        written?;
        std::mem::swap(&mut ready, &mut next);
        start += window;
    }
    out.flush()
}

/// Appends each row's explanation to the lines [`format_rows`] wrote into `buf` (one per
/// row, in order).
fn explain_rows<'a>(
    buf: &mut Vec<u8>,
    mut rows: impl Iterator<Item = &'a [FeatureContribution]>,
    names: &[String],
) {
    let lines = std::mem::take(buf);
    for line in lines.split_inclusive(|&b| b == b'\n') {
        buf.extend_from_slice(&line[..line.len() - 1]);
        if let Some(row) = rows.next() {
            buf.push(b',');
            buf.extend_from_slice(detect_core::explain::csv_cell(row, names).as_bytes());
        }
        buf.push(b'\n');
    }
}

fn format_rows(buf: &mut Vec<u8>, first_row: usize, predictions: &[i8], scores: &[f64]) {
    let mut int = itoa::Buffer::new();
    let mut float = ryu::Buffer::new();
    for (i, (&p, &s)) in predictions.iter().zip(scores).enumerate() {
        buf.extend_from_slice(int.format(first_row + i).as_bytes());
        buf.extend_from_slice(if p < 0 { b",-1," } else { b",1," });
        buf.extend_from_slice(float.format(s).as_bytes());
        buf.push(b'\n');
    }
}

/// What `detect` reports on stderr.
struct Summary<'a> {
    file: &'a Path,
    n_rows: usize,
    n_features: usize,
    feature_names: Option<&'a [String]>,
    config: &'a DetectorConfig,
    detection: &'a Detection,
    warnings: &'a [String],
    labels: Option<&'a Labels>,
    /// With labels: the metrics, `None` inside when only one class is labelled.
    metrics: Option<Option<RankingMetrics>>,
    /// read, fit + score, write, metrics, total.
    times: [Duration; 5],
}

impl std::fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = self.detection;
        writeln!(f, "pynomaly detect {}", self.file.display())?;
        writeln!(f, "  rows           {}", self.n_rows)?;
        match self.feature_names {
            Some(names) => {
                let shown: Vec<&str> = names.iter().take(8).map(String::as_str).collect();
                let more = if names.len() > 8 { ", ..." } else { "" };
                writeln!(
                    f,
                    "  features       {} ({}{more})",
                    self.n_features,
                    shown.join(", ")
                )?;
            }
            None => writeln!(f, "  features       {}", self.n_features)?,
        }
        writeln!(
            f,
            "  algorithm      {} {}",
            self.config.algorithm.name(),
            self.config.algorithm.to_json()
        )?;
        let share = 100.0 * d.anomaly_count as f64 / self.n_rows.max(1) as f64;
        writeln!(
            f,
            "  anomalies      {} ({share:.2}%), contamination {}",
            d.anomaly_count,
            self.config.contamination.to_json()
        )?;
        writeln!(f, "  threshold      {}", d.threshold)?;
        if let Some(labels) = self.labels {
            let outliers = labels.outlier.iter().filter(|&&o| o).count();
            writeln!(f, "  labelled       {outliers} outliers (label 1)")?;
            if labels.unusual {
                writeln!(
                    f,
                    "  note: labels other than 0 and 1 were found; only 1 counts as an outlier"
                )?;
            }
            match self.metrics.flatten() {
                Some(m) => {
                    writeln!(f, "  ROC-AUC        {:.4}", m.roc_auc)?;
                    writeln!(f, "  avg precision  {:.4}", m.average_precision)?;
                }
                None => writeln!(f, "  ROC-AUC        n/a (only one class is labelled)")?,
            }
        }
        let [read, fit, write, metrics, total] = self.times.map(|t| t.as_secs_f64());
        write!(
            f,
            "  time           {total:.3} s (read {read:.3} s, fit + score {fit:.3} s, write {write:.3} s"
        )?;
        if self.labels.is_some() {
            write!(f, ", metrics {metrics:.3} s")?;
        }
        writeln!(f, ")")?;
        for w in self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_as_json_or_text() {
        assert_eq!(
            parse_param("n=200").unwrap(),
            ("n".into(), Value::from(200))
        );
        assert_eq!(
            parse_param("f=0.5").unwrap(),
            ("f".into(), Value::from(0.5))
        );
        assert_eq!(
            parse_param("b=true").unwrap(),
            ("b".into(), Value::Bool(true))
        );
        assert_eq!(
            parse_param("m = auto").unwrap(),
            ("m".into(), Value::String("auto".into()))
        );
        assert!(parse_param("novalue").is_err());
        assert!(parse_param("=3").is_err());
    }

    #[test]
    fn many_windows_are_written_in_row_order() {
        let n = 3 * WRITE_BLOCK_ROWS * rayon::current_num_threads() + 123;
        let scores: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
        let detection = Detection::from_scores(scores, 0.9);
        let mut out = Vec::new();
        write_csv(&mut out, &detection, None).unwrap();
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("row,prediction,score"));
        let mut count = 0;
        for (i, line) in lines.enumerate() {
            let mut parts = line.split(',');
            assert_eq!(parts.next().unwrap().parse::<usize>().unwrap(), i);
            let prediction: i8 = parts.next().unwrap().parse().unwrap();
            let score: f64 = parts.next().unwrap().parse().unwrap();
            assert_eq!(score, detection.scores[i]);
            assert_eq!(prediction, detection.predictions[i]);
            count += 1;
        }
        assert_eq!(count, n);
    }

    #[test]
    fn output_lines_round_trip_scores() {
        let mut buf = Vec::new();
        let scores = [0.1 + 0.2, 1e-300, 0.5];
        format_rows(&mut buf, 7, &[1, -1, 1], &scores);
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "7,1,0.30000000000000004");
        assert!(lines[1].starts_with("8,-1,"));
        let back: f64 = lines[1].rsplit(',').next().unwrap().parse().unwrap();
        assert_eq!(back, 1e-300);
    }
}
