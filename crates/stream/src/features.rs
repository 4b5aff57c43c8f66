//! Feature vectors from JSON events.
//!
//! Two rules:
//! - [`Features::AllNumeric`], the Python streaming loop's rule: every numeric field of the
//!   object but the alert's id and timestamp fields ([`EventFields`]), nested objects
//!   flattened depth first. Keys are visited in sorted order at
//!   every level, so the order is stable whatever order the producer wrote them in (the
//!   Python loop relies on dict insertion order, which differs between producers).
//!   Booleans, strings, arrays and nulls are not features. Messages whose shape varies
//!   give vectors of varying width, which the model then refuses: use explicit paths for
//!   such streams.
//! - [`Features::Paths`]: an explicit list of dotted JSON paths (`temp,meta.rpm`), each of
//!   which must name a number in every message.
//!
//! A message whose features cannot be read gets a [`FeatureError`] naming the field; the
//! pipeline sends it to the dead letters with that reason.

use serde_json::{Map, Value};
use thiserror::Error;

use crate::alert::EventFields;
use crate::scan::{Entry, Scanned, ScannedEvent};

/// Why a message has no usable feature vector.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum FeatureError {
    #[error("feature {path:?} is missing")]
    Missing { path: String },
    #[error("feature {path:?} is {found}, not a number")]
    NotANumber { path: String, found: &'static str },
    #[error("feature {path:?}: {key:?} is {found}, not an object")]
    NotAnObject {
        path: String,
        key: String,
        found: &'static str,
    },
    #[error("the message has no numeric field")]
    NoNumericField,
}

/// Which fields of an event are its features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Features {
    /// Every numeric field but the event's id and timestamp, nested objects flattened,
    /// keys in sorted order.
    AllNumeric,
    /// These dotted paths, in this order.
    Paths(Vec<FeaturePath>),
}

/// One dotted path (`meta.rpm`) split into its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeaturePath {
    text: String,
    keys: Vec<String>,
}

impl Features {
    /// Parses `--features a,b,meta.rpm`; an empty string is refused.
    ///
    /// # Errors
    /// An empty list or an empty path segment (`a..b`, `a,,b`).
    /// The names of `n` extracted features, for explanations: the paths as written, else
    /// (every numeric field, whose set is each event's own) `x0`, `x1`, ….
    pub fn names(&self, n: usize) -> Vec<String> {
        match self {
            Features::Paths(paths) if paths.len() == n => {
                paths.iter().map(|p| p.text.clone()).collect()
            }
            _ => (0..n).map(detect_core::explain::column_name).collect(),
        }
    }

    pub fn parse_paths(list: &str) -> Result<Self, String> {
        Self::from_names(list.split(',')).ok_or_else(|| {
            format!("invalid --features {list:?}: empty field name (expected a,b,meta.rpm)")
        })
    }

    /// These dotted names (`temp`, `meta.rpm`), in this order: a model's `feature_names`.
    /// `None` for no name, or an empty name or path segment.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<Self> {
        let mut paths = Vec::new();
        for text in names {
            let text = text.trim();
            let keys: Vec<String> = text.split('.').map(str::to_string).collect();
            if text.is_empty() || keys.iter().any(String::is_empty) {
                return None;
            }
            paths.push(FeaturePath {
                text: text.to_string(),
                keys,
            });
        }
        (!paths.is_empty()).then_some(Self::Paths(paths))
    }

    /// The feature vector of one event object, appended to `out` (cleared first).
    ///
    /// # Errors
    /// A path that is missing or not a number; no numeric field at all.
    pub fn extract(
        &self,
        event: &Map<String, Value>,
        fields: &EventFields,
        out: &mut Vec<f64>,
    ) -> Result<(), FeatureError> {
        out.clear();
        match self {
            Self::AllNumeric => {
                all_numeric(event, Some(fields), out);
                if out.is_empty() {
                    return Err(FeatureError::NoNumericField);
                }
            }
            Self::Paths(paths) => {
                for path in paths {
                    out.push(lookup(event, path)?);
                }
            }
        }
        Ok(())
    }
}

