//! Shared helpers of the cache-redis tests: store configs with a unique key prefix, the
//! production composition, and (re-exported from `cache_testkit::servers`, shared with
//! the other crates' tests) redis-server processes on free loopback ports.

use std::time::{Duration, Instant};

use std::sync::Arc;

use cache_core::{Breaker, BreakerConfig, SharedClock, Tiered, UserId};
use cache_memory::{MemoryConfig, MemoryStore};
use cache_redis::{RedisConfig, RedisStore};
use cache_sql::SqlStore;
pub use cache_testkit::servers::{
    RedisCluster, RedisSentinelSet, RedisServer, free_port, redis_server_available, temp_dir,
};

/// The production composition: memory, then Redis behind a breaker, then SQL.
pub type Stack = Tiered<MemoryStore, Tiered<Breaker<RedisStore>, SqlStore>>;

/// Composes a stack. Redis gets `sql` as its revocation journal (as in production) and
/// is waited for until it has replayed it.
pub async fn stack(memory: MemoryStore, redis: RedisStore, sql: SqlStore) -> Stack {
    redis.set_journal(Arc::new(sql.clone()));
    wait_trusted(&redis, Duration::from_secs(10)).await;
    let redis = Breaker::new(redis, cache_redis::TIER, BreakerConfig::default());
    Tiered::new(memory, Tiered::new(redis, sql))
}

/// A memory tier with the default settings.
pub fn memory(clock: SharedClock) -> MemoryStore {
    MemoryStore::new(MemoryConfig::default(), clock)
}

/// Waits until `redis` trusts its server (connected and journal replayed).
pub async fn wait_trusted(redis: &RedisStore, timeout: Duration) {
    let start = Instant::now();
    while !redis.is_trusted() {
        assert!(start.elapsed() < timeout, "redis store not trusted within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A key prefix no other test (or run) uses.
pub fn unique_prefix(tag: &str) -> String {
    format!("test:{tag}:{}:", UserId::random().unwrap())
}

/// A config for tests: unique prefix, small pool, short-lived fences (the samples live a
/// day at most), and a command timeout generous enough for a loaded 2-core machine, since
/// conformance tests check behaviour, not latency.
pub fn test_config(url: &str, tag: &str) -> RedisConfig {
    RedisConfig {
        url: url.to_owned(),
        key_prefix: unique_prefix(tag),
        command_timeout: Duration::from_secs(2),
        pool_size: 2,
        user_ttl: Duration::from_secs(3600),
        fence_ttl: Duration::from_secs(26 * 3600),
        ..RedisConfig::default()
    }
}

/// One Cluster for the whole binary. A `static` is never dropped: its processes are
/// killed by their watchdogs when this test binary exits.
static CLUSTER: std::sync::OnceLock<RedisCluster> = std::sync::OnceLock::new();

/// A store on the binary's test Cluster, its keys under a prefix of `tag`; `None` (a
/// recorded skip) without `redis-server`.
pub async fn cluster_store(
    clock: std::sync::Arc<cache_core::ManualClock>,
    tag: &str,
) -> Option<RedisStore> {
    if !redis_server_available() {
        return None;
    }
    let url = tokio::task::spawn_blocking(|| CLUSTER.get_or_init(RedisCluster::start).url())
        .await
        .unwrap();
    let store = RedisStore::connect(test_config(&url, tag), clock).await.unwrap();
    assert!(store.is_trusted(), "cluster store not ready after connect");
    Some(store)
}
