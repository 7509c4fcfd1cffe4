//! What the flows take and answer: the [`Stores`] they run on, the client of a request,
//! the inputs of register and login, and what login, validate and the session list give
//! back.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use cache_core::{
    AccountStore, Session, SessionLookup, SessionToken, User, UserCache, VerificationStore,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The stores the flows run on. Usually each is a [`cache_core::Tiered`] composition and
/// `accounts` is the SQL store.
#[derive(Clone)]
pub struct Stores {
    /// Sessions (read together with their user where the tiers can).
    pub sessions: Arc<dyn SessionLookup>,
    /// User profiles.
    pub users: Arc<dyn UserCache>,
    /// Email verification and password reset tokens.
    pub verifications: Arc<dyn VerificationStore>,
    /// Accounts and credentials (the authority, never cached).
    pub accounts: Arc<dyn AccountStore>,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stores")
            .field("sessions", &self.sessions.tier())
            .field("users", &self.users.tier())
            .field("verifications", &self.verifications.tier())
            .finish_non_exhaustive()
    }
}

/// What is known about the client of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The `User-Agent` header, if any (truncated when stored).
    pub user_agent: Option<String>,
    /// The client's address (after trusted-proxy resolution).
    pub ip: Option<IpAddr>,
}

/// A registration request. `Debug` leaves the password out.
#[derive(Clone, Deserialize)]
pub struct RegisterInput {
    /// Display name.
    pub name: String,
    /// Email address (normalized by the flow).
    pub email: String,
    /// The chosen password.
    pub password: String,
}

impl fmt::Debug for RegisterInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterInput")
            .field("name", &self.name)
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A login request. `Debug` leaves the password out.
#[derive(Clone, Deserialize)]
pub struct LoginInput {
    /// Email address (normalized by the flow).
    pub email: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for LoginInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginInput")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A successful login: the new token (for the cookie), its session and the user.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    /// The new session token; `encode()` it into the cookie.
    pub token: SessionToken,
    /// The session as stored.
    pub session: Session,
    /// The user's profile.
    pub user: User,
}

/// The result of a successful [`AuthService::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The session's user.
    pub user: User,
    /// The session (after renewal, if it was renewed); `session.key` identifies it.
    pub session: Session,
}

/// One session as shown to its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// Opaque id: the hex SHA-256 of the token secret (useless as a credential).
    pub id: String,
    /// Login time.
    pub created_at: DateTime<Utc>,
    /// Last renewal (or login): the session was used at or after this.
    pub last_seen_at: DateTime<Utc>,
    /// When the session ends unless used (never after the absolute lifetime).
    pub expires_at: DateTime<Utc>,
    /// User agent at login.
    pub user_agent: Option<String>,
    /// Client address at login.
    pub ip: Option<IpAddr>,
    /// Whether this is the session making the request.
    pub current: bool,
}
