//! API keys: creation, verification, scopes.
//!
//! A key is `pk_` followed by 256 random bits in hex. Only its keyed hash is stored:
//! HMAC-SHA256 under a server secret kept in `<data dir>/secret.key` (mode 0600), so a
//! copy of the database alone does not let anyone test guesses offline, and verifying a
//! key costs a microsecond (no password hash on the hot path). The lookup is by hash, so
//! comparing keys never happens byte by byte in our code. Verified keys are cached for a
//! second, which bounds how long a revoked key still works on another instance; a
//! revocation through this instance applies at once.
//!
//! Scopes are checked by extractors in each handler's signature ([`ReadAccess`],
//! [`WriteAccess`], [`AdminAccess`]), so a handler cannot forget them; `admin` implies
//! `read` and `write`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use pynomaly_store::{ApiKey, DynMetadataStore, NewApiKey, Scope, StoreError};
use rand::RngCore;
use serde::Serialize;
use sha2::Sha256;

use crate::error::ApiError;
use crate::settings::Settings;
use crate::state::AppState;

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
        match &settings.secret_key {
            Some(hex_key) => {
                let bytes = hex::decode(hex_key.expose()).map_err(std::io::Error::other)?;
                let secret: [u8; 32] = bytes.try_into().map_err(|_| {
                    std::io::Error::other("PYNOMALY_SECRET_KEY must hold 32 bytes in hex")
                })?;
                Ok(Self { secret })
            }
            None => Self::load_or_create(&settings.data_dir),
        }
    }

    /// A key for another purpose, derived from the secret (HMAC-SHA256 of `label`), so
    /// every instance sharing the secret derives the same one.
    pub(crate) fn derive_key(&self, label: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
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
pub(crate) fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
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
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("pk_{}", hex::encode(bytes))
}

/// Who is calling: the key's id, tenant and scopes.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    pub tenant: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// Whether the caller holds `scope` (`admin` holds every scope).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

/// A key as shown once, at creation.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    pub id: String,
    pub key: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub tenant: String,
    pub rate_limit_per_minute: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Verifies bearer tokens against stored keys.
#[derive(Debug)]
pub struct AuthService {
    meta: DynMetadataStore,
    hasher: KeyHasher,
    cache: RwLock<HashMap<String, (ApiKey, Instant)>>,
    ttl: Duration,
}

impl AuthService {
    pub(crate) fn new(meta: DynMetadataStore, hasher: KeyHasher) -> Self {
        Self {
            meta,
            hasher,
            cache: RwLock::new(HashMap::new()),
            ttl: Duration::from_secs(1),
        }
    }

    /// The caller of a request, from its `Authorization: Bearer` header.
    ///
    /// # Errors
    /// 401 for a missing, malformed, unknown, revoked or expired key.
    pub(crate) async fn authenticate(&self, parts: &Parts) -> Result<Principal, ApiError> {
        let Some(header) = parts.headers.get(AUTHORIZATION) else {
            return Err(ApiError::Unauthorized(
                "missing credentials: send 'Authorization: Bearer <API key>'".into(),
            ));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "malformed Authorization header: expected 'Bearer <API key>'".into(),
                )
            })?;
        if !token.starts_with("pk_") || token.len() > 256 {
            return Err(invalid_key());
        }
        let hash = self.hasher.hash(token);
        let now = Utc::now();
        let cached = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(k, _)| k.clone());
        let key = match cached {
            Some(k) => k,
            None => {
                let Some(k) = self.meta.find_api_key_by_hash(&hash).await? else {
                    return Err(invalid_key());
                };
                let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
                if cache.len() > 100_000 {
                    cache.clear();
                }
                cache.insert(hash, (k.clone(), Instant::now()));
                k
            }
        };
        if !key.is_active(now) {
            return Err(invalid_key());
        }
        Ok(Principal {
            key_id: key.id,
            tenant: key.tenant,
            scopes: key.scopes,
        })
    }

    /// Creates and stores a new key; the key itself is returned only here.
    ///
    /// # Errors
    /// The store failed.
    pub async fn create_key(
        &self,
        tenant: &str,
        name: &str,
        scopes: Vec<Scope>,
        rate_limit_per_minute: Option<i64>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<CreatedKey, StoreError> {
        let key = generate_key();
        let stored = self
            .meta
            .create_api_key(NewApiKey {
                tenant: tenant.to_string(),
                name: name.to_string(),
                key_hash: self.hasher.hash(&key),
                scopes,
                rate_limit_per_minute,
                expires_at,
            })
            .await?;
        Ok(CreatedKey {
            id: stored.id,
            key,
            name: stored.name,
            scopes: stored.scopes,
            tenant: stored.tenant,
            rate_limit_per_minute: stored.rate_limit_per_minute,
            created_at: stored.created_at,
            expires_at: stored.expires_at,
        })
    }

    /// Drops a revoked key from the cache so it stops working here at once.
    pub(crate) fn forget(&self, key_id: &str) {
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, (k, _)| k.id != key_id);
    }

    /// On a first start (no key at all): creates an admin key and writes it to
    /// `<data dir>/admin.key` (mode 0600). Returns the key when one was created.
    ///
    /// # Errors
    /// The store failed or the file cannot be written.
    pub(crate) async fn ensure_admin_key(
        &self,
        data_dir: &Path,
    ) -> Result<Option<String>, Box<dyn std::error::Error + Send + Sync>> {
        if self.meta.count_api_keys().await? > 0 {
            return Ok(None);
        }
        let created = self
            .create_key(
                pynomaly_store::DEFAULT_TENANT,
                "admin",
                Scope::ALL.to_vec(),
                None,
                None,
            )
            .await?;
        write_private(&data_dir.join("admin.key"), &created.key)?;
        Ok(Some(created.key))
    }
}

fn invalid_key() -> ApiError {
    ApiError::Unauthorized("invalid, revoked or expired API key".into())
}

macro_rules! scoped_access {
    ($name:ident, $scope:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone)]
        pub struct $name(pub Principal);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(
                parts: &mut Parts,
                state: &AppState,
            ) -> Result<Self, Self::Rejection> {
                let principal = state.auth.authenticate(parts).await?;
                if principal.has($scope) {
                    Ok($name(principal))
                } else {
                    Err(ApiError::Forbidden(format!(
                        "this API key lacks the '{}' scope",
                        $scope.as_str()
                    )))
                }
            }
        }
    };
}

scoped_access!(
    ReadAccess,
    Scope::Read,
    "A caller holding the `read` scope."
);
scoped_access!(
    WriteAccess,
    Scope::Write,
    "A caller holding the `write` scope."
);
scoped_access!(
    AdminAccess,
    Scope::Admin,
    "A caller holding the `admin` scope."
);

/// `pynomaly keys create`: creates a key in the metadata store of `settings` (Postgres
/// with `DATABASE_URL`, else the data directory's SQLite) and returns it (the only time it
/// is shown).
///
/// # Errors
/// The data directory, secret or database cannot be opened, or the store failed.
pub async fn create_api_key(
    settings: &Settings,
    name: &str,
    scopes: Vec<Scope>,
    tenant: &str,
) -> Result<CreatedKey, Box<dyn std::error::Error + Send + Sync>> {
    std::fs::create_dir_all(&settings.data_dir)?;
    let store = crate::startup::open_metadata(settings).await?;
    let hasher = KeyHasher::for_settings(settings)?;
    let auth = AuthService::new(std::sync::Arc::clone(&store), hasher);
    let created = auth.create_key(tenant, name, scopes, None, None).await;
    store.close().await;
    Ok(created?)
}
