//! detect-core's integration tests, one binary:
//!
//! - `golden`: against scikit-learn's answers, committed under `tests/fixtures/` at the
//!   repository root;
//! - `properties`: invariants that hold for any data (proptest);
//! - `explain`: per-feature explanations name the feature planted in anomalous rows.

mod explain;
mod golden;
mod properties;
