//! Runs the suite against a small reference store (a mutex around hash maps) and
//! against `Tiered<reference, reference>`, proving that the suite passes on a correct
//! implementation and showing a third-party implementor what it expects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use cache_core::{
    Conflict, ExpiredCleanup, Purpose, Revocation, Session, SessionKey, SessionLookup,
    SessionStore, SessionWithUser, SharedClock, StoreError, StoreResult, Tiered, TokenHash, User,
    UserCache, UserId, Verification, VerificationStore,
};
use chrono::{DateTime, Utc};

#[derive(Default)]
struct State {
    sessions: HashMap<TokenHash, Session>,
    revoked: Vec<Revocation>,
    users: HashMap<UserId, User>,
    verifications: HashMap<TokenHash, Verification>,
}

#[derive(Clone)]
pub(crate) struct Reference {
    state: Arc<Mutex<State>>,
    clock: SharedClock,
}

impl Reference {
    pub(crate) fn new(clock: SharedClock) -> Self {
        Self { state: Arc::default(), clock }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn live(&self, state: &State, key: &SessionKey) -> Option<Session> {
        state
            .sessions
            .get(&key.hash)
            .filter(|s| s.key == *key && s.is_live(self.clock.now()))
            .cloned()
    }
}

#[async_trait]
impl SessionStore for Reference {
    fn tier(&self) -> &'static str {
        "reference"
    }

    async fn create(&self, session: &Session) -> StoreResult<()> {
        let mut state = self.lock();
        if state.sessions.contains_key(&session.key.hash) {
            return Err(StoreError::Conflict(Conflict::Exists));
        }
        state.sessions.insert(session.key.hash, session.clone());
        Ok(())
    }

    async fn get(&self, key: &SessionKey) -> StoreResult<Option<Session>> {
        Ok(self.live(&self.lock(), key))
    }

    async fn put(&self, session: &Session) -> StoreResult<bool> {
        let mut state = self.lock();
        if state.revoked.iter().any(|r| r.covers(session))
            || state.sessions.get(&session.key.hash).is_some_and(|s| s.version >= session.version)
        {
            return Ok(false);
        }
        state.sessions.insert(session.key.hash, session.clone());
        Ok(true)
    }

    async fn extend(
        &self,
        key: &SessionKey,
        expected_version: i64,
        new_expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<Session>> {
        let mut state = self.lock();
        let Some(current) = self.live(&state, key) else { return Ok(None) };
        if current.version != expected_version {
            return Err(StoreError::Conflict(Conflict::Version));
        }
        let extended = current.extended(new_expires_at, self.clock.now());
        state.sessions.insert(key.hash, extended.clone());
        Ok(Some(extended))
    }

    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        let mut state = self.lock();
        state.revoked.push(Revocation::Session { key: *key, at: self.clock.now() });
        let found = self.live(&state, key).is_some();
        state.sessions.remove(&key.hash);
        Ok(found)
    }

    async fn delete_user_sessions(
        &self,
        user: UserId,
        keep: Option<TokenHash>,
    ) -> StoreResult<u64> {
        let mut state = self.lock();
        let now = self.clock.now();
        state.revoked.push(Revocation::AllOfUser { user, keep, at: now });
        let before = state.sessions.len();
        state.sessions.retain(|h, s| s.key.user != user || Some(*h) == keep || !s.is_live(now));
        Ok((before - state.sessions.len()) as u64)
    }

    async fn list_user_sessions(&self, user: UserId) -> StoreResult<Vec<Session>> {
        let now = self.clock.now();
        let mut list: Vec<_> = self
            .lock()
            .sessions
            .values()
            .filter(|s| s.key.user == user && s.is_live(now))
            .cloned()
            .collect();
        list.sort_by_key(|s| std::cmp::Reverse(s.renewed_at));
        Ok(list)
    }
}

