//! The admin API's guard: [`AdminAuth`], an extractor that lets a request through only
//! with `Authorization: Bearer <admin.token>`.
//!
//! The admin credential is its own secret from the configuration, never a user session:
//! an administrator's browser session cannot be ridden into the admin API, and the
//! admin API is not reachable through any cookie (so it needs no CSRF check). Only the
//! SHA-256 of the token is kept in memory, compared in constant time. Without a
//! configured token the admin API is disabled and answers 404 `admin_disabled`.
//!
//! Wrong tokens are rate limited per client address (`abuse.admin_per_address`, through
//! the same [`auth::Abuse`] limiter as logins: 429 with `Retry-After` past the limit,
//! before the token is even compared) and each one is logged with the client address,
//! never with what was presented.
//!
//! Use it as the first argument of every admin handler (other modules' included):
//!
//! ```
//! use actix_web::HttpResponse;
//! use authd::ApiError;
//! use authd::security::AdminAuth;
//!
//! async fn analytics(_admin: AdminAuth) -> Result<HttpResponse, ApiError> {
//!     Ok(HttpResponse::Ok().finish())
//! }
//! ```

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use auth::Action;
use cache_core::SecretDigest;
use futures::future::LocalBoxFuture;
use secrecy::{ExposeSecret as _, SecretString};

use super::Security;
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

    /// Checks the request's `Authorization` header, without rate limiting (see
    /// [`AdminGuard::authorize`]).
    pub fn check(&self, req: &HttpRequest) -> Result<AdminAuth, ApiError> {
        let Some(token) = &self.token else {
            return Err(ApiError::AdminDisabled);
        };
        let presented = presented(req).ok_or(ApiError::AdminUnauthorized)?;
        if token.matches(presented) { Ok(AdminAuth(())) } else { Err(ApiError::AdminUnauthorized) }
    }

    /// Checks the request like [`AdminGuard::check`], with the per-address limit of wrong
    /// tokens of `security` (when given and its limits are on): a presented bearer token
    /// is an attempt, counted before the comparison and forgotten when it was right, so
    /// parallel guesses cannot outrun the limit. Every refusal is logged with the client
    /// address (the request's `peer_addr`, which the guard set to the client).
    pub async fn authorize(
        &self,
        req: &HttpRequest,
        security: Option<&Security>,
    ) -> Result<AdminAuth, ApiError> {
        if self.token.is_none() {
            return Err(ApiError::AdminDisabled);
        }
        let client = req.peer_addr().map(|a| a.ip());
        let client_text = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        if presented(req).is_none() {
            tracing::warn!(
                client = %client_text,
                route = crate::route::matched(req),
                "admin API request without a bearer token"
            );
            return Err(ApiError::AdminUnauthorized);
        }
        let limiter = security.filter(|s| s.limits_enabled()).zip(client);
        let permits = match limiter {
            Some((security, ip)) => match security.abuse().check_address(Action::Admin, ip).await {
                Ok(permits) => Some(permits),
                Err(e) => {
                    tracing::warn!(
                        client = %client_text,
                        route = crate::route::matched(req),
                        "admin API request refused: too many wrong bearer tokens"
                    );
                    return Err(ApiError::Auth(e));
                }
            },
            None => None,
        };
        let result = self.check(req);
        match (&result, permits, limiter) {
            (Ok(_), Some(permits), Some((security, _))) => security.abuse().release(permits).await,
            (Err(_), permits, _) => {
                if let Some(permits) = permits {
                    permits.keep();
                }
                tracing::warn!(
                    client = %client_text,
                    route = crate::route::matched(req),
                    "admin API request with a wrong bearer token"
                );
            }
            _ => {}
        }
        result
    }
}

/// The bearer token of the request's `Authorization` header, if any.
fn presented(req: &HttpRequest) -> Option<&str> {
    req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer)
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Proof that the request carries the admin bearer token. As a handler argument it
/// refuses every other request: 404 `admin_disabled` when no token is configured, 401
/// `admin_unauthorized` (with `WWW-Authenticate: Bearer`) otherwise, 429 `rate_limited`
/// after too many wrong tokens from the client's address (with a `web::Data<Security>`
/// in the app data).
#[derive(Debug)]
pub struct AdminAuth(());

impl FromRequest for AdminAuth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let Some(guard) = req.app_data::<web::Data<AdminGuard>>() else {
                return Err(ApiError::AdminDisabled);
            };
            let security = req.app_data::<web::Data<Security>>().map(|s| s.get_ref());
            guard.authorize(&req, security).await
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

    /// A log sink for one test (the subscriber is set for the current thread only).
    #[derive(Clone, Default)]
    struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Logs {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn failures_are_logged_with_the_client_address_never_the_token() {
        let logs = Logs::default();
        let sink = logs.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || sink.clone()).with_ansi(false).finish();
        let _default = tracing::subscriber::set_default(subscriber);
        let token = SecretString::from("an-admin-token-of-at-least-32-chars!");
        let guard = AdminGuard::new(Some(&token));
        let peer: std::net::SocketAddr = "192.0.2.9:40000".parse().unwrap();
        let wrong = TestRequest::get()
            .peer_addr(peer)
            .insert_header((header::AUTHORIZATION, "Bearer guessed-token-value-xyz"))
            .to_http_request();
        assert!(guard.authorize(&wrong, None).await.is_err());
        let missing = TestRequest::get().peer_addr(peer).to_http_request();
        assert!(guard.authorize(&missing, None).await.is_err());
        let right = TestRequest::get()
            .peer_addr("192.0.2.10:40000".parse().unwrap())
            .insert_header((header::AUTHORIZATION, "Bearer an-admin-token-of-at-least-32-chars!"))
            .to_http_request();
        assert!(guard.authorize(&right, None).await.is_ok());
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("WARN").count(), 2, "{text}");
        assert_eq!(text.matches("client=192.0.2.9").count(), 2, "{text}");
        assert!(!text.contains("192.0.2.10"), "a success is not a failure: {text}");
        assert!(!text.contains("guessed-token-value-xyz"), "{text}");
        assert!(!text.contains("an-admin-token"), "{text}");
    }

    #[test]
    fn without_a_token_the_admin_api_is_disabled() {
        let guard = AdminGuard::disabled();
        assert!(!guard.is_enabled());
        assert_eq!(check(&guard, Some("Bearer anything")), Err("admin_disabled"));
        assert_eq!(check(&guard, None), Err("admin_disabled"));
    }
}
