//! # pynomaly-privacy: finding and hiding personal data
//!
//! A pure module (no I/O, no async) behind the `/api/v1/privacy/*` endpoints and whatever
//! output echoes user-supplied fields: the seed's `DataPrivacyManager`, made precise.
//!
//! **Finding** ([`find_pii`]) recognises four kinds of personal data in text:
//! - e-mail addresses (the seed's pattern);
//! - card numbers: 13 to 19 digits, in groups separated by single spaces or hyphens, that
//!   pass the Luhn check (so a 16-digit number with a wrong check digit is *not* a card)
//!   and are not one digit repeated;
//! - US social security numbers written `AAA-GG-SSSS`, excluding the numbers the SSA never
//!   issues (area 000, 666 or 900-999, group 00, serial 0000);
//! - phone numbers: ten digits as `(555) 123-4567`, `555.123.4567`, `5551234567`..., with an
//!   optional country code (`+44 `, `1-`).
//!
//! A match must stand on its own: a letter, digit or `_` right before or after it rejects
//! it (a 14-digit order number does not contain a phone number). Kinds are tried in the
//! order e-mail, card, SSN, phone, and a later kind never overlaps an earlier one.
//!
//! **Hiding** ([`Privacy`]) walks JSON documents. A configured *field* (matched by its key,
//! case-insensitively, at any depth) has its whole value replaced. In every other string,
//! each match found is replaced. `mask` mode writes a label (`[EMAIL]`, `[REDACTED]`);
//! `hash` mode writes a token that is an HMAC-SHA256 of the value under a secret key
//! (`[EMAIL:3f9c0a1b2c3d4e5f]`, 64 bits of it): the same value always gives the same token,
//! so records can still be joined and counted, but the value cannot be recovered without
//! brute force over the key. Values are normalised before hashing (e-mail lower-cased,
//! numbers reduced to their digits), so `555-123-4567` and `(555) 123 4567` agree.
//!
//! With [`Privacy::with_generalization`], the seed's quasi-identifiers are generalised too:
//! an integer `age` becomes an `age_group`, a `zip_code` keeps three characters.
//!
//! Scanning ([`Privacy::scan_json`]) reports where personal data is (JSON Pointer paths),
//! of which kind and how many times, never the values themselves. Object keys are not
//! scanned, only values; JSON numbers are checked only as card numbers (a 10-digit
//! integer is far more often a timestamp or an id than a phone number).

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;

/// A kind of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    CreditCard,
    Ssn,
    Phone,
}

impl PiiKind {
    /// Every kind, in the order they are tried.
    pub const ALL: [PiiKind; 4] = [
        PiiKind::Email,
        PiiKind::CreditCard,
        PiiKind::Ssn,
        PiiKind::Phone,
    ];

    /// The name used in requests and reports (the seed's: `email`, `phone`, `ssn`,
    /// `credit_card`).
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::CreditCard => "credit_card",
            PiiKind::Ssn => "ssn",
            PiiKind::Phone => "phone",
        }
    }

    fn label(self) -> &'static str {
        match self {
            PiiKind::Email => "EMAIL",
            PiiKind::CreditCard => "CREDIT_CARD",
            PiiKind::Ssn => "SSN",
            PiiKind::Phone => "PHONE",
        }
    }
}

impl FromStr for PiiKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        PiiKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown PII type '{s}' (accepted: email, credit_card, ssn, phone)")
            })
    }
}

/// One piece of personal data in a text: its kind and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

struct Patterns {
    email: Regex,
    digit_run: Regex,
    ssn: Regex,
    phone: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        email: Regex::new(r"[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}").expect("valid"),
        // Digit groups separated by single spaces or hyphens: card numbers are windows of it.
        digit_run: Regex::new(r"\d+(?:[ -]\d+)*").expect("valid"),
        ssn: Regex::new(r"(\d{3})-(\d{2})-(\d{4})").expect("valid"),
        phone: Regex::new(
            r"(?:\+\d{1,3}[ .-]?|\d{1,3}[ .-])?(?:\(\d{3}\)[ .-]?|\d{3}[ .-]?)\d{3}[ .-]?\d{4}",
        )
        .expect("valid"),
    })
}

