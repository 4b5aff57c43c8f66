//! `explain-cost`: what explanations cost beside the scoring they explain, per detector.
//!
//! ```text
//! cargo run --release -p bench-tools --bin explain-cost -- FILE [--repeat N] [--only ALGORITHM]...
//! ```
//!
//! Fits every detector (defaults) on the file's rows, then times scoring them
//! (`FittedModel::score`) and explaining them (`FittedModel::explain`, top 3), all rows
//! at once and one row at a time (the first), each the fastest of `--repeat` runs (one
//! row: of 100 × that). Run it with `RAYON_NUM_THREADS=1` for one thread. Prints a
//! Markdown table; a detector whose fit fails on the data (DBSCAN's default `eps` on
//! some sets) is listed with the error.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use data_source::ReadOptions;
use detect_core::params::ALGORITHM_NAMES;
use detect_core::{DetectorConfig, FittedModel, fit};
use ndarray::{ArrayView2, s};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Time explanations beside scoring for every detector on one file")]
struct Args {
    /// A CSV (or gzip CSV) file with a header; a label column is left out.
    file: PathBuf,
    /// Runs per timing; the fastest counts.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Time only these detectors (repeatable; default: every one).
    #[arg(long = "only", value_name = "ALGORITHM", value_parser = clap::builder::PossibleValuesParser::new(ALGORITHM_NAMES))]
    only: Vec<String>,
}

/// The fastest of `runs` calls of `f`, in seconds.
fn fastest(runs: u32, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// (score, explain) seconds over `x`.
fn timings(model: &FittedModel, x: ArrayView2<'_, f64>, runs: u32) -> Result<(f64, f64)> {
    model.score(x)?;
    model.explain(x, 3.min(x.ncols()))?;
    let score = fastest(runs, || {
        black_box(model.score(black_box(x)).expect("scored once already"));
    });
    let explain = fastest(runs, || {
        black_box(
            model
                .explain(black_box(x), 3.min(x.ncols()))
                .expect("explained once already"),
        );
    });
    Ok((score, explain))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let table = data_source::read_path(&args.file, &ReadOptions::default())
        .with_context(|| format!("reading {}", args.file.display()))?;
    let x = table.features.view();
    let (n, d) = x.dim();
    println!("{} ({n} × {d}), top 3", args.file.display());
    println!();
    println!("| detector | score, all rows | explain | ratio | score, 1 row | explain | ratio |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let chosen = ALGORITHM_NAMES
        .iter()
        .filter(|a| args.only.is_empty() || args.only.iter().any(|o| o == *a));
    for algorithm in chosen {
        let config = DetectorConfig::from_json(algorithm, &serde_json::Map::new(), &json!("auto"))?;
        let model = match fit(&config, x) {
            Ok(fitted) => fitted.model,
            Err(e) => {
                println!("| {algorithm} | fit failed: {e} | | | | | |");
                continue;
            }
        };
        let (score, explain) = timings(&model, x, args.repeat)?;
        let (one_score, one_explain) = timings(
            &model,
            x.slice(s![..1, ..]),
            args.repeat.saturating_mul(100),
        )?;
        println!(
            "| {algorithm} | {:.3} ms | {:.3} ms | {:.2}× | {:.2} µs | {:.2} µs | {:.2}× |",
            score * 1e3,
            explain * 1e3,
            explain / score,
            one_score * 1e6,
            one_explain * 1e6,
            one_explain / one_score
        );
    }
    Ok(())
}
