//! The server secret and what is derived from it: the keyed hashes API keys are stored
//! as, new API keys, and keys for other purposes (PII hashing, token signing).
//!
//! The secret is `PYNOMALY_SECRET_KEY` (shared by every instance of a deployment) or
//! `<data dir>/secret.key`, created on first start with mode 0600. Only a key's hash is
//! stored, so a copy of the database alone does not let anyone test guesses offline.

use std::path::Path;

use chrono::{DateTime, Utc};
use pynomaly_store::{ApiKey, MetadataStore, NewApiKey, Scope, StoreError};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::settings::Settings;

/// The server secret that keys are hashed with. Never printed.
pub struct KeyHasher {
    secret: [u8; 32],
}

impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(<secret>)")
    }
}

impl KeyHasher {
    /// Reads `<data dir>/secret.key`, creating it (mode 0600) on first start.
    ///
    /// # Errors
    /// The file cannot be read or written, or does not hold 32 bytes in hex.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Self> {
        let path = data_dir.join("secret.key");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let bytes = hex::decode(text.trim()).map_err(std::io::Error::other)?;
                let secret: [u8; 32] = bytes.try_into().map_err(|_| {
                    std::io::Error::other(format!("{} must hold 32 bytes in hex", path.display()))
                })?;
                Ok(Self { secret })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                rand::rng().fill_bytes(&mut secret);
                write_private(&path, &hex::encode(secret))?;
                Ok(Self { secret })
            }
            Err(e) => Err(e),
        }
    }

    /// The secret `PYNOMALY_SECRET_KEY` gives (shared by every instance of a deployment),
    /// else `<data dir>/secret.key` as [`KeyHasher::load_or_create`].
    ///
    /// # Errors
    /// As [`KeyHasher::load_or_create`]; the setting was validated at start-up.
    pub fn for_settings(settings: &Settings) -> std::io::Result<Self> {
        match &settings.security.secret_key {
            Some(hex_key) => {
                let bytes = hex::decode(hex_key.expose()).map_err(std::io::Error::other)?;
                let secret: [u8; 32] = bytes.try_into().map_err(|_| {
                    std::io::Error::other("PYNOMALY_SECRET_KEY must hold 32 bytes in hex")
                })?;
                Ok(Self { secret })
            }
            None => Self::load_or_create(&settings.storage.data_dir),
        }
    }

    /// A key for another purpose, derived from the secret (HMAC-SHA256 of `label`), so
    /// every instance sharing the secret derives the same one.
    pub fn derive_key(&self, label: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A hasher over a given secret (tests, tools).
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self { secret }
    }

    /// The key that signs user tokens: the secret itself, so every instance sharing it
    /// accepts the same tokens.
    pub fn token_signing_key(&self) -> &[u8; 32] {
        &self.secret
    }

    /// The stored form of a key: HMAC-SHA256 under the secret, hex.
    pub fn hash(&self, key: &str) -> String {
        // HMAC accepts keys of any length.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(key.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut f = options.open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        f.write_all(contents.as_bytes())?;
        f.write_all(b"\n")?;
    }
    #[cfg(not(unix))]
    {
        let mut f = options.open(path)?;
        f.write_all(contents.as_bytes())?;
    }
    Ok(())
}

/// A new key: `pk_` + 64 hex digits.
fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("pk_{}", hex::encode(bytes))
}

/// Creates an API key: generates it, stores its hash in `meta`, and returns what was stored
/// with the key itself (the only time it exists outside the caller's hands).
///
/// # Errors
/// The store failed.
pub async fn create_api_key(
    meta: &dyn MetadataStore,
    hasher: &KeyHasher,
    tenant: &str,
    name: &str,
    scopes: Vec<Scope>,
    rate_limit_per_minute: Option<i64>,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(ApiKey, String), StoreError> {
    let key = generate_key();
    let stored = meta
        .create_api_key(NewApiKey {
            tenant: tenant.to_string(),
            name: name.to_string(),
            key_hash: hasher.hash(&key),
            scopes,
            rate_limit_per_minute,
            expires_at,
        })
        .await?;
    Ok((stored, key))
}

/// PII masking as the settings configure it (`PYNOMALY_PII_*`), hashing with a key derived
/// from the server secret unless `PYNOMALY_PII_HASH_KEY` names one, so every instance and
/// stream sharing the secret hashes alike.
pub fn privacy(settings: &Settings, hasher: &KeyHasher) -> pynomaly_privacy::Privacy {
    pynomaly_privacy::Privacy::new(
        &settings.security.pii,
        hasher.derive_key("pynomaly-pii-hash-v1"),
    )
}
