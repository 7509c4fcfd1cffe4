//! The store traits. Every tier (memory, Redis, SQL) implements them, and so does
//! [`crate::Tiered`], so tiers compose at run time behind `dyn`.
//!
//! Contract shared by all implementations, checked by `cache-testkit`:
//! - Reads never return an expired session or verification (per the injected clock).
//! - A revoked session never comes back through a later write of an older snapshot:
//!   `create` and `put` of a session deleted, or covered by a `delete_user_sessions`,
//!   through the same store are refused (silently: `put` returns `false`).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::StoreResult;
use crate::model::{
    Credentials, JournalEntry, NewUser, Purpose, Revocation, Session, SessionWithUser, User,
    UserId, Verification,
};
use crate::token::{SessionKey, TokenHash};

/// Sessions, keyed by [`SessionKey`] (user id and SHA-256 of the token secret).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Short tier name for logs and metrics (`memory`, `redis`, `sql`, `tiered`).
    fn tier(&self) -> &'static str;

    /// Stores a new session. `Conflict(Exists)` if the key is already present.
    async fn create(&self, session: &Session) -> StoreResult<()>;

    /// The live session for `key`; `None` when missing, expired or revoked.
    async fn get(&self, key: &SessionKey) -> StoreResult<Option<Session>>;

    /// Cache fill with a snapshot read from a slower tier. Stored unless this store holds
    /// a newer version or knows the session was revoked; returns whether it was stored.
    /// A cache keeps it for the session's remaining life capped by its own TTL.
    async fn put(&self, session: &Session) -> StoreResult<bool>;

    /// Compare-and-set renewal: when the stored version is `expected_version`, sets the
    /// sliding expiry to `new_expires_at` (capped by the absolute expiry), `renewed_at` to
    /// now and increments the version. `None` when the session is missing or expired;
    /// `Conflict(Version)` when the version differs.
    async fn extend(
        &self,
        key: &SessionKey,
        expected_version: i64,
        new_expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<Session>>;

    /// Deletes one session; `true` if it was present. Idempotent.
    async fn delete(&self, key: &SessionKey) -> StoreResult<bool>;

    /// Deletes every session of `user` except `keep`; returns how many were deleted.
    async fn delete_user_sessions(&self, user: UserId, keep: Option<TokenHash>)
    -> StoreResult<u64>;

    /// The live sessions of `user`, most recently renewed first.
    async fn list_user_sessions(&self, user: UserId) -> StoreResult<Vec<Session>>;
}

/// The read every authenticated request makes: a session and its user's profile.
///
/// Tiers that can answer both in one round trip override [`Self::get_with_user`] (one
/// Redis `MGET`, one SQL join); [`crate::Tiered`] asks its back for both on a miss and
/// backfills both. The provided method reads the session alone.
#[async_trait]
pub trait SessionLookup: SessionStore {
    /// The live session for `key` (as [`SessionStore::get`] gives it) and, when this store
    /// has it at hand in the same lookup, the profile of `key.user`. A `None` user means
    /// only "not read here": the caller asks its [`UserCache`]. `None` when the session is
    /// missing, expired or revoked.
    async fn get_with_user(&self, key: &SessionKey) -> StoreResult<Option<SessionWithUser>> {
        Ok(self.get(key).await?.map(SessionWithUser::alone))
    }
}

#[cfg(any(test, feature = "mock"))]
impl SessionLookup for MockSessionStore {}

/// User profiles (never credentials) as cached by the fast tiers.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait UserCache: Send + Sync {
    /// Short tier name for logs and metrics.
    fn tier(&self) -> &'static str;

    /// The profile of `id`, if known.
    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>>;

    /// Stores (or replaces) a profile. The SQL tier updates the profile columns and
    /// leaves credentials alone.
    async fn put_user(&self, user: &User) -> StoreResult<()>;

    /// Drops cached copies of `id` (a no-op on the authority).
    async fn invalidate_user(&self, id: UserId) -> StoreResult<()>;
}

/// Single-use verification tokens (email verification, password reset).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait VerificationStore: Send + Sync {
    /// Short tier name for logs and metrics.
    fn tier(&self) -> &'static str;

    /// Stores a pending verification, keyed by its token hash.
    async fn put_verification(&self, verification: &Verification) -> StoreResult<()>;

    /// Atomically removes and returns the live verification with this hash and purpose.
    /// Of any number of concurrent callers exactly one gets it. Expired tokens and tokens
    /// of another purpose give `None` (the latter are not consumed).
    async fn consume(
        &self,
        hash: &TokenHash,
        purpose: Purpose,
    ) -> StoreResult<Option<Verification>>;

    /// Deletes every pending verification of `user` for `purpose` (a new token supersedes
    /// the old ones); returns how many.
    async fn delete_verifications(&self, user: UserId, purpose: Purpose) -> StoreResult<u64>;
}