/// The Luhn check over a string of ASCII digits (other bytes are skipped).
pub fn luhn_valid(number: &str) -> bool {
    let digits: Vec<u32> = number
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| u32::from(b - b'0'))
        .collect();
    if digits.is_empty() {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether a number (digits only, or with separators) is a card number: 13 to 19 digits,
/// Luhn-valid, not a single digit repeated.
pub fn is_card_number(number: &str) -> bool {
    let digits: Vec<u8> = number.bytes().filter(u8::is_ascii_digit).collect();
    (13..=19).contains(&digits.len())
        && digits.iter().any(|&d| d != digits[0])
        && luhn_valid(number)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// No letter, digit or `_` right before `start` or right after `end`.
fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let bytes = text.as_bytes();
    let before_ok = start == 0 || !is_word_byte(bytes[start - 1]);
    let after_ok = end >= bytes.len() || !is_word_byte(bytes[end]);
    before_ok && after_ok
}

fn ssn_issued(area: &str, group: &str, serial: &str) -> bool {
    let area: u32 = area.parse().unwrap_or(0);
    area != 0 && area != 666 && area < 900 && group != "00" && serial != "0000"
}

/// Cards are printed as one run of digits, or in groups of 3 to 6 digits with one kind of
/// separator (`4111 1111 1111 1111`, `3782-822463-10005`); anything else is several numbers
/// side by side.
fn card_shaped(text: &str, groups: &[(usize, usize)]) -> bool {
    if groups.len() == 1 {
        return true;
    }
    let separator = text.as_bytes()[groups[0].1];
    groups.iter().all(|&(s, e)| (3..=6).contains(&(e - s)))
        && groups[..groups.len() - 1]
            .iter()
            .all(|&(_, e)| text.as_bytes()[e] == separator)
}

/// Card numbers in a text: inside each run of digit groups, the first window of whole
/// consecutive groups that is a card number, then the next after it.
fn find_cards(text: &str, out: &mut Vec<Match>) {
    for run in patterns().digit_run.find_iter(text) {
        // Group boundaries (byte ranges) inside the run.
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut start = None;
        for (i, b) in run.as_str().bytes().enumerate() {
            match (b.is_ascii_digit(), start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    groups.push((run.start() + s, run.start() + i));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            groups.push((run.start() + s, run.end()));
        }
        let mut first = 0;
        while first < groups.len() {
            let mut found = None;
            let mut digits = 0;
            for last in first..groups.len() {
                digits += groups[last].1 - groups[last].0;
                if digits > 19 {
                    break;
                }
                let (s, e) = (groups[first].0, groups[last].1);
                if digits >= 13
                    && card_shaped(text, &groups[first..=last])
                    && is_card_number(&text[s..e])
                    && stands_alone(text, s, e)
                {
                    found = Some((last, s, e));
                    break;
                }
            }
            match found {
                Some((last, start, end)) => {
                    out.push(Match {
                        kind: PiiKind::CreditCard,
                        start,
                        end,
                    });
                    first = last + 1;
                }
                None => first += 1,
            }
        }
    }
}

/// Whether `text` could hold personal data of any kind, in one pass and without the
/// regexes: an e-mail address needs an `@`; a card number, an SSN or a phone number is a
/// stretch of digits, spaces, `.`, `-`, `(`, `)` and `+` holding at least 9 digits. Most
/// strings (ids, names, ISO timestamps, whose `:` and `T` split the digits) fail it, and
/// for those [`find_pii_kinds`] finds nothing without running a regex. `\d` in the
/// patterns is Unicode-aware, so every numeric character counts as a digit here.
fn could_hold_pii(text: &str) -> bool {
    let mut digits = 0usize;
    for c in text.chars() {
        if c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric()) {
            digits += 1;
            if digits >= 9 {
                return true;
            }
        } else if c == '@' {
            return true;
        } else if !matches!(c, ' ' | '.' | '-' | '(' | ')' | '+') {
            digits = 0;
        }
    }
    false
}

/// Every piece of personal data of the given kinds in `text`, sorted by position and
/// never overlapping (see the module docs for the rules).
pub fn find_pii_kinds(text: &str, kinds: &[PiiKind]) -> Vec<Match> {
    if !could_hold_pii(text) {
        return Vec::new();
    }
    find_pii_kinds_with_regexes(text, kinds)
}

fn find_pii_kinds_with_regexes(text: &str, kinds: &[PiiKind]) -> Vec<Match> {
    let p = patterns();
    let mut found: Vec<Match> = Vec::new();
    let free =
        |found: &[Match], s: usize, e: usize| found.iter().all(|m| e <= m.start || s >= m.end);
    for kind in PiiKind::ALL {
        if !kinds.contains(&kind) {
            continue;
        }
        let mut new = Vec::new();
        match kind {
            PiiKind::Email => {
                for m in p.email.find_iter(text) {
                    new.push((m.start(), m.end()));
                }
            }
            PiiKind::CreditCard => {
                let mut cards = Vec::new();
                find_cards(text, &mut cards);
                new.extend(cards.iter().map(|m| (m.start, m.end)));
            }
            PiiKind::Ssn => {
                for c in p.ssn.captures_iter(text) {
                    let m = c.get(0).expect("group 0");
                    if ssn_issued(&c[1], &c[2], &c[3]) && stands_alone(text, m.start(), m.end()) {
                        new.push((m.start(), m.end()));
                    }
                }
            }
            PiiKind::Phone => {
                for m in p.phone.find_iter(text) {
                    if stands_alone(text, m.start(), m.end()) {
                        new.push((m.start(), m.end()));
                    }
                }
            }
        }
        for (start, end) in new {
            if free(&found, start, end) {
                found.push(Match { kind, start, end });
            }
        }
    }
    found.sort_by_key(|m| m.start);
    found
}

/// Every piece of personal data of every kind in `text`.
pub fn find_pii(text: &str) -> Vec<Match> {
    find_pii_kinds(text, &PiiKind::ALL)
}

/// What replaces personal data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A label naming the kind: `[EMAIL]`, `[REDACTED]` for a configured field.
    #[default]
    Mask,
    /// A keyed hash token: the same value, the same token.
    Hash,
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mask" => Ok(Mode::Mask),
            "hash" => Ok(Mode::Hash),
            other => Err(format!("unknown mode '{other}' (accepted: mask, hash)")),
        }
    }
}

