//! Request bodies: JSON with the contract's errors.
//!
//! [`ApiJson`] reads the body (413 past the limit) and parses it; a syntax error is a 400
//! `malformed_json`, a content error a 422 `invalid_input` that says where: for rows, the
//! row and column (`"NaN"` as a string, a ragged row, a non-number); for other fields, the
//! field's path. Working out *where* re-reads the body, which only happens on the error
//! path, so valid requests pay nothing for it.
//!
//! [`RequestBody`] is the shape of every scoring and training request: `data` parsed
//! straight into one flat `Vec<f64>` (no vector per row, no intermediate `Value`), every
//! other field kept as JSON for the handler to take what it accepts. Parameters may come
//! nested in `"parameters"` or flat at the top level (the guide's clients send `**kwargs`
//! flat); [`RequestBody::take_parameters`] merges both.

use std::fmt;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use ndarray::Array2;
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body, parsed with the contract's errors.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.limits.max_body_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit }
            } else {
                ApiError::MalformedJson("the request body could not be read".into())
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a JSON document into `T`, explaining failures (see the module docs).
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).or_else(|e| {
        // JSON (and JSON Schema's `integer`) counts `3.0` and `3e2` as integers; serde does
        // not. Read them so where an integer is expected (only on the error path: a body
        // without them pays nothing).
        if e.classify() == serde_json::error::Category::Data
            && let Ok(mut value) = serde_json::from_slice::<Value>(bytes)
            && integral_numbers_as_integers(&mut value)
            && let Ok(parsed) = serde_json::from_value(value)
        {
            return Ok(parsed);
        }
        Err(explain::<T>(bytes, &e))
    })
}

/// Rewrites every number written with a fraction or an exponent whose value is a whole
/// number that an `f64` holds exactly (|x| ≤ 2^53) as an integer; whether any was.
fn integral_numbers_as_integers(value: &mut Value) -> bool {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if x.fract() == 0.0 && x.abs() <= EXACT {
                // In range, so the conversion is exact.
                #[allow(clippy::cast_possible_truncation)]
                let whole = x as i64;
                *value = Value::from(whole);
                true
            } else {
                false
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, v| integral_numbers_as_integers(v) | any),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |any, v| integral_numbers_as_integers(v) | any),
        _ => false,
    }
}

fn explain<T: DeserializeOwned>(bytes: &[u8], e: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io | Category::Syntax | Category::Eof => {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return ApiError::MalformedJson(
                    "the request body is empty: expected a JSON object".into(),
                );
            }
            if let Some(token) = non_finite_token_at(bytes, e.line(), e.column()) {
                return ApiError::invalid_with(
                    format!(
                        "{token} at line {}, column {} is not a JSON number: only finite numbers are accepted",
                        e.line(),
                        e.column()
                    ),
                    json!({"line": e.line(), "column": e.column(), "value": token}),
                );
            }
            ApiError::MalformedJson(format!("malformed JSON: {e}"))
        }
        Category::Data => {
            if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
                if !value.is_object() {
                    return ApiError::invalid("the request body must be a JSON object");
                }
                if let Some(err) = value.get("data").and_then(diagnose_rows) {
                    return err;
                }
            }
            let mut de = serde_json::Deserializer::from_slice(bytes);
            match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(pe) => {
                    let path = pe.path().to_string();
                    let message = strip_position(&pe.inner().to_string());
                    ApiError::invalid_with(format!("{path}: {message}"), json!({"field": path}))
                }
                Ok(_) => ApiError::invalid(strip_position(&e.to_string())),
            }
        }
    }
}

/// serde_json appends " at line L column C"; for content errors the path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// `NaN`, `Infinity` or `-Infinity` where the parser stopped (Python's `json.dumps`
/// writes them), so the client learns the real problem rather than "expected value".
fn non_finite_token_at(bytes: &[u8], line: usize, column: usize) -> Option<&'static str> {
    let start = bytes
        .split(|&b| b == b'\n')
        .take(line.saturating_sub(1))
        .map(|l| l.len() + 1)
        .sum::<usize>();
    let at = start + column.saturating_sub(1);
    let from = at.saturating_sub(1);
    let window = bytes.get(from..(at + 10).min(bytes.len()))?;
    ["-Infinity", "Infinity", "NaN"]
        .into_iter()
        .find(|t| (0..window.len()).any(|i| window[i..].starts_with(t.as_bytes())))
}

