//! The cache-testkit session-state suite against the memory tier of states, alone and as
//! the front of a `TieredStates` over SQLite.

use std::sync::Arc;
use std::time::Duration;

use cache_core::{ManualClock, TieredStates};
use cache_memory::{MemoryStateConfig, MemoryStateStore};
use cache_sql::SqlStore;

/// A store whose ttl outlasts every clock jump of the suite, so each state's own expiry
/// decides.
fn memory(clock: Arc<ManualClock>) -> MemoryStateStore {
    let config = MemoryStateConfig { max_entries: 10_000, ttl: Duration::from_secs(7 * 24 * 3600) };
    MemoryStateStore::new(config, clock)
}

async fn make_store(clock: Arc<ManualClock>) -> Option<MemoryStateStore> {
    Some(memory(clock))
}

async fn tiered_sqlite(
    clock: Arc<ManualClock>,
) -> Option<TieredStates<MemoryStateStore, SqlStore>> {
    let sql = cache_sql::testing::temp_sqlite(clock.clone()).await.expect("temporary SQLite");
    Some(TieredStates::new(memory(clock), sql))
}

mod memory_states {
    cache_testkit::session_state_suite!(super::make_store);
}

mod tiered_sqlite_states {
    cache_testkit::session_state_suite!(super::tiered_sqlite);
}