/// What a [`Privacy`] is configured with (the server's settings; requests may override
/// fields, mode and kinds).
#[derive(Clone, Default)]
pub struct PrivacyConfig {
    /// Field names whose whole value is hidden, wherever they appear (case-insensitive).
    pub fields: Vec<String>,
    /// Mask or hash.
    pub mode: Mode,
    /// The HMAC key of `hash` mode; `None`: the caller supplies one (see [`Privacy::new`]).
    pub hash_key: Option<[u8; 32]>,
}

impl std::fmt::Debug for PrivacyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivacyConfig")
            .field("fields", &self.fields)
            .field("mode", &self.mode)
            .field("hash_key", &self.hash_key.map(|_| "<secret>"))
            .finish()
    }
}

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

/// Finds and hides personal data in strings and JSON documents.
#[derive(Clone)]
pub struct Privacy {
    fields: HashSet<String>,
    mode: Mode,
    kinds: Vec<PiiKind>,
    key: [u8; 32],
    generalize: bool,
}

impl std::fmt::Debug for Privacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Privacy")
            .field("fields", &self.fields)
            .field("mode", &self.mode)
            .field("kinds", &self.kinds)
            .field("generalize", &self.generalize)
            .finish_non_exhaustive()
    }
}

const FIELD_LABEL: &str = "REDACTED";