/// Batched deletion of expired data, run by the janitor.
#[async_trait]
pub trait ExpiredCleanup: Send + Sync {
    /// Deletes at most `limit` sessions expired at the clock's now and returns their keys,
    /// so that other tiers can drop their index entries.
    async fn delete_expired_sessions(&self, limit: usize) -> StoreResult<Vec<SessionKey>>;

    /// Deletes at most `limit` expired verifications; returns how many.
    async fn delete_expired_verifications(&self, limit: usize) -> StoreResult<u64>;

    /// Drops index entries of sessions another tier found expired. Stores without
    /// secondary indexes need not do anything.
    async fn forget_sessions(&self, keys: &[SessionKey]) -> StoreResult<()> {
        let _ = keys;
        Ok(())
    }
}

/// The authority for accounts and credentials (SQL). Never cached.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates an account. `Conflict(Exists)` when the id or the email is taken.
    async fn create_account(&self, new_user: &NewUser) -> StoreResult<()>;

    /// Credentials by normalized email.
    async fn credentials_by_email(&self, email: &str) -> StoreResult<Option<Credentials>>;

    /// Credentials by id.
    async fn credentials_by_id(&self, id: UserId) -> StoreResult<Option<Credentials>>;

    /// Replaces the password hash; `false` when the user does not exist.
    async fn set_password_hash(&self, id: UserId, password_hash: &str) -> StoreResult<bool>;

    /// Marks the email verified when the account's email is still `email`; returns the
    /// updated profile, or `None` when the user is gone or the email changed.
    async fn mark_email_verified(&self, id: UserId, email: &str) -> StoreResult<Option<User>>;

    /// A password reset: replaces the password hash and marks the email verified (the
    /// reset link proved control of that mailbox), when the account's email is still
    /// `email`; returns the updated profile, or `None` when the user is gone or the email
    /// changed (nothing is written then).
    ///
    /// The provided method takes three calls; a store that can should do it in one
    /// statement (the SQL store does), so that no reader sees the account verified with
    /// the password it had before.
    async fn reset_credentials(
        &self,
        id: UserId,
        email: &str,
        password_hash: &str,
    ) -> StoreResult<Option<User>> {
        match self.credentials_by_id(id).await? {
            Some(c) if c.user.email == email => {}
            _ => return Ok(None),
        }
        // The password first: an account must never be verified with the old one.
        if !self.set_password_hash(id, password_hash).await? {
            return Ok(None);
        }
        self.mark_email_verified(id, email).await
    }
}

/// The revocation journal kept by the authority, replayed into caches after they lost
/// writes (a Redis restarted from an old snapshot, a failover).
#[async_trait]
pub trait RevocationJournal: Send + Sync {
    /// Revocations recorded at or after `since`, oldest first.
    async fn revocations_since(&self, since: DateTime<Utc>) -> StoreResult<Vec<Revocation>>;

    /// One bounded page of a replay: the entries recorded at or after `since` whose id
    /// is above `after`, in id order, at most `limit`. A replay starts with `after = 0`
    /// and continues from the last id it got until a page is shorter than `limit`.
    async fn revocations_page(
        &self,
        since: DateTime<Utc>,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<JournalEntry>>;
}

/// A cache that can apply revocations made elsewhere (another instance, the journal).
#[async_trait]
pub trait RevocationSink: Send + Sync {
    /// Applies the revocations: the sessions they cover are dropped and never accepted
    /// again by `create` or `put`.
    async fn apply_revocations(&self, revocations: &[Revocation]) -> StoreResult<()>;

