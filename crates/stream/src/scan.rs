//! The fast path: an event read straight from its bytes, without a [`serde_json::Value`].
//!
//! Most events are small flat objects of numbers and a few strings that hold nothing to
//! mask. For those, building a `Value` tree (a `String` per key and per string, a map node
//! per entry) only to read ten numbers out of it and serialize it back into the alert is
//! most of the pipeline's work. A [`Scanner`] parses the event once with serde_json's own
//! parser (so numbers, escapes and errors are read exactly as the `Value` path reads them)
//! and keeps only what the features and the alert need: every object's entries as
//! `(key, number | object | other)`, keys borrowed from the message, each object's
//! entries sorted by key as a `serde_json::Map` holds them. The alert then echoes the
//! message text itself as `original_data`.
//!
//! The scan gives up, and the caller takes the `Value` path, on anything it does not
//! handle exactly as that path does:
//! - a message that is not a JSON object, or not valid JSON (the `Value` path writes the
//!   dead letter with its own error text);
//! - an array anywhere;
//! - a key written twice in one object (a `Map` keeps the last; an echo would keep both);
//! - with masking configured, anything [`original_data`](crate::alert::original_data)
//!   might mask: a key that is a masked field or a quasi-identifier, a string or an
//!   integer the privacy rules match (decided by the privacy crate's own functions);
//! - a timestamp field ([`EventFields`]) that is an object (the alert copies it).
//!
//! Giving up costs the scan done so far; nothing is lost.
//!
//! Cost: one pass over the bytes, no allocation per event beyond keys or strings written
//! with escapes (the buffers belong to the batch and are reused from event to event).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::ops::Range;

use pynomaly_privacy::Privacy;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

use crate::alert::EventFields;

/// A value of a scanned event, as far as features need it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scanned {
    Number(f64),
    /// An object: its entries are [`ScannedEvent::object`] of these.
    Object {
        start: usize,
        len: usize,
    },
    /// A string, a boolean or null: never a feature.
    Other,
}

/// One entry of an object.
#[derive(Debug)]
pub(crate) struct Entry<'de> {
    pub(crate) key: Cow<'de, str>,
    pub(crate) value: Scanned,
}

/// An event as scanned: its objects' entries, each object's sorted by key.
#[derive(Debug)]
pub(crate) struct ScannedEvent<'s, 'de> {
    entries: &'s [Entry<'de>],
    root: (usize, usize),
}

impl<'de> ScannedEvent<'_, 'de> {
    /// The event's own (top-level) entries, sorted by key.
    pub(crate) fn root(&self) -> &[Entry<'de>] {
        self.object(self.root.0, self.root.1)
    }

    /// The entries of a nested object, sorted by key.
    pub(crate) fn object(&self, start: usize, len: usize) -> &[Entry<'de>] {
        self.entries.get(start..start + len).unwrap_or_default()
    }
}

/// Where the alert's parts of one scanned event are in the batch's [`Scanner`] text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EchoParts {
    /// The message text to echo: the payload without the whitespace around it.
    pub(crate) text: Range<usize>,
    /// The event's id field as the alert key (a string, or a number written as text), in
    /// [`Scanner::keys`].
    pub(crate) key: Option<Range<usize>>,
    /// The event's timestamp field as JSON, in [`Scanner::stamps`].
    pub(crate) timestamp: Option<Range<usize>>,
}

/// Scans the events of one batch, reusing its buffers from one to the next.
#[derive(Debug)]
pub(crate) struct Scanner<'p, 'de> {
    privacy: Option<&'p Privacy>,
    fields: &'p EventFields,
    /// Entries of the objects still open, innermost last.
    open: Vec<Entry<'de>>,
    /// Entries of the finished objects of the current event, one block per object.
    entries: Vec<Entry<'de>>,
    /// Alert keys of the batch's events, one after the other.
    keys: String,
    /// Timestamp fields of the batch's events as JSON, one after the other.
    stamps: Vec<u8>,
    key: Option<Range<usize>>,
    timestamp: Option<Range<usize>>,
}

/// Why the scan gave up; never shown (the `Value` path then decides).
fn give_up<E: de::Error>() -> E {
    E::custom("not on the fast path")
}

impl<'p, 'de> Scanner<'p, 'de> {
    /// A scanner that leaves to the `Value` path every event `privacy` might mask, reading
    /// alert keys and timestamps from `fields`.
    pub(crate) fn new(privacy: Option<&'p Privacy>, fields: &'p EventFields) -> Self {
        Self {
            privacy,
            fields,
            open: Vec::new(),
            entries: Vec::new(),
            keys: String::new(),
            stamps: Vec::new(),
            key: None,
            timestamp: None,
        }
    }

    /// Scans one message; `None` when the `Value` path must take it (see the module docs).
    pub(crate) fn scan(
        &mut self,
        payload: &'de [u8],
    ) -> Option<(ScannedEvent<'_, 'de>, EchoParts)> {
        self.open.clear();
        self.entries.clear();
        self.key = None;
        self.timestamp = None;
        let (keys_len, stamps_len) = (self.keys.len(), self.stamps.len());
        let mut de = serde_json::Deserializer::from_slice(payload);
        let scanned = ObjectSeed {
            scanner: &mut *self,
        }
        .deserialize(&mut de)
        .and_then(|root| de.end().map(|()| root));
        let root = match scanned {
            Ok(Scanned::Object { start, len }) => (start, len),
            Ok(_) | Err(_) => {
                self.keys.truncate(keys_len);
                self.stamps.truncate(stamps_len);
                return None;
            }
        };
        let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        let start = payload.iter().position(|b| !is_space(b)).unwrap_or(0);
        let end = payload
            .iter()
            .rposition(|b| !is_space(b))
            .map_or(start, |i| i + 1);
        let parts = EchoParts {
            text: start..end,
            key: self.key.take(),
            timestamp: self.timestamp.take(),
        };
        Some((
            ScannedEvent {
                entries: &self.entries,
                root,
            },
            parts,
        ))
    }

