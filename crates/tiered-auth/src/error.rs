//! The one error type of the flows. Each variant is something a client can act on, except
//! `Unavailable` and `Internal`, whose sources are for logs only.

use std::error::Error as StdError;
use std::fmt;

use cache_core::{BoxError, StoreError};

/// Why a flow failed. `Display` is safe to show to a client: it never contains a source
/// error, a token or a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A field is malformed (400 `invalid_input`).
    #[error("{field}: {message}")]
    InvalidInput {
        /// The offending field, as named in the API.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The new password does not meet the policy (400 `weak_password`).
    #[error("{0}")]
    WeakPassword(String),
    /// Unknown email or wrong password, deliberately indistinguishable (401).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Right password, but the email address is not verified yet (403).
    #[error("the email address is not verified")]
    EmailNotVerified,
    /// Missing, malformed, expired or revoked session (401).
    #[error("not authenticated")]
    Unauthenticated,
    /// A verification or reset token that is unknown, used or expired (400).
    #[error("the token is invalid or has expired")]
    InvalidToken,
    /// The thing asked for does not exist for this caller (404).
    #[error("not found")]
    NotFound,
    /// A store is down or timed out (503); nothing was reported as done.
    #[error("service temporarily unavailable")]
    Unavailable(#[source] StoreError),
    /// Anything else (500); opaque to clients, logged by the caller.
    #[error("internal error")]
    Internal(#[source] BoxError),
    /// The [`crate::AuthConfig`] handed to [`crate::AuthService::new`] is unusable.
    #[error("invalid auth configuration: {0}")]
    Config(String),
    /// Too many attempts (429 with `Retry-After` and `RateLimit-*` headers).
    #[error("too many attempts; retry in {} seconds", retry_after_secs(.retry_after))]
    RateLimited {
        /// How long to wait before the next attempt can succeed.
        retry_after: std::time::Duration,
        /// The limit that applied (attempts per window).
        limit: u32,
        /// Attempts left in the window (0 when refused).
        remaining: u32,
        /// Time until a slot frees up.
        reset: std::time::Duration,
    },
}

/// Whole seconds to wait, rounded up (a client that waits less is refused again).
pub fn retry_after_secs(wait: &std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

impl AuthError {
    /// The stable snake_case code of the API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::InvalidInput { .. } => "invalid_input",
            AuthError::WeakPassword(_) => "weak_password",
            AuthError::InvalidCredentials => "invalid_credentials",
            AuthError::EmailNotVerified => "email_not_verified",
            AuthError::Unauthenticated => "unauthenticated",
            AuthError::InvalidToken => "invalid_token",
            AuthError::NotFound => "not_found",
            AuthError::Unavailable(_) => "unavailable",
            AuthError::Internal(_) => "internal",
            AuthError::Config(_) => "invalid_config",
            AuthError::RateLimited { .. } => "rate_limited",
        }
    }

    /// An `Internal` error from any source.
    pub fn internal(e: impl Into<BoxError>) -> Self {
        AuthError::Internal(e.into())
    }

    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        AuthError::InvalidInput { field, message: message.into() }
    }
}

/// A store that is down or slow is `Unavailable`; anything else it reports (corrupt data,
/// a conflict the flow did not expect) is `Internal`.
impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        if e.is_unavailable() { AuthError::Unavailable(e) } else { AuthError::Internal(e.into()) }
    }
}

/// Displays an error and its chain of sources (`outer: inner: root`), for log lines:
/// store errors keep the driver's message as their source, and the top level alone
/// ("store backend unavailable") does not say what failed.
pub(crate) struct Chain<'a>(pub(crate) &'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_messages_hide_sources() {
        let e = AuthError::from(StoreError::unavailable("db at 10.0.0.1 refused"));
        assert_eq!(e.code(), "unavailable");
        assert!(!e.to_string().contains("10.0.0.1"));
        assert_eq!(
            Chain(&e).to_string(),
            "service temporarily unavailable: store backend unavailable: db at 10.0.0.1 refused"
        );
        assert_eq!(AuthError::from(StoreError::timeout("slow")).code(), "unavailable");
        let e = AuthError::from(StoreError::corrupt("bad row"));
        assert_eq!(e.code(), "internal");
        assert_eq!(e.to_string(), "internal error");
        assert_eq!(AuthError::invalid("email", "bad").to_string(), "email: bad");
        let limited = AuthError::RateLimited {
            retry_after: std::time::Duration::from_millis(1500),
            limit: 5,
            remaining: 0,
            reset: std::time::Duration::from_secs(2),
        };
        assert_eq!(limited.to_string(), "too many attempts; retry in 2 seconds");
        for (e, code) in [
            (AuthError::WeakPassword("short".into()), "weak_password"),
            (AuthError::InvalidCredentials, "invalid_credentials"),
            (AuthError::EmailNotVerified, "email_not_verified"),
            (AuthError::Unauthenticated, "unauthenticated"),
            (AuthError::InvalidToken, "invalid_token"),
            (AuthError::NotFound, "not_found"),
            (AuthError::Config("x".into()), "invalid_config"),
            (
                AuthError::RateLimited {
                    retry_after: std::time::Duration::from_millis(1500),
                    limit: 5,
                    remaining: 0,
                    reset: std::time::Duration::from_millis(1500),
                },
                "rate_limited",
            ),
        ] {
            assert_eq!(e.code(), code);
        }
    }
}
