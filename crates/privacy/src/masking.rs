//! [`Privacy`]: its settings, masking text, and the questions a caller asks before
//! walking a document (is this key a masked field, does this string need masking).

use std::collections::HashSet;

use serde_json::Value;

use crate::config::{Mode, PrivacyConfig};
use crate::find::{find_pii_kinds, number_is_card};
use crate::generalize::{AGE, ZIP_CODE};
use crate::kind::PiiKind;
use crate::token;

/// Finds and hides personal data in strings and JSON documents.
#[derive(Clone, derive_more::Debug)]
pub struct Privacy {
    fields: HashSet<String>,
    mode: Mode,
    kinds: Vec<PiiKind>,
    #[debug(skip)]
    key: [u8; 32],
    generalize: bool,
}

const FIELD_LABEL: &str = "REDACTED";

impl Privacy {
    /// From a configuration; `fallback_key` is the hash key when the configuration has
    /// none (the server derives it from its secret).
    pub fn new(config: &PrivacyConfig, fallback_key: [u8; 32]) -> Self {
        Self {
            fields: config.fields.iter().map(|f| f.to_lowercase()).collect(),
            mode: config.mode,
            kinds: PiiKind::ALL.to_vec(),
            key: config.hash_key.unwrap_or(fallback_key),
            generalize: false,
        }
    }

    /// The same, also generalising two quasi-identifiers in [`Privacy::mask_json`]:
    /// an integer `age` becomes `age_group` (`under_18`, `18_29`, `30_49`, `50_64`,
    /// `65_plus`), a `zip_code` keeps its first three characters (`123XX`).
    #[must_use]
    pub fn with_generalization(mut self, yes: bool) -> Self {
        self.generalize = yes;
        self
    }

    /// The same, hiding these fields instead.
    #[must_use]
    pub fn with_fields<S: AsRef<str>>(mut self, fields: &[S]) -> Self {
        self.fields = fields.iter().map(|f| f.as_ref().to_lowercase()).collect();
        self
    }

    /// The same, in this mode.
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The same, looking only for these kinds.
    #[must_use]
    pub fn with_kinds(mut self, kinds: &[PiiKind]) -> Self {
        self.kinds = kinds.to_vec();
        self
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Whether quasi-identifiers are generalised ([`Privacy::with_generalization`]).
    pub(crate) fn generalizes(&self) -> bool {
        self.generalize
    }

    /// The kinds looked for.
    pub(crate) fn kinds(&self) -> &[PiiKind] {
        &self.kinds
    }

    /// The token that replaces a value of `label`'s kind, in this mode and under this key.
    pub(crate) fn token(&self, label: &str, normalized: &str) -> String {
        token::token(self.mode, &self.key, label, normalized)
    }

    /// `text` with every match replaced, and how many there were.
    pub fn mask_text(&self, text: &str) -> (String, usize) {
        let matches = find_pii_kinds(text, &self.kinds);
        if matches.is_empty() {
            return (text.to_string(), 0);
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for m in &matches {
            out.push_str(&text[at..m.start]);
            let raw = &text[m.start..m.end];
            out.push_str(&self.token(m.kind.label(), &token::normalize(m.kind, raw)));
            at = m.end;
        }
        out.push_str(&text[at..]);
        (out, matches.len())
    }

    /// Whether `key` names a configured field (case-insensitively), whose whole value is
    /// hidden wherever it appears. ASCII keys are compared without allocating.
    pub fn key_is_masked_field(&self, key: &str) -> bool {
        if self.fields.is_empty() {
            return false;
        }
        let mut buf = [0u8; 64];
        if key.is_ascii() && key.len() <= buf.len() {
            let lower = &mut buf[..key.len()];
            lower.copy_from_slice(key.as_bytes());
            // For ASCII, `to_lowercase` is `to_ascii_lowercase`, and the bytes stay UTF-8.
            lower.make_ascii_lowercase();
            return std::str::from_utf8(lower).is_ok_and(|k| self.fields.contains(k));
        }
        self.fields.contains(&key.to_lowercase())
    }

    /// Whether `key` is a quasi-identifier that [`Self::mask_json`] would generalise if its
    /// value has the right type (an integer `age`, a string or number `zip_code`): only
    /// with [`Self::with_generalization`] on. A caller that sees `false` for every key
    /// needs no generalisation.
    pub fn key_is_quasi_identifier(&self, key: &str) -> bool {
        self.generalize && (key == AGE || key == ZIP_CODE)
    }

    /// Whether [`Self::mask_json`] would change this string value (one match or more).
    pub fn string_needs_masking(&self, text: &str) -> bool {
        !find_pii_kinds(text, &self.kinds).is_empty()
    }

    /// Whether [`Self::mask_json`] would change this number value (an integer that is a
    /// card number, when card numbers are looked for).
    pub fn number_needs_masking(&self, n: &serde_json::Number) -> bool {
        self.kinds.contains(&PiiKind::CreditCard) && number_is_card(n)
    }

    pub(crate) fn is_field(&self, key: &str) -> bool {
        self.key_is_masked_field(key)
    }

    pub(crate) fn hide_field(&self, value: &Value) -> Value {
        let normalized = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Value::String(self.token(FIELD_LABEL, &normalized))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_fields_match_keys_whatever_their_case() {
        let long = "k".repeat(100);
        let p = Privacy::new(&PrivacyConfig::default(), [1; 32]).with_fields(&[
            "Name",
            "NAMÉ",
            long.to_uppercase().as_str(),
        ]);
        for key in ["name", "NAME", "nAmE", "namé", "NaMÉ", long.as_str()] {
            assert!(p.key_is_masked_field(key), "{key}");
        }
        for key in ["names", "nam", "", "nameé"] {
            assert!(!p.key_is_masked_field(key), "{key}");
        }
        let none = Privacy::new(&PrivacyConfig::default(), [1; 32]);
        assert!(!none.key_is_masked_field("name"));
        assert!(!none.key_is_quasi_identifier("age"));
        assert!(
            none.clone()
                .with_generalization(true)
                .key_is_quasi_identifier("age")
        );
        assert!(
            none.clone()
                .with_generalization(true)
                .key_is_quasi_identifier("zip_code")
        );
        assert!(
            !none
                .with_generalization(true)
                .key_is_quasi_identifier("Age")
        );
    }

    #[test]
    fn debug_leaves_the_hash_key_out() {
        let p = Privacy::new(&PrivacyConfig::default(), [0xab; 32]);
        let shown = format!("{p:?}");
        assert!(
            shown.starts_with("Privacy { fields: {}, mode: Mask, kinds: ["),
            "{shown}"
        );
        assert!(shown.ends_with("generalize: false, .. }"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
    }

    #[test]
    fn masking_and_hashing_text() {
        let p = Privacy::new(&PrivacyConfig::default(), [9; 32]);
        let (masked, n) = p.mask_text("write to a@b.io or call 555-123-4567");
        assert_eq!(masked, "write to [EMAIL] or call [PHONE]");
        assert_eq!(n, 2);
        let h = p.clone().with_mode(Mode::Hash);
        let (one, _) = h.mask_text("A@B.io 555-123-4567");
        let (two, _) = h.mask_text("a@b.io (555) 123 4567");
        assert_eq!(one, two, "same values, same tokens");
        assert!(one.starts_with("[EMAIL:") && !one.contains("b.io"), "{one}");
        let other_key = Privacy::new(&PrivacyConfig::default(), [8; 32]).with_mode(Mode::Hash);
        assert_ne!(other_key.mask_text("a@b.io").0, h.mask_text("a@b.io").0);
    }
}