    /// The batch's alert keys and timestamps, which [`EchoParts`] point into.
    pub(crate) fn into_text(self) -> (String, Vec<u8>) {
        (self.keys, self.stamps)
    }

    fn object<A: MapAccess<'de>>(&mut self, mut map: A, top: bool) -> Result<Scanned, A::Error> {
        let base = self.open.len();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            if let Some(p) = self.privacy
                && (p.key_is_masked_field(&key) || p.key_is_quasi_identifier(&key))
            {
                return Err(give_up());
            }
            let role = match top {
                true if *key == *self.fields.id => Role::Id,
                true if *key == *self.fields.timestamp => Role::Timestamp,
                _ => Role::Plain,
            };
            let value = map.next_value_seed(ValueSeed {
                scanner: &mut *self,
                role,
            })?;
            self.open.push(Entry { key, value });
        }
        let own = &mut self.open[base..];
        // A `serde_json::Map` iterates in key order; the features and lookups rely on it.
        own.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        if own.windows(2).any(|w| w[0].key == w[1].key) {
            return Err(give_up());
        }
        let start = self.entries.len();
        let len = own.len();
        self.entries.extend(self.open.drain(base..));
        Ok(Scanned::Object { start, len })
    }

    fn number<E: de::Error>(&mut self, n: serde_json::Number, role: Role) -> Result<(), E> {
        if self.privacy.is_some_and(|p| p.number_needs_masking(&n)) {
            return Err(give_up());
        }
        match role {
            // As `alert::event_key` and the alert's `timestamp` write a `Value::Number`.
            Role::Id => {
                let start = self.keys.len();
                let _ = write!(self.keys, "{n}");
                self.key = Some(start..self.keys.len());
            }
            Role::Timestamp => {
                let start = self.stamps.len();
                serde_json::to_writer(&mut self.stamps, &n).map_err(E::custom)?;
                self.timestamp = Some(start..self.stamps.len());
            }
            Role::Plain => {}
        }
        Ok(())
    }

    fn string<E: de::Error>(&mut self, s: &str, role: Role) -> Result<(), E> {
        if self.privacy.is_some_and(|p| p.string_needs_masking(s)) {
            return Err(give_up());
        }
        match role {
            Role::Id => {
                let start = self.keys.len();
                self.keys.push_str(s);
                self.key = Some(start..self.keys.len());
            }
            Role::Timestamp => {
                let start = self.stamps.len();
                serde_json::to_writer(&mut self.stamps, s).map_err(E::custom)?;
                self.timestamp = Some(start..self.stamps.len());
            }
            Role::Plain => {}
        }
        Ok(())
    }

    fn literal(&mut self, json: &[u8], role: Role) {
        if role == Role::Timestamp {
            let start = self.stamps.len();
            self.stamps.extend_from_slice(json);
            self.timestamp = Some(start..self.stamps.len());
        }
    }
}

/// What a top-level field is to the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The id field ([`EventFields::id`]): the alert key.
    Id,
    /// The timestamp field ([`EventFields::timestamp`]): copied into the alert.
    Timestamp,
    Plain,
}

/// The event itself: an object.
struct ObjectSeed<'a, 'p, 'de> {
    scanner: &'a mut Scanner<'p, 'de>,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_, '_, 'de> {
    type Value = Scanned;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Scanned, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_, '_, 'de> {
    type Value = Scanned;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scanned, A::Error> {
        self.scanner.object(map, true)
    }
}

/// An object key, borrowed from the message unless it was written with escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// A field's value.
struct ValueSeed<'a, 'p, 'de> {
    scanner: &'a mut Scanner<'p, 'de>,
    role: Role,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_, '_, 'de> {
    type Value = Scanned;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Scanned, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_, '_, 'de> {
    type Value = Scanned;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value without arrays")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scanned, E> {
        self.scanner
            .literal(if v { b"true" } else { b"false" }, self.role);
        Ok(Scanned::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scanned, E> {
        self.scanner.literal(b"null", self.role);
        Ok(Scanned::Other)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scanned, E> {
        self.scanner.number(v.into(), self.role)?;
        Ok(Scanned::Number(v as f64))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scanned, E> {
        self.scanner.number(v.into(), self.role)?;
        Ok(Scanned::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scanned, E> {
        // serde_json never reads a non-finite number; a `Value` would hold it as null.
        let n = serde_json::Number::from_f64(v).ok_or_else(give_up)?;
        self.scanner.number(n, self.role)?;
        Ok(Scanned::Number(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scanned, E> {
        self.scanner.string(v, self.role)?;
        Ok(Scanned::Other)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Scanned, E> {
        self.scanner.string(v, self.role)?;
        Ok(Scanned::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Scanned, A::Error> {
        if self.role == Role::Timestamp {
            return Err(give_up());
        }
        self.scanner.object(map, false)
    }
}
