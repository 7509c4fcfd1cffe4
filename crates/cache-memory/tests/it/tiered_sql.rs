//! The conformance suite against `Tiered<memory, SQL>`, the composition `authd` runs
//! without Redis: on SQLite (always) and on PostgreSQL (when `DATABASE_URL` is set).
//! Users are checked as an authority: invalidating the cached profile falls back to SQL.

use std::sync::Arc;

use cache_core::{ManualClock, Tiered};
use cache_memory::{MemoryConfig, MemoryStore};
use cache_sql::SqlStore;
use chrono::Duration;

type MemoryOverSql = Tiered<MemoryStore, SqlStore>;

fn memory(clock: Arc<ManualClock>) -> MemoryStore {
    // The suite moves the clock by up to a day; a TTL that short would hide nothing but
    // make every read a miss, so the tier is given a week (authd's default is 30 s).
    let config = MemoryConfig {
        ttl: Duration::days(7).to_std().expect("positive"),
        ..MemoryConfig::default()
    };
    MemoryStore::new(config, clock)
}

async fn over_sqlite(clock: Arc<ManualClock>) -> Option<MemoryOverSql> {
    let sql = cache_sql::testing::temp_sqlite(clock.clone()).await.expect("temporary SQLite store");
    Some(Tiered::new(memory(clock), sql))
}

async fn over_postgres(clock: Arc<ManualClock>) -> Option<MemoryOverSql> {
    let url = cache_testkit::service_url("DATABASE_URL")?;
    let sql = cache_sql::testing::isolated_postgres(&url, clock.clone())
        .await
        .expect("isolated Postgres store");
    Some(Tiered::new(memory(clock), sql))
}

mod memory_over_sqlite {
    mod sessions {
        cache_testkit::session_store_suite!(super::super::over_sqlite);
    }
    mod verifications {
        cache_testkit::verification_store_suite!(super::super::over_sqlite);
    }
    mod users {
        cache_testkit::user_cache_suite!(super::super::over_sqlite, authority);
    }
    mod lookups {
        cache_testkit::session_lookup_suite!(super::super::over_sqlite, authority);
    }
}

mod memory_over_postgres {
    mod sessions {
        cache_testkit::session_store_suite!(super::super::over_postgres);
    }
    mod verifications {
        cache_testkit::verification_store_suite!(super::super::over_postgres);
    }
    mod users {
        cache_testkit::user_cache_suite!(super::super::over_postgres, authority);
    }
    mod lookups {
        cache_testkit::session_lookup_suite!(super::super::over_postgres, authority);
    }
}
