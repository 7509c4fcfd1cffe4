//! [`TieredSessionStore`]: actix-session's [`SessionStore`] over any
//! [`SessionStateStore`].
//!
//! Behaves as actix-session's `RedisSessionStore` does: `save` draws a new key, `update`
//! keeps the key of a live state and saves under a new key when the state is gone (it
//! expired between load and update), `update_ttl` moves the expiry, `delete` removes it.
//! What it adds: stores see only the SHA-256 of the key, and a state can be bound to a
//! user (the value of a chosen field, [`TieredSessionStore::with_user_field`]) so that
//! [`TieredSessionStore::log_out_user`] deletes every session of that user.

use std::any::Any;
use std::sync::Arc;

use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore, UpdateError};
use actix_web::cookie::time::Duration as CookieDuration;
use cache_core::{
    Conflict, SessionState, SessionStateStore, SharedClock, StateKey, StateRecord, StoreError,
    StoreResult, SystemClock, UserId,
};
use chrono::{DateTime, Utc};

use crate::key::generate_session_key;

/// Attempts at drawing a key no live state has (a collision of 384 random bits does not
/// happen; a store answering `Exists` every time is broken).
const SAVE_ATTEMPTS: usize = 3;

/// actix-session's storage backend on a [`SessionStateStore`] (typically the tiered
/// stack: [`crate::connect`]). Cheap to clone; clones share the store.
#[derive(Clone)]
pub struct TieredSessionStore {
    store: Arc<dyn SessionStateStore>,
    clock: SharedClock,
    user_field: Option<Arc<str>>,
    /// What must live as long as the store (the invalidation listener of a stack).
    _keep_alive: Arc<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for TieredSessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredSessionStore")
            .field("tier", &self.store.state_tier())
            .field("user_field", &self.user_field)
            .finish_non_exhaustive()
    }
}

impl TieredSessionStore {
    /// A store over `store`, on the system clock, binding no state to a user.
    pub fn new(store: impl SessionStateStore + 'static) -> Self {
        Self::with_keep_alive(Arc::new(store), Arc::new(()))
    }

    /// A store over `store` that keeps `keep_alive` (a listener, a guard) as long as any
    /// clone of it lives.
    pub fn with_keep_alive(
        store: Arc<dyn SessionStateStore>,
        keep_alive: Arc<dyn Any + Send + Sync>,
    ) -> Self {
        Self { store, clock: SystemClock::shared(), user_field: None, _keep_alive: keep_alive }
    }

    /// Binds each state to the user whose id the session holds under `field` (as
    /// `session.insert(field, id)` writes it: a JSON number, or a string of digits),
    /// which is what [`Self::log_out_user`] selects on.
    pub fn with_user_field(mut self, field: impl Into<String>) -> Self {
        self.user_field = Some(Arc::from(field.into()));
        self
    }

    /// Takes every expiry decision from `clock` (tests).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The state store underneath.
    pub fn state_store(&self) -> &Arc<dyn SessionStateStore> {
        &self.store
    }

    /// Deletes every session bound to `user` (log out everywhere); returns how many
    /// live ones were deleted.
    pub async fn log_out_user(&self, user: UserId) -> StoreResult<u64> {
        self.store.delete_user_states(user).await
    }

    /// The user `state` is bound to, per the configured field.
    pub fn user_of(&self, state: &SessionState) -> Option<UserId> {
        let value = state.get(self.user_field.as_deref()?)?;
        let digits = value.trim().trim_matches('"');
        UserId::new(digits.parse().ok()?)
    }

    fn record(&self, state: SessionState, ttl: &CookieDuration) -> StateRecord {
        let user = self.user_of(&state);
        StateRecord { state, user, expires_at: self.expiry(ttl) }
    }

    fn expiry(&self, ttl: &CookieDuration) -> DateTime<Utc> {
        let micros = i64::try_from(ttl.whole_microseconds()).unwrap_or(i64::MAX);
        self.clock
            .now()
            .checked_add_signed(chrono::Duration::microseconds(micros))
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Saves `record` under a new key.
    async fn save_record(&self, record: &StateRecord) -> Result<SessionKey, anyhow::Error> {
        for _ in 0..SAVE_ATTEMPTS {
            let key = generate_session_key()?;
            match self.store.save_state(&StateKey::of(&key), record).await {
                Ok(()) => return Ok(SessionKey::try_from(key)?),
                Err(StoreError::Conflict(Conflict::Exists)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(anyhow::anyhow!("no free session key after {SAVE_ATTEMPTS} attempts"))
    }
}

impl SessionStore for TieredSessionStore {
    async fn load(&self, session_key: &SessionKey) -> Result<Option<SessionState>, LoadError> {
        let key = StateKey::of(session_key.as_ref());
        match self.store.load_state(&key).await {
            Ok(found) => Ok(found.map(|record| record.state)),
            Err(StoreError::Corrupt(e)) => {
                Err(LoadError::Deserialization(anyhow::Error::from(StoreError::Corrupt(e))))
            }
            Err(e) => Err(LoadError::Other(e.into())),
        }
    }

    async fn save(
        &self,
        session_state: SessionState,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        let record = self.record(session_state, ttl);
        self.save_record(&record).await.map_err(SaveError::Other)
    }

    async fn update(
        &self,
        session_key: SessionKey,
        session_state: SessionState,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let record = self.record(session_state, ttl);
        let key = StateKey::of(session_key.as_ref());
        match self.store.update_state(&key, &record).await {
            Ok(true) => Ok(session_key),
            // Gone since it was loaded (expired, or deleted elsewhere): a new key, as
            // actix-session's Redis store does, so a key is never revived.
            Ok(false) => self.save_record(&record).await.map_err(UpdateError::Other),
            Err(e) => Err(UpdateError::Other(e.into())),
        }
    }

    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        ttl: &CookieDuration,
    ) -> Result<(), anyhow::Error> {
        let key = StateKey::of(session_key.as_ref());
        self.store.update_state_ttl(&key, self.expiry(ttl)).await?;
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        let key = StateKey::of(session_key.as_ref());
        self.store.delete_state(&key).await?;
        Ok(())
    }
}
