//! Values that must not be printed: URLs with passwords, secrets.

/// A setting that must not be printed (URLs with passwords, secrets): its `Debug` shows
/// the URL scheme at most.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the code that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

/// A value as it may be shown: a URL's scheme only (URLs may carry passwords), else `…`.
pub(crate) fn redact(v: &str) -> String {
    match v.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://…"),
        None => "…".into(),
    }
}
