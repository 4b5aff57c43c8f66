//! Users: password hashing (argon2id) and the JWTs `POST /api/v1/auth/token` issues.
//!
//! Passwords are hashed with argon2id at OWASP's Password Storage Cheat Sheet parameters
//! (m = 19 MiB, t = 2, p = 1), each with its own random salt, stored as a PHC string (which
//! carries its parameters, so raising them later still verifies old hashes). Hashing runs
//! on the blocking pool: it costs tens of milliseconds of CPU by design. A login for an
//! unknown or disabled username verifies the password against a dummy hash made at start-up
//! with the same parameters, so it costs the same time as a wrong password and the answer's
//! timing does not tell which usernames exist.
//!
//! Tokens are JWTs signed with HMAC-SHA256 (HS256, the only algorithm accepted: a token
//! whose header names `none`, RS256 or anything else is refused before its signature is
//! looked at). The signing key is derived from the server secret (`PYNOMALY_SECRET_KEY` or
//! `<data dir>/secret.key`) with HMAC under a fixed label, so it differs from the key that
//! hashes API keys (domain separation) and every instance of a deployment derives the same
//! one. Claims: `sub` (user id), `username`, `tenant`, `scopes`, `iat`, `exp`, `jti`
//! (unique per token), `iss`. No clock leeway: one deployment issues and checks them.
//! A token is only half of the check: the user it names must still exist and be enabled
//! (looked up per request through a one-second cache), so disabling a user ends its tokens.

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use hmac::{Hmac, Mac};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use pynomaly_store::Scope;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// OWASP Password Storage Cheat Sheet, argon2id: 19 MiB of memory, 2 passes, 1 lane.
const ARGON2_M_COST_KIB: u32 = 19 * 1024;
const ARGON2_T_COST: u32 = 2;
const ARGON2_P_COST: u32 = 1;

/// Password length bounds, in characters. 15 is NIST SP 800-63B-4's minimum for a password
/// that is the only factor; 128 bounds the work a request can ask of the hasher.
pub(crate) const MIN_PASSWORD_CHARS: usize = 15;
pub(crate) const MAX_PASSWORD_CHARS: usize = 128;

/// The label the JWT signing key is derived under (never the API-key hashing key itself).
const JWT_KEY_LABEL: &[u8] = b"pynomaly/jwt-signing-key/v1";
/// The `iss` claim.
pub(crate) const ISSUER: &str = "pynomaly";

/// A valid argon2id hash at our parameters, of a password nobody knows.
const DUMMY_FALLBACK: &str = "$argon2id$v=19$m=19456,t=2,p=1$7HJvQ1bTfk0PN2oWcyLjHw$1tBdlSc6kKAqYyoNdOaIrb16Bz5LP9hnYhqK9QyH8kM";

/// argon2id at fixed parameters, and a dummy hash for unknown usernames.
#[derive(derive_more::Debug)]
pub(crate) struct Passwords {
    params: Params,
    /// Made at the first login for an unknown user (not at start-up: it costs a hash).
    #[debug(skip)]
    dummy_hash: std::sync::OnceLock<String>,
}

/// Hashing failed (the OS random source failed, or a stored hash is not a PHC string).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub(crate) struct HashError(String);

impl Passwords {
    pub(crate) fn new() -> Self {
        let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
            .expect("OWASP's argon2 parameters are valid");
        Self {
            params,
            dummy_hash: std::sync::OnceLock::new(),
        }
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// The PHC string of `password` with a fresh random salt.
    ///
    /// # Errors
    /// The random source or the hasher failed.
    pub(crate) fn hash(&self, password: &str) -> Result<String, HashError> {
        self.argon2()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| HashError(e.to_string()))
    }

    /// Whether `password` matches `stored` (a PHC string). With `None` (unknown or disabled
    /// user) it checks against the dummy hash, spending the same time, and answers `false`.
    pub(crate) fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let hash = match stored {
            Some(h) => h,
            // Any password will do: no user has this hash. Should the random source fail,
            // a fixed valid hash with the same parameters still costs the same.
            None => self.dummy_hash.get_or_init(|| {
                self.hash(&uuid::Uuid::new_v4().to_string())
                    .unwrap_or_else(|_| DUMMY_FALLBACK.to_string())
            }),
        };
        let ok = self
            .argon2()
            .verify_password(password.as_bytes(), hash)
            .is_ok();
        ok && stored.is_some()
    }
}

