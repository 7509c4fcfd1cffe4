//! The cache-testkit conformance suites against the Redis tier: on the Redis at
//! `REDIS_URL` (a unique key prefix per test), and on a 3-master Redis Cluster this test
//! binary starts itself on free loopback ports.
//!
//! The expired-cleanup suite does not apply: Redis expires keys by their TTL (the
//! remaining life), so `delete_expired_*` has nothing to find and returns nothing.

mod support;

use std::sync::{Arc, OnceLock};

use cache_core::ManualClock;
use cache_redis::RedisStore;

use support::{RedisCluster, test_config};

/// A store on the Redis at `REDIS_URL`; `None` (skipped) when unset.
async fn redis(clock: Arc<ManualClock>) -> Option<RedisStore> {
    let url = cache_testkit::service_url("REDIS_URL")?;
    let store = RedisStore::connect(test_config(&url, "conformance"), clock).await.unwrap();
    assert!(store.is_trusted(), "store not ready after connect");
    Some(store)
}

mod redis_sessions {
    cache_testkit::session_store_suite!(super::redis);
}
mod redis_verifications {
    cache_testkit::verification_store_suite!(super::redis);
}
mod redis_users {
    cache_testkit::user_cache_suite!(super::redis, cache);
}

/// One Cluster for the whole binary. A `static` is never dropped: its processes are
/// killed by their watchdogs when this test binary exits.
static CLUSTER: OnceLock<RedisCluster> = OnceLock::new();

/// A store on the test Cluster (always runs: it needs only `redis-server` on PATH).
async fn cluster(clock: Arc<ManualClock>) -> Option<RedisStore> {
    let url = tokio::task::spawn_blocking(|| CLUSTER.get_or_init(RedisCluster::start).url())
        .await
        .unwrap();
    let store = RedisStore::connect(test_config(&url, "cluster"), clock).await.unwrap();
    assert!(store.is_trusted(), "cluster store not ready after connect");
    Some(store)
}

mod cluster_sessions {
    cache_testkit::session_store_suite!(super::cluster);
}
mod cluster_verifications {
    cache_testkit::verification_store_suite!(super::cluster);
}
mod cluster_users {
    cache_testkit::user_cache_suite!(super::cluster, cache);
}
