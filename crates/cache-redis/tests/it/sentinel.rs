//! Redis Sentinel (issue 13, F9), on a master, a replica and a sentinel this test binary
//! starts on free loopback ports (`redis-server`, `--sentinel` mode):
//!
//! - the conformance suites through `redis-sentinel://…?sentinelServiceName=mymaster`;
//! - a forced `SENTINEL FAILOVER` under concurrent validations and revocations through
//!   `Tiered<Breaker<Redis>, SQL>`: no revoked session comes back (the replica may lack
//!   the last deletes; fred's reconnect makes the store distrust Redis and replay the
//!   journal), the tiered calls never fail, and the Redis tier's own calls fail only
//!   within the failover window: from the `SENTINEL FAILOVER` until a few seconds
//!   after the store's writes reach the new master. The old master keeps its clients
//!   and accepts writes until the sentinel demotes it (about 8 s here, Redis's rule);
//!   what the store wrote there is lost with the demotion, and the replay on the
//!   reconnect that follows restores every revocation (docs/redis.md).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cache_core::{Breaker, BreakerConfig, ManualClock, SessionKey, SessionStore, Tiered};
use cache_redis::{RedisConfig, RedisStore};
use cache_testkit::{random_user, sample_session};

use crate::support::{RedisSentinelSet, test_config, wait_trusted};

/// One set for the conformance suites. A `static` is never dropped: its processes are
/// killed by their watchdogs when this test binary exits.
static SET: OnceLock<RedisSentinelSet> = OnceLock::new();

async fn sentinel(clock: Arc<ManualClock>) -> Option<RedisStore> {
    if !crate::support::redis_server_available() {
        return None;
    }
    let url =
        tokio::task::spawn_blocking(|| SET.get_or_init(|| RedisSentinelSet::start("s")).url())
            .await
            .unwrap();
    let store = RedisStore::connect(test_config(&url, "sentinel"), clock).await.unwrap();
    wait_trusted(&store, Duration::from_secs(10)).await;
    Some(store)
}

mod sentinel_sessions {
    cache_testkit::session_store_suite!(super::sentinel);
}
mod sentinel_verifications {
    cache_testkit::verification_store_suite!(super::sentinel);
}
mod sentinel_users {
    cache_testkit::user_cache_suite!(super::sentinel, cache);
}
mod sentinel_lookups {
    cache_testkit::session_lookup_suite!(super::sentinel, cache);
}

