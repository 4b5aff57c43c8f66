//! Unit tests for every format and every error path.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use ndarray::array;

use super::*;

fn opts() -> ReadOptions {
    ReadOptions::default()
}

fn read(text: &str) -> Result<Table, DataError> {
    read_all(text.as_bytes(), &opts())
}

fn read_with(text: &str, options: &ReadOptions) -> Result<Table, DataError> {
    read_all(text.as_bytes(), options)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn err(text: &str) -> DataError {
    read(text).unwrap_err()
}

// ---- CSV ----

#[test]
fn csv_header_is_detected_and_the_label_column_taken_out() {
    let t = read("a,label,b\n1,0,2\n3,1,4.5\n").unwrap();
    assert_eq!(t.features, array![[1.0, 2.0], [3.0, 4.5]]);
    assert_eq!(t.labels, Some(Labels::from_values(&[0.0, 1.0])));
    assert_eq!(
        t.feature_names,
        Some(vec!["a".to_string(), "b".to_string()])
    );
}

#[test]
fn csv_without_header_is_all_data() {
    let t = read("1,2\n-3.5,4e2\n").unwrap();
    assert_eq!(t.features, array![[1.0, 2.0], [-3.5, 400.0]]);
    assert_eq!((t.labels, t.feature_names), (None, None));
}

#[test]
fn csv_header_can_be_forced_either_way() {
    let present = ReadOptions {
        header: Header::Present,
        ..opts()
    };
    let t = read_with("1,2\n3,4\n", &present).unwrap();
    assert_eq!(t.features, array![[3.0, 4.0]]);
    assert_eq!(t.feature_names, Some(vec!["1".into(), "2".into()]));
    let absent = ReadOptions {
        header: Header::Absent,
        ..opts()
    };
    let e = read_with("a,b\n3,4\n", &absent).unwrap_err();
    assert_eq!(e.line(), Some(1));
}

#[test]
fn a_named_label_column_is_used() {
    let o = ReadOptions {
        label: LabelColumn::Required("y".into()),
        ..opts()
    };
    let t = read_with("x,y,label\n1,1,5\n", &o).unwrap();
    assert_eq!(t.features, array![[1.0, 5.0]]);
    assert_eq!(t.labels, Some(Labels::from_values(&[1.0])));
}

#[test]
fn a_required_label_column_that_is_absent_is_an_error() {
    let o = ReadOptions {
        label: LabelColumn::Required("target".into()),
        ..opts()
    };
    let e = read_with("a,b\n1,2\n", &o).unwrap_err();
    assert!(matches!(&e, DataError::LabelNotFound { name, .. } if name == "target"));
    assert_eq!(
        e.to_string(),
        "label column 'target' not found: the columns are \"a\", \"b\""
    );
    let e = read_with("1,2\n", &o).unwrap_err();
    assert!(e.to_string().contains("no header"), "{e}");
}

#[test]
fn the_default_label_is_optional_and_can_be_disabled() {
    let t = read("a,b\n1,2\n").unwrap();
    assert_eq!(t.labels, None);
    let o = ReadOptions {
        label: LabelColumn::Disabled,
        ..opts()
    };
    let t = read_with("a,label\n1,2\n", &o).unwrap();
    assert_eq!(t.features, array![[1.0, 2.0]]);
    assert_eq!(t.labels, None);
}

#[test]
fn a_non_number_is_reported_with_line_column_and_name() {
    let e = err("f0,f1\n1,2\n3,abc\n");
    assert!(matches!(
        &e,
        DataError::NotANumber { line: 3, column: 2, name: Some(n), value } if n == "f1" && value == "\"abc\""
    ));
    assert_eq!(
        e.to_string(),
        "line 3, column 2 (\"f1\"): \"abc\" is not a number"
    );
    // A number followed by junk is not a number either.
    let e = err("1,2\n3,4x\n");
    assert_eq!(e.to_string(), "line 2, column 2: \"4x\" is not a number");
}

#[test]
fn an_empty_value_is_not_a_number() {
    let e = err("1,2,3\n4,,6\n");
    assert_eq!(
        e.to_string(),
        "line 2, column 2: an empty value is not a number"
    );
    // Also on the first line, which is then data, not a header.
    let e = err("1,,3\n");
    assert_eq!(e.line(), Some(1));
}

#[test]
fn nan_and_infinity_are_rejected() {
    for bad in ["nan", "NaN", "inf", "-Infinity", "1e999"] {
        let e = err(&format!("a,b\n1,2\n3,{bad}\n"));
        assert!(
            matches!(
                &e,
                DataError::NonFinite {
                    line: 3,
                    column: 2,
                    ..
                }
            ),
            "{bad}: {e}"
        );
    }
}

#[test]
fn ragged_lines_are_reported() {
    let e = err("a,b,c\n1,2,3\n4,5\n");
    assert!(matches!(
        e,
        DataError::Ragged {
            line: 3,
            found: 2,
            expected: 3
        }
    ));
    let e = err("1,2\n3,4,5\n");
    assert_eq!(
        e.to_string(),
        "line 2 has 3 values, expected 2 like the first record"
    );
    // A trailing delimiter is one more (empty) field.
    assert!(matches!(
        err("1,2\n3,4,\n"),
        DataError::Ragged { found: 3, .. }
    ));
}

#[test]
fn empty_inputs_are_errors() {
    for text in ["", "\n\n  \n", "a,b\n", "a,b\n\n\n"] {
        assert!(matches!(read(text), Err(DataError::Empty)), "{text:?}");
    }
    assert!(matches!(
        read_all(&gzip(b"")[..], &opts()),
        Err(DataError::Empty)
    ));
}

#[test]
fn a_label_without_features_is_an_error() {
    assert!(matches!(err("label\n1\n"), DataError::NoFeatures { .. }));
}

#[test]
fn blank_lines_are_skipped_and_still_counted() {
    let t = read("\na,b\n\n1,2\n   \n3,4\n").unwrap();
    assert_eq!(t.features, array![[1.0, 2.0], [3.0, 4.0]]);
    let e = err("a,b\n\n1,2\n\n\n3,x\n");
    assert_eq!(e.line(), Some(6));
}

#[test]
fn crlf_bom_blanks_and_a_missing_final_newline_are_fine() {
    let t = read("\u{feff}a , b\r\n 1 , 2\r\n3,\t4").unwrap();
    assert_eq!(t.features, array![[1.0, 2.0], [3.0, 4.0]]);
    assert_eq!(
        t.feature_names,
        Some(vec!["a".to_string(), "b".to_string()])
    );
}

#[test]
fn quoted_values_and_names_are_accepted() {
    let t = read("\"x, first\",\"say \"\"y\"\"\"\n\"1.5\", \"2\"\n3,4\n").unwrap();
    assert_eq!(t.features, array![[1.5, 2.0], [3.0, 4.0]]);
    assert_eq!(
        t.feature_names,
        Some(vec!["x, first".to_string(), "say \"y\"".to_string()])
    );
}

#[test]
fn malformed_quotes_are_csv_errors() {
    let e = err("a,b\n1,\"2\n3,4\n");
    assert!(matches!(e, DataError::Csv { line: 2, .. }), "{e}");
    let e = err("a,b\n1,\"2\"x\n");
    assert!(matches!(e, DataError::Csv { line: 2, .. }), "{e}");
}

#[test]
fn numbers_round_exactly_like_the_standard_library() {
    let values = [
        "0.1",
        "-2.3025850929940455",
        "5.371103036273684",
        "1e-310",
        "+7",
        ".5",
        "3.",
        "179769313486231570000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        "2.2250738585072011e-308",
    ];
    let text: String = values.iter().map(|v| format!("{v}\n")).collect();
    let t = read(&text).unwrap();
    for (got, v) in t.features.iter().zip(values) {
        assert_eq!(got.to_bits(), v.parse::<f64>().unwrap().to_bits(), "{v}");
    }
}

#[test]
fn remembered_values_are_exactly_the_parsed_ones() {
    // Long texts that repeat (remembered per column) mixed with ones that do not, a `+`
    // in exponents, and texts that differ only in their middle or last digit.
    let pool = [
        "-2.3025850929940455",
        "-2.3025850929940456",
        "5.371103036273684",
        "5.371103036273685",
        "1.2500000000000e+05",
        "+0.000123456789012",
        "123456789.12345678",
    ];
    let mut state = 7u64;
    let mut text = String::new();
    let mut expected = Vec::new();
    for i in 0..20_000u64 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let a = pool[(state >> 33) as usize % pool.len()].to_string();
        let b = if i % 3 == 0 {
            format!("{}", (state >> 11) as f64 / 9007199254740992.0)
        } else {
            pool[(state >> 40) as usize % pool.len()].to_string()
        };
        text.push_str(&format!("{a},{b}\n"));
        expected.push(a.parse::<f64>().unwrap());
        expected.push(b.parse::<f64>().unwrap());
    }
    for delimiter in [b',', b';'] {
        let o = ReadOptions {
            delimiter: Some(delimiter),
            ..opts()
        };
        let t = read_with(&text.replace(',', &char::from(delimiter).to_string()), &o).unwrap();
        let got: Vec<u64> = t.features.iter().map(|v| v.to_bits()).collect();
        let want: Vec<u64> = expected.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn a_column_of_distinct_values_is_still_read_exactly() {
    let mut text = String::new();
    let mut expected = Vec::new();
    for i in 0..5_000u32 {
        let v = f64::from(i) * 1.000_000_123_456_7 + 0.123_456_789_012_3;
        text.push_str(&format!("{v},{i}\n"));
        expected.push(v);
        expected.push(f64::from(i));
    }
    let t = read(&text).unwrap();
    assert_eq!(t.features.as_slice().unwrap(), &expected[..]);
}

#[test]
fn other_delimiters_are_supported() {
    let o = ReadOptions {
        delimiter: Some(b'\t'),
        ..opts()
    };
    let t = read_with("a\tb\n1\t2\n", &o).unwrap();
    assert_eq!(t.features, array![[1.0, 2.0]]);
    let o = ReadOptions {
        delimiter: Some(b';'),
        ..opts()
    };
    let t = read_with("1; 2\n", &o).unwrap();
    assert_eq!(t.features, array![[1.0, 2.0]]);
}

#[test]
fn gzip_is_detected_by_its_magic_bytes() {
    let packed = gzip(b"a,label\n1,0\n2,1\n");
    let reader = TableReader::new(&packed[..], &opts()).unwrap();
    assert!(reader.is_gzip());
    let t = reader.read_all().unwrap();
    assert_eq!(t.features, array![[1.0], [2.0]]);
    assert_eq!(t.labels, Some(Labels::from_values(&[0.0, 1.0])));
}

#[test]
fn concatenated_gzip_members_are_one_stream() {
    let mut packed = gzip(b"a,b\n1,2\n");
    packed.extend(gzip(b"3,4\n"));
    let t = read_all(&packed[..], &opts()).unwrap();
    assert_eq!(t.features, array![[1.0, 2.0], [3.0, 4.0]]);
}

#[test]
fn corrupt_gzip_is_a_read_error() {
    let mut packed = gzip("a,b\n1,2\n".repeat(2000).as_bytes());
    let n = packed.len();
    packed[n / 2] ^= 0xff;
    packed.truncate(n - 4);
    let e = read_all(&packed[..], &opts()).unwrap_err();
    assert!(matches!(e, DataError::Read { .. }), "{e}");
}

#[test]
fn chunks_hand_out_rows_in_order() {
    let text: String = std::iter::once("x,label\n".to_string())
        .chain((0..10).map(|i| format!("{i},{}\n", i % 2)))
        .collect();
    let mut r = TableReader::new(text.as_bytes(), &opts()).unwrap();
    let mut seen = Vec::new();
    while let Some(c) = r.next_chunk(4).unwrap() {
        assert_eq!(c.first_row, seen.len());
        assert!(c.features.nrows() <= 4);
        assert_eq!(c.labels.as_ref().unwrap().len(), c.features.nrows());
        seen.extend(c.features.iter().copied());
    }
    assert_eq!(seen, (0..10).map(f64::from).collect::<Vec<_>>());
    assert_eq!(r.rows_read(), 10);
    assert!(r.next_chunk(4).unwrap().is_none());
}

#[test]
fn after_a_bad_line_the_next_chunk_continues_after_it() {
    let mut r = TableReader::new("1\n2\nx\n4\n".as_bytes(), &opts()).unwrap();
    let e = r.next_chunk(10).unwrap_err();
    assert_eq!(e.line(), Some(3));
    let c = r.next_chunk(10).unwrap().unwrap();
    assert_eq!(c.features, array![[4.0]]);
}

/// Enough rows for many blocks, so the threaded `read_all` path and block edges are used.
fn big_csv(rows: usize) -> String {
    let mut text = String::from("f0,f1,label\n");
    for i in 0..rows {
        let label = u8::from(i % 7 == 0);
        text.push_str(&format!(
            "{},{},{label}\n",
            i as f64 * 0.25,
            -(i as f64) / 3.0
        ));
    }
    text
}

#[test]
fn many_blocks_read_all_equals_chunked_reading() {
    let text = big_csv(60_000);
    let packed = gzip(text.as_bytes());
    let whole = read_all(&packed[..], &opts()).unwrap();
    assert_eq!(whole.features.dim(), (60_000, 2));
    let mut r = TableReader::new(text.as_bytes(), &opts()).unwrap();
    let mut rows = Vec::new();
    let mut labels = Vec::new();
    while let Some(c) = r.next_chunk(7_777).unwrap() {
        rows.extend(c.features.iter().copied());
        labels.extend(c.labels.unwrap().outlier_flags());
    }
    assert_eq!(whole.features.as_slice().unwrap(), &rows[..]);
    assert_eq!(whole.labels.unwrap().outlier_flags(), labels);
    assert_eq!(whole.features[[59_999, 0]], 59_999.0 * 0.25);
}

#[test]
fn an_error_deep_in_a_large_input_names_its_line() {
    let mut text = big_csv(50_000);
    text.push_str("1,2,0\n1,oops,0\n");
    for _ in 0..20_000 {
        text.push_str("1,2,0\n");
    }
    let packed = gzip(text.as_bytes());
    let e = read_all(&packed[..], &opts()).unwrap_err();
    // Header line + 50,000 rows + 1 good row, then the bad one.
    assert_eq!(e.line(), Some(50_003), "{e}");
    assert!(e.to_string().contains("\"oops\""), "{e}");
}

#[test]
fn a_line_longer_than_a_block_is_read() {
    let n = 80_000;
    let line: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let text = format!("{}\n{}\n", line.join(","), line.join(","));
    let t = read(&text).unwrap();
    assert_eq!(t.features.dim(), (2, n));
    assert_eq!(t.features[[1, n - 1]], (n - 1) as f64);
}

#[test]
fn files_are_opened_by_path_with_the_format_from_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let tsv = dir.path().join("data.tsv");
    std::fs::write(&tsv, "a\tb\n1\t2\n").unwrap();
    assert_eq!(
        read_path(&tsv, &opts()).unwrap().features,
        array![[1.0, 2.0]]
    );
    let gz = dir.path().join("data.csv.gz");
    std::fs::write(&gz, gzip(b"a,b\n1,2\n")).unwrap();
    assert_eq!(
        read_path(&gz, &opts()).unwrap().features,
        array![[1.0, 2.0]]
    );
    let jsonl = dir.path().join("rows.jsonl");
    std::fs::write(&jsonl, "[1, 2]\n").unwrap();
    let r = TableReader::open(&jsonl, &opts()).unwrap();
    assert_eq!(r.format(), Format::JsonLines);
    let missing = dir.path().join("nope.csv");
    let e = read_path(&missing, &opts()).unwrap_err();
    assert!(matches!(e, DataError::Open { .. }));
    assert!(e.to_string().contains("nope.csv"), "{e}");
}

// ---- JSON Lines ----

#[test]
fn json_arrays_without_header() {
    let r = TableReader::new("[1, 2.5]\n\n[3, -4]\n".as_bytes(), &opts()).unwrap();
    assert_eq!(r.format(), Format::JsonLines);
    let t = r.read_all().unwrap();
    assert_eq!(t.features, array![[1.0, 2.5], [3.0, -4.0]]);
    assert_eq!(t.labels, None);
}

#[test]
fn json_arrays_with_a_header_line_and_label() {
    let t = read("[\"a\", \"label\", \"b\"]\n[1, 0, 2]\n[3, 1, 4]\n").unwrap();
    assert_eq!(t.features, array![[1.0, 2.0], [3.0, 4.0]]);
    assert_eq!(t.labels, Some(Labels::from_values(&[0.0, 1.0])));
    assert_eq!(
        t.feature_names,
        Some(vec!["a".to_string(), "b".to_string()])
    );
}

#[test]
fn json_objects_name_their_columns_in_any_order() {
    let t =
        read("{\"x\": 1, \"label\": 0, \"y\": 2}\n{\"y\": 4, \"x\": 3, \"label\": 1}\n").unwrap();
    assert_eq!(t.features, array![[1.0, 2.0], [3.0, 4.0]]);
    assert_eq!(t.labels, Some(Labels::from_values(&[0.0, 1.0])));
    assert_eq!(
        t.feature_names,
        Some(vec!["x".to_string(), "y".to_string()])
    );
}

#[test]
fn wide_json_objects_are_matched_by_name() {
    let names: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    let line = |values: &[(usize, f64)]| {
        let fields: Vec<String> = values
            .iter()
            .map(|(i, v)| format!("\"{}\": {v}", names[*i]))
            .collect();
        format!("{{{}}}\n", fields.join(", "))
    };
    let forward: Vec<(usize, f64)> = (0..20).map(|i| (i, i as f64)).collect();
    let backward: Vec<(usize, f64)> = (0..20).rev().map(|i| (i, -(i as f64))).collect();
    let t = read(&(line(&forward) + &line(&backward))).unwrap();
    assert_eq!(t.features.dim(), (2, 20));
    assert_eq!(t.features[[0, 7]], 7.0);
    assert_eq!(t.features[[1, 7]], -7.0);
    let e = err(&(line(&forward) + &line(&forward[1..])));
    assert!(matches!(&e, DataError::MissingColumn { line: 2, name } if name == "c0"));
}

#[test]
fn json_objects_must_keep_the_same_columns() {
    let e = err("{\"x\": 1, \"y\": 2}\n{\"x\": 3}\n");
    assert!(matches!(&e, DataError::MissingColumn { line: 2, name } if name == "y"));
    let e = err("{\"x\": 1, \"y\": 2}\n{\"x\": 3, \"y\": 4, \"z\": 5}\n");
    assert!(matches!(&e, DataError::UnexpectedColumn { line: 2, name, .. } if name == "z"));
    let e = err("{\"x\": 1, \"y\": 2}\n{\"x\": 3, \"x\": 4, \"y\": 5}\n");
    assert!(matches!(&e, DataError::UnexpectedColumn { line: 2, name, .. } if name == "x"));
    let e = err("{\"x\": 1, \"x\": 2}\n");
    assert!(matches!(e, DataError::UnexpectedColumn { line: 1, .. }));
}

#[test]
fn json_non_numbers_are_reported_with_line_and_column() {
    let e = err("{\"x\": 1, \"y\": 2}\n{\"x\": 3, \"y\": \"4\"}\n");
    assert_eq!(
        e.to_string(),
        "line 2, column 2 (\"y\"): \"4\" is not a number"
    );
    let e = err("[1, 2]\n[3, null]\n");
    assert_eq!(e.to_string(), "line 2, column 2: null is not a number");
    let e = err("[1, [2]]\n");
    assert_eq!(e.to_string(), "line 1, column 2: an array is not a number");
}

#[test]
fn json_ragged_and_malformed_lines_are_reported() {
    let e = err("[1, 2]\n[3]\n");
    assert!(matches!(
        e,
        DataError::Ragged {
            line: 2,
            found: 1,
            expected: 2
        }
    ));
    let e = err("[1, 2]\n[3, 4\n");
    assert!(matches!(&e, DataError::Json { line: 2, .. }), "{e}");
    assert!(e.to_string().starts_with("line 2: invalid JSON"), "{e}");
    // One shape per file.
    let e = err("[1, 2]\n{\"a\": 1, \"b\": 2}\n");
    assert!(matches!(e, DataError::Json { line: 2, .. }));
    let e = err("[1, 2]\n[1e999, 2]\n");
    assert!(matches!(e, DataError::Json { line: 2, .. }));
}

#[test]
fn json_empty_and_header_only_inputs_are_errors() {
    assert!(matches!(read("[\"a\", \"b\"]\n"), Err(DataError::Empty)));
    assert!(matches!(read("[]\n"), Err(DataError::Empty)));
}

#[test]
fn json_label_must_exist_when_required() {
    let o = ReadOptions {
        label: LabelColumn::Required("label".into()),
        ..opts()
    };
    let e = read_with("[1, 2]\n", &o).unwrap_err();
    assert!(matches!(e, DataError::LabelNotFound { .. }));
}

#[test]
fn gzip_json_lines_and_json_chunks() {
    let text: String = (0..25)
        .map(|i| format!("{{\"v\": {i}, \"label\": {}}}\n", i % 2))
        .collect();
    let packed = gzip(text.as_bytes());
    let mut r = TableReader::new(&packed[..], &opts()).unwrap();
    assert!(r.is_gzip());
    assert_eq!(r.label_name(), Some("label"));
    let mut total = 0;
    while let Some(c) = r.next_chunk(10).unwrap() {
        assert_eq!(c.first_row, total);
        total += c.features.nrows();
    }
    assert_eq!(total, 25);
}
