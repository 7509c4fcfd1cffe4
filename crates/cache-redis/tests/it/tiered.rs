//! The Redis tier inside the production composition, against the Redis at `REDIS_URL`
//! and the PostgreSQL at `DATABASE_URL` (skipped when either is unset):
//! cross-instance invalidation (F4), the stampede on one session (F6), and concurrent
//! logins followed by a revoke-all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{ManualClock, SessionStore, SharedClock};
use cache_memory::MemoryStore;
use cache_redis::fred::interfaces::SortedSetsInterface;
use cache_redis::{InvalidationListener, RedisConfig, RedisStore};
use cache_sql::SqlStore;
use cache_testkit::{random_user, sample_session, service_url};
use futures::future::join_all;

use crate::support::{Stack, memory, stack, test_config};

/// Both service URLs, or `None` (skipped).
fn services() -> Option<(String, String)> {
    Some((service_url("REDIS_URL")?, service_url("DATABASE_URL")?))
}

/// One "instance": its own memory tier, Redis connections and invalidation listener,
/// sharing Redis (same prefix) and SQL with the others.
struct Instance {
    stack: Stack,
    memory: MemoryStore,
    _listener: InvalidationListener,
}

async fn instance(config: &RedisConfig, sql: &SqlStore, clock: &SharedClock) -> Instance {
    let memory = memory(clock.clone());
    let listener = InvalidationListener::spawn(config, Arc::new(memory.clone())).await.unwrap();
    let redis = RedisStore::connect(config.clone(), clock.clone()).await.unwrap();
    let stack = stack(memory.clone(), redis, sql.clone()).await;
    Instance { stack, memory, _listener: listener }
}

/// The `q`-quantile of sorted durations.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// F4: a revocation on instance A evicts the session from instance B's memory tier.
/// Over 200 trials (alternating single revoke and revoke-all) the delay from the start
/// of A's revoke until B's stack stops returning the session is measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_on_one_instance_evicts_the_others_memory_tier() {
    let Some((redis_url, db_url)) = services() else { return };
    let manual = ManualClock::starting_now();
    let clock: SharedClock = manual.clone();
    let sql = cache_sql::testing::isolated_postgres(&db_url, clock.clone()).await.unwrap();
    let config = RedisConfig {
        command_timeout: Duration::from_millis(500),
        ..test_config(&redis_url, "f4")
    };
    let a = instance(&config, &sql, &clock).await;
    let b = instance(&config, &sql, &clock).await;

    let mut delays = Vec::with_capacity(200);
    for trial in 0..200 {
        let session = sample_session(&manual, random_user());
        a.stack.create(&session).await.unwrap();
        // Warm B: its memory tier now holds the session.
        assert_eq!(b.stack.get(&session.key).await.unwrap(), Some(session.clone()));
        assert_eq!(b.memory.get(&session.key).await.unwrap(), Some(session.clone()));

        let start = Instant::now();
        if trial % 2 == 0 {
            assert!(a.stack.delete(&session.key).await.unwrap());
        } else {
            assert_eq!(a.stack.delete_user_sessions(session.key.user, None).await.unwrap(), 1);
        }
        while b.stack.get(&session.key).await.unwrap().is_some() {
            // A liveness deadline, not a speed bound: the delays are printed below and
            // measured by `cargo xtask revocation-latency`.
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "trial {trial}: B still returns the session 10 s after A revoked it"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        delays.push(start.elapsed());
        assert_eq!(b.memory.get(&session.key).await.unwrap(), None);
    }
    delays.sort();
    let (p50, p99, max) =
        (quantile(&delays, 0.5), quantile(&delays, 0.99), delays[delays.len() - 1]);
    eprintln!(
        "F4 invalidation delay over {} trials: p50 {p50:?}, p99 {p99:?}, max {max:?}",
        delays.len()
    );
}

