//! Walking JSON documents: hiding personal data in place, deciding whether a document
//! needs it, and reporting where it is.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::find::find_pii_kinds;
use crate::generalize::{AGE, ZIP_CODE, generalize_quasi_identifiers};
use crate::kind::PiiKind;
use crate::masking::Privacy;

/// Where personal data was found in a document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// JSON Pointer (RFC 6901) to the value; `""` is the document itself.
    pub path: String,
    /// `email`, `credit_card`, `ssn`, `phone`, or `field` for a configured field.
    #[serde(rename = "type")]
    pub kind: String,
    /// How many times in that value.
    pub count: usize,
}

impl Privacy {
    /// Whether [`Self::mask_json`] would change `value`: the same rules, read-only, so a
    /// caller that echoes documents copies only those that have something to hide.
    ///
    /// A document needs none when none of its object keys is a masked field
    /// ([`Self::key_is_masked_field`]) or a quasi-identifier
    /// ([`Self::key_is_quasi_identifier`]) and none of its strings or numbers needs masking
    /// ([`Self::string_needs_masking`], [`Self::number_needs_masking`]): a parser that
    /// never builds a [`Value`] can decide from those alone.
    pub fn needs_masking(&self, value: &Value) -> bool {
        match value {
            Value::String(s) => self.string_needs_masking(s),
            Value::Number(n) => self.number_needs_masking(n),
            Value::Array(items) => items.iter().any(|v| self.needs_masking(v)),
            Value::Object(map) => self.object_needs_masking(map),
            Value::Null | Value::Bool(_) => false,
        }
    }

    /// [`Self::needs_masking`] for an object.
    pub fn object_needs_masking(&self, map: &serde_json::Map<String, Value>) -> bool {
        let quasi_identifier = || {
            map.get(AGE).and_then(Value::as_i64).is_some()
                || map
                    .get(ZIP_CODE)
                    .is_some_and(|z| z.is_string() || z.is_number())
        };
        (self.generalizes() && quasi_identifier())
            || map.iter().any(|(k, v)| {
                if self.is_field(k) {
                    !v.is_null()
                } else {
                    self.needs_masking(v)
                }
            })
    }

    /// Hides personal data in a document, in place: configured fields wholly, matches in
    /// other strings, card numbers given as JSON numbers. Returns how many values or
    /// matches were replaced.
    pub fn mask_json(&self, value: &mut Value) -> usize {
        match value {
            Value::String(s) => {
                let (masked, n) = self.mask_text(s);
                if n > 0 {
                    *s = masked;
                }
                n
            }
            Value::Number(n) => {
                if self.number_needs_masking(n) {
                    let digits = n.to_string();
                    *value = Value::String(self.token(PiiKind::CreditCard.label(), &digits));
                    1
                } else {
                    0
                }
            }
            Value::Array(items) => items.iter_mut().map(|v| self.mask_json(v)).sum(),
            Value::Object(map) => {
                let mut n = 0;
                if self.generalizes() {
                    n += generalize_quasi_identifiers(map);
                }
                for (k, v) in map.iter_mut() {
                    if self.is_field(k) {
                        if !v.is_null() {
                            *v = self.hide_field(v);
                            n += 1;
                        }
                    } else {
                        n += self.mask_json(v);
                    }
                }
                n
            }
            Value::Null | Value::Bool(_) => 0,
        }
    }

