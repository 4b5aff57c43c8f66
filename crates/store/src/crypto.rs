//! Encryption at rest for artifacts (model files, job outputs): AES-256-GCM in the STREAM
//! construction, one self-describing envelope per object.
//!
//! # The envelope
//!
//! ```text
//! magic "\x89PNYENC" (7) | version 1 (1) | key id length (1) | key id (1..=64)
//! | object nonce (12, random) | frame size (u32 BE) | frames...
//! ```
//!
//! The plaintext is cut into frames of `frame size` bytes (64 KiB), each sealed with
//! AES-256-GCM (16-byte tag); the last frame (possibly empty) is sealed as the last, so a
//! truncated object fails to open rather than reading short. Frame nonces are STREAM's
//! (Hoang, Reyhanitabar, Rogaway, Vizár, "Online Authenticated-Encryption and its
//! Nonce-Reuse Misuse-Resistance", 2015), from `aead::stream`: a 7-byte prefix, a 32-bit
//! frame counter and a last-frame flag.
//!
//! Each object gets a random 96-bit nonce, stored in its header. The frames are not sealed
//! under the master key itself but under a key derived for this object,
//! `HMAC-SHA256(master, "pynomaly-artifact-v1" || object nonce)`: two objects share a
//! (key, frame nonce) pair only if their random 96-bit nonces collide, the bound NIST
//! SP 800-38D sets for random GCM nonces (2^32 objects per master key at 2^-33), whereas the
//! 56-bit STREAM prefix alone would allow only a few thousand objects.
//!
//! Every frame's associated data is the whole header followed by the object's path in the
//! store: the key id, nonce and frame size cannot be altered, and an object copied (or
//! swapped) to another path fails to open.
//!
//! # Plaintext objects
//!
//! An object that does not start with the magic is plaintext: one written before a key was
//! configured. pynomaly's plaintext artifacts never start with it (job outputs are JSON or
//! CSV text, and `0x89` is not ASCII; model files start with their own `PNMY` magic), so the
//! test is exact. They still read unless [`Keyring::require_encrypted`] is set (a store
//! whose objects were all written under a key can refuse plaintext, so an attacker with
//! write access to the bucket cannot substitute an unencrypted model).
//!
//! # Keys
//!
//! A [`Keyring`] holds the current key (new objects are sealed under it) and older keys by
//! id (objects sealed under them still open): rotating is setting a new current key and
//! moving the previous one to the old keys. An object under a key id the ring does not
//! hold, or whose tag does not verify, is an error naming the object, never a panic.

use std::collections::HashMap;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::aead::{KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// The first bytes of an encrypted object (`0x89` is not text, as in PNG's signature).
pub const MAGIC: &[u8; 7] = b"\x89PNYENC";
const VERSION: u8 = 1;
/// Plaintext bytes per frame.
pub const FRAME_BYTES: usize = 64 * 1024;
const TAG_BYTES: usize = 16;
const NONCE_BYTES: usize = 12;
/// STREAM's nonce prefix for a 96-bit nonce: 12 - 4 (counter) - 1 (last flag).
const PREFIX_BYTES: usize = 7;
/// Largest frame size a header may claim (bounds what a reader allocates).
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
const KDF_LABEL: &[u8] = b"pynomaly-artifact-v1";

/// Why an object could not be sealed or opened, or a key not used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error(
        "artifact '{path}' is encrypted under key id '{key_id}', which is not configured \
         (add it to PYNOMALY_ENCRYPTION_OLD_KEYS)"
    )]
    UnknownKey { path: String, key_id: String },
    #[error(
        "artifact '{path}' failed authentication: it was altered or truncated, or it belongs \
         at another path"
    )]
    Authentication { path: String },
    #[error("artifact '{path}' has a malformed encryption header: {reason}")]
    Malformed { path: String, reason: String },
    #[error(
        "artifact '{path}' is not encrypted, and this store reads only encrypted artifacts \
         (PYNOMALY_ENCRYPTION_REQUIRED)"
    )]
    PlaintextRefused { path: String },
    #[error("invalid encryption key id '{0}': use 1 to 64 letters, digits, '.', '_' or '-'")]
    BadKeyId(String),
    #[error("encryption key id '{0}' is given twice")]
    DuplicateKeyId(String),
    #[error("an encryption key must be 64 hex digits (32 random bytes, `openssl rand -hex 32`)")]
    BadKey,
    #[error("artifact '{path}' is too large to encrypt (over 2^32 frames)")]
    TooLarge { path: String },
}

