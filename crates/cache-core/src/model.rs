//! Domain types shared by every store: users, sessions and verifications.

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

pub use crate::id::{InvalidUserId, UserId};
use crate::token::{SessionKey, TokenHash};

/// A user's profile as cached. The password hash is never part of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Primary key.
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// Normalized (trimmed, lower-cased) email address.
    pub email: String,
    /// Whether the address was confirmed through a verification link.
    pub email_verified: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

/// A user's credentials, read only from the authoritative SQL store, never cached.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The profile.
    pub user: User,
    /// Argon2id PHC string.
    pub password_hash: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password_hash", &"<redacted>")
            .finish()
    }
}

/// A session as every tier stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Owner and SHA-256 of the token secret.
    #[serde(with = "session_key_serde")]
    pub key: SessionKey,
    /// Creation time (login).
    pub created_at: DateTime<Utc>,
    /// Last time the sliding expiry was extended (or creation).
    pub renewed_at: DateTime<Utc>,
    /// Sliding expiry: idle timeout from the last renewal, never after `absolute_expires_at`.
    pub expires_at: DateTime<Utc>,
    /// Absolute lifetime cap, fixed at creation.
    pub absolute_expires_at: DateTime<Utc>,
    /// User agent at login, truncated by the caller.
    pub user_agent: Option<String>,
    /// Client address at login.
    pub ip: Option<IpAddr>,
    /// Incremented by every extension: the compare-and-set token.
    pub version: i64,
}

/// A session and, when the store that read it had it at hand, its user's profile: what
/// [`crate::SessionLookup::get_with_user`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionWithUser {
    /// The live session.
    pub session: Session,
    /// The profile of `session.key.user`, or `None` when it was not read with the session
    /// (ask the user cache).
    pub user: Option<User>,
}

impl SessionWithUser {
    /// A session read without its user.
    pub fn alone(session: Session) -> Self {
        Self { session, user: None }
    }
}

impl Session {
    /// Whether the session is usable at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at && now < self.absolute_expires_at
    }

    /// Time left before the session expires at `now` (zero when expired).
    pub fn remaining(&self, now: DateTime<Utc>) -> Duration {
        (self.expires_at.min(self.absolute_expires_at) - now).max(Duration::zero())
    }

    /// The session as extended to `new_expires_at` at `now`: capped by the absolute
    /// expiry, version incremented.
    pub fn extended(&self, new_expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Session {
        Session {
            expires_at: new_expires_at.min(self.absolute_expires_at),
            renewed_at: now,
            version: self.version + 1,
            ..self.clone()
        }
    }
}

mod session_key_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::model::UserId;
    use crate::token::{SessionKey, TokenHash};

    #[derive(Serialize, Deserialize)]
    struct Repr {
        user: UserId,
        hash: String,
    }

    pub fn serialize<S: Serializer>(key: &SessionKey, s: S) -> Result<S::Ok, S::Error> {
        Repr { user: key.user, hash: key.hash.to_hex() }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SessionKey, D::Error> {
        let repr = Repr::deserialize(d)?;
        let hash = TokenHash::from_hex(&repr.hash)
            .ok_or_else(|| serde::de::Error::custom("invalid token hash"))?;
        Ok(SessionKey { user: repr.user, hash })
    }
}

/// What a verification token proves when consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Confirms ownership of an email address (10 minute TTL by default).
    EmailVerification,
    /// Allows setting a new password (30 minute TTL by default).
    PasswordReset,
}

impl Purpose {
    /// Stable name used in SQL rows and Redis keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::EmailVerification => "email",
            Purpose::PasswordReset => "password_reset",
        }
    }

    /// Inverse of [`Purpose::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Purpose::EmailVerification),
            "password_reset" => Some(Purpose::PasswordReset),
            _ => None,
        }
    }
}

/// A pending single-use verification, keyed by the hash of its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// SHA-256 of the token sent by email.
    #[serde(with = "token_hash_hex")]
    pub hash: TokenHash,
    /// What the token is for.
    pub purpose: Purpose,
    /// The user the token acts on.
    pub user: UserId,
    /// The email address it was sent to (a changed address invalidates it).
    pub identifier: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// After this the token is refused.
    pub expires_at: DateTime<Utc>,
}

impl Verification {
    /// Whether the token is still usable at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

mod token_hash_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::token::TokenHash;

    pub fn serialize<S: Serializer>(hash: &TokenHash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hash.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TokenHash, D::Error> {
        let s = String::deserialize(d)?;
        TokenHash::from_hex(&s).ok_or_else(|| serde::de::Error::custom("invalid token hash"))
    }
}

/// A new account as handed to the authoritative store.
#[derive(Clone)]
pub struct NewUser {
    /// Profile (with `email_verified` normally false).
    pub user: User,
    /// Argon2id PHC string.
    pub password_hash: String,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser").field("user", &self.user).finish_non_exhaustive()
    }
}

/// One entry of the revocation journal kept by the authority (SQL), replayed into Redis
/// after a reconnect so that a Redis that lost a delete cannot revive a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    /// One session was revoked.
    Session {
        /// The revoked session.
        key: SessionKey,
        /// When.
        at: DateTime<Utc>,
    },
    /// Every session of a user created at or before `at` was revoked, except `keep`.
    AllOfUser {
        /// Whose sessions.
        user: UserId,
        /// The session that survived, if any.
        keep: Option<TokenHash>,
        /// When.
        at: DateTime<Utc>,
    },
}

/// A journal row: its id (increasing in insertion order, assigned by the authority) and
/// the revocation it records. Readers page through the journal by id, never by time:
/// revocation times come from the clocks of several instances and are not ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// The row's id.
    pub id: i64,
    /// What was revoked.
    pub revocation: Revocation,
}

impl Revocation {
    /// When the revocation happened.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Revocation::Session { at, .. } | Revocation::AllOfUser { at, .. } => *at,
        }
    }

    /// Whether this revocation kills `session`.
    pub fn covers(&self, session: &Session) -> bool {
        match self {
            Revocation::Session { key, .. } => *key == session.key,
            Revocation::AllOfUser { user, keep, at } => {
                *user == session.key.user
                    && session.created_at <= *at
                    && keep.is_none_or(|k| k != session.key.hash)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Secret;

    #[test]
    fn user_id_parsing_is_strict() {
        assert_eq!("42".parse::<UserId>().unwrap().get(), 42);
        for bad in ["", "0", "-3", "+3", " 3", "3a", "99999999999999999999"] {
            assert!(bad.parse::<UserId>().is_err(), "{bad:?}");
        }
        assert!(UserId::random().unwrap().get() > 0);
    }

    #[test]
    fn session_serde_round_trips() {
        let now = DateTime::from_timestamp(1_700_000_000, 123_000).unwrap();
        let session = Session {
            key: SessionKey {
                user: UserId::new(5).unwrap(),
                hash: Secret::from_bytes([1; 32]).hash(),
            },
            created_at: now,
            renewed_at: now,
            expires_at: now + Duration::days(1),
            absolute_expires_at: now + Duration::days(30),
            user_agent: Some("curl".into()),
            ip: Some("127.0.0.1".parse().unwrap()),
            version: 3,
        };
        let json = serde_json::to_string(&session).unwrap();
        assert_eq!(serde_json::from_str::<Session>(&json).unwrap(), session);
        let ext = session.extended(now + Duration::days(90), now);
        assert_eq!(ext.expires_at, session.absolute_expires_at);
        assert_eq!(ext.version, 4);
    }
}
