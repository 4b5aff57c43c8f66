//! The extractors that admit a caller to a handler: [`ReadAccess`], [`WriteAccess`] and
//! [`AdminAccess`] authenticate the bearer credential ([`crate::auth::AuthService`]),
//! tell the audit log who called, apply the caller's rate limit, and check the scope, so a
//! handler cannot forget any of them; `admin` implies `read` and `write`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use pynomaly_store::Scope;

use crate::audit::AuditSlot;
use crate::auth::{Actor, Principal};
use crate::error::ApiError;
use crate::state::AppState;

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
                if let Some(slot) = parts.extensions.get::<AuditSlot>() {
                    slot.identify(&principal.tenant, principal.label());
                    // Changes and admin actions are audited whatever their outcome.
                    if $scope != Scope::Read {
                        slot.mark();
                    }
                }
                // Before the scope check: a caller hammering 403s is limited too.
                state.auth.enforce_rate_limit(&principal).await?;
                if principal.has($scope) {
                    Ok($name(principal))
                } else {
                    let who = match principal.actor {
                        Actor::Key { .. } => "API key",
                        Actor::User { .. } => "user",
                    };
                    Err(ApiError::Forbidden(format!(
                        "this {who} lacks the '{}' scope",
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
