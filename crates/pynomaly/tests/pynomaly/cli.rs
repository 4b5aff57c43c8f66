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
    let out = pynomaly(&[
        "detect",
        input.to_str().unwrap(),
        "--random-state",
        "3",
        "--contamination",
        "0.05",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_outliers_found(&parse_output(&stdout(&out)));
    let err = stderr(&out);
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
    let out = pynomaly(&[
        "detect",
        input.to_str().unwrap(),
        "--random-state",
        "1",
        "--contamination",
        "0.05",
        "--output",
        output.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    assert_outliers_found(&parse_output(&std::fs::read_to_string(&output).unwrap()));
    let err = stderr(&out);
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
        let out = pynomaly(&["detect", path.to_str().unwrap(), "--random-state", "42"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("ROC-AUC"), "{}", stderr(&out));
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
    let out = pynomaly(&[
        "detect",
        input.to_str().unwrap(),
        "--label-column",
        "truth",
        "--random-state",
        "0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("features       2 (x, y)"), "{err}");
    assert!(err.contains("labelled       2 outliers"), "{err}");

    let out = pynomaly(&["detect", input.to_str().unwrap(), "--label-column", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("label column 'nope' not found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn lof_runs_with_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "data.csv", csv_text(true, true).as_bytes());
    let out = pynomaly(&[
        "detect",
        input.to_str().unwrap(),
        "--algorithm",
        "lof",
        "--param",
        "n_neighbors=10",
        "--param",
        "metric=manhattan",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_outliers_found(&parse_output(&stdout(&out)));
    assert!(
        stderr(&out).contains("\"n_neighbors\":10"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_line_is_reported_with_its_number_and_exit_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = csv_text(true, false);
    text.push_str("1.0,oops\n");
    let input = write(dir.path(), "data.csv", text.as_bytes());
    let out = pynomaly(&["detect", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    // Header on line 1, 42 rows on lines 2..=43, the bad row on line 44.
    assert!(
        err.contains("line 44, column 2 (\"y\"): \"oops\" is not a number"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());

    let ragged = write(dir.path(), "ragged.csv", b"a,b\n1,2\n3\n");
    let out = pynomaly(&["detect", ragged.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("line 3 has 1 values, expected 2"),
        "{}",
        stderr(&out)
    );

    let nan = write(dir.path(), "nan.csv", b"a,b\n1,2\n3,NaN\n");
    let out = pynomaly(&["detect", nan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("line 3, column 2"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn empty_and_missing_files_exit_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.csv", b"");
    let out = pynomaly(&["detect", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no data rows"), "{}", stderr(&out));

    let missing = dir.path().join("missing.csv");
    let out = pynomaly(&["detect", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing.csv"), "{}", stderr(&out));

    // One row cannot be fitted.
    let one = write(dir.path(), "one.csv", b"a,b\n1,2\n");
    let out = pynomaly(&["detect", one.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unknown_or_invalid_parameters_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "data.csv", csv_text(true, true).as_bytes());
    let path = input.to_str().unwrap();

    let out = pynomaly(&["detect", path, "--param", "n_trees=10"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("n_trees") && err.contains("n_estimators"),
        "{err}"
    );

    let out = pynomaly(&["detect", path, "--param", "n_estimators=0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = pynomaly(&["detect", path, "--contamination", "0.9"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = pynomaly(&["detect", path, "--algorithm", "svm"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = pynomaly(&["detect", path, "--param", "no-equals-sign"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    let out = pynomaly(&[
        "detect",
        path,
        "--random-state",
        "1",
        "--param",
        "random_state=2",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn an_unwritable_output_is_a_plain_failure() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "data.csv", csv_text(true, false).as_bytes());
    let output = dir.path().join("no/such/dir/out.csv");
    let out = pynomaly(&[
        "detect",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}
