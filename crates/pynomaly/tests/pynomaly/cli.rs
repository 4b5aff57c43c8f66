//! Black-box tests of the `pynomaly` binary on small temporary files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flate2::Compression;
use flate2::write::GzEncoder;
use testkit::data::{csv, wave};

fn pynomaly(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pynomaly"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("the pynomaly binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// 40 rows in a tight cluster plus two far outliers (rows 40 and 41), with labels.
fn clustered_rows() -> Vec<[f64; 3]> {
    let mut rows: Vec<[f64; 3]> = (0..40)
        .map(|i| {
            let [x, y] = wave(i);
            [x, y, 0.0]
        })
        .collect();
    rows.push([25.0, -30.0, 1.0]);
    rows.push([-40.0, 22.0, 1.0]);
    rows
}

fn csv_text(header: bool, label: bool) -> String {
    let columns: &[&str] = if label {
        &["x", "y", "label"]
    } else {
        &["x", "y"]
    };
    let width = columns.len();
    let text = csv(columns, clustered_rows().iter().map(|r| &r[..width]));
    if header {
        text
    } else {
        text.split_once('\n')
            .map_or(text.clone(), |(_, rows)| rows.to_string())
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `pynomaly detect INPUT ARGS`.
fn detect(input: &Path, args: &[&str]) -> Output {
    pynomaly(&[&["detect", input.to_str().unwrap()], args].concat())
}

/// Asserts that `out` succeeded, and returns its stderr (the report).
fn report(out: &Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    stderr(out)
}

/// Asserts that the command was refused (exit status 2), saying `message` on stderr.
fn assert_refused(out: &Output, message: &str) {
    assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
    assert!(stderr(out).contains(message), "{}", stderr(out));
}

/// Parses `row,prediction,score` output, checking the header and row order.
fn parse_output(text: &str) -> Vec<(i8, f64)> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("row,prediction,score"));
    lines
        .enumerate()
        .map(|(i, line)| {
            let parts: Vec<&str> = line.split(',').collect();
            assert_eq!(parts.len(), 3, "{line}");
            assert_eq!(parts[0].parse::<usize>().unwrap(), i);
            (parts[1].parse().unwrap(), parts[2].parse().unwrap())
        })
        .collect()
}

fn assert_outliers_found(rows: &[(i8, f64)]) {
    assert_eq!(rows.len(), 42);
    let top = rows[..40].iter().map(|r| r.1).fold(f64::MIN, f64::max);
    assert!(rows[40].1 > top && rows[41].1 > top, "{rows:?}");
    assert_eq!((rows[40].0, rows[41].0), (-1, -1));
}

#[test]
fn csv_with_header_and_labels_reports_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "data.csv", csv_text(true, true).as_bytes());
    let out = detect(&input, &["--random-state", "3", "--contamination", "0.05"]);
    let err = report(&out);
    assert_outliers_found(&parse_output(&stdout(&out)));
    for expected in [
        "rows           42",
        "features       2 (x, y)",
        "ROC-AUC        1.0000",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(err.contains("avg precision  1.0000"), "{err}");
    assert!(err.contains("\"random_state\":3"), "{err}");
}

#[test]
fn csv_without_header_is_all_features() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "data.csv", csv_text(false, false).as_bytes());
    let output = dir.path().join("scores.csv");
    let output_arg = output.to_str().unwrap();
    let out = detect(
        &input,
        &[
            "--random-state",
            "1",
            "--contamination",
            "0.05",
            "--output",
            output_arg,
        ],
    );
    let err = report(&out);
    assert!(stdout(&out).is_empty());
    assert_outliers_found(&parse_output(&std::fs::read_to_string(&output).unwrap()));
    assert!(err.contains("features       2\n"), "{err}");
    assert!(!err.contains("ROC-AUC"), "{err}");
}

#[test]
fn same_seed_gives_the_same_output_for_csv_gzip_and_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let csv = csv_text(true, true);
    let plain = write(dir.path(), "data.csv", csv.as_bytes());
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(csv.as_bytes()).unwrap();
    // A gzip file whose name does not say so: recognised by its magic bytes.
    let packed = write(dir.path(), "data.bin", &gz.finish().unwrap());
    let jsonl: String = clustered_rows()
        .iter()
        .map(|[x, y, l]| format!("{{\"x\": {x}, \"y\": {y}, \"label\": {l}}}\n"))
        .collect();
    let json = write(dir.path(), "data.jsonl", jsonl.as_bytes());

    let run = |path: &Path| {
        let out = detect(path, &["--random-state", "42"]);
        assert!(report(&out).contains("ROC-AUC"), "{}", stderr(&out));
        stdout(&out)
    };
    let reference = run(&plain);
    assert_eq!(parse_output(&reference).len(), 42);
    assert_eq!(run(&packed), reference);
    assert_eq!(run(&json), reference);
}

