//! Typed errors for everything a caller can get wrong.
//!
//! Every variant names what was wrong precisely enough to be shown to an end user
//! (row and column numbers are 0-based in the fields and 0-based in the messages, the
//! convention of the HTTP API, `docs/api.md`, whose rows are JSON array indices).

use thiserror::Error;

/// An error from validating input, checking parameters, fitting or scoring.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DetectError {
    /// The input has no rows or no columns.
    #[error("input is empty: {0}")]
    EmptyInput(String),
    /// Fitting needs at least two rows.
    #[error("at least 2 rows are needed to fit a model, got {n_rows}")]
    TooFewRows { n_rows: usize },
    /// A row whose length differs from the first row's.
    #[error("row {row} has {found} values, expected {expected}")]
    RaggedRow {
        row: usize,
        found: usize,
        expected: usize,
    },
    /// A NaN or infinite value.
    #[error("row {row}, column {column} is {value}: only finite numbers are accepted")]
    NonFinite {
        row: usize,
        column: usize,
        value: f64,
    },
    /// Scoring rows whose width differs from what the model was fitted on.
    #[error("rows have {found} features, the model expects {expected}")]
    FeatureMismatch { expected: usize, found: usize },
    /// An algorithm name that is not known.
    #[error("unknown algorithm '{name}'; accepted: {accepted}")]
    UnknownAlgorithm { name: String, accepted: String },
    /// A parameter name the algorithm does not take.
    #[error("unknown parameter '{name}' for {algorithm}; accepted: {accepted}")]
    UnknownParameter {
        algorithm: String,
        name: String,
        accepted: String,
    },
    /// A parameter value of the wrong type or out of its range.
    #[error("invalid value for '{name}': {reason}")]
    InvalidParameter { name: String, reason: String },
    /// A serialized model that cannot be read back.
    #[error("cannot read model: {0}")]
    Deserialize(String),
    /// A serialized model written by a format version this build does not read.
    #[error("model format version {found} is not supported (this build reads version {supported})")]
    UnsupportedFormat { found: u16, supported: u16 },
}

impl DetectError {
    /// `true` when the error is the caller's fault (bad data or parameters), as opposed to
    /// a stored artifact that cannot be read.
    pub fn is_input_error(&self) -> bool {
        !matches!(
            self,
            DetectError::Deserialize(_) | DetectError::UnsupportedFormat { .. }
        )
    }
}
