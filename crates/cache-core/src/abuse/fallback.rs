//! [`FallbackLimiter`]: a shared limiter (Redis) in front of a per-instance one, which
//! decides while the shared one is down.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
// tokio's clock, which is std's outside tests: tests pause and advance it instead of
// sleeping through probe intervals.
use tokio::time::Instant;

use super::limit::{Decision, EventId, Limit, RateKey, RateLimitStore};
use crate::breaker::BreakerConfig;
use crate::error::{StoreError, StoreResult};

/// A shared limiter (`primary`, Redis) backed by a per-instance one (`fallback`,
/// memory) that decides whenever the primary fails, so a limit still holds per instance
/// while Redis is down. Like [`crate::Breaker`], consecutive unavailability errors stop
/// the primary from being asked, except for one probe per `probe_interval`, so refused
/// logins do not each wait for a dead Redis's timeout.
pub struct FallbackLimiter<P, F> {
    primary: P,
    fallback: F,
    health: Health,
}

struct Health {
    config: BreakerConfig,
    epoch: Instant,
    failures: AtomicU32,
    open: AtomicBool,
    next_probe_us: AtomicU64,
    fallbacks: metrics::Counter,
}

impl<P: RateLimitStore, F: RateLimitStore> FallbackLimiter<P, F> {
    /// `primary` in front of `fallback`, skipping a failing primary as `config` says.
    pub fn new(primary: P, fallback: F, config: BreakerConfig) -> Self {
        Self {
            health: Health {
                config,
                epoch: Instant::now(),
                failures: AtomicU32::new(0),
                open: AtomicBool::new(false),
                next_probe_us: AtomicU64::new(0),
                fallbacks: metrics::counter!("ratelimit_fallbacks_total", "tier" => primary.tier()),
            },
            primary,
            fallback,
        }
    }

    /// Whether the primary is being skipped.
    pub fn is_degraded(&self) -> bool {
        self.health.open.load(Ordering::Acquire)
    }

    /// The shared limiter.
    pub fn primary(&self) -> &P {
        &self.primary
    }

    /// The per-instance limiter.
    pub fn fallback(&self) -> &F {
        &self.fallback
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.health.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn interval_us(&self) -> u64 {
        u64::try_from(self.health.config.probe_interval.as_micros()).unwrap_or(u64::MAX)
    }

    fn admit_primary(&self) -> bool {
        if !self.health.open.load(Ordering::Acquire) {
            return true;
        }
        let now = self.now_us();
        let next = self.health.next_probe_us.load(Ordering::Acquire);
        now >= next
            && self
                .health
                .next_probe_us
                .compare_exchange(
                    next,
                    now.saturating_add(self.interval_us()),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn on_success(&self) {
        self.health.failures.store(0, Ordering::Release);
        if self.health.open.swap(false, Ordering::AcqRel) {
            tracing::info!(
                tier = self.primary.tier(),
                "shared rate limiter recovered: decisions are shared again"
            );
        }
    }

    fn on_failure(&self, e: &StoreError) {
        self.health.fallbacks.increment(1);
        if !e.is_unavailable() {
            tracing::warn!(tier = self.primary.tier(), error = %e, "shared rate limiter failed; this instance decides");
            return;
        }
        let failures = self.health.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if failures >= self.health.config.failure_threshold {
            self.health
                .next_probe_us
                .store(self.now_us().saturating_add(self.interval_us()), Ordering::Release);
            if !self.health.open.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    tier = self.primary.tier(),
                    error = %e,
                    "shared rate limiter unavailable: limits are enforced per instance until it returns"
                );
            }
        }
    }
}

#[async_trait]
impl<P: RateLimitStore, F: RateLimitStore> RateLimitStore for FallbackLimiter<P, F> {
    fn tier(&self) -> &'static str {
        self.primary.tier()
    }