/// A 256-bit master key. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// A key from 64 hex digits.
    ///
    /// # Errors
    /// [`CryptoError::BadKey`].
    pub fn from_hex(hex_key: &str) -> Result<Self, CryptoError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|_| CryptoError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(Self(key))
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A short public fingerprint (`k` + 8 hex digits of SHA-256), usable as a key id.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest;
        let digest = Sha256::digest(self.0);
        format!("k{}", hex::encode(&digest[..4]))
    }

    fn derive(&self, object_nonce: &[u8]) -> Aes256Gcm {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key");
        mac.update(KDF_LABEL);
        mac.update(object_nonce);
        let derived = mac.finalize().into_bytes();
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&derived))
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<secret>)")
    }
}

/// The keys a store seals and opens with (see the module docs).
#[derive(Clone, Default)]
pub struct Keyring {
    current: Option<String>,
    keys: HashMap<String, MasterKey>,
    require_encrypted: bool,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Keyring")
            .field("current", &self.current)
            .field("key_ids", &ids)
            .field("require_encrypted", &self.require_encrypted)
            .finish()
    }
}

fn check_key_id(id: &str) -> Result<(), CryptoError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(CryptoError::BadKeyId(id.to_string()))
    }
}

impl Keyring {
    /// A ring whose current key (new objects are sealed under it) is `key`, named `id`.
    ///
    /// # Errors
    /// [`CryptoError::BadKeyId`].
    pub fn new(id: &str, key: MasterKey) -> Result<Self, CryptoError> {
        check_key_id(id)?;
        let mut keys = HashMap::new();
        keys.insert(id.to_string(), key);
        Ok(Self {
            current: Some(id.to_string()),
            keys,
            require_encrypted: false,
        })
    }

    /// A ring that only opens objects (with keys added by [`Keyring::with_old_key`]) and
    /// writes plaintext.
    pub fn read_only() -> Self {
        Self::default()
    }

    /// Adds a key that opens objects sealed under it (a key rotated out).
    ///
    /// # Errors
    /// [`CryptoError::BadKeyId`], or [`CryptoError::DuplicateKeyId`] when the id is taken.
    pub fn with_old_key(mut self, id: &str, key: MasterKey) -> Result<Self, CryptoError> {
        check_key_id(id)?;
        if self.keys.contains_key(id) {
            return Err(CryptoError::DuplicateKeyId(id.to_string()));
        }
        self.keys.insert(id.to_string(), key);
        Ok(self)
    }

    /// Refuses to read plaintext objects.
    #[must_use]
    pub fn require_encrypted(mut self, yes: bool) -> Self {
        self.require_encrypted = yes;
        self
    }

