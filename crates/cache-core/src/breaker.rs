//! [`Breaker`]: a circuit breaker around a cache tier.
//!
//! While the wrapped store keeps failing with `Unavailable`/`Timeout`, the breaker opens
//! and every call fails at once (no request waits for a dead Redis). While open, at most
//! one call per `probe_interval` is let through as a probe; its success closes the
//! breaker. A tiered store treats the immediate errors as a skipped tier, so requests are
//! served by the remaining tiers at full speed. Revocations (`delete`,
//! `delete_user_sessions`, `apply_revocations`) are never short-circuited: a revoked
//! session must not survive in a tier that was only stalled. Transitions are logged once
//! each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

// tokio's clock, which is std's outside tests: tests pause and advance it instead of
// sleeping through probe intervals.
use tokio::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{StoreError, StoreResult};
use crate::model::{Purpose, Revocation, Session, SessionWithUser, User, UserId, Verification};
use crate::store::{RevocationSink, SessionLookup, SessionStore, UserCache, VerificationStore};
use crate::token::{SessionKey, TokenHash};

/// When the breaker opens and how often it probes.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive unavailability errors that open the breaker.
    pub failure_threshold: u32,
    /// Minimum time between two probes while open.
    pub probe_interval: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failure_threshold: 3, probe_interval: Duration::from_secs(1) }
    }
}

/// The breaker's state, readable for health and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass through.
    Closed,
    /// Calls fail at once, except one probe per interval.
    Open,
}

impl BreakerState {
    /// Stable name for health output.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
        }
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;

/// Error returned while the breaker is open.
#[derive(Debug, thiserror::Error)]
#[error("circuit breaker for tier {0} is open")]
pub struct BreakerOpen(&'static str);

struct Inner {
    tier: &'static str,
    config: BreakerConfig,
    epoch: Instant,
    state: AtomicU8,
    consecutive_failures: AtomicU32,
    /// Microseconds since `epoch` before which no probe may start.
    next_probe_us: AtomicU64,
    opened_total: metrics::Counter,
    state_gauge: metrics::Gauge,
}

/// A store wrapped in a circuit breaker. Cheap to clone; clones share the state.
pub struct Breaker<S> {
    inner: Arc<Inner>,
    store: S,
}

impl<S: Clone> Clone for Breaker<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), store: self.store.clone() }
    }
}

impl<S> Breaker<S> {
    /// Wraps `store`, named `tier` in logs and metrics.
    pub fn new(store: S, tier: &'static str, config: BreakerConfig) -> Self {
        let state_gauge = metrics::gauge!("breaker_open", "tier" => tier);
        state_gauge.set(0.0);
        Self {
            inner: Arc::new(Inner {
                tier,
                config,
                epoch: Instant::now(),
                state: AtomicU8::new(CLOSED),
                consecutive_failures: AtomicU32::new(0),
                next_probe_us: AtomicU64::new(0),
                opened_total: metrics::counter!("breaker_opened_total", "tier" => tier),
                state_gauge,
            }),
            store,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.store
    }

    /// Current state.
    pub fn state(&self) -> BreakerState {
        match self.inner.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            _ => BreakerState::Open,
        }
    }