/// The quasi-identifiers [`Privacy::with_generalization`] generalises.
const AGE: &str = "age";
const ZIP_CODE: &str = "zip_code";

/// Whether a JSON number is masked as a card number: an integer (never a float) whose
/// digits are one. Below 13 digits it cannot be, and is not formatted to find out.
fn number_is_card(n: &serde_json::Number) -> bool {
    const SMALLEST_13_DIGITS: u64 = 1_000_000_000_000;
    let long_enough = match (n.as_u64(), n.as_i64()) {
        (Some(u), _) => u >= SMALLEST_13_DIGITS,
        (None, Some(i)) => i.unsigned_abs() >= SMALLEST_13_DIGITS,
        (None, None) => return false,
    };
    long_enough && is_card_number(&n.to_string())
}

fn age_group(age: i64) -> &'static str {
    match age {
        ..18 => "under_18",
        18..30 => "18_29",
        30..50 => "30_49",
        50..65 => "50_64",
        _ => "65_plus",
    }
}

/// The seed's `anonymize_data` generalisations, on one object; returns how many.
fn generalize_quasi_identifiers(map: &mut serde_json::Map<String, Value>) -> usize {
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

    /// The same, also generalising the seed's quasi-identifiers in [`Privacy::mask_json`]:
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

    fn token(&self, label: &str, normalized: &str) -> String {
        match self.mode {
            Mode::Mask => format!("[{label}]"),
            Mode::Hash => {
                let mut mac =
                    <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC takes any key");
                mac.update(label.as_bytes());
                mac.update(&[0]);
                mac.update(normalized.as_bytes());
                let tag = mac.finalize().into_bytes();
                format!("[{label}:{}]", hex::encode(&tag[..8]))
            }
        }
    }

    fn normalize(kind: PiiKind, raw: &str) -> String {
        match kind {
            PiiKind::Email => raw.to_lowercase(),
            PiiKind::CreditCard | PiiKind::Ssn | PiiKind::Phone => {
                let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
                // A phone number with and without the North American "1" is the same.
                if kind == PiiKind::Phone && digits.len() == 11 && digits.starts_with('1') {
                    digits[1..].to_string()
                } else {
                    digits
                }
            }
        }
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
            out.push_str(&self.token(m.kind.label(), &Self::normalize(m.kind, raw)));
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

    fn is_field(&self, key: &str) -> bool {
        self.key_is_masked_field(key)
    }

    fn hide_field(&self, value: &Value) -> Value {
        let normalized = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        Value::String(self.token(FIELD_LABEL, &normalized))
    }

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
        (self.generalize && quasi_identifier())
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
                if self.generalize {
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
                for m in find_pii_kinds(s, &self.kinds) {
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
    use serde_json::json;

    fn kinds(text: &str) -> Vec<(PiiKind, &str)> {
        find_pii(text)
            .into_iter()
            .map(|m| (m.kind, &text[m.start..m.end]))
            .collect()
    }

    #[test]
    fn luhn_accepts_valid_numbers_and_rejects_one_digit_off() {
        for valid in [
            "4111111111111111",
            "5500 0000 0000 0004",
            "3400-0000-0000-009",
            "6011000000000004",
            "4222222222222",
            "79927398713",
        ] {
            assert!(luhn_valid(valid), "{valid}");
        }
        for invalid in ["4111111111111112", "79927398710", "1234567812345678", ""] {
            assert!(!luhn_valid(invalid), "{invalid}");
        }
    }

    #[test]
    fn card_numbers_need_luhn_a_card_length_and_standing_alone() {
        assert_eq!(
            kinds("card 4111 1111 1111 1111 exp 12/29"),
            vec![(PiiKind::CreditCard, "4111 1111 1111 1111")]
        );
        assert_eq!(
            kinds("4111-1111-1111-1111"),
            vec![(PiiKind::CreditCard, "4111-1111-1111-1111")]
        );
        // 16 digits, wrong check digit: not a card (and not a phone either).
        assert_eq!(kinds("4111111111111112"), vec![]);
        assert_eq!(kinds("1234 5678 1234 5678"), vec![]);
        // Luhn-valid but too short, or one digit repeated: not a card.
        assert_eq!(kinds("79927398713"), vec![]);
        assert_eq!(kinds("0000 0000 0000 0000"), vec![]);
        // Glued to letters: not on its own.
        assert_eq!(kinds("id4111111111111111x"), vec![]);
        // A card followed by another number in the same run of groups.
        assert_eq!(
            kinds("4111 1111 1111 1111 55"),
            vec![(PiiKind::CreditCard, "4111 1111 1111 1111")]
        );
    }

    #[test]
    fn ssns_phones_and_emails_are_found_and_told_apart() {
        assert_eq!(
            kinds("SSN 123-45-6789, mail Jane.Doe+x@Example.co.uk, tel (555) 123-4567"),
            vec![
                (PiiKind::Ssn, "123-45-6789"),
                (PiiKind::Email, "Jane.Doe+x@Example.co.uk"),
                (PiiKind::Phone, "(555) 123-4567"),
            ]
        );
        // Numbers the SSA never issues.
        assert_eq!(
            kinds("000-12-3456 666-12-3456 912-12-3456 123-00-4567"),
            vec![]
        );
        // Amex grouping 4-6-5 is a card shape.
        assert_eq!(
            kinds("3782-822463-10005"),
            vec![(PiiKind::CreditCard, "3782-822463-10005")]
        );
        assert_eq!(
            kinds("+44 555 123 4567"),
            vec![(PiiKind::Phone, "+44 555 123 4567")]
        );
        assert_eq!(
            kinds("1-555-123-4567"),
            vec![(PiiKind::Phone, "1-555-123-4567")]
        );
        assert_eq!(kinds("5551234567"), vec![(PiiKind::Phone, "5551234567")]);
        // Inside a longer number: not a phone.
        assert_eq!(kinds("order 12345551234567"), vec![]);
        assert_eq!(kinds("nothing here: 3.14159, 2026-11-26"), vec![]);
    }

    #[test]
    fn the_quick_check_lets_through_every_string_the_regexes_match() {
        let mut texts: Vec<String> = [
            "card 4111 1111 1111 1111 exp 12/29",
            "3782-822463-10005",
            "SSN 123-45-6789, mail Jane.Doe+x@Example.co.uk, tel (555) 123-4567",
            "+44 555 123 4567",
            "1-555-123-4567",
            "5551234567",
            "(555)123-4567",
            "555.123.4567",
            "a@b.io",
            // Arabic-Indic digits: `\d` is Unicode-aware.
            "\u{663}\u{663}\u{663}-\u{663}\u{663}-\u{663}\u{663}\u{663}\u{663}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Random strings over the characters the patterns care about, and some they don't.
        let alphabet: Vec<char> = "0123456789 .-()+@x:T_\u{663}".chars().collect();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..50_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = 6 + (state % 20) as usize;
            let mut s = String::new();
            let mut r = state;
            for _ in 0..len {
                r = r.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                // Mostly digits, so that numbers of every shape turn up.
                let i = (r >> 33) as usize % (alphabet.len() + 12);
                s.push(if i >= alphabet.len() {
                    char::from(b'0' + (i - alphabet.len()) as u8 % 10)
                } else {
                    alphabet[i]
                });
            }
            texts.push(s);
        }
        let mut matched = 0;
        for text in &texts {
            let found = find_pii_kinds_with_regexes(text, &PiiKind::ALL);
            if !found.is_empty() {
                matched += 1;
                assert!(could_hold_pii(text), "{text:?}: {found:?}");
            }
            assert_eq!(find_pii(text), found, "{text:?}");
        }
        assert!(matched > 100, "the random strings hold matches ({matched})");
        for clean in ["2026-11-26T12:00:00Z", "ev-123456", "plant-3", "12345678"] {
            assert!(!could_hold_pii(clean), "{clean}");
        }
    }

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