    /// The id new objects are sealed under, if any.
    pub fn current_id(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Whether new objects are sealed.
    pub fn seals(&self) -> bool {
        self.current.is_some()
    }

    /// Starts sealing the object at `path` under the current key: the header to write first,
    /// and the sealer for the rest. `None` when the ring has no current key.
    pub fn sealer(&self, path: &str) -> Option<(Vec<u8>, Sealer)> {
        let id = self.current.as_deref()?;
        let key = &self.keys[id];
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        let mut header = Vec::with_capacity(25 + id.len());
        header.extend_from_slice(MAGIC);
        header.push(VERSION);
        header.push(u8::try_from(id.len()).expect("key ids are at most 64 bytes"));
        header.extend_from_slice(id.as_bytes());
        header.extend_from_slice(&nonce);
        header.extend_from_slice(&(FRAME_BYTES as u32).to_be_bytes());
        let aad = [header.as_slice(), path.as_bytes()].concat();
        let cipher = key.derive(&nonce);
        let encryptor = EncryptorBE32::from_aead(cipher, (&nonce[..PREFIX_BYTES]).into());
        Some((
            header,
            Sealer {
                encryptor: Some(encryptor),
                aad,
                frames: Frames::new(FRAME_BYTES, true),
                path: path.to_string(),
            },
        ))
    }

    /// Seals a whole object (or returns it as is when the ring has no current key).
    ///
    /// # Errors
    /// [`CryptoError::TooLarge`].
    pub fn seal(&self, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let Some((mut out, mut sealer)) = self.sealer(path) else {
            return Ok(plaintext.to_vec());
        };
        out.reserve(plaintext.len() + (plaintext.len() / FRAME_BYTES + 1) * TAG_BYTES);
        sealer.push_into(plaintext, &mut out)?;
        sealer.finish_into(&mut out)?;
        Ok(out)
    }

    /// Opens a whole object: plaintext objects come back as they are (unless refused).
    ///
    /// # Errors
    /// See [`CryptoError`].
    pub fn open(&self, path: &str, object: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if object.is_empty() {
            // Sealing writes at least a header and a tag: an empty object is plaintext.
            return self.plain(path).map(|_| Vec::new());
        }
        match self.opener(path, object)? {
            Envelope::Plain => Ok(object.to_vec()),
            Envelope::NeedMore => Err(CryptoError::Malformed {
                path: path.to_string(),
                reason: "truncated header".into(),
            }),
            Envelope::Sealed {
                header_len,
                mut opener,
            } => {
                let body = &object[header_len..];
                let mut out = Vec::with_capacity(body.len());
                opener.push_into(body, &mut out)?;
                opener.finish_into(&mut out)?;
                Ok(out)
            }
        }
    }

    /// Reads the start of an object: plaintext, sealed (with the opener for the bytes after
    /// the header), or too short to tell.
    ///
    /// # Errors
    /// An unknown key id, a malformed header, or plaintext where it is refused.
    pub fn opener(&self, path: &str, start: &[u8]) -> Result<Envelope, CryptoError> {
        let n = start.len().min(MAGIC.len());
        if start[..n] != MAGIC[..n] {
            return self.plain(path);
        }
        let malformed = |reason: &str| CryptoError::Malformed {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        if start.len() < MAGIC.len() + 2 {
            return Ok(Envelope::NeedMore);
        }
        if start[MAGIC.len()] != VERSION {
            return Err(malformed(&format!(
                "unknown format version {}",
                start[MAGIC.len()]
            )));
        }
        let id_len = usize::from(start[MAGIC.len() + 1]);
        let header_len = MAGIC.len() + 2 + id_len + NONCE_BYTES + 4;
        if start.len() < header_len {
            return Ok(Envelope::NeedMore);
        }
        let id_start = MAGIC.len() + 2;
        let key_id = std::str::from_utf8(&start[id_start..id_start + id_len])
            .map_err(|_| malformed("key id is not UTF-8"))?;
        let nonce = &start[id_start + id_len..id_start + id_len + NONCE_BYTES];
        let frame_at = id_start + id_len + NONCE_BYTES;
        let frame = u32::from_be_bytes(
            start[frame_at..frame_at + 4]
                .try_into()
                .expect("4 bytes by construction"),
        ) as usize;
        if frame == 0 || frame > MAX_FRAME_BYTES {
            return Err(malformed(&format!("frame size {frame} out of range")));
        }
        let Some(key) = self.keys.get(key_id) else {
            return Err(CryptoError::UnknownKey {
                path: path.to_string(),
                key_id: key_id.to_string(),
            });
        };
        let header = &start[..header_len];
        let aad = [header, path.as_bytes()].concat();
        let decryptor =
            DecryptorBE32::from_aead(key.derive(nonce), (&nonce[..PREFIX_BYTES]).into());
        Ok(Envelope::Sealed {
            header_len,
            opener: Box::new(Opener {
                decryptor: Some(decryptor),
                aad,
                frames: Frames::new(frame + TAG_BYTES, false),
                path: path.to_string(),
            }),
        })
    }

    fn plain(&self, path: &str) -> Result<Envelope, CryptoError> {
        if self.require_encrypted {
            Err(CryptoError::PlaintextRefused {
                path: path.to_string(),
            })
        } else {
            Ok(Envelope::Plain)
        }
    }
}

/// What the start of an object says it is.
#[derive(Debug)]
pub enum Envelope {
    /// Not encrypted: read it as it is.
    Plain,
    /// Encrypted: the header is `header_len` bytes; feed the rest to `opener`.
    Sealed {
        header_len: usize,
        opener: Box<Opener>,
    },
    /// Starts like an encrypted object, but the header is not complete yet.
    NeedMore,
}

/// The plaintext size of a sealed object whose body (after the header) is `body_len` bytes,
/// sealed in frames of `frame_sealed` bytes (tag included). `None` when no sealed object
/// has that size.
pub fn plaintext_len(body_len: u64, frame_sealed: usize) -> Option<u64> {
    let frame = frame_sealed as u64;
    if body_len < TAG_BYTES as u64 {
        return None;
    }
    let frames = body_len.div_ceil(frame).max(1);
    Some(body_len - frames * TAG_BYTES as u64)
}

/// Seals an object frame by frame (see [`Keyring::sealer`]).
#[derive(derive_more::Debug)]
pub struct Sealer {
    #[debug(skip)]
    encryptor: Option<EncryptorBE32<Aes256Gcm>>,
    #[debug(skip)]
    aad: Vec<u8>,
    #[debug(skip)]
    frames: Frames,
    path: String,
}

/// Bytes gathered a frame at a time: plaintext frames for the [`Sealer`], sealed ones for
/// the [`Opener`]. A full frame is handed on only once a byte beyond it has arrived, so
/// the last frame (empty or not) is always left in `buf` for `finish_into`, the one that
/// is sealed or opened as the last.
struct Frames {
    buf: Vec<u8>,
    size: usize,
}

impl Frames {
    /// Frames of `size` bytes; `reserve`: allocate a frame's room at once (the sealer,
    /// whose size is ours), else grow with the data (an opener's size comes from the
    /// object's header, and nothing is reserved on its word alone).
    fn new(size: usize, reserve: bool) -> Self {
        Self {
            buf: Vec::with_capacity(if reserve { size } else { 0 }),
            size,
        }
    }

    /// Adds `data`, calling `full` with every frame that is known not to be the last.
    fn push(
        &mut self,
        mut data: &[u8],
        mut full: impl FnMut(&[u8]) -> Result<(), CryptoError>,
    ) -> Result<(), CryptoError> {
        while !data.is_empty() {
            if self.buf.len() == self.size {
                full(&self.buf)?;
                self.buf.clear();
            }
            let take = (self.size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(())
    }
}

impl Sealer {
    /// Takes plaintext; appends to `out` the frames it completes. A frame is sealed only
    /// once a byte beyond it has arrived, so that [`Sealer::finish_into`] always has a last
    /// frame to seal (empty or not).
    ///
    /// # Errors
    /// [`CryptoError::TooLarge`] past 2^32 frames.
    pub fn push_into(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let encryptor = self.encryptor.as_mut().expect("sealer used after finish");
        let (aad, path) = (&self.aad, &self.path);
        self.frames.push(data, |msg| {
            let sealed = encryptor
                .encrypt_next(Payload { msg, aad })
                .map_err(|_| CryptoError::TooLarge { path: path.clone() })?;
            out.extend_from_slice(&sealed);
            Ok(())
        })
    }

    /// Seals the last frame into `out`.
    ///
    /// # Errors
    /// [`CryptoError::TooLarge`].
    pub fn finish_into(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let encryptor = self.encryptor.take().expect("sealer finished once");
        let sealed = encryptor
            .encrypt_last(Payload {
                msg: &self.frames.buf,
                aad: &self.aad,
            })
            .map_err(|_| CryptoError::TooLarge {
                path: self.path.clone(),
            })?;
        out.extend_from_slice(&sealed);
        Ok(())
    }
}

/// Opens an object frame by frame (see [`Keyring::opener`]).
#[derive(derive_more::Debug)]
pub struct Opener {
    #[debug(skip)]
    decryptor: Option<DecryptorBE32<Aes256Gcm>>,
    #[debug(skip)]
    aad: Vec<u8>,
    #[debug(skip)]
    frames: Frames,
    path: String,
}

impl Opener {
    /// Sealed frame size (tag included), for [`plaintext_len`].
    pub fn frame_sealed(&self) -> usize {
        self.frames.size
    }

    /// Takes sealed bytes; appends to `out` the plaintext of every frame known not to be
    /// the last (one with more bytes after it).
    ///
    /// # Errors
    /// [`CryptoError::Authentication`].
    pub fn push_into(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let decryptor = self.decryptor.as_mut().expect("opener used after finish");
        let (aad, path) = (&self.aad, &self.path);
        self.frames.push(data, |msg| {
            let plain = decryptor
                .decrypt_next(Payload { msg, aad })
                .map_err(|_| CryptoError::Authentication { path: path.clone() })?;
            out.extend_from_slice(&plain);
            Ok(())
        })
    }

    /// Opens the last frame into `out`: an object cut short fails here.
    ///
    /// # Errors
    /// [`CryptoError::Authentication`].
    pub fn finish_into(mut self, out: &mut Vec<u8>) -> Result<(), CryptoError> {
        let decryptor = self.decryptor.take().expect("opener finished once");
        let plain = decryptor
            .decrypt_last(Payload {
                msg: &self.frames.buf,
                aad: &self.aad,
            })
            .map_err(|_| CryptoError::Authentication {
                path: self.path.clone(),
            })?;
        out.extend_from_slice(&plain);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(id: &str, byte: u8) -> Keyring {
        Keyring::new(id, MasterKey::from_bytes([byte; 32])).unwrap()
    }

    #[test]
    fn round_trips_at_every_frame_boundary() {
        let r = ring("a", 1);
        for len in [
            0,
            1,
            FRAME_BYTES - 1,
            FRAME_BYTES,
            FRAME_BYTES + 1,
            3 * FRAME_BYTES,
            3 * FRAME_BYTES + 7,
        ] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let sealed = r.seal("jobs/x/out.json", &plain).unwrap();
            assert_eq!(&sealed[..7], MAGIC);
            let Envelope::Sealed { header_len, opener } = r.opener("p", &sealed).unwrap() else {
                panic!("not sealed")
            };
            assert_eq!(
                plaintext_len((sealed.len() - header_len) as u64, opener.frame_sealed()),
                Some(len as u64),
                "len {len}"
            );
            assert_eq!(
                r.open("jobs/x/out.json", &sealed).unwrap(),
                plain,
                "len {len}"
            );
        }
    }

    #[test]
    fn streamed_pushes_in_odd_pieces_match_one_seal() {
        let r = ring("a", 2);
        let plain: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8).collect();
        let (mut out, mut sealer) = r.sealer("p").unwrap();
        for piece in plain.chunks(7777) {
            sealer.push_into(piece, &mut out).unwrap();
        }
        sealer.finish_into(&mut out).unwrap();
        assert_eq!(r.open("p", &out).unwrap(), plain);
        // Opening fed in odd pieces too.
        let Envelope::Sealed {
            header_len,
            mut opener,
        } = r.opener("p", &out).unwrap()
        else {
            panic!()
        };
        let mut back = Vec::new();
        for piece in out[header_len..].chunks(1000) {
            opener.push_into(piece, &mut back).unwrap();
        }
        opener.finish_into(&mut back).unwrap();
        assert_eq!(back, plain);
    }

    #[test]
    fn tampering_truncation_and_another_path_fail_authentication() {
        let r = ring("a", 3);
        let plain = vec![7u8; FRAME_BYTES * 2 + 10];
        let sealed = r.seal("models/t/m/1.pnmy", &plain).unwrap();
        let auth = |res: Result<Vec<u8>, CryptoError>| {
            assert!(
                matches!(res, Err(CryptoError::Authentication { .. })),
                "{res:?}"
            )
        };
        let mut flipped = sealed.clone();
        let at = flipped.len() - 100;
        flipped[at] ^= 1;
        auth(r.open("models/t/m/1.pnmy", &flipped));
        // The header is authenticated too: a changed frame size or nonce fails.
        let mut nonce_changed = sealed.clone();
        nonce_changed[11] ^= 0x40;
        auth(r.open("models/t/m/1.pnmy", &nonce_changed));
        // Cut at a frame boundary: the last frame is missing.
        let header_len = 25 + 1;
        auth(r.open(
            "models/t/m/1.pnmy",
            &sealed[..header_len + 2 * (FRAME_BYTES + TAG_BYTES)],
        ));
        auth(r.open("models/t/m/1.pnmy", &sealed[..sealed.len() - 1]));
        auth(r.open("models/t/m/2.pnmy", &sealed));
    }

    #[test]
    fn unknown_key_ids_and_plaintext_policy() {
        let a = ring("a", 4);
        let sealed = a.seal("p", b"hello").unwrap();
        let b = ring("b", 5);
        assert_eq!(
            b.open("p", &sealed),
            Err(CryptoError::UnknownKey {
                path: "p".into(),
                key_id: "a".into()
            })
        );
        // The same id with another key: the tag fails.
        let a_wrong = ring("a", 6);
        assert!(matches!(
            a_wrong.open("p", &sealed),
            Err(CryptoError::Authentication { .. })
        ));
        let rotated = b.with_old_key("a", MasterKey::from_bytes([4; 32])).unwrap();
        assert_eq!(rotated.open("p", &sealed).unwrap(), b"hello");
        assert_eq!(rotated.open("p", b"[1,2]").unwrap(), b"[1,2]");
        let strict = rotated.require_encrypted(true);
        assert!(matches!(
            strict.open("p", b"[1,2]"),
            Err(CryptoError::PlaintextRefused { .. })
        ));
        assert!(matches!(
            Keyring::read_only().open("p", &sealed),
            Err(CryptoError::UnknownKey { .. })
        ));
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        let r = ring("a", 7);
        let sealed = r.seal("p", b"x").unwrap();
        for cut in 0..30 {
            let _ = r.open("p", &sealed[..cut.min(sealed.len())]);
        }
        let mut bad_version = sealed.clone();
        bad_version[7] = 9;
        assert!(matches!(
            r.open("p", &bad_version),
            Err(CryptoError::Malformed { .. })
        ));
        let mut huge_frame = sealed.clone();
        huge_frame[22..26].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            r.open("p", &huge_frame),
            Err(CryptoError::Malformed { .. })
        ));
        assert!(Keyring::new("bad id", MasterKey::from_bytes([0; 32])).is_err());
        assert!(MasterKey::from_hex("abcd").is_err());
        assert!(
            r.clone()
                .with_old_key("a", MasterKey::from_bytes([0; 32]))
                .is_err()
        );
    }
}
