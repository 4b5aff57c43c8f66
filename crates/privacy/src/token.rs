//! What replaces a value: a label in `mask` mode, a keyed hash in `hash` mode.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Mode;
use crate::kind::PiiKind;

/// The token for a value of `label`'s kind, normalised (see [`normalize`]): `[LABEL]` in
/// `mask` mode; in `hash` mode `[LABEL:…]` with the first 64 bits of an HMAC-SHA256 of
/// the label and the value under `key`, so the same value always gives the same token.
pub(crate) fn token(mode: Mode, key: &[u8; 32], label: &str, normalized: &str) -> String {
    match mode {
        Mode::Mask => format!("[{label}]"),
        Mode::Hash => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
            mac.update(label.as_bytes());
            mac.update(&[0]);
            mac.update(normalized.as_bytes());
            let tag = mac.finalize().into_bytes();
            format!("[{label}:{}]", hex::encode(&tag[..8]))
        }
    }
}

/// A value reduced to what identifies it, so that spellings of the same value hash alike:
/// an e-mail address lower-cased, a number reduced to its digits.
pub(crate) fn normalize(kind: PiiKind, raw: &str) -> String {
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
