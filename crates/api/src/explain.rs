//! The `explain` option of `detect`, `predict` and batch jobs: `true` (the top
//! [`DEFAULT_TOP_K`] features of each row), `false`, or `{"top_k": N}` with N in
//! 1..=n_features; and the explanations as the answers write them, one array per row of
//! `{"feature": name, "contribution": share}` (names from the model's or the data's
//! feature names, else `x0`, `x1`, …; see `detect_core::explain` for what a share is).

use detect_core::{Explanations, FeatureContribution};
use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::RequestBody;

/// Features per row when `explain` is `true` (or fewer when the data has fewer).
pub(crate) const DEFAULT_TOP_K: usize = detect_core::explain::DEFAULT_TOP_K;

/// What a request asked to explain: `top_k` as given, or `None` for the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExplainRequest {
    top_k: Option<usize>,
}

impl ExplainRequest {
    /// The features per row for data of `n_features` columns.
    ///
    /// # Errors
    /// 422 naming `explain.top_k` when the given `top_k` is above `n_features`.
    pub(crate) fn top_k(self, n_features: usize) -> Result<usize, ApiError> {
        match self.top_k {
            None => Ok(DEFAULT_TOP_K.min(n_features)),
            Some(k) if k <= n_features => Ok(k),
            Some(k) => Err(top_k_error(
                format!(
                    "'explain.top_k' is {k}; accepted: 1..={n_features} (the number of features)"
                ),
                n_features,
            )),
        }
    }

    /// The `top_k` a request gave, if any (a batch job fitting on its sources checks it
    /// against each source's width).
    pub(crate) fn given_top_k(self) -> Option<usize> {
        self.top_k
    }
}

fn top_k_error(message: String, maximum: usize) -> ApiError {
    ApiError::invalid_with(
        message,
        json!({"field": "explain.top_k", "minimum": 1, "maximum": maximum}),
    )
}

/// Takes `explain` from a request body: absent, `null` or `false` is `None`.
///
/// # Errors
/// 422 naming `explain` for a value that is neither a boolean nor an object of `top_k`
/// alone, and naming `explain.top_k` for a `top_k` that is not an integer ≥ 1.
pub(crate) fn take_explain(body: &mut RequestBody) -> Result<Option<ExplainRequest>, ApiError> {
    let invalid = |message: String| ApiError::invalid_with(message, json!({"field": "explain"}));
    match body.take("explain") {
        None | Some(Value::Bool(false)) => Ok(None),
        Some(Value::Bool(true)) => Ok(Some(ExplainRequest { top_k: None })),
        Some(Value::Object(mut fields)) => {
            let top_k = fields.remove("top_k");
            if let Some(other) = fields.keys().next() {
                return Err(invalid(format!(
                    "unknown field 'explain.{other}'; accepted: top_k"
                )));
            }
            match top_k {
                None | Some(Value::Null) => Ok(Some(ExplainRequest { top_k: None })),
                Some(v) => match v.as_u64() {
                    Some(k) if k >= 1 => Ok(Some(ExplainRequest {
                        top_k: Some(usize::try_from(k).unwrap_or(usize::MAX)),
                    })),
                    _ => Err(ApiError::invalid_with(
                        format!("'explain.top_k' must be an integer of at least 1, got {v}"),
                        json!({"field": "explain.top_k", "minimum": 1}),
                    )),
                },
            }
        }
        Some(other) => Err(invalid(format!(
            "'explain' must be true, false or {{\"top_k\": N}}, got {other}"
        ))),
    }
}

/// The names of `n` columns: `names` when it has one per column, else `x0`, `x1`, ….
pub(crate) fn feature_names(names: Option<&[String]>, n: usize) -> Vec<String> {
    match names {
        Some(names) if names.len() == n => names.to_vec(),
        _ => (0..n).map(detect_core::explain::column_name).collect(),
    }
}

/// Explanations as the answers write them: per row, an array of `{"feature",
/// "contribution"}` with the feature's name.
#[derive(Debug)]
pub(crate) struct NamedExplanations<'a> {
    pub(crate) rows: &'a Explanations,
    pub(crate) names: &'a [String],
}

impl Serialize for NamedExplanations<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.rows.len()))?;
        for row in self.rows.rows() {
            seq.serialize_element(&NamedRow {
                row,
                names: self.names,
            })?;
        }
        seq.end()
    }
}

struct NamedRow<'a> {
    row: &'a [FeatureContribution],
    names: &'a [String],
}

#[derive(Serialize)]
struct Named<'a> {
    feature: &'a str,
    contribution: f64,
}

impl Serialize for NamedRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.row.len()))?;
        for c in self.row {
            seq.serialize_element(&Named {
                feature: &self.names[c.feature],
                contribution: c.contribution,
            })?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::parse;

    fn explain(body: &str) -> Result<Option<ExplainRequest>, ApiError> {
        let mut body: RequestBody = parse(body.as_bytes()).unwrap();
        take_explain(&mut body)
    }

    #[test]
    fn booleans_objects_and_their_errors() {
        assert_eq!(explain(r#"{"explain": false}"#).unwrap(), None);
        assert_eq!(explain(r#"{}"#).unwrap(), None);
        let default = explain(r#"{"explain": true}"#).unwrap().unwrap();
        assert_eq!(
            (default.top_k(10).unwrap(), default.top_k(2).unwrap()),
            (3, 2)
        );
        let given = explain(r#"{"explain": {"top_k": 5}}"#).unwrap().unwrap();
        assert_eq!(given.top_k(5).unwrap(), 5);
        assert!(
            given
                .top_k(4)
                .unwrap_err()
                .to_string()
                .contains("explain.top_k")
        );
        assert_eq!(
            explain(r#"{"explain": {}}"#)
                .unwrap()
                .unwrap()
                .top_k(4)
                .unwrap(),
            3
        );
        for (body, field) in [
            (r#"{"explain": "yes"}"#, "explain"),
            (r#"{"explain": 3}"#, "explain"),
            (r#"{"explain": {"top": 3}}"#, "explain"),
            (r#"{"explain": {"top_k": 0}}"#, "explain.top_k"),
            (r#"{"explain": {"top_k": 1.5}}"#, "explain.top_k"),
            (r#"{"explain": {"top_k": "3"}}"#, "explain.top_k"),
        ] {
            let e = explain(body).unwrap_err();
            assert!(e.to_string().contains(field), "{body}: {e}");
        }
    }

    #[test]
    fn explanations_carry_the_feature_names() {
        let rows = detect_core::explain::top_features(ndarray::array![[0.25, 0.75]].view(), 1);
        let names = feature_names(None, 2);
        let v = serde_json::to_value(NamedExplanations {
            rows: &rows,
            names: &names,
        })
        .unwrap();
        assert_eq!(v, json!([[{"feature": "x1", "contribution": 0.75}]]));
        let given = vec!["a".to_string(), "b".to_string()];
        assert_eq!(feature_names(Some(&given), 2), given);
        assert_eq!(feature_names(Some(&given), 3)[2], "x2");
    }
}
