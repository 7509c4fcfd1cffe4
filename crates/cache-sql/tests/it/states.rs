//! The cache-testkit session-state suite against SQLite (a temporary file per test) and
//! PostgreSQL (a fresh schema per test; skipped unless `DATABASE_URL` is set), and the
//! janitor's purge of expired states.

use std::sync::Arc;

use cache_core::{Clock as _, ManualClock, SessionStateStore as _, StateKey, StateRecord};
use cache_sql::SqlStore;

async fn sqlite_store(clock: Arc<ManualClock>) -> Option<SqlStore> {
    Some(cache_sql::testing::temp_sqlite(clock).await.expect("temporary SQLite store"))
}

async fn postgres_store(clock: Arc<ManualClock>) -> Option<SqlStore> {
    let url = cache_testkit::service_url("DATABASE_URL")?;
    Some(cache_sql::testing::isolated_postgres(&url, clock).await.expect("isolated Postgres store"))
}

mod sqlite_states {
    cache_testkit::session_state_suite!(super::sqlite_store);
}

mod postgres_states {
    cache_testkit::session_state_suite!(super::postgres_store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_purges_expired_states_only() {
    let clock = cache_testkit::new_clock();
    let store = sqlite_store(clock.clone()).await.unwrap();
    let record = |minutes| StateRecord {
        state: Default::default(),
        user: None,
        expires_at: clock.now() + chrono::Duration::minutes(minutes),
    };
    store.save_state(&StateKey::of("short"), &record(1)).await.unwrap();
    store.save_state(&StateKey::of("long"), &record(10)).await.unwrap();
    assert_eq!(store.delete_expired_states().await.unwrap(), 0);
    clock.advance(chrono::Duration::minutes(5));
    assert_eq!(store.delete_expired_states().await.unwrap(), 1);
    assert!(store.load_state(&StateKey::of("long")).await.unwrap().is_some());
}
