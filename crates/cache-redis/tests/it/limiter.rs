//! The shared rate limiter on a real Redis: exactness under parallel attempts from two
//! instances, decisions identical to the reference log over random schedules, and the
//! per-instance fallback when a Redis of the test's own is killed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cache_core::{
    BreakerConfig, Clock as _, EventId, FallbackLimiter, Limit, ManualClock, RateKey,
    RateLimitStore, SlidingLog, UserId,
};
use cache_memory::MemoryRateLimiter;
use cache_redis::{RedisRateLimiter, RedisStore};
use cache_testkit::service_url;

use crate::support::{RedisServer, redis_server_available, test_config};

async fn limiter(url: &str, prefix: &str, clock: &Arc<ManualClock>) -> RedisRateLimiter {
    let config =
        cache_redis::RedisConfig { key_prefix: prefix.to_owned(), ..test_config(url, "rl") };
    let store = RedisStore::connect(config, clock.clone()).await.unwrap();
    RedisRateLimiter::new(&store)
}

fn key() -> RateKey {
    RateKey::new("test", "account", &UserId::random().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_attempts_on_two_instances_admit_exactly_the_limit() {
    let Some(url) = service_url("REDIS_URL") else { return };
    let clock = ManualClock::starting_now();
    let prefix = crate::support::unique_prefix("rl");
    let a = Arc::new(limiter(&url, &prefix, &clock).await);
    let b = Arc::new(limiter(&url, &prefix, &clock).await);
    let (key, limit) = (key(), Limit::new(10, Duration::from_secs(300)));
    let admitted = Arc::new(AtomicU32::new(0));
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let limiter = if i % 2 == 0 { a.clone() } else { b.clone() };
            let (key, admitted, now) = (key.clone(), admitted.clone(), clock.now());
            tokio::spawn(async move {
                let event = EventId::random().unwrap();
                if limiter.acquire(&key, &limit, &event, now).await.unwrap().allowed {
                    admitted.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(admitted.load(Ordering::SeqCst), 10);
    // Locked out for the window on both instances.
    let d = b.acquire(&key, &limit, &EventId::random().unwrap(), clock.now()).await.unwrap();
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    assert!(d.retry_after.unwrap() > Duration::from_secs(299), "{d:?}");
    a.reset(&key).await.unwrap();
    assert!(
        b.acquire(&key, &limit, &EventId::random().unwrap(), clock.now()).await.unwrap().allowed
    );
}

/// xorshift64: a reproducible schedule from a printed seed, without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_match_the_reference_log_over_random_schedules() {
    let Some(url) = service_url("REDIS_URL") else { return };
    let clock = ManualClock::starting_now();
    let redis = limiter(&url, &crate::support::unique_prefix("rl"), &clock).await;
    let seed = UserId::random().unwrap().get().unsigned_abs() | 1;
    let mut rng = Rng(seed);
    for round in 0..20 {
        let key = key();
        let limit = Limit::new(1 + rng.next(4) as u32, Duration::from_secs(10 + rng.next(50)))
            .with_max_lockout(Duration::from_secs(rng.next(400)));
        let mut reference = SlidingLog::new();
        for step in 0..60 {
            match rng.next(10) {
                0..=5 => {
                    // Few distinct ids, so that known events get refreshed too.
                    let event = EventId::of(&rng.next(6).to_string());
                    let now = clock.now();
                    let got = redis.acquire(&key, &limit, &event, now).await.unwrap();
                    let want = reference.acquire(&limit, &event, now);
                    assert_eq!(got, want, "seed {seed}, round {round}, step {step}, {limit:?}");
                }
                6 => {
                    let event = EventId::of(&rng.next(6).to_string());
                    redis.release(&key, &event).await.unwrap();
                    reference.release(&event);
                }
                _ => clock.advance(chrono::Duration::seconds(rng.next(30) as i64)),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_redis_leaves_the_decisions_to_the_instance() {
    if !redis_server_available() {
        return;
    }
    let mut server = RedisServer::start("rl-kill", &[]);
    let clock = ManualClock::starting_now();
    let config = cache_redis::RedisConfig {
        command_timeout: Duration::from_millis(200),
        ..test_config(&server.url(), "rl-kill")
    };
    let store = RedisStore::connect(config, clock.clone()).await.unwrap();
    let breaker = BreakerConfig { failure_threshold: 1, probe_interval: Duration::from_secs(60) };
    let limiter =
        FallbackLimiter::new(RedisRateLimiter::new(&store), MemoryRateLimiter::default(), breaker);
    let (key, limit) = (key(), Limit::new(3, Duration::from_secs(60)));
    let acquire = async || {
        let event = EventId::random().unwrap();
        limiter.acquire(&key, &limit, &event, clock.now()).await.unwrap().allowed
    };
    assert!(acquire().await);
    assert!(!limiter.is_degraded());
    let _dead = tokio::task::spawn_blocking(move || {
        server.kill9();
        server
    })
    .await
    .unwrap();
    // The shared count is gone with Redis; the instance counts from zero and holds.
    let mut decisions = Vec::new();
    for _ in 0..6 {
        decisions.push(acquire().await);
    }
    assert_eq!(decisions, [true, true, true, false, false, false]);
    assert!(limiter.is_degraded());
}

/// On a 3-master Cluster: each decision's keys share a slot (or the script would be
/// refused with CROSSSLOT), and the count is exact for keys spread over the masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_are_exact_on_a_cluster() {
    if !redis_server_available() {
        return;
    }
    let cluster = tokio::task::spawn_blocking(crate::support::RedisCluster::start).await.unwrap();
    let clock = ManualClock::starting_now();
    let store = RedisStore::connect(test_config(&cluster.url(), "rl-cluster"), clock.clone())
        .await
        .unwrap();
    let limiter = Arc::new(RedisRateLimiter::new(&store));
    let limit = Limit::new(4, Duration::from_secs(60));
    let keys: Vec<RateKey> = (0..8).map(|_| key()).collect();
    let admitted: Vec<Arc<AtomicU32>> = keys.iter().map(|_| Arc::default()).collect();
    let tasks: Vec<_> = (0..160)
        .map(|i| {
            let (limiter, key, admitted) =
                (limiter.clone(), keys[i % 8].clone(), admitted[i % 8].clone());
            let now = clock.now();
            tokio::spawn(async move {
                let event = EventId::random().unwrap();
                if limiter.acquire(&key, &limit, &event, now).await.unwrap().allowed {
                    admitted.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let counts: Vec<u32> = admitted.iter().map(|a| a.load(Ordering::SeqCst)).collect();
    assert_eq!(counts, [4; 8]);
    for key in &keys {
        limiter.reset(key).await.unwrap();
        let d = limiter.acquire(key, &limit, &EventId::random().unwrap(), clock.now()).await;
        assert!(d.unwrap().allowed);
    }
    drop(store);
    tokio::task::spawn_blocking(move || drop(cluster)).await.unwrap();
}
