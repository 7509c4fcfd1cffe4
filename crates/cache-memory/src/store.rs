//! [`MemoryStore`]: the moka caches and the helpers every trait implementation shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use cache_core::{Revocation, RevocationSink, Session, SessionKey, SharedClock, StoreResult};
use cache_core::{TokenHash, UserId};
use chrono::{DateTime, Utc};
use moka::ops::compute::Op;
use moka::sync::Cache;

use crate::config::{MAX_TTL, MemoryConfig};
use crate::entry::{Cached, EntryExpiry, Key, Value};
use crate::fence::{Fence, FenceFilter};
use crate::index::{Indexes, Kind};

/// The in-process memory tier: sessions, user profiles and verifications in one bounded
/// moka cache, with per-entry expiry and revocation fences. Cheap to clone; clones share
/// the caches.
///
/// Every read checks the injected clock as well as moka's own (real-time) expiry: an
/// entry is served only while the clock is before both the item's expiry and the write
/// time plus `ttl`.
#[derive(Clone)]
pub struct MemoryStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) clock: SharedClock,
    /// `MemoryConfig::ttl` as a chrono duration, for the clock checks.
    pub(crate) ttl: chrono::Duration,
    pub(crate) main: Cache<Key, Value>,
    /// Hashes of individually revoked sessions.
    tombstones: Cache<TokenHash, ()>,
    /// Per-user "revoke all" fences.
    fences: Cache<UserId, Fence>,
    /// Which users may have an entry in `fences` (lets the hit path skip it).
    fence_filter: FenceFilter,
    pub(crate) index: Indexes,
    /// Approximate bytes held by `main`: added on insert, subtracted by moka's removal
    /// listener (which also reports replaced values). Signed because the listener may
    /// run before the insert is counted.
    bytes: Arc<AtomicI64>,
}