#[test]
fn a_named_label_column_is_left_out_of_the_features() {
    let dir = tempfile::tempdir().unwrap();
    let text = csv_text(true, true).replace("x,y,label", "x,y,truth");
    let input = write(dir.path(), "data.csv", text.as_bytes());
    let out = detect(&input, &["--label-column", "truth", "--random-state", "0"]);
    let err = report(&out);
    assert!(err.contains("features       2 (x, y)"), "{err}");
    assert!(err.contains("labelled       2 outliers"), "{err}");

    let out = detect(&input, &["--label-column", "nope"]);
    assert_refused(&out, "label column 'nope' not found");
}

#[test]
fn lof_runs_with_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "data.csv", csv_text(true, true).as_bytes());
    let params = ["--param", "n_neighbors=10", "--param", "metric=manhattan"];
    let out = detect(&input, &[&["--algorithm", "lof"][..], &params].concat());
    let err = report(&out);
    assert_outliers_found(&parse_output(&stdout(&out)));
    assert!(err.contains("\"n_neighbors\":10"), "{err}");
}

#[test]
fn pyod_detectors_run_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "data.csv", csv_text(true, true).as_bytes());
    for (algorithm, params) in [
        ("ecod", &[][..]),
        ("copod", &[]),
        ("hbos", &["--param", "n_bins=auto"]),
        ("knn", &["--param", "method=mean"]),
        ("pca", &[]),
        ("gmm", &["--param", "reg_covar=0.001"]),
        ("mcd", &["--param", "random_state=3"]),
        ("cblof", &["--param", "n_clusters=4"]),
    ] {
        let args = [&["--algorithm", algorithm][..], params].concat();
        let out = detect(&input, &args);
        let err = report(&out);
        assert!(err.contains(algorithm), "{algorithm}: {err}");
        // Contamination "auto" is PyOD's 0.1: the two planted rows are among the flagged
        // (per-feature detectors need not rank them above every inlier of two clusters).
        let rows = parse_output(&stdout(&out));
        assert_eq!(rows.len(), 42);
        assert_eq!((rows[40].0, rows[41].0), (-1, -1), "{algorithm}: {rows:?}");
        assert!(
            rows.iter().filter(|r| r.0 == -1).count() <= 5,
            "{algorithm}: {rows:?}"
        );
    }
    // A PyOD parameter out of range is refused like any other.
    let out = detect(&input, &["--algorithm", "hbos", "--param", "tol=1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("tol"), "{}", stderr(&out));
}

#[test]
fn a_bad_line_is_reported_with_its_number_and_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = csv_text(true, false);
    text.push_str("1.0,oops\n");
    let input = write(dir.path(), "data.csv", text.as_bytes());
    let out = detect(&input, &[]);
    // Header on line 1, 42 rows on lines 2..=43, the bad row on line 44.
    assert_refused(&out, "line 44, column 2 (\"y\"): \"oops\" is not a number");
    assert!(stdout(&out).is_empty());

    let ragged = write(dir.path(), "ragged.csv", b"a,b\n1,2\n3\n");
    assert_refused(&detect(&ragged, &[]), "line 3 has 1 values, expected 2");

    let nan = write(dir.path(), "nan.csv", b"a,b\n1,2\n3,NaN\n");
    assert_refused(&detect(&nan, &[]), "line 3, column 2");
}

#[test]
fn empty_and_missing_files_exit_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.csv", b"");
    assert_refused(&detect(&empty, &[]), "no data rows");

    let missing = dir.path().join("missing.csv");
    assert_refused(&detect(&missing, &[]), "missing.csv");

    // One row cannot be fitted.
    let one = write(dir.path(), "one.csv", b"a,b\n1,2\n");
    assert_eq!(detect(&one, &[]).status.code(), Some(2));
}

