//! The cache-testkit session-state suite against the Redis tier (the Redis at
//! `REDIS_URL`, and a 3-master Cluster this binary starts itself), and against the
//! production composition `TieredStates<memory, TieredStates<Breaker<Redis>, SQL>>` on
//! PostgreSQL; and the cross-instance invalidation of the memory tier of states.

use std::sync::Arc;
use std::time::Duration;

use cache_core::{
    Breaker, BreakerConfig, ManualClock, SessionStateStore, SharedClock, TieredStates,
};
use cache_memory::{MemoryStateConfig, MemoryStateStore};
use cache_redis::{InvalidationListener, RedisConfig, RedisStore};
use cache_sql::SqlStore;

use crate::support::test_config;

type StateStack = TieredStates<MemoryStateStore, TieredStates<Breaker<RedisStore>, SqlStore>>;

async fn redis(clock: Arc<ManualClock>) -> Option<RedisStore> {
    let url = cache_testkit::service_url("REDIS_URL")?;
    let store = RedisStore::connect(test_config(&url, "states"), clock).await.unwrap();
    assert!(store.is_trusted(), "store not ready after connect");
    Some(store)
}

mod redis_states {
    cache_testkit::session_state_suite!(super::redis);
}

async fn cluster(clock: Arc<ManualClock>) -> Option<RedisStore> {
    crate::support::cluster_store(clock, "cluster-states").await
}

mod cluster_states {
    cache_testkit::session_state_suite!(super::cluster);
}

fn memory(clock: SharedClock) -> MemoryStateStore {
    let config = MemoryStateConfig { max_entries: 10_000, ttl: Duration::from_secs(7 * 24 * 3600) };
    MemoryStateStore::new(config, clock)
}

fn stack_of(memory: MemoryStateStore, redis: RedisStore, sql: SqlStore) -> StateStack {
    let redis = Breaker::new(redis, cache_redis::TIER, BreakerConfig::default());
    TieredStates::new(memory, TieredStates::new(redis, sql))
}

async fn stack(clock: Arc<ManualClock>) -> Option<StateStack> {
    let redis_url = cache_testkit::service_url("REDIS_URL")?;
    let db_url = cache_testkit::service_url("DATABASE_URL")?;
    let sql = cache_sql::testing::isolated_postgres(&db_url, clock.clone()).await.unwrap();
    let redis =
        RedisStore::connect(test_config(&redis_url, "state-stack"), clock.clone()).await.unwrap();
    Some(stack_of(memory(clock), redis, sql))
}

mod stack_states {
    cache_testkit::session_state_suite!(super::stack);
}

/// Two instances share Redis and SQL; each has its own memory tier fed by its own
/// listener. A change made through one is never served stale by the other, which had
/// the old state cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_instance_drops_the_others_memory_copy() {
    let (Some(redis_url), Some(db_url)) =
        (cache_testkit::service_url("REDIS_URL"), cache_testkit::service_url("DATABASE_URL"))
    else {
        return;
    };
    let clock = cache_testkit::new_clock();
    let sql = cache_sql::testing::isolated_postgres(&db_url, clock.clone()).await.unwrap();
    let config: RedisConfig = test_config(&redis_url, "state-instances");
    let mut instances = Vec::new();
    let mut listeners = Vec::new();
    for _ in 0..2 {
        let redis = RedisStore::connect(config.clone(), clock.clone()).await.unwrap();
        let memory = memory(clock.clone());
        listeners.push(
            InvalidationListener::spawn_for_states(&config, Arc::new(memory.clone()))
                .await
                .unwrap(),
        );
        instances.push(stack_of(memory, redis, sql.clone()));
    }
    let (a, b) = (&instances[0], &instances[1]);
    let key = cache_testkit::state::random_state_key();
    let user = cache_testkit::random_user();
    let first = cache_testkit::state::sample_state(&clock, Some(user));
    a.save_state(&key, &first).await.unwrap();
    // B reads it, and so caches it in its memory tier.
    assert_eq!(b.load_state(&key).await.unwrap(), Some(first.clone()));
    assert!(b.front().load_state(&key).await.unwrap().is_some());

    let mut second = first.clone();
    second.state.insert("counter".to_owned(), "1".to_owned());
    assert!(a.update_state(&key, &second).await.unwrap());
    wait_until_gone(b.front(), &key).await;
    assert_eq!(b.load_state(&key).await.unwrap(), Some(second));

    // Log the user out everywhere from A: B's copy goes too.
    assert!(b.front().load_state(&key).await.unwrap().is_some());
    assert_eq!(a.delete_user_states(user).await.unwrap(), 1);
    wait_until_gone(b.front(), &key).await;
    assert_eq!(b.load_state(&key).await.unwrap(), None);
    drop(listeners);
}

/// Waits (up to 10 s: pub/sub is asynchronous) until `memory` no longer holds `key`.
async fn wait_until_gone(memory: &MemoryStateStore, key: &cache_core::StateKey) {
    for _ in 0..1000 {
        if memory.load_state(key).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the memory tier still holds a state changed on another instance");
}