    /// Drops everything (used when invalidation messages may have been missed).
    async fn clear(&self) -> StoreResult<()>;
}

macro_rules! forward_session_store {
    ($ty:ty) => {
        #[async_trait]
        impl<T: SessionStore + ?Sized> SessionStore for $ty {
            fn tier(&self) -> &'static str {
                (**self).tier()
            }
            async fn create(&self, session: &Session) -> StoreResult<()> {
                (**self).create(session).await
            }
            async fn get(&self, key: &SessionKey) -> StoreResult<Option<Session>> {
                (**self).get(key).await
            }
            async fn put(&self, session: &Session) -> StoreResult<bool> {
                (**self).put(session).await
            }
            async fn extend(
                &self,
                key: &SessionKey,
                expected_version: i64,
                new_expires_at: DateTime<Utc>,
            ) -> StoreResult<Option<Session>> {
                (**self).extend(key, expected_version, new_expires_at).await
            }
            async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
                (**self).delete(key).await
            }
            async fn delete_user_sessions(
                &self,
                user: UserId,
                keep: Option<TokenHash>,
            ) -> StoreResult<u64> {
                (**self).delete_user_sessions(user, keep).await
            }
            async fn list_user_sessions(&self, user: UserId) -> StoreResult<Vec<Session>> {
                (**self).list_user_sessions(user).await
            }
        }
    };
}

forward_session_store!(Arc<T>);
forward_session_store!(Box<T>);

macro_rules! forward_session_lookup {
    ($ty:ty) => {
        #[async_trait]
        impl<T: SessionLookup + ?Sized> SessionLookup for $ty {
            async fn get_with_user(
                &self,
                key: &SessionKey,
            ) -> StoreResult<Option<SessionWithUser>> {
                (**self).get_with_user(key).await
            }
        }
    };
}

forward_session_lookup!(Arc<T>);
forward_session_lookup!(Box<T>);

macro_rules! forward_user_cache {
    ($ty:ty) => {
        #[async_trait]
        impl<T: UserCache + ?Sized> UserCache for $ty {
            fn tier(&self) -> &'static str {
                (**self).tier()
            }
            async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
                (**self).get_user(id).await
            }
            async fn put_user(&self, user: &User) -> StoreResult<()> {
                (**self).put_user(user).await
            }
            async fn invalidate_user(&self, id: UserId) -> StoreResult<()> {
                (**self).invalidate_user(id).await
            }
        }
    };
}

forward_user_cache!(Arc<T>);
forward_user_cache!(Box<T>);

macro_rules! forward_verification_store {
    ($ty:ty) => {
        #[async_trait]
        impl<T: VerificationStore + ?Sized> VerificationStore for $ty {
            fn tier(&self) -> &'static str {
                (**self).tier()
            }
            async fn put_verification(&self, verification: &Verification) -> StoreResult<()> {
                (**self).put_verification(verification).await
            }
            async fn consume(
                &self,
                hash: &TokenHash,
                purpose: Purpose,
            ) -> StoreResult<Option<Verification>> {
                (**self).consume(hash, purpose).await
            }
            async fn delete_verifications(
                &self,
                user: UserId,
                purpose: Purpose,
            ) -> StoreResult<u64> {
                (**self).delete_verifications(user, purpose).await
            }
        }
    };
}

forward_verification_store!(Arc<T>);
forward_verification_store!(Box<T>);

macro_rules! forward_expired_cleanup {
    ($ty:ty) => {
        #[async_trait]
        impl<T: ExpiredCleanup + ?Sized> ExpiredCleanup for $ty {
            async fn delete_expired_sessions(&self, limit: usize) -> StoreResult<Vec<SessionKey>> {
                (**self).delete_expired_sessions(limit).await
            }
            async fn delete_expired_verifications(&self, limit: usize) -> StoreResult<u64> {
                (**self).delete_expired_verifications(limit).await
            }
            async fn forget_sessions(&self, keys: &[SessionKey]) -> StoreResult<()> {
                (**self).forget_sessions(keys).await
            }
        }
    };
}

forward_expired_cleanup!(Arc<T>);
forward_expired_cleanup!(Box<T>);

#[async_trait]
impl<T: RevocationSink + ?Sized> RevocationSink for Arc<T> {
    async fn apply_revocations(&self, revocations: &[Revocation]) -> StoreResult<()> {
        (**self).apply_revocations(revocations).await
    }
    async fn clear(&self) -> StoreResult<()> {
        (**self).clear().await
    }
}

#[async_trait]
impl<T: RevocationJournal + ?Sized> RevocationJournal for Arc<T> {
    async fn revocations_since(&self, since: DateTime<Utc>) -> StoreResult<Vec<Revocation>> {
        (**self).revocations_since(since).await
    }
    async fn revocations_page(
        &self,
        since: DateTime<Utc>,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<JournalEntry>> {
        (**self).revocations_page(since, after, limit).await
    }
}
