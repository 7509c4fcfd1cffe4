//! What the main moka cache holds: one keyspace for sessions, users and verifications,
//! so that one `max_entries` bounds them all, with a per-entry lifetime.

use std::mem::size_of;
use std::time::{Duration, Instant};

use cache_core::{Session, SessionKey, TokenHash, User, UserId, Verification};
use chrono::{DateTime, Utc};
use moka::Expiry;

/// Key of the main cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Session(SessionKey),
    User(UserId),
    Verification(TokenHash),
}

/// Value of the main cache. Held inline (not behind an `Arc`): a hit clones it once, and
/// that clone is what the caller gets back.
#[derive(Debug, Clone)]
pub(crate) enum Value {
    Session(Cached<Session>),
    User(Cached<User>),
    Verification(Cached<Verification>),
}

/// A cached item with the instant (per the injected clock) from which it is no longer
/// served, and the same lifetime in real time for moka's own expiry.
#[derive(Debug, Clone)]
pub(crate) struct Cached<T> {
    pub(crate) item: T,
    /// Earliest of: written + ttl, and the item's own expiry. One comparison on a hit
    /// covers both the session's life and the tier's staleness bound.
    pub(crate) until: DateTime<Utc>,
    /// `until - written`, in real time, so moka reclaims the memory without being asked.
    lifetime: Duration,
}

impl<T> Cached<T> {
    /// Wraps `item` written at `now`, served until `min(now + ttl, expires_at)`. `None`
    /// when that is not in the future: nothing worth caching.
    pub(crate) fn new(
        item: T,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
        expires_at: DateTime<Utc>,
    ) -> Option<Self> {
        let fresh_until = now.checked_add_signed(ttl).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let until = fresh_until.min(expires_at);
        let lifetime = (until - now).to_std().ok().filter(|d| !d.is_zero())?;
        Some(Self { item, until, lifetime })
    }

    /// Whether the entry may be served at `now`.
    pub(crate) fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        now < self.until
    }
}

/// Moka overhead per entry (its entry node, key `Arc`, access-order and timer-wheel
/// links), a rough figure: `weighted_size` is an estimate for health output.
const MOKA_OVERHEAD: u64 = 160;

impl Value {
    fn lifetime(&self) -> Duration {
        match self {
            Value::Session(c) => c.lifetime,
            Value::User(c) => c.lifetime,
            Value::Verification(c) => c.lifetime,
        }
    }

    /// Approximate bytes this entry costs, heap included.
    pub(crate) fn weight(&self) -> u64 {
        let heap = match self {
            Value::Session(c) => c.item.user_agent.as_ref().map_or(0, String::capacity),
            Value::User(c) => c.item.name.capacity() + c.item.email.capacity(),
            Value::Verification(c) => c.item.identifier.capacity(),
        };
        let inline = size_of::<Key>() + size_of::<Value>();
        u64::try_from(heap + inline).unwrap_or(u64::MAX).saturating_add(MOKA_OVERHEAD)
    }
}

/// Per-entry expiry: every write sets the entry's lifetime afresh.
pub(crate) struct EntryExpiry;

impl Expiry<Key, Value> for EntryExpiry {
    fn expire_after_create(&self, _key: &Key, value: &Value, _at: Instant) -> Option<Duration> {
        Some(value.lifetime())
    }

    fn expire_after_update(
        &self,
        _key: &Key,
        value: &Value,
        _at: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.lifetime())
    }
}
