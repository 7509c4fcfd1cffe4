//! Rate limits: the [`Limit`] of an action, the [`Decision`] one attempt gets, the
//! hashed [`RateKey`] and [`EventId`] a limiter counts, and the [`RateLimitStore`] trait
//! every limiter tier implements.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::error::StoreResult;
use crate::token::{RandomError, fill_random};

/// At most `limit` events in any sliding `window`. A key that reaches the limit is locked
/// out: for `window` the first time, then twice as long after each further lockout while
/// the previous one is remembered, never longer than `max_lockout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Events admitted per window (0 admits nothing).
    pub limit: u32,
    /// Length of the sliding window.
    pub window: Duration,
    /// Cap of the escalating lockout; at most `window` disables the escalation.
    pub max_lockout: Duration,
}

impl Limit {
    /// `limit` events per `window`, locked out for one window when exceeded (no
    /// escalation).
    pub const fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window, max_lockout: window }
    }

    /// The same limit with lockouts doubling up to `max_lockout`.
    pub const fn with_max_lockout(self, max_lockout: Duration) -> Self {
        Self { max_lockout, ..self }
    }

    /// The lockout after the `strikes`-th lockout in a row (1-based): `window * 2^(n-1)`,
    /// capped by `max_lockout` (and never shorter than `window`).
    pub fn lockout(&self, strikes: u32) -> Duration {
        let doubled = 2u32
            .checked_pow(strikes.saturating_sub(1))
            .and_then(|factor| self.window.checked_mul(factor))
            .unwrap_or(Duration::MAX);
        doubled.min(self.max_lockout.max(self.window))
    }

    /// How long the lockouts of a key are remembered after the last one ends: long
    /// enough that an attacker who waits out a lockout and tries again meets a longer one.
    pub fn strike_memory(&self) -> Duration {
        self.max_lockout.max(self.window)
    }
}

/// The outcome of one [`RateLimitStore::acquire`]; what the `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the event was admitted (and recorded).
    pub allowed: bool,
    /// The limit that applied.
    pub limit: u32,
    /// Events still admitted in the current window after this one.
    pub remaining: u32,
    /// Time until a slot frees up: the oldest counted event leaves the window (or the
    /// lockout ends).
    pub reset_after: Duration,
    /// When refused: how long to wait before trying again.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// An admitted event.
    pub fn allowed(limit: u32, remaining: u32, reset_after: Duration) -> Self {
        Self { allowed: true, limit, remaining, reset_after, retry_after: None }
    }

    /// A refused event, with the time until the next attempt can succeed.
    pub fn limited(limit: u32, retry_after: Duration) -> Self {
        Self {
            allowed: false,
            limit,
            remaining: 0,
            reset_after: retry_after,
            retry_after: Some(retry_after),
        }
    }
}

/// Lower-case hex of the first 16 bytes of SHA-256(`subject`).
fn digest_hex(subject: &str) -> String {
    hex::encode(&Sha256::digest(subject.as_bytes())[..16])
}

/// The name of one rate-limit counter: `{action}:{scope}:{digest of the subject}`, e.g.
/// `login:account:9f86d081884c7d65...`. The subject (an address, an email) is hashed, so
/// no store holds it in clear; action and scope stay readable for operators.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateKey(String);

impl RateKey {
    /// The key of `subject` for `action` (e.g. `login`) in `scope` (e.g. `address`).
    /// `action` and `scope` are short ASCII identifiers chosen by the caller, lower-cased;
    /// anything other than `[a-z0-9_]` in them is replaced by `_`.
    pub fn new(action: &str, scope: &str, subject: &str) -> Self {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| c.to_ascii_lowercase())
                .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '_' })
                .collect()
        };
        Self(format!("{}:{}:{}", clean(action), clean(scope), digest_hex(subject)))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one event in a window. A random id counts every attempt; an id derived
/// from a subject ([`EventId::of`]) counts distinct subjects, because recording an id
/// already in the window only refreshes its time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(String);

impl EventId {
    /// A fresh random id (64 bits from the OS CSPRNG).
    pub fn random() -> Result<Self, RandomError> {
        let mut bytes = [0u8; 8];
        fill_random(&mut bytes)?;
        Ok(Self(format!("r{:016x}", u64::from_le_bytes(bytes))))
    }

    /// The id of a subject (hashed), for counting distinct subjects.
    pub fn of(subject: &str) -> Self {
        Self(format!("d{}", digest_hex(subject)))
    }

    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A sliding-window rate limiter's storage. Implementations: memory (per instance),
/// Redis (shared by instances), and [`FallbackLimiter`] combining the two.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Short tier name for logs and metrics.
    fn tier(&self) -> &'static str;

    /// One atomic decision at `now` for `key`: when the key is locked out, refuses;
    /// otherwise drops the events that left the window, and admits and records `event`
    /// when fewer than `limit.limit` are left (or when `event` is already in the window:
    /// its time is refreshed). When the limit is reached, refuses and starts a lockout
    /// ([`Limit::lockout`], escalating while earlier lockouts are remembered).
    async fn acquire(
        &self,
        key: &RateKey,
        limit: &Limit,
        event: &EventId,
        now: DateTime<Utc>,
    ) -> StoreResult<Decision>;

    /// Forgets `event` (an attempt that succeeded and must not count). Idempotent.
    async fn release(&self, key: &RateKey, event: &EventId) -> StoreResult<()>;

    /// Forgets everything about `key`: its events, lockout and strikes.
    async fn reset(&self, key: &RateKey) -> StoreResult<()>;
}

#[async_trait]
impl<T: RateLimitStore + ?Sized> RateLimitStore for Arc<T> {
    fn tier(&self) -> &'static str {
        (**self).tier()
    }
    async fn acquire(
        &self,
        key: &RateKey,
        limit: &Limit,
        event: &EventId,
        now: DateTime<Utc>,
    ) -> StoreResult<Decision> {
        (**self).acquire(key, limit, event, now).await
    }
    async fn release(&self, key: &RateKey, event: &EventId) -> StoreResult<()> {
        (**self).release(key, event).await
    }
    async fn reset(&self, key: &RateKey) -> StoreResult<()> {
        (**self).reset(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_double_up_to_the_cap() {
        let limit =
            Limit::new(3, Duration::from_secs(60)).with_max_lockout(Duration::from_secs(60 * 5));
        let got: Vec<u64> = (1..=6).map(|n| limit.lockout(n).as_secs()).collect();
        assert_eq!(got, [60, 120, 240, 300, 300, 300]);
        assert_eq!(limit.lockout(u32::MAX).as_secs(), 300);
        assert_eq!(Limit::new(3, Duration::from_secs(60)).lockout(5).as_secs(), 60);
    }

    #[test]
    fn keys_and_ids_hide_their_subject() {
        let key = RateKey::new("login", "account", "alice@example.com");
        assert!(key.as_str().starts_with("login:account:"), "{key}");
        assert_eq!(key.as_str().len(), "login:account:".len() + 32);
        assert!(!key.as_str().contains("alice"));
        assert_eq!(key, RateKey::new("login", "account", "alice@example.com"));
        assert_ne!(key, RateKey::new("login", "address", "alice@example.com"));
        assert_eq!(RateKey::new("Lo{g}", "x", "s").as_str()[..6], *"lo_g_:");
        assert_eq!(EventId::of("a"), EventId::of("a"));
        assert_ne!(EventId::random().unwrap(), EventId::random().unwrap());
    }
}
