//! [`MemoryStateStore`]: session states (actix-session style) in a bounded moka cache.
//!
//! Standalone it is a complete store for one process; in front of Redis and SQL (in a
//! [`cache_core::TieredStates`]) it is the per-instance cache, kept coherent with the
//! other instances by the Redis invalidation listener ([`StateInvalidation`]) and bounded
//! in staleness by its own TTL.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cache_core::{
    Conflict, SessionStateStore, SharedClock, StateInvalidation, StateKey, StateRecord, StoreError,
    StoreResult, UserId,
};
use chrono::{DateTime, Utc};
use moka::ops::compute::Op;
use moka::sync::Cache;

use crate::TIER;

/// Sizing of a [`MemoryStateStore`].
#[derive(Debug, Clone, Copy)]
pub struct MemoryStateConfig {
    /// Most states held.
    pub max_entries: u64,
    /// Longest an entry is kept, whatever its own expiry: what bounds how long another
    /// instance's change can go unseen when an invalidation message was lost.
    pub ttl: Duration,
}

impl Default for MemoryStateConfig {
    fn default() -> Self {
        Self { max_entries: 100_000, ttl: Duration::from_secs(60) }
    }
}

/// One cached state, with the clock time it was written at.
#[derive(Clone)]
struct Entry {
    record: Arc<StateRecord>,
    written_at: DateTime<Utc>,
}

/// Session states in process memory. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct MemoryStateStore {
    cache: Cache<StateKey, Entry>,
    clock: SharedClock,
    ttl: chrono::Duration,
}

impl std::fmt::Debug for MemoryStateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStateStore").field("entries", &self.cache.entry_count()).finish()
    }
}

impl MemoryStateStore {
    /// A store sized by `config`, taking every expiry decision from `clock`.
    pub fn new(config: MemoryStateConfig, clock: SharedClock) -> Self {
        Self {
            cache: Cache::builder()
                .name("memory-states")
                .max_capacity(config.max_entries)
                .time_to_live(config.ttl)
                .build(),
            clock,
            ttl: chrono::Duration::from_std(config.ttl).unwrap_or(chrono::Duration::MAX),
        }
    }

    /// Number of cached states (moka's estimate).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    fn live(&self, entry: &Entry, now: DateTime<Utc>) -> bool {
        entry.record.is_live_at(now) && now < entry.written_at + self.ttl
    }

    fn entry(&self, record: &StateRecord, now: DateTime<Utc>) -> Entry {
        Entry { record: Arc::new(record.clone()), written_at: now }
    }
}

#[async_trait]
impl SessionStateStore for MemoryStateStore {
    fn state_tier(&self) -> &'static str {
        TIER
    }

    async fn load_state(&self, key: &StateKey) -> StoreResult<Option<StateRecord>> {
        let now = self.clock.now();
        Ok(self
            .cache
            .get(key)
            .filter(|e| self.live(e, now))
            .map(|e| Arc::unwrap_or_clone(e.record)))
    }

    async fn save_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()> {
        let now = self.clock.now();
        let mut exists = false;
        self.cache.entry(*key).and_compute_with(|current| match current {
            Some(e) if self.live(e.value(), now) => {
                exists = true;
                Op::Nop
            }
            _ if record.is_live_at(now) => Op::Put(self.entry(record, now)),
            _ => Op::Nop,
        });
        if exists { Err(StoreError::Conflict(Conflict::Exists)) } else { Ok(()) }
    }

    async fn update_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<bool> {
        let now = self.clock.now();
        let mut updated = false;
        self.cache.entry(*key).and_compute_with(|current| match current {
            Some(e) if self.live(e.value(), now) => {
                updated = true;
                Op::Put(self.entry(record, now))
            }
            _ => Op::Nop,
        });
        Ok(updated)
    }

    async fn update_state_ttl(
        &self,
        key: &StateKey,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let now = self.clock.now();
        let mut updated = false;
        self.cache.entry(*key).and_compute_with(|current| match current {
            Some(e) if self.live(e.value(), now) => {
                updated = true;
                let mut record = StateRecord::clone(&e.value().record);
                record.expires_at = expires_at;
                Op::Put(Entry { record: Arc::new(record), written_at: e.value().written_at })
            }
            _ => Op::Nop,
        });
        Ok(updated)
    }

    async fn delete_state(&self, key: &StateKey) -> StoreResult<()> {
        self.cache.invalidate(key);
        Ok(())
    }

    async fn delete_user_states(&self, user: UserId) -> StoreResult<u64> {
        let now = self.clock.now();
        let mut deleted = 0;
        for (key, entry) in &self.cache {
            if entry.record.user == Some(user) {
                deleted += u64::from(self.cache.remove(&*key).is_some() && self.live(&entry, now));
            }
        }
        Ok(deleted)
    }

    async fn put_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()> {
        let now = self.clock.now();
        if record.is_live_at(now) {
            self.cache.insert(*key, self.entry(record, now));
        } else {
            self.cache.invalidate(key);
        }
        Ok(())
    }
}

impl StateInvalidation for MemoryStateStore {
    fn forget_state(&self, key: &StateKey) {
        self.cache.invalidate(key);
    }

    fn forget_user_states(&self, user: UserId) {
        for (key, entry) in &self.cache {
            if entry.record.user == Some(user) {
                self.cache.invalidate(&*key);
            }
        }
    }

    fn clear_states(&self) {
        self.cache.invalidate_all();
    }
}