/// [`Features::extract`] over an event read by the fast path: the same rule, the same
/// order. `false` when the event has no feature vector under the rule (a path missing or
/// not a number, no numeric field): the caller then takes the `Value` path, which names
/// the reason in the dead letter.
pub(crate) fn extract_scanned(
    features: &Features,
    fields: &EventFields,
    event: &ScannedEvent<'_, '_>,
    out: &mut Vec<f64>,
) -> bool {
    out.clear();
    match features {
        Features::AllNumeric => {
            all_numeric_scanned(event, event.root(), Some(fields), out);
            !out.is_empty()
        }
        Features::Paths(paths) => paths
            .iter()
            .all(|path| lookup_scanned(event, path).map(|x| out.push(x)).is_some()),
    }
}

/// As [`all_numeric`]: the scanner sorted every object's entries by key already.
fn all_numeric_scanned(
    event: &ScannedEvent<'_, '_>,
    entries: &[Entry<'_>],
    skip: Option<&EventFields>,
    out: &mut Vec<f64>,
) {
    for entry in entries {
        if skip.is_some_and(|f| f.contains(&entry.key)) {
            continue;
        }
        match entry.value {
            Scanned::Number(x) => out.push(x),
            Scanned::Object { start, len } => {
                all_numeric_scanned(event, event.object(start, len), None, out);
            }
            Scanned::Other => {}
        }
    }
}

/// As [`lookup`], `None` for every error.
fn lookup_scanned(event: &ScannedEvent<'_, '_>, path: &FeaturePath) -> Option<f64> {
    let find = |entries: &[Entry<'_>], key: &str| {
        entries
            .binary_search_by(|e| e.key.as_ref().cmp(key))
            .ok()
            .map(|i| entries[i].value)
    };
    let (last, parents) = path.keys.split_last()?;
    let mut object = event.root();
    for key in parents {
        match find(object, key)? {
            Scanned::Object { start, len } => object = event.object(start, len),
            Scanned::Number(_) | Scanned::Other => return None,
        }
    }
    match find(object, last)? {
        Scanned::Number(x) => Some(x),
        Scanned::Object { .. } | Scanned::Other => None,
    }
}

/// The numeric fields of `object`, nested objects flattened; `skip`: the top level's
/// event fields, which are not features.
fn all_numeric(object: &Map<String, Value>, skip: Option<&EventFields>, out: &mut Vec<f64>) {
    let mut entries: Vec<(&String, &Value)> = object
        .iter()
        .filter(|(k, _)| !skip.is_some_and(|f| f.contains(k)))
        .collect();
    // Already sorted with serde_json's default map; kept explicit so enabling its
    // `preserve_order` feature elsewhere in the build cannot change feature order.
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (_, value) in entries {
        match value {
            Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    out.push(x);
                }
            }
            Value::Object(inner) => all_numeric(inner, None, out),
            _ => {}
        }
    }
}