/// After the store's writes reach the new master: how long the Redis tier may still fail
/// (fred's reconnect through the sentinel, ≤ 1 s of backoff, then the journal replay).
const AFTER_FAILOVER: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_under_validations_and_revocations_revives_nothing() {
    if !crate::support::redis_server_available() {
        return;
    }
    let set = Arc::new(
        tokio::task::spawn_blocking(|| RedisSentinelSet::start("failover")).await.unwrap(),
    );
    let clock = cache_testkit::new_clock();
    let sql = cache_sql::testing::temp_sqlite(clock.clone()).await.unwrap();
    // Production deadlines: a slow Redis is skipped, not waited for.
    let config = RedisConfig {
        command_timeout: Duration::from_millis(50),
        ..test_config(&set.url(), "failover")
    };
    let redis = RedisStore::connect(config, clock.clone()).await.unwrap();
    redis.set_journal(Arc::new(sql.clone()));
    wait_trusted(&redis, Duration::from_secs(10)).await;
    let old_master = set.master_port().expect("a master");
    assert_eq!(old_master, set.master.port);
    let breaker = Breaker::new(redis.clone(), cache_redis::TIER, BreakerConfig::default());
    let stack = Arc::new(Tiered::new(breaker, sql));

    let sessions: Vec<_> = (0..300).map(|_| sample_session(&clock, random_user())).collect();
    for s in &sessions {
        stack.create(s).await.unwrap();
    }
    let keys: Arc<Vec<SessionKey>> = Arc::new(sessions.iter().map(|s| s.key).collect());
    let revoked: Arc<Mutex<HashSet<SessionKey>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (revived, tiered_errors, validations) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let redis_errors: Arc<Mutex<Vec<Instant>>> = Arc::default();

    let mut tasks = Vec::new();
    // Validations through the stack, two at a time; a session whose revocation returned
    // before the read started must never be served.
    for worker in 0..2 {
        let (stack, keys, revoked, stop) =
            (stack.clone(), keys.clone(), revoked.clone(), stop.clone());
        let (revived, errors, validations) =
            (revived.clone(), tiered_errors.clone(), validations.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                let key = keys[i % keys.len()];
                i += 7;
                let was_revoked = revoked.lock().unwrap().contains(&key);
                match stack.get(&key).await {
                    Ok(Some(_)) if was_revoked => {
                        revived.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                validations.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    // Revocations through the stack, one every 10 ms, in order.
    {
        let (stack, keys, revoked, stop, errors) =
            (stack.clone(), keys.clone(), revoked.clone(), stop.clone(), tiered_errors.clone());
        tasks.push(tokio::spawn(async move {
            for key in keys.iter().take(250) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match stack.delete(key).await {
                    Ok(_) => {
                        revoked.lock().unwrap().insert(*key);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    // The Redis tier on its own: when does it fail?
    {
        let (redis, keys, stop, errors) =
            (redis.clone(), keys.clone(), stop.clone(), redis_errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if redis.get(&keys[i % keys.len()]).await.is_err() {
                    errors.lock().unwrap().push(Instant::now());
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    let failover_at = Instant::now();
    let set2 = set.clone();
    let answer = tokio::task::spawn_blocking(move || {
        set2.sentinel.cli(&["sentinel", "failover", "mymaster"])
    })
    .await
    .unwrap();
    assert!(answer.contains("OK"), "SENTINEL FAILOVER: {answer}");
    let promoted_at = loop {
        let asked = set.clone();
        let port = tokio::task::spawn_blocking(move || asked.master_port()).await.unwrap();
        if port == Some(set.replica.port) {
            break Instant::now();
        }
        assert!(failover_at.elapsed() < Duration::from_secs(30), "no failover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Keep the load on through the switch to the new master and the replay.
    // The store follows the sentinel: once the sentinel has demoted the old master
    // (which keeps accepting writes until then), writes land on the new master.
    let demoted = Instant::now();
    let switched_at = loop {
        let late = sample_session(&clock, random_user());
        let stored = redis.put(&late).await;
        let key = cache_redis::session_key(redis.config().key_prefix.as_str(), &late.key);
        let (set2, k) = (set.clone(), key.clone());
        let (on_new, old_role) = tokio::task::spawn_blocking(move || {
            (set2.replica.cli(&["exists", &k]), set2.master.cli(&["role"]))
        })
        .await
        .unwrap();
        if stored.is_ok_and(|s| s) && on_new.trim() == "1" {
            assert!(old_role.starts_with("slave"), "old master's role: {old_role}");
            break Instant::now();
        }
        assert!(demoted.elapsed() < Duration::from_secs(40), "writes never reach the new master");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    wait_trusted(&redis, Duration::from_secs(20)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    // Nothing revoked is served, by the stack or by Redis (now the old replica).
    let revoked = revoked.lock().unwrap().clone();
    assert!(revoked.len() > 50, "only {} revocations ran", revoked.len());
    for key in &revoked {
        assert_eq!(stack.get(key).await.unwrap(), None);
        assert_eq!(redis.get(key).await.unwrap(), None, "Redis serves a revoked session");
    }
    assert_eq!(revived.load(Ordering::Relaxed), 0, "a revoked session came back");
    assert_eq!(tiered_errors.load(Ordering::Relaxed), 0, "a tiered call failed");
    let errors = redis_errors.lock().unwrap().clone();
    let window_end = switched_at + AFTER_FAILOVER;
    let outside: Vec<_> = errors.iter().filter(|t| **t < failover_at || **t > window_end).collect();
    assert!(outside.is_empty(), "{} Redis errors outside the failover window", outside.len());
    let last = errors.iter().max().map(|t| t.duration_since(failover_at));
    eprintln!(
        "failover: promoted after {:?}, store on the new master after {:?}; {} validations, \
         {} revocations, {} Redis-tier errors, the last {:?} after the SENTINEL FAILOVER",
        promoted_at - failover_at,
        switched_at - failover_at,
        validations.load(Ordering::Relaxed),
        revoked.len(),
        errors.len(),
        last,
    );
}
