//! What a [`crate::Privacy`] is configured with: the mode and the fields to hide.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

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

/// The fields hidden wholly unless configured otherwise: those the ML-engineer guide's
/// `DataPrivacyManager` hides by default (the service's default `PYNOMALY_PII_FIELDS`).
pub const DEFAULT_FIELDS: [&str; 5] = ["name", "email", "phone", "address", "ssn"];

/// What a [`Privacy`] is configured with (the server's settings; requests may override
/// fields, mode and kinds).
///
/// [`Privacy`]: crate::Privacy
#[derive(Clone, Default)]
pub struct PrivacyConfig {
    /// Field names whose whole value is hidden, wherever they appear (case-insensitive).
    pub fields: Vec<String>,
    /// Mask or hash.
    pub mode: Mode,
    /// The HMAC key of `hash` mode; `None`: the caller supplies one (see
    /// [`Privacy::new`](crate::Privacy::new)).
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