fn lookup(event: &Map<String, Value>, path: &FeaturePath) -> Result<f64, FeatureError> {
    let missing = || FeatureError::Missing {
        path: path.text.clone(),
    };
    let (last, parents) = path.keys.split_last().ok_or_else(missing)?;
    let mut object = event;
    for key in parents {
        match object.get(key) {
            Some(Value::Object(inner)) => object = inner,
            Some(other) => {
                return Err(FeatureError::NotAnObject {
                    path: path.text.clone(),
                    key: key.clone(),
                    found: kind(other),
                });
            }
            None => return Err(missing()),
        }
    }
    match object.get(last) {
        Some(Value::Number(n)) => n.as_f64().ok_or_else(missing),
        Some(other) => Err(FeatureError::NotANumber {
            path: path.text.clone(),
            found: kind(other),
        }),
        None => Err(missing()),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_id_and_timestamp_fields_are_not_features_at_the_top_level_only() {
        let e = obj(
            json!({"id": 17, "timestamp": 1_700_000_017, "temp": 20.1, "site": "a",
                           "meta": {"pressure": 1.2, "rpm": 900, "id": 5}}),
        );
        let mut out = Vec::new();
        Features::AllNumeric
            .extract(&e, &EventFields::default(), &mut out)
            .unwrap();
        // meta.id, meta.pressure, meta.rpm, temp
        assert_eq!(out, vec![5.0, 1.2, 900.0, 20.1]);
        let renamed = EventFields {
            id: "temp".into(),
            timestamp: "ts".into(),
        };
        Features::AllNumeric
            .extract(&e, &renamed, &mut out)
            .unwrap();
        // id, meta.id, meta.pressure, meta.rpm, timestamp
        assert_eq!(out, vec![17.0, 5.0, 1.2, 900.0, 1_700_000_017.0]);
    }

    #[test]
    fn all_numeric_flattens_nested_objects_in_sorted_key_order() {
        let e = obj(json!({
            "temp": 21.5, "id": "a-1", "ok": true,
            "meta": {"rpm": 1200, "z": {"deep": -1}, "a": 3, "tags": [1, 2]},
            "pressure": 1013
        }));
        let mut out = Vec::new();
        Features::AllNumeric
            .extract(&e, &EventFields::default(), &mut out)
            .unwrap();
        // meta.a, meta.rpm, meta.z.deep, pressure, temp
        assert_eq!(out, vec![3.0, 1200.0, -1.0, 1013.0, 21.5]);
    }

    #[test]
    fn all_numeric_is_independent_of_the_order_keys_were_written_in() {
        let a: Map<String, Value> =
            serde_json::from_str(r#"{"b":1,"a":2,"c":{"y":3,"x":4}}"#).unwrap();
        let b: Map<String, Value> =
            serde_json::from_str(r#"{"c":{"x":4,"y":3},"a":2,"b":1}"#).unwrap();
        let (mut fa, mut fb) = (Vec::new(), Vec::new());
        Features::AllNumeric
            .extract(&a, &EventFields::default(), &mut fa)
            .unwrap();
        Features::AllNumeric
            .extract(&b, &EventFields::default(), &mut fb)
            .unwrap();
        assert_eq!(fa, fb);
        assert_eq!(fa, vec![2.0, 1.0, 4.0, 3.0]);
    }

    #[test]
    fn paths_pick_nested_fields_in_the_given_order() {
        let f = Features::parse_paths("meta.rpm, temp").unwrap();
        let mut out = Vec::new();
        f.extract(
            &obj(json!({"temp": 1, "meta": {"rpm": 2.5}, "x": 9})),
            &EventFields::default(),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, vec![2.5, 1.0]);
    }

    #[test]
    fn unreadable_features_name_the_field() {
        let f = Features::parse_paths("temp,meta.rpm").unwrap();
        let mut out = Vec::new();
        assert_eq!(
            f.extract(&obj(json!({"temp": 1})), &EventFields::default(), &mut out)
                .unwrap_err()
                .to_string(),
            "feature \"meta.rpm\" is missing"
        );
        assert_eq!(
            f.extract(
                &obj(json!({"temp": "hot", "meta": {"rpm": 1}})),
                &EventFields::default(),
                &mut out
            )
            .unwrap_err()
            .to_string(),
            "feature \"temp\" is a string, not a number"
        );
        assert_eq!(
            f.extract(
                &obj(json!({"temp": 1, "meta": 5})),
                &EventFields::default(),
                &mut out
            )
            .unwrap_err(),
            FeatureError::NotAnObject {
                path: "meta.rpm".into(),
                key: "meta".into(),
                found: "a number"
            }
        );
        assert_eq!(
            Features::AllNumeric
                .extract(&obj(json!({"a": "x"})), &EventFields::default(), &mut out)
                .unwrap_err(),
            FeatureError::NoNumericField
        );
    }

    #[test]
    fn empty_path_lists_are_refused() {
        assert!(Features::parse_paths("").is_err());
        assert!(Features::parse_paths("a,,b").is_err());
        assert!(Features::parse_paths("a..b").is_err());
    }
}