    async fn acquire(
        &self,
        key: &RateKey,
        limit: &Limit,
        event: &EventId,
        now: DateTime<Utc>,
    ) -> StoreResult<Decision> {
        if self.admit_primary() {
            match self.primary.acquire(key, limit, event, now).await {
                Ok(decision) => {
                    self.on_success();
                    return Ok(decision);
                }
                // Never fail open, never fail the request: this instance decides.
                Err(e) => self.on_failure(&e),
            }
        } else {
            self.health.fallbacks.increment(1);
        }
        self.fallback.acquire(key, limit, event, now).await
    }

    async fn release(&self, key: &RateKey, event: &EventId) -> StoreResult<()> {
        // The event was recorded by one of the two; forgetting it in both is harmless.
        self.fallback.release(key, event).await?;
        if self.admit_primary() {
            match self.primary.release(key, event).await {
                Ok(()) => self.on_success(),
                // The event then counts until it leaves the window: failing closed.
                Err(e) => self.on_failure(&e),
            }
        }
        Ok(())
    }

    async fn reset(&self, key: &RateKey) -> StoreResult<()> {
        self.fallback.reset(key).await?;
        let result = self.primary.reset(key).await;
        match &result {
            Ok(()) => self.on_success(),
            Err(e) => self.on_failure(e),
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;
    use crate::abuse::SlidingLog;
    use crate::abuse::testing::t0;

    /// A limiter that fails while `down` and counts the calls it gets.
    struct Flaky {
        down: AtomicBool,
        calls: AtomicUsize,
        log: parking_lot::Mutex<SlidingLog>,
    }

    #[async_trait]
    impl RateLimitStore for Flaky {
        fn tier(&self) -> &'static str {
            "flaky"
        }
        async fn acquire(
            &self,
            _key: &RateKey,
            limit: &Limit,
            event: &EventId,
            now: DateTime<Utc>,
        ) -> StoreResult<Decision> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::unavailable("connection refused"));
            }
            Ok(self.log.lock().acquire(limit, event, now))
        }
        async fn release(&self, _key: &RateKey, event: &EventId) -> StoreResult<()> {
            self.log.lock().release(event);
            Ok(())
        }
        async fn reset(&self, _key: &RateKey) -> StoreResult<()> {
            *self.log.lock() = SlidingLog::new();
            Ok(())
        }
    }

    fn flaky(down: bool) -> Flaky {
        Flaky {
            down: AtomicBool::new(down),
            calls: AtomicUsize::new(0),
            log: parking_lot::Mutex::new(SlidingLog::new()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_fallback_decides_while_the_primary_is_down_and_probes_it() {
        let config =
            BreakerConfig { failure_threshold: 2, probe_interval: Duration::from_millis(50) };
        let limiter = FallbackLimiter::new(flaky(true), flaky(false), config);
        let key = RateKey::new("login", "account", "a");
        let limit = Limit::new(3, Duration::from_secs(60));
        let mut allowed = 0;
        for _ in 0..10 {
            let d = limiter.acquire(&key, &limit, &EventId::random().unwrap(), t0()).await.unwrap();
            allowed += usize::from(d.allowed);
        }
        // The per-instance limiter held the limit, and after two failures the primary
        // was no longer asked.
        assert_eq!(allowed, 3);
        assert!(limiter.is_degraded());
        assert_eq!(limiter.primary().calls.load(Ordering::SeqCst), 2);
        // It comes back: the next probe goes to it and closes the breaker.
        limiter.primary().down.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_millis(60)).await;
        let d = limiter.acquire(&key, &limit, &EventId::random().unwrap(), t0()).await.unwrap();
        assert!(d.allowed);
        assert!(!limiter.is_degraded());
        assert_eq!(limiter.primary().calls.load(Ordering::SeqCst), 3);
        // Releases reach both.
        let event = EventId::of("e");
        limiter.acquire(&key, &limit, &event, t0()).await.unwrap();
        limiter.release(&key, &event).await.unwrap();
        assert_eq!(limiter.primary().log.lock().events.len(), 1);
    }
}
