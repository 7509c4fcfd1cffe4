//! [`SessionStore`] for [`MemoryStore`].

use async_trait::async_trait;
use cache_core::{
    Conflict, Session, SessionKey, SessionLookup, SessionStore, SessionWithUser, StoreError,
    StoreResult,
};
use cache_core::{TokenHash, UserId};
use chrono::{DateTime, Utc};
use moka::ops::compute::{CompResult, Op};

use crate::TIER;
use crate::entry::{Key, Value};
use crate::fence::Fence;
use crate::index::Kind;
use crate::store::{Inner, MemoryStore};

impl Inner {
    /// Writes `session` unless it was revoked or expired, and returns whether it was
    /// stored. When the key already holds a servable entry, a `create` fails with
    /// `Conflict(Exists)` and a `put` (cache fill) replaces it unless it is older.
    fn write_session(&self, session: &Session, create: bool) -> StoreResult<bool> {
        let now = self.now();
        // An expired snapshot is not worth caching, and not an error.
        let Some(value) = self.cached_session(session.clone(), now) else { return Ok(false) };
        let mut exists = false;
        let result = self.main.entry(Key::Session(session.key)).and_compute_with(|current| {
            // Checked under the key's compute lock: a revocation of this key either ran
            // its removal after this write or recorded its tombstone before it.
            if self.is_revoked(session) {
                return Op::Nop;
            }
            match current.map(moka::Entry::into_value) {
                Some(Value::Session(cached)) if cached.is_fresh(now) => {
                    if create {
                        exists = true;
                        Op::Nop
                    } else if cached.item.version > session.version {
                        // A late fill of an older snapshot: keep the newer one.
                        Op::Nop
                    } else {
                        Op::Put(value)
                    }
                }
                _ => Op::Put(value),
            }
        });
        if exists {
            return Err(StoreError::Conflict(Conflict::Exists));
        }
        match result {
            CompResult::Inserted(entry) | CompResult::ReplacedWith(entry) => {
                self.count_insert(entry.value());
                self.index_insert(session.key.user, Kind::Session, session.key.hash);
                Ok(true)
            }
            _ => {
                tracing::trace!(
                    tier = TIER,
                    user = %session.key.user,
                    "session not cached: revoked, expired or older than the cached copy"
                );
                Ok(false)
            }
        }
    }

    /// Compare-and-set renewal of the cached copy.
    fn extend_session(
        &self,
        key: &SessionKey,
        expected_version: i64,
        new_expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<Session>> {
        let now = self.now();
        let mut outcome = Ok(None);
        let result = self.main.entry(Key::Session(*key)).and_compute_with(|current| {
            match current.map(moka::Entry::into_value) {
                Some(Value::Session(cached))
                    if cached.is_fresh(now) && !self.is_fenced(&cached.item) =>
                {
                    if cached.item.version != expected_version {
                        outcome = Err(StoreError::Conflict(Conflict::Version));
                        return Op::Nop;
                    }
                    let extended = cached.item.extended(new_expires_at, now);
                    outcome = Ok(Some(extended.clone()));
                    // Extended into the past (a caller's choice): nothing left to serve.
                    self.cached_session(extended, now).map_or(Op::Remove, Op::Put)
                }
                _ => Op::Nop,
            }
        });
        if let CompResult::ReplacedWith(entry) = &result {
            self.count_insert(entry.value());
        }
        outcome
    }
}

/// Both from the one cache, at one reading of the clock.
#[async_trait]
impl SessionLookup for MemoryStore {
    async fn get_with_user(&self, key: &SessionKey) -> StoreResult<Option<SessionWithUser>> {
        let inner = &self.inner;
        let now = inner.now();
        Ok(inner
            .live_session(key, now)
            .map(|session| SessionWithUser { session, user: inner.fresh_user(key.user, now) }))
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn tier(&self) -> &'static str {
        TIER
    }

    /// Caches a new session; `Conflict(Exists)` when the key is cached. A revoked
    /// session is silently not stored.
    async fn create(&self, session: &Session) -> StoreResult<()> {
        self.inner.write_session(session, true).map(drop)
    }

    async fn get(&self, key: &SessionKey) -> StoreResult<Option<Session>> {
        let inner = &self.inner;
        Ok(inner.live_session(key, inner.now()))
    }

    async fn put(&self, session: &Session) -> StoreResult<bool> {
        self.inner.write_session(session, false)
    }

    async fn extend(
        &self,
        key: &SessionKey,
        expected_version: i64,
        new_expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<Session>> {
        self.inner.extend_session(key, expected_version, new_expires_at)
    }

    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        let inner = &self.inner;
        Ok(inner.revoke_session(*key, inner.now()))
    }

    async fn delete_user_sessions(
        &self,
        user: UserId,
        keep: Option<TokenHash>,
    ) -> StoreResult<u64> {
        let inner = &self.inner;
        let now = inner.now();
        let fence = Fence { at: now, keep };
        // Every cached session but `keep` goes, whatever its creation time; the fence
        // keeps out late fills of the ones created up to now.
        Ok(inner.revoke_user(user, fence, now, |s| keep.is_none_or(|k| k != s.key.hash)))
    }

    /// The user's sessions this tier holds, most recently renewed first. Only what is
    /// cached: the authority is the one to ask for a complete list.
    async fn list_user_sessions(&self, user: UserId) -> StoreResult<Vec<Session>> {
        let inner = &self.inner;
        let now = inner.now();
        let mut sessions: Vec<Session> = inner
            .index
            .hashes(user, Kind::Session)
            .into_iter()
            .filter_map(|hash| inner.live_session(&SessionKey { user, hash }, now))
            .collect();
        sessions.sort_by(|a, b| {
            b.renewed_at.cmp(&a.renewed_at).then_with(|| b.created_at.cmp(&a.created_at))
        });
        Ok(sessions)
    }
}
