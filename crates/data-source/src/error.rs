//! What can be wrong with an input file, located precisely enough for a person to fix it.
//!
//! Line numbers are 1-based lines of the (decompressed) file, as an editor shows them;
//! column numbers are 1-based positions within the record, counting the label column, so
//! they match what a person sees in the file. Where the input has a header, errors name the
//! column too.

use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// An error from opening, decompressing or parsing tabular input.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Reading or decompressing failed (a truncated or corrupt gzip stream lands here).
    #[error("cannot read the input near line {line}: {source}")]
    Read {
        line: u64,
        #[source]
        source: io::Error,
    },
    /// No data rows: an empty file, only blank lines, or only a header.
    #[error("the input has no data rows")]
    Empty,
    /// Every column is the label: nothing is left to detect anomalies on.
    #[error("the input has no feature columns besides the label '{label}'")]
    NoFeatures { label: String },
    /// A value that is not a number.
    #[error(
        "line {line}, column {column}{}: {value} is not a number",
        ColumnName(name)
    )]
    NotANumber {
        line: u64,
        column: usize,
        name: Option<String>,
        /// The value as written (CSV) or as JSON (`"abc"`, `null`).
        value: String,
    },
    /// NaN or an infinity (`nan`, `inf`, `1e999`).
    #[error(
        "line {line}, column {column}{}: {value} is not a finite number (NaN and infinities are not accepted)",
        ColumnName(name)
    )]
    NonFinite {
        line: u64,
        column: usize,
        name: Option<String>,
        value: String,
    },
    /// A record with more or fewer values than the first one.
    #[error("line {line} has {found} values, expected {expected} like the first record")]
    Ragged {
        line: u64,
        found: usize,
        expected: usize,
    },
    /// The requested label column is not among the columns.
    #[error("label column '{name}' not found: {available}")]
    LabelNotFound {
        name: String,
        /// The columns there are, or why there are no names.
        available: String,
    },
    /// A JSON Lines object lacks a column the first object had.
    #[error("line {line}: column \"{name}\" is missing")]
    MissingColumn { line: u64, name: String },
    /// A JSON Lines object has a column the first object did not have, or has it twice.
    #[error(
        "line {line}: unexpected column \"{name}\" (the first object's columns are: {expected})"
    )]
    UnexpectedColumn {
        line: u64,
        name: String,
        expected: String,
    },
    /// Malformed CSV (for instance an unterminated quote).
    #[error("line {line}: malformed CSV: {message}")]
    Csv { line: u64, message: String },
    /// A line of JSON Lines that is not valid JSON, or not an array or object.
    #[error("line {line}: {message}")]
    Json { line: u64, message: String },
}

impl DataError {
    /// The 1-based line the error is on, where there is one.
    pub fn line(&self) -> Option<u64> {
        match self {
            DataError::Read { line, .. }
            | DataError::NotANumber { line, .. }
            | DataError::NonFinite { line, .. }
            | DataError::Ragged { line, .. }
            | DataError::MissingColumn { line, .. }
            | DataError::UnexpectedColumn { line, .. }
            | DataError::Csv { line, .. }
            | DataError::Json { line, .. } => Some(*line),
            DataError::Open { .. }
            | DataError::Empty
            | DataError::NoFeatures { .. }
            | DataError::LabelNotFound { .. } => None,
        }
    }
}

/// Formats ` ("name")` after a column number when the column has a name.
struct ColumnName<'a>(&'a Option<String>);

impl fmt::Display for ColumnName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, " (\"{name}\")"),
            None => Ok(()),
        }
    }
}
