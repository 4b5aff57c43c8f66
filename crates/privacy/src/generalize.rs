//! Generalising quasi-identifiers: an `age` becomes an age group, a `zip_code` keeps three
//! characters.

use serde_json::Value;

/// The quasi-identifiers [`crate::Privacy::with_generalization`] generalises.
pub(crate) const AGE: &str = "age";
pub(crate) const ZIP_CODE: &str = "zip_code";

fn age_group(age: i64) -> &'static str {
    match age {
        ..18 => "under_18",
        18..30 => "18_29",
        30..50 => "30_49",
        50..65 => "50_64",
        _ => "65_plus",
    }
}

/// Generalises the quasi-identifiers of one object (an integer `age` into `age_group`, a
/// `zip_code` to its first three characters); returns how many.
pub(crate) fn generalize_quasi_identifiers(map: &mut serde_json::Map<String, Value>) -> usize {
    let mut n = 0;
    if let Some(age) = map.get(AGE).and_then(Value::as_i64) {
        map.remove(AGE);
        map.insert("age_group".into(), Value::String(age_group(age).into()));
        n += 1;
    }
    if let Some(zip) = map.get_mut(ZIP_CODE) {
        let text = match zip {
            Value::String(s) => Some(s.clone()),
            Value::Number(num) => Some(num.to_string()),
            _ => None,
        };
        if let Some(text) = text {
            let head: String = text.chars().take(3).collect();
            *zip = Value::String(format!("{head}XX"));
            n += 1;
        }
    }
    n
}