/// What a token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) sub: String,
    pub(crate) username: String,
    pub(crate) tenant: String,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) iat: i64,
    pub(crate) exp: i64,
    pub(crate) jti: String,
    pub(crate) iss: String,
}

/// Issues and checks HS256 tokens under a key derived from the server secret.
#[derive(derive_more::Debug)]
pub(crate) struct Tokens {
    #[debug(skip)]
    encoding: EncodingKey,
    #[debug(skip)]
    decoding: DecodingKey,
    #[debug(skip)]
    validation: Validation,
    ttl_s: i64,
}

impl Tokens {
    /// Derives the signing key from `server_secret`; tokens live `ttl_s` seconds.
    pub(crate) fn new(server_secret: &[u8], ttl_s: u64) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(server_secret).expect("HMAC takes any key");
        mac.update(JWT_KEY_LABEL);
        let key = mac.finalize().into_bytes();
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.algorithms = vec![jsonwebtoken::Algorithm::HS256];
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.set_issuer(&[ISSUER]);
        Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
            ttl_s: i64::try_from(ttl_s).unwrap_or(3600),
        }
    }

    /// Seconds a token lives.
    pub(crate) fn ttl_s(&self) -> i64 {
        self.ttl_s
    }

    /// A signed token for this user.
    ///
    /// # Errors
    /// Serialising or signing failed.
    pub(crate) fn issue(
        &self,
        user_id: &str,
        username: &str,
        tenant: &str,
        scopes: &[Scope],
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            username: username.to_string(),
            tenant: tenant.to_string(),
            scopes: scopes.to_vec(),
            iat: now,
            exp: now + self.ttl_s,
            jti: uuid::Uuid::new_v4().to_string(),
            iss: ISSUER.to_string(),
        };
        jsonwebtoken::encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &self.encoding,
        )
    }

    /// The claims of a valid token: HS256, signed by us, not expired.
    ///
    /// # Errors
    /// Anything else (the reason is for logs, never for the client).
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, jsonwebtoken::errors::Error> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let p = Passwords::new();
        let h = p.hash("correct horse battery staple").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(p.verify("correct horse battery staple", Some(&h)));
        assert!(!p.verify("correct horse battery stapler", Some(&h)));
        assert_ne!(h, p.hash("correct horse battery staple").unwrap(), "salted");
        assert!(!p.verify("anything", None), "the dummy hash never matches");
        assert!(
            argon2::password_hash::phc::PasswordHash::new(DUMMY_FALLBACK).is_ok(),
            "the fallback is a PHC string"
        );
        assert!(!p.verify("anything", Some("not a phc string")));
    }

    #[test]
    fn tokens_verify_only_with_the_key_they_were_signed_with() {
        let t = Tokens::new(&[7; 32], 60);
        let token = t.issue("u1", "alice", "acme", &[Scope::Read]).unwrap();
        let c = t.verify(&token).unwrap();
        assert_eq!((c.sub.as_str(), c.tenant.as_str()), ("u1", "acme"));
        assert_eq!(c.exp - c.iat, 60);
        let other = Tokens::new(&[8; 32], 60);
        assert!(other.verify(&token).is_err());
        let sign = |algorithm, claims: &Claims| {
            jsonwebtoken::encode(&Header::new(algorithm), claims, &t.encoding).unwrap()
        };
        let mut expired = c.clone();
        expired.exp = expired.iat - 1;
        let old = sign(jsonwebtoken::Algorithm::HS256, &expired);
        assert!(t.verify(&old).is_err(), "expired");
        let hs512 = sign(jsonwebtoken::Algorithm::HS512, &c);
        assert!(t.verify(&hs512).is_err(), "only HS256 is accepted");
    }
}