    /// Where personal data is in a document (see [`Finding`]); values are never copied
    /// into the report.
    pub fn scan_json(&self, value: &Value) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut path = String::new();
        self.scan_into(value, &mut path, &mut out);
        out
    }

    fn scan_into(&self, value: &Value, path: &mut String, out: &mut Vec<Finding>) {
        match value {
            Value::String(s) => {
                let mut counts: BTreeMap<PiiKind, usize> = BTreeMap::new();
                for m in find_pii_kinds(s, self.kinds()) {
                    *counts.entry(m.kind).or_default() += 1;
                }
                out.extend(counts.into_iter().map(|(kind, count)| Finding {
                    path: path.clone(),
                    kind: kind.as_str().into(),
                    count,
                }));
            }
            Value::Number(n) => {
                if self.number_needs_masking(n) {
                    out.push(Finding {
                        path: path.clone(),
                        kind: PiiKind::CreditCard.as_str().into(),
                        count: 1,
                    });
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    let _ = write!(path, "/{i}");
                    self.scan_into(v, path, out);
                    path.truncate(len);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                    if self.is_field(k) && !v.is_null() {
                        out.push(Finding {
                            path: path.clone(),
                            kind: "field".into(),
                            count: 1,
                        });
                    } else {
                        self.scan_into(v, path, out);
                    }
                    path.truncate(len);
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mode, PrivacyConfig};
    use serde_json::json;

    #[test]
    fn needs_masking_says_exactly_when_mask_json_would_change_a_document() {
        let config = PrivacyConfig {
            fields: vec!["Name".into()],
            mode: Mode::Mask,
            hash_key: None,
        };
        let docs = [
            json!({"id": "ev-1", "temp": 20.5, "meta": {"rpm": 1200, "ok": true}}),
            json!({"id": "ev-2", "note": "write to jane@x.org"}),
            json!({"id": "ev-3", "card": 4111111111111111u64}),
            json!({"id": "ev-4", "card": 4111111111111112u64}),
            json!({"id": "ev-5", "meta": {"name": "Jane"}}),
            json!({"id": "ev-6", "name": null}),
            json!({"id": "ev-7", "readings": [1.0, 2.0, {"ssn": "123-45-6789"}]}),
            json!({"id": "ev-8", "age": 41}),
            json!({"id": "ev-9", "zip_code": "94107"}),
            json!({"id": "ev-10", "age": "unknown", "zip_code": null}),
            json!({"id": "ev-11", "debit": -4111111111111111i64, "small": 411111111111u64}),
            json!({"id": "ev-12", "float": 4111111111111111.0, "at": "2026-11-26T12:00:00Z"}),
            json!("call 555-867-5309 now"),
            json!([1, 2, 3]),
        ];
        // The decision from keys, strings and numbers alone, as a streaming parser makes it.
        fn by_parts(p: &Privacy, v: &Value) -> bool {
            match v {
                Value::String(s) => p.string_needs_masking(s),
                Value::Number(n) => p.number_needs_masking(n),
                Value::Array(items) => items.iter().any(|v| by_parts(p, v)),
                Value::Object(map) => map.iter().any(|(k, v)| {
                    p.key_is_masked_field(k) || p.key_is_quasi_identifier(k) || by_parts(p, v)
                }),
                Value::Null | Value::Bool(_) => false,
            }
        }
        for generalize in [false, true] {
            let p = Privacy::new(&config, [1; 32]).with_generalization(generalize);
            let mut changed = 0;
            for doc in &docs {
                let mut masked = doc.clone();
                let n = p.mask_json(&mut masked);
                assert_eq!(
                    p.needs_masking(doc),
                    n > 0,
                    "{doc} (generalize {generalize})"
                );
                if !by_parts(&p, doc) {
                    assert_eq!(n, 0, "{doc}: the parts say nothing to mask");
                }
                assert_eq!(n > 0, masked != *doc, "{doc}");
                changed += usize::from(n > 0);
            }
            assert!(changed >= 5, "the documents exercise both answers");
        }
    }

    #[test]
    fn json_fields_and_values_are_hidden_and_scanned_without_echo() {
        let config = PrivacyConfig {
            fields: vec!["Name".into(), "address".into()],
            mode: Mode::Mask,
            hash_key: None,
        };
        let p = Privacy::new(&config, [1; 32]);
        let doc = json!({
            "customers": [
                {"name": "Jane Doe", "note": "jane@x.org, card 4111111111111111",
                 "card": 4111111111111111u64, "id": 4111111111111112u64, "ok": true},
                {"name": null, "address": {"street": "1 Main St"}, "a/b": "123-45-6789"}
            ]
        });
        let mut findings = p.scan_json(&doc);
        findings.sort_by(|a, b| (&a.path, &a.kind).cmp(&(&b.path, &b.kind)));
        let want = |path: &str, kind: &str| Finding {
            path: path.into(),
            kind: kind.into(),
            count: 1,
        };
        assert_eq!(
            findings,
            vec![
                want("/customers/0/card", "credit_card"),
                want("/customers/0/name", "field"),
                want("/customers/0/note", "credit_card"),
                want("/customers/0/note", "email"),
                want("/customers/1/address", "field"),
                want("/customers/1/a~1b", "ssn"),
            ]
        );
        let mut masked = doc.clone();
        assert_eq!(p.mask_json(&mut masked), 6);
        assert_eq!(
            masked,
            json!({
                "customers": [
                    {"name": "[REDACTED]", "note": "[EMAIL], card [CREDIT_CARD]",
                     "card": "[CREDIT_CARD]", "id": 4111111111111112u64, "ok": true},
                    {"name": null, "address": "[REDACTED]", "a/b": "[SSN]"}
                ]
            })
        );
        let hashed = p.clone().with_mode(Mode::Hash);
        let mut a = json!({"name": "Jane"});
        let mut b = json!({"NAME": "Jane"});
        hashed.mask_json(&mut a);
        hashed.mask_json(&mut b);
        assert_eq!(a["name"], b["NAME"]);
        assert!(a["name"].as_str().unwrap().starts_with("[REDACTED:"));
        let mut person =
            json!({"age": 34, "zip_code": "12345", "nested": {"age": 70, "zip_code": 90210}});
        let general = p.clone().with_generalization(true);
        assert_eq!(general.mask_json(&mut person), 4);
        assert_eq!(
            person,
            json!({"age_group": "30_49", "zip_code": "123XX",
                   "nested": {"age_group": "65_plus", "zip_code": "902XX"}})
        );
        let mut untouched = json!({"age": 34});
        p.mask_json(&mut untouched);
        assert_eq!(untouched, json!({"age": 34}), "off unless asked");
        let only_email = p.with_kinds(&[PiiKind::Email]).with_fields::<&str>(&[]);
        let mut doc = json!("a@b.io 123-45-6789");
        only_email.mask_json(&mut doc);
        assert_eq!(doc, json!("[EMAIL] 123-45-6789"));
    }
}
