//! The cache-core conformance suite against the memory tier.

use std::sync::Arc;
use std::time::Duration;

use cache_core::ManualClock;
use cache_memory::{MemoryConfig, MemoryStore};

/// A memory store whose ttl outlasts every clock jump of the suite (it advances by up to
/// a day), so the tier behaves like a store and the session's own expiry decides.
async fn make_store(clock: Arc<ManualClock>) -> Option<MemoryStore> {
    let config = MemoryConfig {
        max_entries: 100_000,
        ttl: Duration::from_secs(7 * 24 * 3600),
        ..MemoryConfig::default()
    };
    Some(MemoryStore::new(config, clock))
}

mod memory_sessions {
    cache_testkit::session_store_suite!(super::make_store);
}

mod memory_verifications {
    cache_testkit::verification_store_suite!(super::make_store);
}

mod memory_users {
    cache_testkit::user_cache_suite!(super::make_store, cache);
}

mod memory_lookups {
    cache_testkit::session_lookup_suite!(super::make_store, cache);
}