/// Explains what is wrong with `data` (a JSON value), naming the row and column; `None`
/// when nothing is.
pub(crate) fn diagnose_rows(data: &Value) -> Option<ApiError> {
    if data.is_null() {
        return None;
    }
    let Some(rows) = data.as_array() else {
        return Some(ApiError::invalid_with(
            "'data' must be an array of rows (arrays of numbers)",
            json!({"field": "data"}),
        ));
    };
    let width = rows.first().and_then(Value::as_array).map(Vec::len);
    for (row, r) in rows.iter().enumerate() {
        let Some(cells) = r.as_array() else {
            return Some(ApiError::invalid_with(
                format!("row {row} is not an array of numbers"),
                json!({"row": row}),
            ));
        };
        for (column, cell) in cells.iter().enumerate() {
            if !cell.is_number() {
                return Some(ApiError::invalid_with(
                    format!(
                        "row {row}, column {column} is {cell}: only finite numbers are accepted"
                    ),
                    json!({"row": row, "column": column, "value": cell}),
                ));
            }
        }
        if let Some(expected) = width
            && cells.len() != expected
        {
            return Some(ApiError::invalid_with(
                format!("row {row} has {} values, expected {expected}", cells.len()),
                json!({"row": row, "found": cells.len(), "expected": expected}),
            ));
        }
    }
    None
}

/// Rows of numbers, parsed into one flat row-major vector.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Rows {
    pub(crate) values: Vec<f64>,
    pub(crate) n_rows: usize,
    pub(crate) n_cols: usize,
}

impl Rows {
    /// Rows × features.
    pub(crate) fn cells(&self) -> usize {
        self.values.len()
    }

    /// The matrix.
    ///
    /// # Errors
    /// 422 for no rows or rows with no values.
    pub(crate) fn into_matrix(self) -> Result<Array2<f64>, ApiError> {
        if self.n_rows == 0 {
            return Err(detect_core::DetectError::EmptyInput("'data' has no rows".into()).into());
        }
        if self.n_cols == 0 {
            return Err(detect_core::DetectError::EmptyInput("row 0 has no values".into()).into());
        }
        Array2::from_shape_vec((self.n_rows, self.n_cols), self.values).map_err(ApiError::internal)
    }
}

impl<'de> Deserialize<'de> for Rows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(RowsVisitor)
    }
}

struct RowsVisitor;

impl<'de> Visitor<'de> for RowsVisitor {
    type Value = Rows;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of rows, each an array of numbers")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Rows, A::Error> {
        let mut rows = Rows::default();
        loop {
            let seed = RowSeed {
                out: &mut rows.values,
                expected: (rows.n_rows > 0).then_some(rows.n_cols),
                row: rows.n_rows,
            };
            match seq.next_element_seed(seed)? {
                Some(len) => {
                    if rows.n_rows == 0 {
                        rows.n_cols = len;
                    }
                    rows.n_rows += 1;
                }
                None => return Ok(rows),
            }
        }
    }
}

struct RowSeed<'a> {
    out: &'a mut Vec<f64>,
    expected: Option<usize>,
    row: usize,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = usize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "row {} as an array of numbers", self.row)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0usize;
        while let Some(x) = seq.next_element::<f64>()? {
            self.out.push(x);
            n += 1;
        }
        if let Some(expected) = self.expected
            && n != expected
        {
            return Err(de::Error::custom(format!(
                "row {} has {n} values, expected {expected}",
                self.row
            )));
        }
        Ok(n)
    }
}

/// A scoring or training request: `data`, and every other field as JSON.
#[derive(Debug, Default)]
pub(crate) struct RequestBody {
    pub(crate) data: Option<Rows>,
    fields: Map<String, Value>,
}

impl<'de> Deserialize<'de> for RequestBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(BodyVisitor)
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = RequestBody;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RequestBody, A::Error> {
        let mut body = RequestBody::default();
        while let Some(key) = map.next_key::<String>()? {
            if key == "data" {
                body.data = map.next_value::<Option<Rows>>()?;
            } else {
                let value: Value = map.next_value()?;
                if !value.is_null() {
                    body.fields.insert(key, value);
                }
            }
        }
        Ok(body)
    }
}

impl RequestBody {
    /// Takes a field, if present.
    pub(crate) fn take(&mut self, key: &str) -> Option<Value> {
        self.fields.remove(key)
    }

    /// Takes a string field.
    ///
    /// # Errors
    /// 422 when it is not a string.
    pub(crate) fn take_str(&mut self, key: &str) -> Result<Option<String>, ApiError> {
        match self.fields.remove(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(ApiError::invalid_with(
                format!("'{key}' must be a string, got {other}"),
                json!({"field": key}),
            )),
        }
    }