/// F6: 1,000 concurrent validations of a session that is only in SQL cost one SQL query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stampede_on_an_uncached_session_costs_one_sql_query() {
    let Some((redis_url, db_url)) = services() else { return };
    let manual = ManualClock::starting_now();
    let clock: SharedClock = manual.clone();
    let sql = cache_sql::testing::isolated_postgres(&db_url, clock.clone()).await.unwrap();
    let redis = RedisStore::connect(test_config(&redis_url, "f6"), clock.clone()).await.unwrap();
    let stack = Arc::new(stack(memory(clock.clone()), redis.clone(), sql.clone()).await);

    let session = sample_session(&manual, random_user());
    sql.create(&session).await.unwrap(); // Only in SQL: absent from memory and Redis.
    assert_eq!(redis.get(&session.key).await.unwrap(), None);
    assert_eq!(stack.front().get(&session.key).await.unwrap(), None);

    let before = sql.query_count();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (stack, key) = (stack.clone(), session.key);
            tokio::spawn(async move { stack.get(&key).await })
        })
        .collect();
    for result in join_all(tasks).await {
        assert_eq!(result.unwrap().unwrap(), Some(session.clone()));
    }
    let queries = sql.query_count() - before;
    eprintln!("F6: 1000 concurrent gets of an uncached session -> {queries} SQL query(ies)");
    assert_eq!(queries, 1);
    // The stampede filled both caches.
    assert_eq!(redis.get(&session.key).await.unwrap(), Some(session.clone()));
    assert_eq!(stack.front().get(&session.key).await.unwrap(), Some(session));
}

/// 200 concurrent logins of one user land as 200 index entries; a revoke-all then leaves
/// no live session in any tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_logins_then_revoke_all_leave_nothing_in_any_tier() {
    let Some((redis_url, db_url)) = services() else { return };
    let manual = ManualClock::starting_now();
    let clock: SharedClock = manual.clone();
    let sql = cache_sql::testing::isolated_postgres(&db_url, clock.clone()).await.unwrap();
    let config = test_config(&redis_url, "logins");
    let redis = RedisStore::connect(config.clone(), clock.clone()).await.unwrap();
    let stack = stack(memory(clock.clone()), redis.clone(), sql.clone()).await;
    let memory = stack.front().clone();
    let index_size = |user| {
        let (redis, key) = (redis.clone(), format!("{}{{u:{user}}}:idx", config.key_prefix));
        async move { redis.pool().zcard::<i64, _>(key).await.unwrap() }
    };

    // Through the stack (SQL create, Redis and memory fills) and straight into Redis.
    let user = random_user();
    let sessions: Vec<_> = (0..200).map(|_| sample_session(&manual, user)).collect();
    for result in join_all(sessions.iter().map(|s| stack.create(s))).await {
        result.unwrap();
    }
    assert_eq!(index_size(user).await, 200);
    let direct_user = random_user();
    let direct: Vec<_> = (0..200).map(|_| sample_session(&manual, direct_user)).collect();
    for result in join_all(direct.iter().map(|s| redis.create(s))).await {
        result.unwrap();
    }
    assert_eq!(index_size(direct_user).await, 200);
    assert_eq!(redis.list_user_sessions(user).await.unwrap().len(), 200);
    assert_eq!(sql.list_user_sessions(user).await.unwrap().len(), 200);

    manual.advance(chrono::Duration::seconds(1));
    assert_eq!(stack.delete_user_sessions(user, None).await.unwrap(), 200);
    assert_eq!(redis.delete_user_sessions(direct_user, None).await.unwrap(), 200);
    for s in &sessions {
        assert_eq!(stack.get(&s.key).await.unwrap(), None);
        assert_eq!(memory.get(&s.key).await.unwrap(), None);
        assert_eq!(redis.get(&s.key).await.unwrap(), None);
        assert_eq!(sql.get(&s.key).await.unwrap(), None);
        // And no late cache fill brings one back.
        assert!(!redis.put(s).await.unwrap());
    }
    for s in &direct {
        assert_eq!(redis.get(&s.key).await.unwrap(), None);
    }
    assert!(redis.list_user_sessions(user).await.unwrap().is_empty());
    assert!(sql.list_user_sessions(user).await.unwrap().is_empty());
    assert_eq!(index_size(user).await, 0);
    assert_eq!(index_size(direct_user).await, 0);
}