/// Both under one lock, as a tier with a combined read would do in one round trip.
#[async_trait]
impl SessionLookup for Reference {
    async fn get_with_user(&self, key: &SessionKey) -> StoreResult<Option<SessionWithUser>> {
        let state = self.lock();
        Ok(self
            .live(&state, key)
            .map(|session| SessionWithUser { session, user: state.users.get(&key.user).cloned() }))
    }
}

#[async_trait]
impl UserCache for Reference {
    fn tier(&self) -> &'static str {
        "reference"
    }
    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        Ok(self.lock().users.get(&id).cloned())
    }
    async fn put_user(&self, user: &User) -> StoreResult<()> {
        self.lock().users.insert(user.id, user.clone());
        Ok(())
    }
    async fn invalidate_user(&self, id: UserId) -> StoreResult<()> {
        self.lock().users.remove(&id);
        Ok(())
    }
}

#[async_trait]
impl VerificationStore for Reference {
    fn tier(&self) -> &'static str {
        "reference"
    }
    async fn put_verification(&self, verification: &Verification) -> StoreResult<()> {
        self.lock().verifications.insert(verification.hash, verification.clone());
        Ok(())
    }
    async fn consume(
        &self,
        hash: &TokenHash,
        purpose: Purpose,
    ) -> StoreResult<Option<Verification>> {
        let mut state = self.lock();
        let now = self.clock.now();
        match state.verifications.get(hash) {
            Some(v) if v.purpose == purpose && v.is_live(now) => {
                Ok(state.verifications.remove(hash))
            }
            _ => Ok(None),
        }
    }
    async fn delete_verifications(&self, user: UserId, purpose: Purpose) -> StoreResult<u64> {
        let mut state = self.lock();
        let before = state.verifications.len();
        state.verifications.retain(|_, v| v.user != user || v.purpose != purpose);
        Ok((before - state.verifications.len()) as u64)
    }
}

#[async_trait]
impl ExpiredCleanup for Reference {
    async fn delete_expired_sessions(&self, limit: usize) -> StoreResult<Vec<SessionKey>> {
        let mut state = self.lock();
        let now = self.clock.now();
        let keys: Vec<_> = state
            .sessions
            .values()
            .filter(|s| !s.is_live(now))
            .take(limit)
            .map(|s| s.key)
            .collect();
        for key in &keys {
            state.sessions.remove(&key.hash);
        }
        Ok(keys)
    }
    async fn delete_expired_verifications(&self, limit: usize) -> StoreResult<u64> {
        let mut state = self.lock();
        let now = self.clock.now();
        let hashes: Vec<_> = state
            .verifications
            .values()
            .filter(|v| !v.is_live(now))
            .take(limit)
            .map(|v| v.hash)
            .collect();
        for hash in &hashes {
            state.verifications.remove(hash);
        }
        Ok(hashes.len() as u64)
    }
}

async fn reference(clock: Arc<cache_core::ManualClock>) -> Option<Reference> {
    Some(Reference::new(clock))
}

async fn tiered(clock: Arc<cache_core::ManualClock>) -> Option<Tiered<Reference, Reference>> {
    Some(Tiered::new(Reference::new(clock.clone()), Reference::new(clock)))
}

mod reference_sessions {
    cache_testkit::session_store_suite!(super::reference);
}
mod reference_verifications {
    cache_testkit::verification_store_suite!(super::reference);
}
mod reference_users {
    cache_testkit::user_cache_suite!(super::reference, cache);
}
mod reference_cleanup {
    cache_testkit::expired_cleanup_suite!(super::reference);
}
mod reference_lookups {
    cache_testkit::session_lookup_suite!(super::reference, cache);
}
mod tiered_sessions {
    cache_testkit::session_store_suite!(super::tiered);
}
mod tiered_verifications {
    cache_testkit::verification_store_suite!(super::tiered);
}
mod tiered_users {
    cache_testkit::user_cache_suite!(super::tiered, cache);
}
mod tiered_lookups {
    cache_testkit::session_lookup_suite!(super::tiered, cache);
}