    /// A handle that reads the state without holding the store.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle(self.inner.clone())
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.inner.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether a call may go through now (always when closed; one probe per interval
    /// when open).
    fn admit(&self) -> bool {
        if self.inner.state.load(Ordering::Acquire) == CLOSED {
            return true;
        }
        let now = self.now_us();
        let next = self.inner.next_probe_us.load(Ordering::Acquire);
        now >= next
            && self
                .inner
                .next_probe_us
                .compare_exchange(
                    next,
                    now + self.interval_us(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn interval_us(&self) -> u64 {
        u64::try_from(self.inner.config.probe_interval.as_micros()).unwrap_or(u64::MAX)
    }

    fn on_success(&self) {
        self.inner.consecutive_failures.store(0, Ordering::Release);
        if self.inner.state.swap(CLOSED, Ordering::AcqRel) == OPEN {
            self.inner.state_gauge.set(0.0);
            tracing::info!(tier = self.inner.tier, "tier recovered: circuit breaker closed");
        }
    }

    fn on_failure(&self, e: &StoreError) {
        if !e.is_unavailable() {
            return;
        }
        let failures = self.inner.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if failures >= self.inner.config.failure_threshold {
            self.inner.next_probe_us.store(self.now_us() + self.interval_us(), Ordering::Release);
            if self.inner.state.swap(OPEN, Ordering::AcqRel) == CLOSED {
                self.inner.opened_total.increment(1);
                self.inner.state_gauge.set(1.0);
                tracing::warn!(
                    tier = self.inner.tier,
                    error = %e,
                    "tier unavailable: circuit breaker open, serving from the other tiers"
                );
            }
        }
    }

    pub(crate) async fn call<T>(
        &self,
        fut: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        if !self.admit() {
            return Err(StoreError::unavailable(BreakerOpen(self.inner.tier)));
        }
        self.observe(fut).await
    }

    /// Revocations always go through, open or not: one rejected while the tier is merely
    /// stalled (its connection never dropped, so no replay follows) would leave a revoked
    /// session alive there. They are rare; a dead tier costs them one timeout.
    pub(crate) async fn call_always<T>(
        &self,
        fut: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        self.observe(fut).await
    }

    async fn observe<T>(&self, fut: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        let result = fut.await;
        match &result {
            Ok(_) | Err(StoreError::Conflict(_) | StoreError::Corrupt(_)) => self.on_success(),
            Err(e) => self.on_failure(e),
        }
        result
    }
}

/// Reads a breaker's state (for health and metrics) without access to its store.
#[derive(Clone)]
pub struct BreakerHandle(Arc<Inner>);

impl BreakerHandle {
    /// Current state.
    pub fn state(&self) -> BreakerState {
        match self.0.state.load(Ordering::Acquire) {
            CLOSED => BreakerState::Closed,
            _ => BreakerState::Open,
        }
    }

    /// The tier's name.
    pub fn tier(&self) -> &'static str {
        self.0.tier
    }
}

#[async_trait]
impl<S: SessionStore> SessionStore for Breaker<S> {
    fn tier(&self) -> &'static str {
        self.store.tier()
    }
    async fn create(&self, session: &Session) -> StoreResult<()> {
        self.call(self.store.create(session)).await
    }
    async fn get(&self, key: &SessionKey) -> StoreResult<Option<Session>> {
        self.call(self.store.get(key)).await
    }
    async fn put(&self, session: &Session) -> StoreResult<bool> {
        self.call(self.store.put(session)).await
    }
    async fn extend(
        &self,
        key: &SessionKey,
        expected_version: i64,
        new_expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<Session>> {
        self.call(self.store.extend(key, expected_version, new_expires_at)).await
    }
    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        self.call_always(self.store.delete(key)).await
    }
    async fn delete_user_sessions(
        &self,
        user: UserId,
        keep: Option<TokenHash>,
    ) -> StoreResult<u64> {
        self.call_always(self.store.delete_user_sessions(user, keep)).await
    }
    async fn list_user_sessions(&self, user: UserId) -> StoreResult<Vec<Session>> {
        self.call(self.store.list_user_sessions(user)).await
    }
}

#[async_trait]
impl<S: SessionLookup> SessionLookup for Breaker<S> {
    async fn get_with_user(&self, key: &SessionKey) -> StoreResult<Option<SessionWithUser>> {
        self.call(self.store.get_with_user(key)).await
    }
}

#[async_trait]
impl<S: UserCache> UserCache for Breaker<S> {
    fn tier(&self) -> &'static str {
        self.store.tier()
    }
    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.call(self.store.get_user(id)).await
    }
    async fn put_user(&self, user: &User) -> StoreResult<()> {
        self.call(self.store.put_user(user)).await
    }
    async fn invalidate_user(&self, id: UserId) -> StoreResult<()> {
        self.call(self.store.invalidate_user(id)).await
    }
}

