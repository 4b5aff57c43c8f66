//! # data-source: tabular numeric data, read as a stream
//!
//! Turns a file or any [`std::io::Read`] (a local file, an S3 object body, a request body)
//! into matrices of `f64` for the detectors, chunk by chunk or all at once:
//!
//! - **Formats**: CSV, gzip-compressed CSV and JSON Lines (each line an array of numbers, or
//!   an object of name → number). Gzip is recognised by its magic bytes whatever the file is
//!   called; JSON Lines by a first line starting with `[` or `{` (or a `.jsonl`/`.ndjson`
//!   name).
//! - **Header**: a CSV header is recognised when the first record has a field that is
//!   neither empty nor a number; a JSON Lines header is a first line of strings. JSON objects
//!   name their columns themselves.
//! - **Labels**: a column named `label` (or the one asked for, see [`LabelColumn`]) is taken
//!   out of the features and returned on its own, one byte a row ([`Labels`]: 1 = outlier,
//!   0 = inlier, any other number noted as such).
//! - **Errors** are typed ([`DataError`]) and name the 1-based line of the (decompressed)
//!   file and the 1-based column: a non-number, NaN or infinity, a ragged line, an empty
//!   input, a missing label column.
//!
//! ```
//! use data_source::{Labels, ReadOptions, TableReader};
//!
//! let csv = "f0,f1,label\n1.0,2.0,0\n1.5,2.5,0\n9.0,-3.0,1\n";
//! let mut reader = TableReader::new(csv.as_bytes(), &ReadOptions::default())?;
//! assert_eq!(reader.feature_names(), Some(&["f0".to_string(), "f1".to_string()][..]));
//! let first = reader.next_chunk(2)?.unwrap();
//! assert_eq!(first.features.dim(), (2, 2));
//! assert_eq!((first.first_row, first.labels), (0, Some(Labels::from_values(&[0.0, 0.0]))));
//! let rest = reader.next_chunk(2)?.unwrap();
//! assert_eq!((rest.first_row, rest.features.row(0).to_vec()), (2, vec![9.0, -3.0]));
//! assert!(reader.next_chunk(2)?.is_none());
//!
//! // Or everything at once; a bad value is reported with its line and column.
//! let err = data_source::read_all("1,2\n3,x\n".as_bytes(), &ReadOptions::default())
//!     .unwrap_err();
//! assert_eq!(err.to_string(), "line 2, column 2: \"x\" is not a number");
//! # Ok::<(), data_source::DataError>(())
//! ```
//!
//! ## Speed and memory
//! This is on the critical path of `pynomaly detect`, so the CSV path allocates nothing per
//! field or record: the decompressed stream is cut into blocks of whole lines, each number is
//! parsed in place with `fast-float2` (correctly rounded, so values are bit-identical to
//! Python's `float`), and values are appended to a flat `Vec<f64>` that becomes the matrix
//! without a copy (see `csv_rows` for why this is not the `csv` crate). [`TableReader::read_all`]
//! decompresses on one thread while the rayon pool parses. Reading a whole table peaks at
//! about the size of the final matrix plus one byte a row for the labels and a few blocks in flight: the
//! vector grows by `realloc`, which for large blocks remaps pages instead of copying them.
//!
//! The reader is synchronous on purpose (no tokio): callers on an async runtime run it on a
//! blocking thread, feeding it through a synchronous bridge.

mod csv_rows;
mod error;
mod input;
mod json_rows;
mod labels;
mod layout;
#[cfg(test)]
mod tests;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use ndarray::Array2;

use crate::csv_rows::CsvRows;
pub use crate::error::DataError;
use crate::json_rows::JsonRows;
pub use crate::labels::Labels;
use crate::layout::Layout;

/// The name of the label column looked for by default.
pub const DEFAULT_LABEL_COLUMN: &str = "label";

/// A text format of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values (or another single-byte delimiter).
    Csv,
    /// One JSON array or object per line.
    JsonLines,
}

/// Whether the first record names the columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Header {
    /// Decide from the first record (see the crate docs).
    #[default]
    Detect,
    /// The first record is a header.
    Present,
    /// The first record is data.
    Absent,
}