    /// Takes an integer field.
    ///
    /// # Errors
    /// 422 when it is not an integer.
    pub(crate) fn take_i64(&mut self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.fields.remove(key) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                ApiError::invalid_with(
                    format!("'{key}' must be an integer, got {v}"),
                    json!({"field": key}),
                )
            }),
        }
    }

    /// The algorithm's parameters: the `"parameters"` object merged with every field
    /// left at the top level. Call it after taking the fields the endpoint knows.
    ///
    /// # Errors
    /// 422 when `parameters` is not an object or a parameter is given both ways.
    pub(crate) fn take_parameters(&mut self) -> Result<Map<String, Value>, ApiError> {
        let mut params = match self.fields.remove("parameters") {
            None => Map::new(),
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(ApiError::invalid_with(
                    format!("'parameters' must be an object, got {other}"),
                    json!({"field": "parameters"}),
                ));
            }
        };
        for (k, v) in std::mem::take(&mut self.fields) {
            if params.contains_key(&k) {
                return Err(ApiError::invalid_with(
                    format!("parameter '{k}' is given both in 'parameters' and at the top level"),
                    json!({"parameter": k}),
                ));
            }
            params.insert(k, v);
        }
        Ok(params)
    }

    /// Fields nobody took: an endpoint that takes no parameters rejects them.
    ///
    /// # Errors
    /// 422 naming the first unknown field and the accepted ones.
    pub(crate) fn reject_rest(&self, accepted: &[&str]) -> Result<(), ApiError> {
        match self.fields.keys().next() {
            None => Ok(()),
            Some(k) => Err(ApiError::invalid_with(
                format!("unknown field '{k}'; accepted: {}", accepted.join(", ")),
                json!({"field": k, "accepted": accepted}),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> ApiError {
        parse::<RequestBody>(body.as_bytes()).unwrap_err()
    }

    fn message(e: &ApiError) -> String {
        e.to_string()
    }

    #[test]
    fn rows_parse_into_one_flat_matrix() {
        let b: RequestBody = parse(br#"{"data": [[1, 2.5], [3, 4]], "algorithm": "lof"}"#).unwrap();
        let rows = b.data.unwrap();
        assert_eq!((rows.n_rows, rows.n_cols), (2, 2));
        assert_eq!(rows.values, vec![1.0, 2.5, 3.0, 4.0]);
    }

    #[test]
    fn whole_numbers_written_as_decimals_are_integers_and_fractions_are_not() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct T {
            n: u64,
            v: Option<i64>,
            x: f64,
        }
        assert_eq!(
            parse::<T>(br#"{"n": 1048575.0, "v": -3e2, "x": 2.5}"#).unwrap(),
            T {
                n: 1_048_575,
                v: Some(-300),
                x: 2.5
            }
        );
        let e = parse::<T>(br#"{"n": 1.5, "x": 1}"#).unwrap_err();
        assert!(
            message(&e).contains("n: invalid type: floating point"),
            "{e}"
        );
        let e = parse::<T>(br#"{"n": 1e300, "x": 1}"#).unwrap_err();
        assert!(message(&e).contains("n: invalid type"), "{e}");
    }

    #[test]
    fn nan_as_a_string_names_its_row_and_column() {
        let e = err(r#"{"data": [[1, 2], [3, "NaN"]]}"#);
        assert_eq!(e.status_and_code().1, "invalid_input");
        assert!(message(&e).contains("row 1, column 1"), "{e}");
    }

    #[test]
    fn a_bare_nan_is_explained_as_not_a_number() {
        let e = err(r#"{"data": [[1, NaN]]}"#);
        assert_eq!(e.status_and_code().1, "invalid_input");
        assert!(message(&e).contains("NaN"), "{e}");
        let e = err(r#"{"data": [[1, -Infinity]]}"#);
        assert!(message(&e).contains("Infinity"), "{e}");
    }

    #[test]
    fn ragged_rows_name_the_row() {
        let e = err(r#"{"data": [[1, 2], [3]]}"#);
        assert!(
            message(&e).contains("row 1 has 1 values, expected 2"),
            "{e}"
        );
    }

    #[test]
    fn broken_json_is_malformed() {
        assert_eq!(
            err(r#"{"data": [[1, 2]"#).status_and_code().1,
            "malformed_json"
        );
        assert_eq!(err("").status_and_code().1, "malformed_json");
    }

    #[test]
    fn flat_and_nested_parameters_merge_and_clash() {
        let mut b: RequestBody =
            parse(br#"{"parameters": {"n_estimators": 10}, "random_state": 3}"#).unwrap();
        let p = b.take_parameters().unwrap();
        assert_eq!(p.len(), 2);
        let mut b: RequestBody =
            parse(br#"{"parameters": {"random_state": 1}, "random_state": 3}"#).unwrap();
        assert!(b.take_parameters().is_err());
    }
}