#[async_trait]
impl<S: VerificationStore> VerificationStore for Breaker<S> {
    fn tier(&self) -> &'static str {
        self.store.tier()
    }
    async fn put_verification(&self, verification: &Verification) -> StoreResult<()> {
        self.call(self.store.put_verification(verification)).await
    }
    async fn consume(
        &self,
        hash: &TokenHash,
        purpose: Purpose,
    ) -> StoreResult<Option<Verification>> {
        self.call(self.store.consume(hash, purpose)).await
    }
    async fn delete_verifications(&self, user: UserId, purpose: Purpose) -> StoreResult<u64> {
        self.call(self.store.delete_verifications(user, purpose)).await
    }
}

#[async_trait]
impl<S: RevocationSink> RevocationSink for Breaker<S> {
    async fn apply_revocations(&self, revocations: &[Revocation]) -> StoreResult<()> {
        self.call_always(self.store.apply_revocations(revocations)).await
    }
    async fn clear(&self) -> StoreResult<()> {
        self.call(self.store.clear()).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::store::MockSessionStore;
    use crate::token::Secret;

    fn key() -> SessionKey {
        SessionKey { user: UserId::new(1).unwrap(), hash: Secret::from_bytes([9; 32]).hash() }
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_probes_once_per_interval_and_closes() {
        let down = Arc::new(AtomicBool::new(true));
        let calls = Arc::new(AtomicU32::new(0));
        let mut store = MockSessionStore::new();
        store.expect_tier().return_const("redis");
        let (d, c) = (down.clone(), calls.clone());
        store.expect_get().returning(move |_| {
            c.fetch_add(1, Ordering::SeqCst);
            if d.load(Ordering::SeqCst) { Err(StoreError::timeout("no answer")) } else { Ok(None) }
        });
        let config =
            BreakerConfig { failure_threshold: 3, probe_interval: Duration::from_millis(100) };
        let breaker = Breaker::new(store, "redis", config);
        for _ in 0..3 {
            assert!(breaker.get(&key()).await.is_err());
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        // Open: calls fail at once without reaching the store.
        for _ in 0..100 {
            assert!(breaker.get(&key()).await.is_err());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // One probe after the interval; it fails, so the breaker stays open.
        tokio::time::advance(Duration::from_millis(120)).await;
        for _ in 0..10 {
            assert!(breaker.get(&key()).await.is_err());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // The backend returns: the next probe closes the breaker.
        down.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_millis(120)).await;
        assert_eq!(breaker.get(&key()).await.unwrap(), None);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(breaker.get(&key()).await.unwrap(), None);
        assert_eq!(calls.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn revocations_go_through_an_open_breaker() {
        let mut store = MockSessionStore::new();
        store.expect_tier().return_const("redis");
        store.expect_get().returning(|_| Err(StoreError::timeout("stalled")));
        store.expect_delete().times(1).returning(|_| Ok(true));
        store.expect_delete_user_sessions().times(1).returning(|_, _| Ok(2));
        let breaker = Breaker::new(store, "redis", BreakerConfig::default());
        for _ in 0..3 {
            assert!(breaker.get(&key()).await.is_err());
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.delete(&key()).await.unwrap());
        assert_eq!(breaker.delete_user_sessions(key().user, None).await.unwrap(), 2);
        // A success observed through a revocation closes it again.
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[tokio::test]
    async fn conflicts_and_corrupt_data_do_not_open_it() {
        let mut store = MockSessionStore::new();
        store.expect_tier().return_const("redis");
        store.expect_get().returning(|_| Err(StoreError::corrupt("bad json")));
        let breaker = Breaker::new(store, "redis", BreakerConfig::default());
        for _ in 0..10 {
            assert!(matches!(breaker.get(&key()).await, Err(StoreError::Corrupt(_))));
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
