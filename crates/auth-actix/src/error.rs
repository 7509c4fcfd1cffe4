//! [`ApiError`]: the one error type of every handler, and the JSON body every error
//! response carries: `{"error": {"code": "...", "message": "..."}}`.
//!
//! Flow errors map by their stable code. Store and internal errors become an opaque 503
//! or 500 whose source is logged here and never shown. actix-web's own failures
//! (malformed or oversized JSON, unknown route) are turned into the same shape by the
//! handlers in this module; a wrong method by each resource's default service
//! (authd's routes).

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use auth::AuthError;
use serde::Serialize;

use crate::cookies::CookiePolicy;

/// The body of every error response.
#[derive(Debug, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, for programs (`code`) and people (`message`).
#[derive(Debug, Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `invalid_credentials`, `unauthenticated`.
    #[cfg_attr(feature = "openapi", schema(example = "invalid_input"))]
    pub code: String,
    /// Human-readable explanation; never contains internal details.
    #[cfg_attr(feature = "openapi", schema(example = "email: not a valid email address"))]
    pub message: String,
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A flow refused or failed.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The body is not JSON, is not `application/json`, or is truncated.
    #[error("{0}")]
    InvalidJson(String),
    /// The JSON is well-formed but a field is missing or has the wrong type.
    #[error("{0}")]
    InvalidInput(String),
    /// The body is larger than the configured limit.
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// No such route.
    #[error("no such resource")]
    NotFound,
    /// The route exists, but not for this method; carries the `Allow` value (the
    /// resource's methods), which a 405 must send (RFC 9110 §15.5.6).
    #[error("method not allowed")]
    MethodNotAllowed(HeaderValue),
    /// Anything unexpected (logged, answered as an opaque 500).
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The admin API is off because no `admin.token` is configured (404).
    #[error("the admin API is disabled: no admin token is configured")]
    AdminDisabled,
    /// The admin bearer token is missing or wrong (401, `WWW-Authenticate: Bearer`).
    #[error("a valid admin bearer token is required")]
    AdminUnauthorized,
    /// The client's address is blocked (403), answered before any other work.
    #[error("requests from this address are blocked")]
    IpBlocked,
    /// A state-changing request carrying the session cookie from another origin (403).
    #[error("cross-origin request refused: state-changing requests must come from this site")]
    Csrf,
    /// The session cookie names no live session (ended, expired or made up): 401
    /// `unauthenticated`, and the cookie is cleared so that the browser stops sending it.
    #[error("{}", AuthError::Unauthenticated)]
    SessionEnded(CookiePolicy),
}

impl ApiError {
    /// The stable code of the response body.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Auth(e) => e.code(),
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidInput(_) => "invalid_input",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Internal(_) => "internal",
            ApiError::AdminDisabled => "admin_disabled",
            ApiError::AdminUnauthorized => "admin_unauthorized",
            ApiError::IpBlocked => "ip_blocked",
            ApiError::Csrf => "csrf",
            ApiError::SessionEnded(_) => AuthError::Unauthenticated.code(),
        }
    }

    /// An internal error from any source.
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Internal(e.into())
    }

    /// The message shown to the client: the error's own text for client errors, a fixed
    /// sentence for server errors (whose sources may name hosts, queries or keys).
    fn public_message(&self) -> String {
        match self.status_code() {
            StatusCode::SERVICE_UNAVAILABLE => {
                "the service is temporarily unavailable, please retry".to_owned()
            }
            s if s.is_server_error() => "internal error".to_owned(),
            _ => self.to_string(),
        }
    }

    /// Maps a JSON extractor failure to `invalid_json`, `invalid_input` or
    /// `payload_too_large`.
    pub fn from_json_error(e: &JsonPayloadError, limit: usize) -> Self {
        match e {
            JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
                ApiError::PayloadTooLarge(limit)
            }
            JsonPayloadError::ContentType => {
                ApiError::InvalidJson("the request body must be application/json".to_owned())
            }
            JsonPayloadError::Deserialize(e) if e.is_data() => {
                // serde's message names the field ("missing field `email`"), never a value.
                ApiError::InvalidInput(strip_position(&e.to_string()))
            }
            JsonPayloadError::Deserialize(e) => {
                ApiError::InvalidJson(format!("malformed JSON: {}", strip_position(&e.to_string())))
            }
            _ => ApiError::InvalidJson("the request body could not be read as JSON".to_owned()),
        }
    }
}

