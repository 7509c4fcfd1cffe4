//! [`MemoryRateLimiter`]: the per-instance rate limiter, a sliding-window log per key
//! ([`cache_core::SlidingLog`]) under a striped lock.
//!
//! Each decision takes the lock of one stripe (one of 64, chosen by the key's hash) for
//! a few microseconds, so it is atomic and exact, and decisions on different keys rarely
//! wait for each other. Keys whose log no longer matters are swept out of a stripe when
//! it has doubled in size since its last sweep, and a stripe never holds more than its
//! share of `max_keys`: the memory a flood of distinct keys can take is bounded.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use cache_core::{Decision, EventId, Limit, RateKey, RateLimitStore, SlidingLog, StoreResult};
use chrono::{DateTime, Utc};
use parking_lot::Mutex;

/// Number of independently locked parts of the key space.
const STRIPES: usize = 64;
/// A stripe is not swept before it holds this many keys.
const MIN_SWEEP: usize = 64;

/// The per-instance rate limiter. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct MemoryRateLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    hasher: RandomState,
    stripes: Vec<Mutex<Stripe>>,
    per_stripe: usize,
    overflow_logged: AtomicBool,
}

struct Stripe {
    /// Each key's log and the window it was last used with (for sweeping).
    logs: HashMap<RateKey, (SlidingLog, Duration)>,
    /// Sweep when the stripe reaches this many keys.
    sweep_at: usize,
}

impl Default for MemoryRateLimiter {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl MemoryRateLimiter {
    /// A limiter holding at most about `max_keys` keys (spread over the stripes).
    pub fn new(max_keys: usize) -> Self {
        let per_stripe = max_keys.div_ceil(STRIPES).max(1);
        Self {
            inner: Arc::new(Inner {
                hasher: RandomState::new(),
                stripes: (0..STRIPES)
                    .map(|_| Mutex::new(Stripe { logs: HashMap::new(), sweep_at: MIN_SWEEP }))
                    .collect(),
                per_stripe,
                overflow_logged: AtomicBool::new(false),
            }),
        }
    }

    fn stripe(&self, key: &RateKey) -> &Mutex<Stripe> {
        let hash = self.inner.hasher.hash_one(key);
        // The modulus is below 64, so the conversion cannot truncate.
        let i = usize::try_from(hash % STRIPES as u64).unwrap_or(0);
        &self.inner.stripes[i]
    }

    /// Keys currently held (for tests and health output).
    pub fn len(&self) -> usize {
        self.inner.stripes.iter().map(|s| s.lock().logs.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Makes room in `stripe` for a new key at `now`.
    fn make_room(&self, stripe: &mut Stripe, now: DateTime<Utc>) {
        if stripe.logs.len() >= stripe.sweep_at {
            stripe.logs.retain(|_, (log, window)| !log.is_idle(now, *window));
            stripe.sweep_at = (stripe.logs.len() * 2).max(MIN_SWEEP);
        }
        if stripe.logs.len() >= self.inner.per_stripe {
            // Everything left is live: forget arbitrary keys rather than grow without
            // bound. Their counts restart, which a flood this large makes moot.
            let excess = stripe.logs.len() + 1 - self.inner.per_stripe;
            let victims: Vec<RateKey> = stripe.logs.keys().take(excess).cloned().collect();
            for key in victims {
                stripe.logs.remove(&key);
            }
            if !self.inner.overflow_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_keys = self.inner.per_stripe * STRIPES,
                    "memory rate limiter full: forgetting live keys"
                );
            }
        }
    }
}

#[async_trait]
impl RateLimitStore for MemoryRateLimiter {
    fn tier(&self) -> &'static str {
        crate::TIER
    }

    async fn acquire(
        &self,
        key: &RateKey,
        limit: &Limit,
        event: &EventId,
        now: DateTime<Utc>,
    ) -> StoreResult<Decision> {
        let mut stripe = self.stripe(key).lock();
        if !stripe.logs.contains_key(key) {
            self.make_room(&mut stripe, now);
        }
        let (log, window) =
            stripe.logs.entry(key.clone()).or_insert_with(|| (SlidingLog::new(), limit.window));
        *window = limit.window.max(limit.strike_memory());
        Ok(log.acquire(limit, event, now))
    }

    async fn release(&self, key: &RateKey, event: &EventId) -> StoreResult<()> {
        if let Some((log, _)) = self.stripe(key).lock().logs.get_mut(key) {
            log.release(event);
        }
        Ok(())
    }

    async fn reset(&self, key: &RateKey) -> StoreResult<()> {
        self.stripe(key).lock().logs.remove(key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use cache_core::ManualClock;
    use cache_core::clock::Clock as _;

    use super::*;

    fn key(n: usize) -> RateKey {
        RateKey::new("test", "n", &n.to_string())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exactly_the_limit_of_parallel_attempts_is_admitted() {
        let limiter = MemoryRateLimiter::default();
        let clock = ManualClock::starting_now();
        let limit = Limit::new(7, Duration::from_secs(60));
        let admitted = Arc::new(AtomicU32::new(0));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (limiter, admitted, now) = (limiter.clone(), admitted.clone(), clock.now());
                tokio::spawn(async move {
                    let event = EventId::random().unwrap();
                    if limiter.acquire(&key(1), &limit, &event, now).await.unwrap().allowed {
                        admitted.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(admitted.load(Ordering::SeqCst), 7);
        // Another key is untouched.
        let d = limiter.acquire(&key(2), &limit, &EventId::of("x"), clock.now()).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 6);
    }

    #[tokio::test]
    async fn release_and_reset_forget_events() {
        let limiter = MemoryRateLimiter::default();
        let now = ManualClock::starting_now().now();
        let limit = Limit::new(1, Duration::from_secs(60));
        let event = EventId::of("a");
        assert!(limiter.acquire(&key(1), &limit, &event, now).await.unwrap().allowed);
        limiter.release(&key(1), &event).await.unwrap();
        assert!(limiter.acquire(&key(1), &limit, &EventId::of("b"), now).await.unwrap().allowed);
        assert!(!limiter.acquire(&key(1), &limit, &EventId::of("c"), now).await.unwrap().allowed);
        limiter.reset(&key(1)).await.unwrap();
        assert!(limiter.acquire(&key(1), &limit, &EventId::of("c"), now).await.unwrap().allowed);
        // Releasing an unknown key or event is fine.
        limiter.release(&key(9), &event).await.unwrap();
    }

    #[tokio::test]
    async fn idle_keys_are_swept_and_the_size_is_bounded() {
        let clock = ManualClock::starting_now();
        let limit = Limit::new(5, Duration::from_secs(10));
        let limiter = MemoryRateLimiter::new(STRIPES * 100);
        for n in 0..5000 {
            limiter.acquire(&key(n), &limit, &EventId::of("e"), clock.now()).await.unwrap();
        }
        // Live keys beyond a stripe's share were forgotten.
        assert!(limiter.len() <= STRIPES * 100, "{}", limiter.len());
        clock.advance(chrono::Duration::seconds(11));
        for n in 5000..5000 + STRIPES * 200 {
            limiter.acquire(&key(n), &limit, &EventId::of("e"), clock.now()).await.unwrap();
        }
        assert!(limiter.len() <= STRIPES * 100, "{}", limiter.len());
        // Keys of the first round were idle and swept before any live key was dropped.
        let mut live = 0;
        for n in 5000..5000 + STRIPES * 200 {
            let mut stripe = limiter.stripe(&key(n)).lock();
            live += usize::from(stripe.logs.get_mut(&key(n)).is_some());
        }
        assert!(live >= STRIPES * 50, "{live}");
    }
}
