//! The integration tests of `cache-sql`: the conformance suite on SQLite and PostgreSQL, block lists, the security event log, the journal follower and SQL specifics.
//!
//! One test binary for the crate (one link, one process); each module is a former test
//! file, and the helpers they share are modules of this binary.

/// Runs each named `async fn(&SqlStore, &ManualClock)` of the calling module as two
/// tests: on a fresh SQLite file and on an isolated PostgreSQL schema (`DATABASE_URL`).
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let clock = cache_testkit::new_clock();
                    let store = cache_sql::testing::temp_sqlite(clock.clone()).await.unwrap();
                    super::$name(&store, &clock).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(url) = cache_testkit::service_url("DATABASE_URL") else { return };
                    let clock = cache_testkit::new_clock();
                    let store =
                        cache_sql::testing::isolated_postgres(&url, clock.clone()).await.unwrap();
                    super::$name(&store, &clock).await;
                }
            )*
        }
    };
}

mod blocks;
mod conformance;
mod events;
mod follow;
mod sql;
mod states;
