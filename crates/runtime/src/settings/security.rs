//! The settings with secrets in them: encryption at rest and PII hashing.

use pynomaly_store::crypto::{Keyring, MasterKey};

use super::env::Env;

pub(super) const RANDOM_32_BYTES: &str =
    "expected 64 hex digits (32 random bytes, e.g. `openssl rand -hex 32`)";

/// `PYNOMALY_ENCRYPTION_KEY` (64 hex digits: new artifacts are sealed under it),
/// `PYNOMALY_ENCRYPTION_KEY_ID` (its id, stored in each object's header; default a
/// fingerprint of the key), `PYNOMALY_ENCRYPTION_OLD_KEYS` (`id:hex,...`: keys rotated out,
/// still opening what they sealed) and `PYNOMALY_ENCRYPTION_REQUIRED` (`true`: refuse to
/// read plaintext artifacts). `None`: artifacts are stored unencrypted.
pub(super) fn encryption(env: &mut Env<'_>) -> Option<Keyring> {
    let key = env.get("PYNOMALY_ENCRYPTION_KEY");
    let old = env.get("PYNOMALY_ENCRYPTION_OLD_KEYS");
    let key_id = env.get("PYNOMALY_ENCRYPTION_KEY_ID");
    let required = env
        .flag(
            "PYNOMALY_ENCRYPTION_REQUIRED",
            &["true", "1"],
            &["false", "0"],
        )
        .unwrap_or(false);
    if let Some(id) = &key_id
        && key.is_none()
    {
        env.invalid(
            "PYNOMALY_ENCRYPTION_KEY_ID",
            id,
            "names a key, but PYNOMALY_ENCRYPTION_KEY is not set",
        );
    }
    let mut ring = match &key {
        Some(hex_key) => {
            let master = match MasterKey::from_hex(hex_key) {
                Ok(m) => m,
                Err(e) => {
                    env.invalid_secret("PYNOMALY_ENCRYPTION_KEY", e);
                    return None;
                }
            };
            let id = key_id.unwrap_or_else(|| master.fingerprint());
            match Keyring::new(id.trim(), master) {
                Ok(ring) => ring,
                Err(e) => {
                    env.invalid("PYNOMALY_ENCRYPTION_KEY_ID", &id, e);
                    return None;
                }
            }
        }
        None if old.is_some() => Keyring::read_only(),
        None => {
            if required {
                env.invalid(
                    "PYNOMALY_ENCRYPTION_REQUIRED",
                    "true",
                    "requires PYNOMALY_ENCRYPTION_KEY",
                );
            }
            return None;
        }
    };
    for entry in old.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let Some((id, hex_key)) = entry.split_once(':') else {
            env.invalid_secret(
                "PYNOMALY_ENCRYPTION_OLD_KEYS",
                "expected id:hexkey entries separated by commas",
            );
            return None;
        };
        let master = match MasterKey::from_hex(hex_key) {
            Ok(m) => m,
            Err(e) => {
                env.invalid_secret("PYNOMALY_ENCRYPTION_OLD_KEYS", format!("key '{id}': {e}"));
                return None;
            }
        };
        ring = match ring.with_old_key(id.trim(), master) {
            Ok(r) => r,
            Err(e) => {
                env.invalid_secret("PYNOMALY_ENCRYPTION_OLD_KEYS", e);
                return None;
            }
        };
    }
    Some(ring.require_encrypted(required))
}

/// The PII settings with nothing set: the default fields
/// ([`pynomaly_privacy::DEFAULT_FIELDS`]), masked.
pub(super) fn default_pii() -> pynomaly_privacy::PrivacyConfig {
    pynomaly_privacy::PrivacyConfig {
        fields: pynomaly_privacy::DEFAULT_FIELDS.map(String::from).to_vec(),
        ..pynomaly_privacy::PrivacyConfig::default()
    }
}

/// `PYNOMALY_PII_FIELDS` (comma-separated field names masked or hashed wherever they
/// appear; default `name,email,phone,address,ssn`, `none` for no field), `PYNOMALY_PII_MODE`
/// (`mask`, the default, or `hash`), and the hash key `PYNOMALY_PII_HASH_KEY` (64 hex
/// digits; unset: derived from the server secret at start-up, so every instance sharing
/// `PYNOMALY_SECRET_KEY` hashes alike).
pub(super) fn pii(env: &mut Env<'_>) -> pynomaly_privacy::PrivacyConfig {
    let mut config = default_pii();
    if let Some(v) = env.get("PYNOMALY_PII_FIELDS") {
        config.fields = if v.trim().eq_ignore_ascii_case("none") {
            Vec::new()
        } else {
            v.split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string)
                .collect()
        };
    }
    if let Some(mode) = env.parsed("PYNOMALY_PII_MODE") {
        config.mode = mode;
    }
    if let Some(v) = env.get("PYNOMALY_PII_HASH_KEY") {
        match hex::decode(v.trim()).ok().and_then(|b| b.try_into().ok()) {
            Some(key) => config.hash_key = Some(key),
            None => env.invalid_secret("PYNOMALY_PII_HASH_KEY", RANDOM_32_BYTES),
        }
    }
    config
}
