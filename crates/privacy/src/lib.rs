//! # pynomaly-privacy: finding and hiding personal data
//!
//! A pure module (no I/O, no async) behind the `/api/v1/privacy/*` endpoints and whatever
//! output echoes user-supplied fields: what the `DataPrivacyManager` of a Python anomaly
//! service does (patterns, masking, hashing, generalisation), with precise rules.
//!
//! **Finding** ([`find_pii`]) recognises four kinds of personal data in text:
//! - e-mail addresses: letters, digits and `._%+-`, an `@`, a domain, and a top-level
//!   domain of two letters or more;
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
//! With [`Privacy::with_generalization`], two quasi-identifiers are generalised too:
//! an integer `age` becomes an `age_group`, a `zip_code` keeps three characters.
//!
//! Scanning ([`Privacy::scan_json`]) reports where personal data is (JSON Pointer paths),
//! of which kind and how many times, never the values themselves. Object keys are not
//! scanned, only values; JSON numbers are checked only as card numbers (a 10-digit
//! integer is far more often a timestamp or an id than a phone number).
//!
//! The modules follow those steps: `kind` the kinds of data, `luhn` card numbers by their
//! digits, `find` the search in text, `config` the settings, `token` the labels and
//! hash tokens that replace values, `generalize` the quasi-identifiers, `masking` the
//! [`Privacy`] type and text, `json` the walk over documents.

mod config;
mod find;
mod generalize;
mod json;
mod kind;
mod luhn;
mod masking;
mod token;

pub use config::{DEFAULT_FIELDS, Mode, PrivacyConfig};
pub use find::{find_pii, find_pii_kinds};
pub use json::Finding;
pub use kind::{Match, PiiKind};
pub use luhn::{is_card_number, luhn_valid};
pub use masking::Privacy;
