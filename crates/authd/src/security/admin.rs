//! The admin API's guard: [`AdminAuth`], an extractor that lets a request through only
//! with `Authorization: Bearer <admin.token>`.
//!
//! The admin credential is its own secret from the configuration, never a user session:
//! an administrator's browser session cannot be ridden into the admin API, and the
//! admin API is not reachable through any cookie (so it needs no CSRF check). Only the
//! SHA-256 of the token is kept in memory, compared in constant time. Without a
//! configured token the admin API is disabled and answers 404 `admin_disabled`.
//!
//! Use it as the first argument of every admin handler (other modules' included):
//!
//! ```ignore
//! async fn analytics(_admin: AdminAuth, ...) -> Result<HttpResponse, ApiError> { ... }
//! ```

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use cache_core::SecretDigest;
use secrecy::{ExposeSecret as _, SecretString};

use crate::error::ApiError;

/// What the admin guard checks against: the digest of the configured token, or nothing
/// (admin API disabled). Put it in the app data as `web::Data<AdminGuard>`.
#[derive(Debug, Clone)]
pub struct AdminGuard {
    token: Option<SecretDigest>,
}

impl AdminGuard {
    /// A guard for `token`; `None` disables the admin API.
    pub fn new(token: Option<&SecretString>) -> Self {
        Self { token: token.map(|t| SecretDigest::of(t.expose_secret())) }
    }

    /// A guard that refuses everything (admin API disabled).
    pub fn disabled() -> Self {
        Self { token: None }
    }

    /// Whether an admin token is configured.
    pub fn is_enabled(&self) -> bool {
        self.token.is_some()
    }

    /// Checks the request's `Authorization` header.
    pub fn check(&self, req: &HttpRequest) -> Result<AdminAuth, ApiError> {
        let Some(token) = &self.token else {
            return Err(ApiError::AdminDisabled);
        };
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .ok_or(ApiError::AdminUnauthorized)?;
        if token.matches(presented) {
            Ok(AdminAuth(()))
        } else {
            tracing::warn!("admin API request with a wrong bearer token");
            Err(ApiError::AdminUnauthorized)
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Proof that the request carries the admin bearer token. As a handler argument it
/// refuses every other request: 404 `admin_disabled` when no token is configured, 401
/// `admin_unauthorized` (with `WWW-Authenticate: Bearer`) otherwise.
#[derive(Debug)]
pub struct AdminAuth(());

impl FromRequest for AdminAuth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(match req.app_data::<web::Data<AdminGuard>>() {
            Some(guard) => guard.check(req),
            None => Err(ApiError::AdminDisabled),
        })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn check(guard: &AdminGuard, authorization: Option<&str>) -> Result<(), &'static str> {
        let mut req = TestRequest::get();
        if let Some(value) = authorization {
            req = req.insert_header((header::AUTHORIZATION, value));
        }
        guard.check(&req.to_http_request()).map(drop).map_err(|e| e.code())
    }

    #[test]
    fn only_the_configured_bearer_token_passes() {
        let token = SecretString::from("an-admin-token-of-at-least-32-chars!");
        let guard = AdminGuard::new(Some(&token));
        assert!(guard.is_enabled());
        assert_eq!(check(&guard, Some("Bearer an-admin-token-of-at-least-32-chars!")), Ok(()));
        assert_eq!(check(&guard, Some("bearer  an-admin-token-of-at-least-32-chars! ")), Ok(()));
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Bearer "),
            Some("Basic an-admin-token-of-at-least-32-chars!"),
            Some("Bearer an-admin-token-of-at-least-32-chars"),
            Some("an-admin-token-of-at-least-32-chars!"),
        ] {
            assert_eq!(check(&guard, bad), Err("admin_unauthorized"), "{bad:?}");
        }
    }

    #[test]
    fn without_a_token_the_admin_api_is_disabled() {
        let guard = AdminGuard::disabled();
        assert!(!guard.is_enabled());
        assert_eq!(check(&guard, Some("Bearer anything")), Err("admin_disabled"));
        assert_eq!(check(&guard, None), Err("admin_disabled"));
    }
}
