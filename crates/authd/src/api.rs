//! Request and response bodies of the JSON API, with their OpenAPI schemas.
//!
//! These are the wire types; the flows' own types (`auth::User`, `auth::Session`) are
//! mapped into them so that the API can stay stable while the domain evolves. User ids
//! are strings on the wire: they are 63-bit integers, beyond what JavaScript numbers hold.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod rfc3339;

/// `POST /v1/auth/register`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Display name (1 to 100 characters).
    #[schema(example = "Ada Lovelace")]
    pub name: String,
    /// Email address; a verification link is sent to it.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// Password (at least 8 characters by default; any Unicode).
    #[schema(format = Password, example = "correct horse battery staple")]
    pub password: String,
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("name", &self.name)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/auth/login`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email address of a verified account.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// Password.
    #[schema(format = Password, example = "correct horse battery staple")]
    pub password: String,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest").field("email", &self.email).finish_non_exhaustive()
    }
}

/// A single-use token from a mailed link (`POST /v1/auth/verify-email`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token from the link's `#token=` fragment.
    pub token: String,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenRequest { .. }")
    }
}

/// An email address (`resend-verification`, `forgot-password`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    /// Email address.
    #[schema(example = "ada@example.com")]
    pub email: String,
}

/// `POST /v1/auth/logout-everywhere`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutEverywhereRequest {
    /// Keep the session making this request (default: end it too).
    #[serde(default)]
    pub keep_current: bool,
}

/// `POST /v1/auth/change-password`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The password in use.
    #[schema(format = Password)]
    pub current_password: String,
    /// The new password.
    #[schema(format = Password)]
    pub new_password: String,
}

impl fmt::Debug for ChangePasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChangePasswordRequest { .. }")
    }
}

/// `POST /v1/auth/reset-password`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    /// The token from the reset link's `#token=` fragment.
    pub token: String,
    /// The new password.
    #[schema(format = Password)]
    pub new_password: String,
}

impl fmt::Debug for ResetPasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResetPasswordRequest { .. }")
    }
}

/// The answer of the requests that must not reveal whether an address is known.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AcceptedResponse {
    /// What happens next; the same text whether or not the address is known.
    pub message: String,
}

/// A user's public profile.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserBody {
    /// User id (a decimal string).
    #[schema(example = "4861920473619475832")]
    pub id: String,
    /// Display name.
    pub name: String,
    /// Normalized email address.
    pub email: String,
    /// Whether the address was confirmed.
    pub email_verified: bool,
    /// Sign-up time.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
}

impl From<auth::User> for UserBody {
    fn from(u: auth::User) -> Self {
        Self {
            id: decimal(u.id),
            name: u.name,
            email: u.email,
            email_verified: u.email_verified,
            created_at: u.created_at,
        }
    }
}

/// A user id in decimal, as its `Display` writes it, without `core::fmt`.
fn decimal(id: auth::UserId) -> String {
    let Ok(mut n) = u64::try_from(id.get()) else { return id.to_string() };
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        start -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    String::from_utf8_lossy(&buf[start..]).into_owned()
}

/// One session of the user.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionBody {
    /// Opaque id (`DELETE /v1/sessions/{id}` ends the session).
    pub id: String,
    /// Login time.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// The session was used at or after this time.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub last_seen_at: DateTime<Utc>,
    /// When the session ends unless it is used (never after its absolute lifetime).
    #[serde(serialize_with = "rfc3339::serialize")]
    pub expires_at: DateTime<Utc>,
    /// User agent at login.
    pub user_agent: Option<String>,
    /// Client address at login.
    pub ip: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
}

impl From<auth::SessionInfo> for SessionBody {
    fn from(s: auth::SessionInfo) -> Self {
        Self {
            id: s.id,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
            user_agent: s.user_agent,
            ip: s.ip.map(|ip| ip.to_string()),
            current: s.current,
        }
    }
}

impl SessionBody {
    /// The body of the session making the request.
    pub fn current(s: &auth::Session) -> Self {
        Self {
            id: s.key.hash.to_hex(),
            created_at: s.created_at,
            last_seen_at: s.renewed_at,
            expires_at: s.expires_at.min(s.absolute_expires_at),
            user_agent: s.user_agent.clone(),
            ip: s.ip.map(|ip| ip.to_string()),
            current: true,
        }
    }
}

/// A user with the session making the request (login, `GET /v1/me`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserSessionResponse {
    /// The user.
    pub user: UserBody,
    /// The current session.
    pub session: SessionBody,
}

/// `GET /v1/sessions`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionListResponse {
    /// Live sessions, most recently used first.
    pub sessions: Vec<SessionBody>,
}

/// How many sessions a request ended.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokedResponse {
    /// Number of sessions ended.
    pub revoked: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_written_as_display_writes_them() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut ids = vec![1, 9, 10, 99, 100, 12_345, i64::MAX - 1, i64::MAX];
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ids.push((x >> (x % 63)) as i64);
        }
        for raw in ids {
            let Some(id) = auth::UserId::new(raw) else { continue };
            assert_eq!(decimal(id), id.to_string());
        }
    }
}
