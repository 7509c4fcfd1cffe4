//! The cache-testkit conformance suites against the Redis tier: on the Redis at
//! `REDIS_URL` (a unique key prefix per test), and on a 3-master Redis Cluster this test
//! binary starts itself on free loopback ports; and the whole production composition
//! `Tiered<memory, Tiered<Breaker<Redis>, SQL>>` on PostgreSQL (`DATABASE_URL`) and on
//! SQLite.
//!
//! The expired-cleanup suite does not apply: Redis expires keys by their TTL (the
//! remaining life), so `delete_expired_*` has nothing to find and returns nothing.

use std::sync::Arc;

use cache_core::ManualClock;
use cache_redis::RedisStore;

use crate::support::{Stack, memory, stack, test_config};

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
mod redis_lookups {
    cache_testkit::session_lookup_suite!(super::redis, cache);
}

/// A store on the binary's test Cluster (always runs: it needs only `redis-server`).
async fn cluster(clock: Arc<ManualClock>) -> Option<RedisStore> {
    crate::support::cluster_store(clock, "cluster").await
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
mod cluster_lookups {
    cache_testkit::session_lookup_suite!(super::cluster, cache);
}

/// The full stack on a fresh PostgreSQL schema; skipped without `REDIS_URL` or
/// `DATABASE_URL`.
async fn stack_postgres(clock: Arc<ManualClock>) -> Option<Stack> {
    let redis_url = cache_testkit::service_url("REDIS_URL")?;
    let db_url = cache_testkit::service_url("DATABASE_URL")?;
    let sql = cache_sql::testing::isolated_postgres(&db_url, clock.clone()).await.unwrap();
    let redis =
        RedisStore::connect(test_config(&redis_url, "stack-pg"), clock.clone()).await.unwrap();
    Some(stack(memory(clock), redis, sql).await)
}

mod stack_postgres_sessions {
    cache_testkit::session_store_suite!(super::stack_postgres);
}
mod stack_postgres_verifications {
    cache_testkit::verification_store_suite!(super::stack_postgres);
}
mod stack_postgres_users {
    // SQL is the authority: invalidating a user drops the cached copies only.
    cache_testkit::user_cache_suite!(super::stack_postgres, authority);
}
mod stack_postgres_lookups {
    cache_testkit::session_lookup_suite!(super::stack_postgres, authority);
}

/// The full stack on a fresh SQLite file; skipped without `REDIS_URL`.
async fn stack_sqlite(clock: Arc<ManualClock>) -> Option<Stack> {
    let redis_url = cache_testkit::service_url("REDIS_URL")?;
    let sql = cache_sql::testing::temp_sqlite(clock.clone()).await.unwrap();
    let redis =
        RedisStore::connect(test_config(&redis_url, "stack-sqlite"), clock.clone()).await.unwrap();
    Some(stack(memory(clock), redis, sql).await)
}

mod stack_sqlite_sessions {
    cache_testkit::session_store_suite!(super::stack_sqlite);
}
mod stack_sqlite_verifications {
    cache_testkit::verification_store_suite!(super::stack_sqlite);
}
mod stack_sqlite_users {
    cache_testkit::user_cache_suite!(super::stack_sqlite, authority);
}
mod stack_sqlite_lookups {
    cache_testkit::session_lookup_suite!(super::stack_sqlite, authority);
}
