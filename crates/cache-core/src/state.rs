//! Session *state* as web frameworks keep it (actix-session's `SessionState`): a map of
//! string keys to string values, stored under a random session key that the client holds
//! in a cookie. [`SessionStateStore`] is what every tier implements for it; the
//! composition over tiers is [`crate::TieredStates`].
//!
//! Contract shared by all implementations, checked by `cache-testkit`'s
//! `session_state_suite!`:
//! - No store ever sees the session key: only its SHA-256 ([`StateKey`]).
//! - Reads never return a state past its `expires_at` (per the injected clock).
//! - `save_state` refuses to replace a live state (`Conflict(Exists)`); `update_state`
//!   and `update_state_ttl` change only a live state and say whether there was one.
//! - A state bound to a user ([`StateRecord::user`]) is deleted by
//!   [`SessionStateStore::delete_user_states`] ("log this user out everywhere").

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::breaker::Breaker;
use crate::error::StoreResult;
use crate::id::UserId;
use crate::token::TokenHash;

/// A session's state: what actix-session calls `SessionState` (values are the JSON the
/// framework serialized).
pub type SessionState = HashMap<String, String>;

/// What identifies a state in every store: the SHA-256 of the session key. A dump of any
/// store yields no usable cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StateKey(TokenHash);

impl StateKey {
    /// The key of the state of `session_key` (the cookie's value).
    pub fn of(session_key: &str) -> Self {
        Self(TokenHash::from_bytes(Sha256::digest(session_key.as_bytes()).into()))
    }

    /// Wraps a hash read back from a store.
    pub fn from_hash(hash: TokenHash) -> Self {
        Self(hash)
    }

    /// The SHA-256 of the session key.
    pub fn hash(&self) -> &TokenHash {
        &self.0
    }

    /// Lower-case hex of the hash (Redis keys, invalidation messages).
    pub fn to_hex(&self) -> String {
        self.0.to_hex()
    }
}

/// A stored state: the map, the user it is bound to (if any) and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    /// The key/value pairs.
    pub state: SessionState,
    /// The user the state belongs to, when the application tied it to one: what
    /// [`SessionStateStore::delete_user_states`] selects on.
    pub user: Option<UserId>,
    /// The instant after which no read returns it.
    pub expires_at: DateTime<Utc>,
}

impl StateRecord {
    /// Whether the record may still be served at `now`.
    pub fn is_live_at(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

/// Session states, keyed by [`StateKey`]. Method names carry `state` so that a store
/// implementing [`crate::SessionStore`] as well never has two `delete`s in scope.
#[async_trait]
pub trait SessionStateStore: Send + Sync {
    /// Short tier name for logs and metrics (`memory`, `redis`, `sql`, `tiered`).
    fn state_tier(&self) -> &'static str;

    /// The live state of `key`; `None` when missing or expired.
    async fn load_state(&self, key: &StateKey) -> StoreResult<Option<StateRecord>>;

    /// Stores a new state. `Conflict(Exists)` when a live state already has this key (an
    /// expired one is replaced).
    async fn save_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()>;

    /// Replaces the live state of `key` (map, user and expiry); `false`, writing
    /// nothing, when there is none (the caller saves under a new key).
    async fn update_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<bool>;

    /// Moves the expiry of the live state of `key`; `false` when there is none.
    async fn update_state_ttl(
        &self,
        key: &StateKey,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Deletes the state of `key`. Idempotent.
    async fn delete_state(&self, key: &StateKey) -> StoreResult<()>;

    /// Deletes every state bound to `user`; returns how many live ones were deleted
    /// (a cache may count fewer: it holds only some of them).
    async fn delete_user_states(&self, user: UserId) -> StoreResult<u64>;

    /// Cache fill: stores `record` under `key` whatever is there (a tier in front of a
    /// slower one, after a read or a write of the authority).
    async fn put_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()>;
}

/// A cache of states that can drop entries changed on another instance (fed by the
/// Redis invalidation listener). Synchronous: it only touches local memory.
pub trait StateInvalidation: Send + Sync {
    /// Drops the cached state of `key`.
    fn forget_state(&self, key: &StateKey);
    /// Drops every cached state bound to `user`.
    fn forget_user_states(&self, user: UserId);
    /// Drops everything (invalidation messages may have been missed).
    fn clear_states(&self);
}

macro_rules! forward_state_store {
    ($ty:ty) => {
        #[async_trait]
        impl<T: SessionStateStore + ?Sized> SessionStateStore for $ty {
            fn state_tier(&self) -> &'static str {
                (**self).state_tier()
            }
            async fn load_state(&self, key: &StateKey) -> StoreResult<Option<StateRecord>> {
                (**self).load_state(key).await
            }
            async fn save_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()> {
                (**self).save_state(key, record).await
            }
            async fn update_state(
                &self,
                key: &StateKey,
                record: &StateRecord,
            ) -> StoreResult<bool> {
                (**self).update_state(key, record).await
            }
            async fn update_state_ttl(
                &self,
                key: &StateKey,
                expires_at: DateTime<Utc>,
            ) -> StoreResult<bool> {
                (**self).update_state_ttl(key, expires_at).await
            }
            async fn delete_state(&self, key: &StateKey) -> StoreResult<()> {
                (**self).delete_state(key).await
            }
            async fn delete_user_states(&self, user: UserId) -> StoreResult<u64> {
                (**self).delete_user_states(user).await
            }
            async fn put_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()> {
                (**self).put_state(key, record).await
            }
        }
    };
}

forward_state_store!(Arc<T>);
forward_state_store!(Box<T>);

/// Reads and writes are short-circuited while the breaker is open; deletes always go
/// through, as session revocations do: a deleted state must not survive in a tier that
/// was only stalled.
#[async_trait]
impl<S: SessionStateStore> SessionStateStore for Breaker<S> {
    fn state_tier(&self) -> &'static str {
        self.inner().state_tier()
    }
    async fn load_state(&self, key: &StateKey) -> StoreResult<Option<StateRecord>> {
        self.call(self.inner().load_state(key)).await
    }
    async fn save_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()> {
        self.call(self.inner().save_state(key, record)).await
    }
    async fn update_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<bool> {
        self.call(self.inner().update_state(key, record)).await
    }
    async fn update_state_ttl(
        &self,
        key: &StateKey,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.call(self.inner().update_state_ttl(key, expires_at)).await
    }
    async fn delete_state(&self, key: &StateKey) -> StoreResult<()> {
        self.call_always(self.inner().delete_state(key)).await
    }
    async fn delete_user_states(&self, user: UserId) -> StoreResult<u64> {
        self.call_always(self.inner().delete_user_states(user)).await
    }
    async fn put_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()> {
        self.call(self.inner().put_state(key, record)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_sha256_of_the_session_key() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            StateKey::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(StateKey::of("abc"), StateKey::of("abd"));
    }
}
