//! The kinds of personal data, and where one was found in a text.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

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

    /// The name used in requests and reports: `email`, `phone`, `ssn`, `credit_card`.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::CreditCard => "credit_card",
            PiiKind::Ssn => "ssn",
            PiiKind::Phone => "phone",
        }
    }

    /// The label of a masked value: `[EMAIL]`, or the prefix of its hash token.
    pub(crate) fn label(self) -> &'static str {
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