/// Which column, if any, holds the labels (1 = outlier, 0 = inlier, by convention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelColumn {
    /// Take the column with this name out of the features when there is one.
    Detect(String),
    /// The column with this name must exist ([`DataError::LabelNotFound`] otherwise).
    Required(String),
    /// No label column: every column is a feature.
    Disabled,
}

impl Default for LabelColumn {
    fn default() -> Self {
        LabelColumn::Detect(DEFAULT_LABEL_COLUMN.to_string())
    }
}

/// How to read an input. The defaults detect everything.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    /// `None`: from the file name where there is one, else from the first byte.
    pub format: Option<Format>,
    pub header: Header,
    pub label: LabelColumn,
    /// CSV field delimiter; `None`: `,` (or tab for a `.tsv` file).
    pub delimiter: Option<u8>,
}

/// A block of consecutive rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// One row per record, one column per feature.
    pub features: Array2<f64>,
    /// The label of each row, when the input has a label column.
    pub labels: Option<Labels>,
    /// 0-based index of the chunk's first row among all data rows of the input.
    pub first_row: usize,
}

/// A whole input.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub features: Array2<f64>,
    pub labels: Option<Labels>,
    /// Feature names from a header or JSON keys (the label's excluded).
    pub feature_names: Option<Vec<String>>,
}

enum Rows<'a> {
    Csv(CsvRows<'a>),
    Json(JsonRows<'a>),
}

/// Reads records from a stream, chunk by chunk, in constant memory.
///
/// Creating the reader reads the first record (two after a header), so the width, the
/// feature names and the label column are known before the first chunk, and an empty input
/// fails at once.
pub struct TableReader<'a> {
    rows: Rows<'a>,
    layout: Layout,
    feature_names: Option<Vec<String>>,
    format: Format,
    gzip: bool,
    rows_read: usize,
}

impl fmt::Debug for TableReader<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableReader")
            .field("format", &self.format)
            .field("gzip", &self.gzip)
            .field("n_features", &self.n_features())
            .field("feature_names", &self.feature_names)
            .field("label", &self.label_name())
            .field("rows_read", &self.rows_read)
            .finish_non_exhaustive()
    }
}