#[test]
fn unknown_or_invalid_parameters_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "data.csv", csv_text(true, true).as_bytes());

    let out = detect(&input, &["--param", "n_trees=10"]);
    assert_refused(&out, "n_trees");
    assert!(stderr(&out).contains("n_estimators"), "{}", stderr(&out));

    for args in [
        &["--param", "n_estimators=0"][..],
        &["--contamination", "0.9"],
        &["--algorithm", "svm"],
        &["--param", "no-equals-sign"],
        &["--random-state", "1", "--param", "random_state=2"],
    ] {
        let out = detect(&input, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn an_unwritable_output_is_a_plain_failure() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "data.csv", csv_text(true, false).as_bytes());
    let output = dir.path().join("no/such/dir/out.csv");
    let out = detect(&input, &["--output", output.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn stream_urls_a_redis_cluster_cannot_serve_are_refused_before_connecting() {
    // Nothing listens on these ports: the URLs are refused before any connection.
    let good = "redis+cluster://127.0.0.1:1,127.0.0.1:2/alerts";
    for (source, message) in [
        (
            "redis+cluster://:s3cret@127.0.0.1:1,127.0.0.1:2/2/events",
            "a Redis Cluster has a single database (0)",
        ),
        (
            "redis://:s3cret@127.0.0.1:1,127.0.0.1:2/events",
            "several hosts name a Redis Cluster: write redis+cluster://",
        ),
        (
            "redis+cluster://:s3cret@127.0.0.1:1,,127.0.0.1:2/events",
            "no empty one between commas",
        ),
    ] {
        let out = pynomaly(&[
            "stream",
            "--source",
            source,
            "--sink",
            good,
            "--algorithm",
            "isolation_forest",
        ]);
        assert_refused(&out, message);
        assert!(!stderr(&out).contains("s3cret"), "{}", stderr(&out));
    }
}

#[test]
fn detect_explain_adds_each_rows_top_features_named_by_the_header() {
    let dir = tempfile::tempdir().unwrap();
    // Three features; the last row is far only in `b`.
    let mut text = String::from("a,b,c\n");
    for i in 0..60 {
        let [x, y] = wave(i);
        text.push_str(&format!("{x},{y},{}\n", (x + y) / 2.0));
    }
    text.push_str("0.1,90,0.1\n");
    let input = write(dir.path(), "data.csv", text.as_bytes());
    let out = detect(
        &input,
        &["--algorithm", "ecod", "--explain", "--top-k", "2"],
    );
    report(&out);
    let text = stdout(&out);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("row,prediction,score,explanation"));
    let rows: Vec<Vec<(String, f64)>> = lines
        .enumerate()
        .map(|(i, line)| {
            let parts: Vec<&str> = line.splitn(4, ',').collect();
            assert_eq!(parts[0].parse::<usize>().unwrap(), i);
            parts[3]
                .split(';')
                .map(|p| {
                    let (name, share) = p.split_once(':').unwrap();
                    (name.to_string(), share.parse().unwrap())
                })
                .collect()
        })
        .collect();
    assert_eq!(rows.len(), 61);
    assert!(
        rows.iter().all(|r| r.len() == 2 && r[0].1 >= r[1].1),
        "{rows:?}"
    );
    assert_eq!(rows[60][0].0, "b", "{:?}", rows[60]);
    // The default is 3 features; without a header the columns are x0, x1, ….
    let bare = write(
        dir.path(),
        "bare.csv",
        text_without_header(&text_of(&input)).as_bytes(),
    );
    let out = detect(&bare, &["--algorithm", "ecod", "--explain"]);
    report(&out);
    let last = stdout(&out).lines().last().unwrap().to_string();
    let cell = last.splitn(4, ',').nth(3).unwrap().to_string();
    assert_eq!(cell.split(';').count(), 3, "{last}");
    assert!(cell.starts_with("x1:"), "{last}");
    // --top-k beyond the width, or without --explain, is refused.
    assert_refused(
        &detect(&input, &["--explain", "--top-k", "4"]),
        "--top-k 4: accepted 1..=3",
    );
    let out = detect(&input, &["--top-k", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Without --explain the output is unchanged.
    let out = detect(&input, &["--algorithm", "ecod"]);
    assert!(stdout(&out).starts_with("row,prediction,score\n"));
}

fn text_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

fn text_without_header(text: &str) -> String {
    text.split_once('\n').unwrap().1.to_string()
}