/// Drops serde_json's " at line 1 column 7" suffix, which helps nobody reading an API error.
pub(crate) fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Auth(e) => auth_status(e),
            ApiError::InvalidJson(_) | ApiError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::AdminDisabled => StatusCode::NOT_FOUND,
            ApiError::AdminUnauthorized | ApiError::SessionEnded(_) => StatusCode::UNAUTHORIZED,
            ApiError::IpBlocked | ApiError::Csrf => StatusCode::FORBIDDEN,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            // The only place a server error's cause is reported; the client sees none of it.
            tracing::error!(code = self.code(), error = %error_chain(self), "request failed");
        }
        let mut response = HttpResponse::build(status);
        // Refusals made before a route's own headers apply (a blocked address, a limit,
        // CSRF, an unknown path) must not be cached either.
        response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        if let ApiError::Auth(AuthError::RateLimited { retry_after, limit, remaining, reset }) =
            self
        {
            // Whole seconds, rounded up: a client that waits that long is admitted.
            let secs = |d: &std::time::Duration| auth::error::retry_after_secs(d).to_string();
            for (name, value) in [
                (header::RETRY_AFTER.as_str(), secs(retry_after)),
                ("ratelimit-limit", limit.to_string()),
                ("ratelimit-remaining", remaining.to_string()),
                ("ratelimit-reset", secs(reset)),
            ] {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response.insert_header((header::HeaderName::from_static(name), value));
                }
            }
        }
        if let ApiError::SessionEnded(policy) = self {
            response.cookie(policy.removal_cookie());
        }
        if let ApiError::MethodNotAllowed(allow) = self {
            response.insert_header((header::ALLOW, allow.clone()));
        }
        if matches!(self, ApiError::AdminUnauthorized) {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"authd-admin\""),
            ));
        }
        response.json(ErrorBody {
            error: ErrorDetail { code: self.code().to_owned(), message: self.public_message() },
        })
    }
}

/// The error and its sources, `": "`-separated, for a log line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The status of each flow error, by its stable code (the enum is `non_exhaustive`).
fn auth_status(e: &AuthError) -> StatusCode {
    match e.code() {
        "invalid_input" | "weak_password" | "invalid_token" => StatusCode::BAD_REQUEST,
        "invalid_credentials" | "unauthenticated" => StatusCode::UNAUTHORIZED,
        "email_not_verified" => StatusCode::FORBIDDEN,
        "not_found" => StatusCode::NOT_FOUND,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `JsonConfig` error handler.
pub fn json_error(
    limit: usize,
) -> impl Fn(JsonPayloadError, &HttpRequest) -> actix_web::Error + Clone + Send + Sync + 'static {
    move |e, _req| ApiError::from_json_error(&e, limit).into()
}

/// `PathConfig` error handler.
pub fn path_error(e: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::InvalidInput(format!("invalid path parameter: {e}")).into()
}

/// `QueryConfig` error handler.
pub fn query_error(e: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::InvalidInput(format!("invalid query string: {e}")).into()
}

/// Default service of the app: any unknown route.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

#[cfg(test)]
mod tests {
    use actix_web::body::to_bytes;

    use super::*;

    async fn body_of(e: ApiError) -> (StatusCode, serde_json::Value) {
        let response = e.error_response();
        let status = response.status();
        let bytes = to_bytes(response.into_body()).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[actix_web::test]
    async fn store_errors_never_leak() {
        let store = cache_core::StoreError::unavailable(std::io::Error::other(
            "connection to db.internal:5432 refused",
        ));
        let (status, body) = body_of(ApiError::Auth(AuthError::Unavailable(store))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(!body.to_string().contains("db.internal"), "{body}");

        let (status, body) =
            body_of(ApiError::Auth(AuthError::internal("SELECT * FROM secrets failed"))).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "internal", "message": "internal error"}})
        );
    }

    #[actix_web::test]
    async fn flow_errors_map_to_their_status() {
        for (e, status, code) in [
            (AuthError::InvalidCredentials, 401, "invalid_credentials"),
            (AuthError::Unauthenticated, 401, "unauthenticated"),
            (AuthError::EmailNotVerified, 403, "email_not_verified"),
            (AuthError::InvalidToken, 400, "invalid_token"),
            (AuthError::WeakPassword("too short".into()), 400, "weak_password"),
            (AuthError::NotFound, 404, "not_found"),
            (
                AuthError::RateLimited {
                    retry_after: std::time::Duration::from_secs(90),
                    limit: 5,
                    remaining: 0,
                    reset: std::time::Duration::from_secs(90),
                },
                429,
                "rate_limited",
            ),
        ] {
            let (s, body) = body_of(ApiError::Auth(e)).await;
            assert_eq!(s.as_u16(), status);
            assert_eq!(body["error"]["code"], code);
            assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }

    #[test]
    fn serde_positions_are_stripped() {
        assert_eq!(
            strip_position("missing field `email` at line 1 column 2"),
            "missing field `email`"
        );
        assert_eq!(strip_position("EOF while parsing"), "EOF while parsing");
    }
}
