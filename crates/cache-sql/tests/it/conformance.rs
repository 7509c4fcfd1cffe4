//! The cache-testkit conformance suite against SQLite (a temporary file per test) and
//! PostgreSQL (a fresh schema per test; skipped unless `DATABASE_URL` is set).

use std::sync::Arc;

use cache_core::ManualClock;
use cache_sql::SqlStore;

async fn sqlite_store(clock: Arc<ManualClock>) -> Option<SqlStore> {
    Some(cache_sql::testing::temp_sqlite(clock).await.expect("temporary SQLite store"))
}

async fn postgres_store(clock: Arc<ManualClock>) -> Option<SqlStore> {
    let url = cache_testkit::service_url("DATABASE_URL")?;
    Some(cache_sql::testing::isolated_postgres(&url, clock).await.expect("isolated Postgres store"))
}

mod sqlite {
    mod sessions {
        cache_testkit::session_store_suite!(super::super::sqlite_store);
    }
    mod verifications {
        cache_testkit::verification_store_suite!(super::super::sqlite_store);
    }
    mod users {
        cache_testkit::user_cache_suite!(super::super::sqlite_store, authority);
    }
    mod lookups {
        cache_testkit::session_lookup_suite!(super::super::sqlite_store, authority);
    }
    mod cleanup {
        cache_testkit::expired_cleanup_suite!(super::super::sqlite_store);
    }
}

mod postgres {
    mod sessions {
        cache_testkit::session_store_suite!(super::super::postgres_store);
    }
    mod verifications {
        cache_testkit::verification_store_suite!(super::super::postgres_store);
    }
    mod users {
        cache_testkit::user_cache_suite!(super::super::postgres_store, authority);
    }
    mod lookups {
        cache_testkit::session_lookup_suite!(super::super::postgres_store, authority);
    }
    mod cleanup {
        cache_testkit::expired_cleanup_suite!(super::super::postgres_store);
    }
}