impl<'a> TableReader<'a> {
    /// Starts reading `reader` (plain or gzip-compressed).
    ///
    /// # Errors
    /// An unreadable or empty input, a required label column that is absent, or a first
    /// line that is neither a header nor data.
    pub fn new<R: Read + Send + 'a>(reader: R, options: &ReadOptions) -> Result<Self, DataError> {
        Self::start(reader, options, None)
    }

    fn start<R: Read + Send + 'a>(
        reader: R,
        options: &ReadOptions,
        hinted: Option<Format>,
    ) -> Result<Self, DataError> {
        let opened = input::open(reader).map_err(|source| DataError::Read { line: 1, source })?;
        let format = options
            .format
            .or(hinted)
            .unwrap_or(match opened.first_byte {
                Some(b'[' | b'{') => Format::JsonLines,
                _ => Format::Csv,
            });
        let (rows, layout) = match format {
            Format::Csv => {
                let delimiter = options.delimiter.unwrap_or(b',');
                let (rows, layout) =
                    CsvRows::start(opened.stream, delimiter, options.header, &options.label)?;
                (Rows::Csv(rows), layout)
            }
            Format::JsonLines => {
                let (rows, layout) =
                    JsonRows::start(opened.stream, options.header, &options.label)?;
                (Rows::Json(rows), layout)
            }
        };
        Ok(Self {
            feature_names: layout.feature_names(),
            rows,
            layout,
            format,
            gzip: opened.gzip,
            rows_read: 0,
        })
    }

    /// The number of feature columns (the label excluded).
    pub fn n_features(&self) -> usize {
        self.layout.n_features()
    }

    /// Feature names, when the input names its columns.
    pub fn feature_names(&self) -> Option<&[String]> {
        self.feature_names.as_deref()
    }

    /// The label column's name, when the input has one.
    pub fn label_name(&self) -> Option<&str> {
        let i = self.layout.label_index?;
        self.layout.names.as_ref()?.get(i).map(String::as_str)
    }

    /// The format being read.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether the input was gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// Data rows handed out so far.
    pub fn rows_read(&self) -> usize {
        self.rows_read
    }

    /// The next block of at most `max_rows` rows (at least one is read even when
    /// `max_rows` is 0), or `None` at the end of the input.
    ///
    /// # Errors
    /// The first bad record in the block, with its line; nothing of the block is returned.
    /// A later call continues after the bad record.
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk>, DataError> {
        let max_rows = max_rows.max(1);
        // Reserve for the whole chunk only up to a bound: `usize::MAX` means "the rest".
        let reserve = max_rows.min(64 * 1024);
        let mut features = Vec::with_capacity(reserve * self.n_features());
        let mut labels = Labels::default();
        if self.layout.label_index.is_some() {
            labels.reserve(reserve);
        }
        let first_row = self.rows_read;
        let n = self.read_rows(max_rows, &mut features, &mut labels)?;
        if n == 0 {
            return Ok(None);
        }
        Ok(Some(Chunk {
            features: self.matrix(n, features),
            labels: self.layout.label_index.map(|_| labels),
            first_row,
        }))
    }

    /// Reads every remaining row into one table.
    ///
    /// # Errors
    /// The first bad record, with its line.
    pub fn read_all(mut self) -> Result<Table, DataError> {
        let mut features = Vec::new();
        let mut labels = Labels::default();
        let n = match &mut self.rows {
            Rows::Csv(rows) => rows.read_all(&self.layout, &mut features, &mut labels)?,
            Rows::Json(rows) => rows.read(&self.layout, usize::MAX, &mut features, &mut labels)?,
        };
        self.rows_read += n;
        if n == 0 && self.rows_read == 0 {
            return Err(DataError::Empty);
        }
        Ok(Table {
            features: self.matrix(n, features),
            labels: self.layout.label_index.map(|_| labels),
            feature_names: self.feature_names,
        })
    }

    fn read_rows(
        &mut self,
        max_rows: usize,
        features: &mut Vec<f64>,
        labels: &mut Labels,
    ) -> Result<usize, DataError> {
        let n = match &mut self.rows {
            Rows::Csv(rows) => rows.read(&self.layout, max_rows, features, labels)?,
            Rows::Json(rows) => rows.read(&self.layout, max_rows, features, labels)?,
        };
        self.rows_read += n;
        Ok(n)
    }

    fn matrix(&self, n_rows: usize, features: Vec<f64>) -> Array2<f64> {
        Array2::from_shape_vec((n_rows, self.n_features()), features)
            .expect("every row holds exactly n_features values")
    }
}

impl TableReader<'static> {
    /// Opens a file. The format comes from `options`, else from the name (`.csv`, `.tsv`,
    /// `.jsonl`, `.ndjson`, each optionally followed by `.gz`), else from the content.
    ///
    /// # Errors
    /// [`DataError::Open`] when the file cannot be opened, then as [`TableReader::new`].
    pub fn open(path: impl AsRef<Path>, options: &ReadOptions) -> Result<Self, DataError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| DataError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let (hinted, tab) = format_from_name(path);
        let mut options = options.clone();
        if tab && options.delimiter.is_none() {
            options.delimiter = Some(b'\t');
        }
        Self::start(file, &options, hinted)
    }
}

/// The format a file name promises, and whether it is tab-separated.
fn format_from_name(path: &Path) -> (Option<Format>, bool) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("csv") => (Some(Format::Csv), false),
        Some("tsv" | "tab") => (Some(Format::Csv), true),
        Some("jsonl" | "ndjson") => (Some(Format::JsonLines), false),
        _ => (None, false),
    }
}

/// Reads a whole stream into a table.
///
/// # Errors
/// As [`TableReader::new`] and [`TableReader::read_all`].
pub fn read_all<R: Read + Send>(reader: R, options: &ReadOptions) -> Result<Table, DataError> {
    TableReader::new(reader, options)?.read_all()
}

/// Reads a whole file into a table.
///
/// # Errors
/// As [`TableReader::open`] and [`TableReader::read_all`].
pub fn read_path(path: impl AsRef<Path>, options: &ReadOptions) -> Result<Table, DataError> {
    TableReader::open(path, options)?.read_all()
}
