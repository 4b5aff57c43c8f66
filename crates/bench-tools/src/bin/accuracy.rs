//! `accuracy`: detect-core's ROC-AUC beside scikit-learn's on every shared dataset.
//!
//! ```text
//! cargo run --release -p bench-tools --bin accuracy -- [DATASETS_DIR] [--json] [--only FILE]...
//! ```
//!
//! For each file in `DATASETS_DIR/MANIFEST.csv` (default: `../shared/datasets` beside the
//! repository): isolation forest with scikit-learn's defaults for `random_state` 0..4 (mean
//! ROC-AUC; `--seeds N` for 0..N-1) and LOF with `n_neighbors` = 20, fitted and scored on
//! all rows, as Part A of `sklearn_baseline.txt`; and PyOD's deterministic detectors (ECOD,
//! COPOD, HBOS, KNN, PCA, GMM) with PyOD's defaults, beside `pyod_baseline.csv`, and INNE,
//! MCD and CBLOF (randomized) averaged over the same seeds as the isolation forest, beside
//! `bench/pyod_randomized_baseline.csv`. Prints a Markdown table (or JSON with
//! `--json`) on stdout and progress on stderr, and exits with status 1 when a rule of
//! `bench_tools` is broken.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bench_tools::{
    Outcome, PYOD_DETECTORS, PYOD_RANDOMIZED, PyodOutcome, failures, json_report, load_folder,
    load_pyod_baseline, markdown_table, pyod_dataset_name, ungated_shortfalls,
};
use clap::Parser;
use data_source::ReadOptions;
use detect_core::metrics::roc_auc;
use detect_core::{DetectorConfig, Fit, fit};
use ndarray::ArrayView2;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "Compare detect-core's ROC-AUC with scikit-learn's on the shared datasets")]
struct Args {
    /// Folder with MANIFEST.csv, sklearn_baseline.txt and the data files
    /// (default: ../shared/datasets beside the repository, or $PYNOMALY_DATASETS).
    datasets: Option<PathBuf>,
    /// Print JSON instead of a Markdown table.
    #[arg(long)]
    json: bool,
    /// Average the isolation forest over random_state 0..SEEDS (scikit-learn's baseline
    /// uses 5; more seeds tell a systematic difference from noise).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: u64,
    /// Fit each of PyOD's detectors this many times and report the fastest fit (the
    /// speed comparison's best of N in one process, as its PyOD side does; the scores
    /// are the same every time).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,
    /// Only these files (as named in MANIFEST.csv); the mean rule then covers only them.
    #[arg(long = "only", value_name = "FILE")]
    only: Vec<String>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("accuracy: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The last of `repeat` fits of `config` on `x`, and the fastest one's seconds.
fn fastest_fit(config: &DetectorConfig, x: ArrayView2<'_, f64>, repeat: u32) -> Result<(Fit, f64)> {
    let mut fastest = f64::INFINITY;
    let mut last = None;
    for _ in 0..repeat {
        let started = Instant::now();
        let fitted = fit(config, x)?;
        fastest = fastest.min(started.elapsed().as_secs_f64());
        last = Some(fitted);
    }
    Ok((last.expect("at least one fit"), fastest))
}

fn default_datasets_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PYNOMALY_DATASETS") {
        return dir.into();
    }
    // crates/bench-tools → the repository root → its parent.
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets")
}