impl MemoryStore {
    /// A memory tier sized by `config`, taking every expiry decision from `clock`.
    pub fn new(config: MemoryConfig, clock: SharedClock) -> Self {
        let ttl = config.ttl.min(MAX_TTL);
        let fence_ttl = config.fence_ttl.min(MAX_TTL).max(ttl);
        let bytes = Arc::new(AtomicI64::new(0));
        let listener_bytes = bytes.clone();
        let main = Cache::builder()
            .name("memory-tier")
            .max_capacity(config.max_entries)
            .expire_after(EntryExpiry)
            .eviction_listener(move |_key, value: Value, _cause| {
                listener_bytes.fetch_sub(signed(value.weight()), Ordering::Relaxed);
            })
            .build();
        Self {
            inner: Arc::new(Inner {
                clock,
                ttl: chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX),
                main,
                tombstones: Cache::builder()
                    .max_capacity(config.max_entries)
                    .time_to_live(fence_ttl)
                    .build(),
                fences: Cache::builder()
                    .max_capacity(config.max_entries)
                    .time_to_live(fence_ttl)
                    .build(),
                fence_filter: FenceFilter::new(),
                index: Indexes::new(config.max_entries, ttl),
                bytes,
            }),
        }
    }

    /// Number of cached sessions, users and verifications (moka's estimate, updated by
    /// its maintenance tasks).
    pub fn entry_count(&self) -> u64 {
        self.inner.main.entry_count()
    }

    /// Approximate bytes held by the cached sessions, users and verifications.
    pub fn weighted_size(&self) -> u64 {
        u64::try_from(self.inner.bytes.load(Ordering::Relaxed)).unwrap_or(0)
    }
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Inner {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Counts the bytes of a value just written to `main`.
    pub(crate) fn count_insert(&self, value: &Value) {
        self.bytes.fetch_add(signed(value.weight()), Ordering::Relaxed);
    }

    /// Whether the main cache holds an entry for `user`'s `hash` of `kind`.
    pub(crate) fn holds(&self, user: UserId, kind: Kind, hash: &TokenHash) -> bool {
        match kind {
            Kind::Session => {
                self.main.contains_key(&Key::Session(SessionKey { user, hash: *hash }))
            }
            Kind::Verification => self.main.contains_key(&Key::Verification(*hash)),
        }
    }

    /// Records `hash` in `user`'s index, pruning what the main cache no longer holds.
    pub(crate) fn index_insert(&self, user: UserId, kind: Kind, hash: TokenHash) {
        self.index.insert(user, kind, hash, |k, h| self.holds(user, k, h));
    }

    /// Whether a write of `session` must be refused because it was revoked.
    pub(crate) fn is_revoked(&self, session: &Session) -> bool {
        self.tombstones.contains_key(&session.key.hash) || self.is_fenced(session)
    }

    /// Whether a per-user fence covers `session`.
    pub(crate) fn is_fenced(&self, session: &Session) -> bool {
        let user = session.key.user;
        self.fence_filter.may_have(user)
            && self.fences.get(&user).is_some_and(|fence| fence.covers(session))
    }

    /// The session cached under `key`, when it may be served at `now`. This is the hit
    /// path: two lock-free moka reads, no allocation beyond the returned clone.
    pub(crate) fn live_session(&self, key: &SessionKey, now: DateTime<Utc>) -> Option<Session> {
        let Value::Session(cached) = self.main.get(&Key::Session(*key))? else { return None };
        (cached.is_fresh(now) && !self.is_fenced(&cached.item)).then_some(cached.item)
    }

    /// Wraps `session` for the main cache, written at `now`; `None` when it is not live.
    pub(crate) fn cached_session(&self, session: Session, now: DateTime<Utc>) -> Option<Value> {
        let expires_at = session.expires_at.min(session.absolute_expires_at);
        Cached::new(session, now, self.ttl, expires_at).map(Value::Session)
    }

    /// Removes the cached session under `key` when `pred` selects it. Returns whether a
    /// servable session was removed. Runs under moka's per-key compute lock, so it is
    /// ordered with every concurrent write of the same key.
    pub(crate) fn remove_session_if(
        &self,
        key: SessionKey,
        now: DateTime<Utc>,
        pred: impl FnOnce(&Session) -> bool,
    ) -> bool {
        let mut removed_live = false;
        self.main.entry(Key::Session(key)).and_compute_with(|current| {
            match current.map(moka::Entry::into_value) {
                Some(Value::Session(cached)) if pred(&cached.item) => {
                    // A session a fence already hid was deleted back then.
                    removed_live = cached.is_fresh(now) && !self.is_fenced(&cached.item);
                    Op::Remove
                }
                _ => Op::Nop,
            }
        });
        removed_live
    }

    /// Revokes one session: tombstone first, then removal under the key's compute lock,
    /// so a concurrent cache fill either lands before the removal or sees the tombstone.
    pub(crate) fn revoke_session(&self, key: SessionKey, now: DateTime<Utc>) -> bool {
        self.tombstones.insert(key.hash, ());
        self.remove_session_if(key, now, |_| true)
    }

    /// Revokes `user`'s sessions that `covered` selects, behind a fence `{at, keep}`.
    /// Returns how many servable sessions were removed. The fence is recorded first so
    /// that from then on no write can add a covered session and no read serves one.
    pub(crate) fn revoke_user(
        &self,
        user: UserId,
        fence: Fence,
        now: DateTime<Utc>,
        covered: impl Fn(&Session) -> bool,
    ) -> u64 {
        // Count against the fence in force before this one: sessions it already hid
        // were deleted earlier.
        let previous = self.fences.get(&user);
        // Before the fence exists, so that no reader can skip it once it does.
        self.fence_filter.mark(user);
        self.fences.entry(user).and_compute_with(|current| {
            Op::Put(current.map_or(fence, |c| c.into_value().merge(fence)))
        });
        let taken = self.index.take(user, Kind::Session, |hash| {
            let key = Key::Session(SessionKey { user, hash: *hash });
            match self.main.get(&key) {
                Some(Value::Session(cached)) => covered(&cached.item),
                // Gone from the main cache: drop the stale index entry too.
                _ => true,
            }
        });
        let mut deleted = 0;
        for hash in taken {
            let key = SessionKey { user, hash };
            let mut removed_live = false;
            self.main.entry(Key::Session(key)).and_compute_with(|current| {
                match current.map(moka::Entry::into_value) {
                    Some(Value::Session(cached)) if covered(&cached.item) => {
                        removed_live = cached.is_fresh(now)
                            && !previous.is_some_and(|f| f.covers(&cached.item));
                        Op::Remove
                    }
                    _ => Op::Nop,
                }
            });
            deleted += u64::from(removed_live);
        }
        deleted
    }
}

#[async_trait::async_trait]
impl RevocationSink for MemoryStore {
    async fn apply_revocations(&self, revocations: &[Revocation]) -> StoreResult<()> {
        let inner = &self.inner;
        let now = inner.now();
        for revocation in revocations {
            match revocation {
                Revocation::Session { key, .. } => {
                    inner.revoke_session(*key, now);
                }
                Revocation::AllOfUser { user, keep, at } => {
                    let fence = Fence { at: *at, keep: *keep };
                    inner.revoke_user(*user, fence, now, |s| fence.covers(s));
                }
            }
        }
        Ok(())
    }

    async fn clear(&self) -> StoreResult<()> {
        // Tombstones and fences stay: they only ever refuse revoked sessions, and a
        // clear is exactly when a missed revocation must not let one back in.
        self.inner.main.invalidate_all();
        self.inner.index.clear();
        Ok(())
    }
}
