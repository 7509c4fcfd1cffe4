//! [`with_conn!`]: runs one operation on a pooled connection of whichever dialect the
//! store was built for.
//!
//! The body is written once and compiled once per dialect: the dialect's schema module
//! (`crate::schema::pg` or `crate::schema::sqlite`) is glob-imported into its scope, so
//! `sessions::table`, `TsSql` and friends name that dialect's definitions, and `$conn`
//! is a `&mut` connection of that dialect.
//!
//! The connection is taken from the pool first (bounded by the pool's connection
//! timeout, reported as unavailable); then the body runs under the query timeout
//! (reported as a timeout). SQLite bodies run in a spawned task that owns its pooled
//! connection: a timed-out caller stops waiting, but the statement (which runs on a
//! blocking thread and cannot be interrupted) finishes and returns the connection to
//! the pool intact. A PostgreSQL body is simply dropped on timeout; diesel-async then
//! discards the connection if it was left inside a transaction.
//!
//! The body must only capture owned values (it is `async move` and, for SQLite,
//! `'static`), and evaluates to `SqlResult<T>`.

macro_rules! with_conn {
    ($store:expr, |$conn:ident| $body:expr) => {{
        let store: &$crate::store::SqlStore = $store;
        match store.pool() {
            #[cfg(feature = "postgres")]
            $crate::store::Pool::Pg(pool) => {
                #[allow(unused_imports)]
                use $crate::schema::pg::*;
                let result: $crate::error::SqlResult<_> = async {
                    let mut guard = pool.get().await.map_err(|e| store.pool_error(e))?;
                    let $conn: &mut ::diesel_async::AsyncPgConnection = &mut guard;
                    store.with_query_timeout(async move { $body }).await
                }
                .await;
                result.map_err(|e| store.fail(e))
            }
            #[cfg(feature = "sqlite")]
            $crate::store::Pool::Sqlite(pool) => {
                #[allow(unused_imports)]
                use $crate::schema::sqlite::*;
                let result: $crate::error::SqlResult<_> = async {
                    let mut guard = pool.get_owned().await.map_err(|e| store.pool_error(e))?;
                    let task = ::tokio::spawn(async move {
                        let $conn: &mut $crate::store::SqliteConn = &mut guard;
                        $body
                    });
                    store
                        .with_query_timeout(async move {
                            task.await.map_err($crate::error::SqlError::Task)?
                        })
                        .await
                }
                .await;
                result.map_err(|e| store.fail(e))
            }
        }
    }};
}