fn run(args: Args) -> Result<bool> {
    let dir = args.datasets.unwrap_or_else(default_datasets_dir);
    let (manifest, baseline) =
        load_folder(&dir).with_context(|| format!("datasets folder {}", dir.display()))?;
    let pyod_baseline = load_pyod_baseline(&dir)?;
    // PyOD's randomized detectors over seeds 0..4, committed beside the scripts.
    let randomized_path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/pyod_randomized_baseline.csv");
    let randomized_baseline = match std::fs::read_to_string(&randomized_path) {
        Ok(text) => bench_tools::parse_pyod_randomized_baseline(&text)?,
        Err(_) => Default::default(),
    };
    for name in &args.only {
        if !manifest.iter().any(|m| &m.file == name) {
            bail!("--only {name}: not in MANIFEST.csv");
        }
    }
    eprintln!(
        "accuracy: {} datasets in {}, {} CPUs",
        manifest.len(),
        dir.display(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let mut outcomes = Vec::new();
    for entry in manifest
        .iter()
        .filter(|m| args.only.is_empty() || args.only.contains(&m.file))
    {
        let path = dir.join(&entry.file);
        let table = data_source::read_path(&path, &ReadOptions::default())
            .with_context(|| format!("reading {}", path.display()))?;
        let (n, d) = table.features.dim();
        if (n, d) != (entry.n_samples, entry.n_features) {
            bail!(
                "{}: read {n} x {d}, MANIFEST.csv says {} x {}",
                entry.file,
                entry.n_samples,
                entry.n_features
            );
        }
        let labels: Vec<bool> = table
            .labels
            .with_context(|| format!("{}: no label column", entry.file))?
            .outlier_flags();
        let x = table.features.view();

        let mut per_seed = Vec::new();
        let started = Instant::now();
        for seed in 0..args.seeds {
            let params = json!({ "random_state": seed });
            let config = DetectorConfig::from_json(
                "isolation_forest",
                params.as_object().expect("a JSON object"),
                &json!("auto"),
            )?;
            let fitted = fit(&config, x)?;
            per_seed.push(
                roc_auc(&labels, &fitted.training.scores)
                    .with_context(|| format!("{}: ROC-AUC undefined", entry.file))?,
            );
        }
        let isolation_forest_seconds = started.elapsed().as_secs_f64() / per_seed.len() as f64;

        let params = json!({ "n_neighbors": 20 });
        let config = DetectorConfig::from_json(
            "lof",
            params.as_object().expect("a JSON object"),
            &json!("auto"),
        )?;
        let started = Instant::now();
        let fitted = fit(&config, x)?;
        let lof_seconds = started.elapsed().as_secs_f64();
        let lof = roc_auc(&labels, &fitted.training.scores)
            .with_context(|| format!("{}: ROC-AUC undefined", entry.file))?;

        let mut pyod = Vec::new();
        for (algorithm, class) in PYOD_DETECTORS {
            let config =
                DetectorConfig::from_json(algorithm, &serde_json::Map::new(), &json!("auto"))?;
            let (fitted, seconds) = fastest_fit(&config, x, args.repeat)?;
            let roc_auc = roc_auc(&labels, &fitted.training.scores)
                .with_context(|| format!("{}: ROC-AUC undefined", entry.file))?;
            let key = (
                pyod_dataset_name(&entry.file).to_string(),
                class.to_string(),
            );
            pyod.push(PyodOutcome {
                algorithm,
                roc_auc,
                pyod: pyod_baseline.get(&key).copied(),
                seconds,
                randomized: false,
            });
        }
        for (algorithm, class) in PYOD_RANDOMIZED {
            let (mut sum, mut seconds) = (0.0, 0.0);
            for seed in 0..args.seeds {
                let params = json!({ "random_state": seed });
                let config = DetectorConfig::from_json(
                    algorithm,
                    params.as_object().expect("a JSON object"),
                    &json!("auto"),
                )?;
                let (fitted, fastest) = fastest_fit(&config, x, args.repeat)?;
                seconds += fastest;
                sum += roc_auc(&labels, &fitted.training.scores)
                    .with_context(|| format!("{}: ROC-AUC undefined", entry.file))?;
            }
            let key = (
                pyod_dataset_name(&entry.file).to_string(),
                class.to_string(),
            );
            pyod.push(PyodOutcome {
                algorithm,
                roc_auc: sum / args.seeds as f64,
                pyod: randomized_baseline
                    .get(&key)
                    .or_else(|| pyod_baseline.get(&key))
                    .copied(),
                seconds: seconds / args.seeds as f64,
                randomized: true,
            });
        }

        let outcome = Outcome {
            file: entry.file.clone(),
            n_samples: n,
            n_features: d,
            isolation_forest: per_seed.iter().sum::<f64>() / per_seed.len() as f64,
            isolation_forest_per_seed: per_seed,
            lof,
            sklearn: baseline[&entry.file],
            isolation_forest_seconds,
            lof_seconds,
            pyod,
        };
        eprintln!(
            "  {:<20} {n:>7} x {d:<3}  IF {:.4} ({:+.4})  LOF {:.4} ({:+.4})  [{:.2} s + {:.2} s]",
            outcome.file,
            outcome.isolation_forest,
            outcome.isolation_forest_difference(),
            outcome.lof,
            outcome.lof_difference(),
            outcome.isolation_forest_seconds * args.seeds as f64,
            outcome.lof_seconds,
        );
        for p in &outcome.pyod {
            eprintln!(
                "      {:<6} {:.4} (PyOD {})  [{:.3} s]",
                p.algorithm,
                p.roc_auc,
                p.pyod
                    .map_or("–".into(), |t| format!("{t:.4}, {:+.4}", p.roc_auc - t)),
                p.seconds
            );
        }
        outcomes.push(outcome);
    }

    let broken = failures(&outcomes);
    for f in ungated_shortfalls(&outcomes) {
        eprintln!("accuracy: SKIPPED (reported, not gated): {f}");
    }
    if args.json {
        println!("{:#}", json_report(&outcomes));
    } else {
        print!("{}", markdown_table(&outcomes));
    }
    if broken.is_empty() {
        eprintln!("accuracy: PASS");
        Ok(true)
    } else {
        for f in &broken {
            eprintln!("accuracy: FAIL: {f}");
        }
        Ok(false)
    }
}
