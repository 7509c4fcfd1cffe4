//! [`SqlStore`]: the pool, the connection set-up of each dialect, migrations, timeouts
//! and query accounting. The trait implementations live in the sibling modules.

use std::fmt;
#[cfg(feature = "sqlite")]
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cache_core::{SharedClock, StoreError};
use chrono::{DateTime, Utc};
#[cfg(feature = "postgres")]
use diesel::result::DatabaseErrorKind;
use diesel::result::Error as DieselError;
use diesel_async::AsyncConnection;
#[cfg(feature = "sqlite")]
use diesel_async::SimpleAsyncConnection;
#[cfg(feature = "postgres")]
use diesel_async::pooled_connection::PoolableConnection;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError, RecyclingMethod,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures::FutureExt;
#[cfg(feature = "sqlite")]
use futures::future::BoxFuture;

use crate::error::{SqlError, SqlResult};
use crate::schema::Ts;

#[cfg(feature = "postgres")]
const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
#[cfg(feature = "sqlite")]
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// Taken before the PostgreSQL migrations: an advisory lock whose two keys are a
/// constant of ours and the target schema, so that concurrent migrations of one schema
/// wait for each other and those of other schemas (tests) do not.
#[cfg(feature = "postgres")]
const MIGRATION_LOCK: &str = "SELECT pg_advisory_lock(1952807028, hashtext(current_schema()))";

/// Set on every pooled SQLite connection. `busy_timeout` comes first: switching the
/// journal mode takes a lock, and concurrent writers must wait for each other rather
/// than fail with "database is locked". WAL lets readers run beside the one writer.
#[cfg(feature = "sqlite")]
const SQLITE_PRAGMAS: &str = "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;";

/// The SQLite connection type of the pool.
#[cfg(feature = "sqlite")]
pub(crate) type SqliteConn =
    diesel_async::sync_connection_wrapper::SyncConnectionWrapper<diesel::SqliteConnection>;

/// Tuning of a [`SqlStore`].
#[derive(Debug, Clone)]
pub struct SqlConfig {
    /// Most connections the pool opens (a `sqlite::memory:` store always uses one).
    pub pool_size: u32,
    /// How long an operation waits for a pooled connection (which includes connecting)
    /// before failing as unavailable: what bounds every call while the database is down.
    pub connect_timeout: Duration,
    /// How long an operation may run once it has a connection before failing as a
    /// timeout.
    pub query_timeout: Duration,
}

impl Default for SqlConfig {
    fn default() -> Self {
        Self {
            pool_size: 16,
            connect_timeout: Duration::from_secs(2),
            query_timeout: Duration::from_secs(2),
        }
    }
}

/// Connections of a pool at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Connections open (idle or in use).
    pub connections: u32,
    /// Connections open and idle.
    pub idle: u32,
}

/// The connection pool of one dialect.
pub(crate) enum Pool {
    /// PostgreSQL through `AsyncPgConnection` (statements prepared and cached per
    /// connection by diesel-async).
    #[cfg(feature = "postgres")]
    Pg(bb8::Pool<AsyncDieselConnectionManager<diesel_async::AsyncPgConnection>>),
    /// SQLite through diesel-async's sync connection wrapper (blocking calls on tokio's
    /// blocking pool).
    #[cfg(feature = "sqlite")]
    Sqlite(bb8::Pool<AsyncDieselConnectionManager<SqliteConn>>),
}

/// The SQL tier, authoritative for accounts, sessions, verifications and revocations.
/// Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct SqlStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    backend: &'static str,
    /// The URL used to open connections outside the pool (PostgreSQL migrations).
    #[cfg(feature = "postgres")]
    url: String,
    clock: SharedClock,
    config: SqlConfig,
    queries: AtomicU64,
    queries_metric: metrics::Counter,
    last_connect_error: LastError,
    #[cfg(feature = "test-util")]
    fail_after_commit: std::sync::atomic::AtomicBool,
    /// Whatever must outlive the pool: the temporary directory of a test database
    /// (`crate::testing`). Declared after `pool` so that connections close before the
    /// directory goes. A `dyn Any`, so that the default build needs no `tempfile`.
    _keep_alive: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: never print it.
        f.debug_struct("SqlStore")
            .field("backend", &self.inner.backend)
            .field("pool", &self.pool_state())
            .finish_non_exhaustive()
    }
}

/// Where a URL points.
enum Target {
    #[cfg(feature = "postgres")]
    Postgres,
    #[cfg(feature = "sqlite")]
    SqliteFile(PathBuf),
    #[cfg(feature = "sqlite")]
    SqliteMemory,
}

impl Target {
    fn parse(url: &str) -> SqlResult<Self> {
        #[cfg(feature = "postgres")]
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Target::Postgres);
        }
        #[cfg(feature = "sqlite")]
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            return Ok(match path {
                ":memory:" => Target::SqliteMemory,
                "" => return Err(SqlError::UnsupportedUrl),
                path => Target::SqliteFile(PathBuf::from(path)),
            });
        }
        let _ = url;
        Err(SqlError::UnsupportedUrl)
    }
}

impl SqlStore {
    /// Opens a pool on `url` and checks that one connection can be made.
    ///
    /// `postgres://...` / `postgresql://...` select PostgreSQL (`AsyncPgConnection`);
    /// `sqlite://relative/or/absolute/path.db` (`sqlite:///abs/path.db` for an absolute
    /// path) or `sqlite::memory:` select SQLite (diesel-async's sync connection wrapper,
    /// with WAL, `busy_timeout` and foreign keys on every connection). The SQLite file and
    /// its parent directories are created when missing. An in-memory database lives in
    /// the pool's single connection.
    ///
    /// Fails as unavailable within `config.connect_timeout` when the database cannot be
    /// reached. Does not migrate: call [`SqlStore::migrate`].
    pub async fn connect(
        url: &str,
        config: SqlConfig,
        clock: SharedClock,
    ) -> Result<Self, StoreError> {
        let store = Self::build(url, config, clock, None).await?;
        store.check().await?;
        tracing::info!(backend = store.inner.backend, "SQL store connected");
        Ok(store)
    }

    pub(crate) async fn build(
        url: &str,
        config: SqlConfig,
        clock: SharedClock,
        keep_alive: Option<Box<dyn std::any::Any + Send + Sync>>,
    ) -> SqlResult<Self> {
        let last_connect_error = LastError::default();
        let (pool, backend) = match Target::parse(url)? {
            #[cfg(feature = "postgres")]
            Target::Postgres => {
                let mut manager_config = ManagerConfig::default();
                // A check-out looks at the connection's state only: a round trip per
                // check-out would double the latency of every lookup. A connection the
                // server closed is noticed here and replaced.
                manager_config.recycling_method =
                    RecyclingMethod::CustomFunction(Box::new(|conn| {
                        let broken = PoolableConnection::is_broken(conn);
                        async move { if broken { Err(closed_connection()) } else { Ok(()) } }
                            .boxed()
                    }));
                let manager = AsyncDieselConnectionManager::new_with_config(url, manager_config);
                (
                    Pool::Pg(pool_builder(&config, &last_connect_error).build_unchecked(manager)),
                    "postgres",
                )
            }
            #[cfg(feature = "sqlite")]
            Target::SqliteFile(path) => {
                create_parent_dir(&path).await?;
                let path = path.to_str().ok_or(SqlError::UnsupportedUrl)?;
                let manager = AsyncDieselConnectionManager::new_with_config(path, sqlite_config());
                (
                    Pool::Sqlite(
                        pool_builder(&config, &last_connect_error).build_unchecked(manager),
                    ),
                    "sqlite",
                )
            }
            #[cfg(feature = "sqlite")]
            Target::SqliteMemory => {
                // Each SQLite connection to ":memory:" is its own database: keep exactly
                // one, forever.
                let builder = pool_builder(&config, &last_connect_error)
                    .max_size(1)
                    .min_idle(Some(1))
                    .idle_timeout(None)
                    .max_lifetime(None);
                let manager =
                    AsyncDieselConnectionManager::new_with_config(":memory:", sqlite_config());
                (Pool::Sqlite(builder.build_unchecked(manager)), "sqlite")
            }
        };
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                backend,
                #[cfg(feature = "postgres")]
                url: url.to_owned(),
                clock,
                queries: AtomicU64::new(0),
                queries_metric: metrics::counter!("sql_queries_total", "backend" => backend),
                config,
                last_connect_error,
                #[cfg(feature = "test-util")]
                fail_after_commit: std::sync::atomic::AtomicBool::new(false),
                _keep_alive: keep_alive,
            }),
        })
    }

    /// Takes one connection from the pool, proving the database is reachable.
    async fn check(&self) -> SqlResult<()> {
        match &self.inner.pool {
            #[cfg(feature = "postgres")]
            Pool::Pg(pool) => pool.get().await.map(drop).map_err(|e| self.pool_error(e)),
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => pool.get().await.map(drop).map_err(|e| self.pool_error(e)),
        }
    }

    /// Applies the embedded migrations of the store's dialect that are not applied yet
    /// (idempotent). Safe to call from any tokio runtime, current-thread included: the
    /// synchronous migration harness runs on the blocking pool.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.inner.pool {
            #[cfg(feature = "postgres")]
            Pool::Pg(_) => self.migrate_postgres().await,
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => {
                // On a pooled connection, so that an in-memory database is the one
                // migrated.
                let mut conn = pool.get().await.map_err(|e| self.pool_error(e))?;
                conn.spawn_blocking(|conn| {
                    // BEGIN IMMEDIATE takes SQLite's write lock before the harness reads
                    // which migrations are applied, so processes starting at once on an
                    // empty file run them one after the other (the others wait under
                    // `busy_timeout`, then find nothing pending); the harness's own
                    // transactions become savepoints inside it.
                    conn.immediate_transaction(|conn| {
                        conn.run_pending_migrations(SQLITE_MIGRATIONS)
                            .map(drop)
                            .map_err(DieselError::QueryBuilderError)
                    })
                })
                .await
                .map_err(|e| SqlError::Migration(Box::new(e)))
            }
        };
        match &result {
            Ok(()) => tracing::info!(backend = self.inner.backend, "SQL migrations applied"),
            Err(e) => {
                tracing::error!(backend = self.inner.backend, error = %e, "SQL migrations failed")
            }
        }
        result.map_err(StoreError::from)
    }

    #[cfg(feature = "postgres")]
    async fn migrate_postgres(&self) -> SqlResult<()> {
        use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;

        // The harness is synchronous; AsyncConnectionWrapper blocks on the runtime's
        // handle to drive the async connection. That must happen on a blocking thread,
        // never on a worker of a (possibly current-thread) runtime.
        let url = self.inner.url.clone();
        let handle = tokio::runtime::Handle::current();
        let connect_timeout = self.inner.config.connect_timeout;
        tokio::task::spawn_blocking(move || -> SqlResult<()> {
            let _entered = handle.enter();
            let conn = handle
                .block_on(async {
                    tokio::time::timeout(
                        connect_timeout,
                        diesel_async::AsyncPgConnection::establish(&url),
                    )
                    .await
                })
                .map_err(|_| SqlError::PoolTimeout { timeout: connect_timeout, last: None })?
                .map_err(|e| SqlError::Connect(Box::new(e)))?;
            let mut conn: AsyncConnectionWrapper<diesel_async::AsyncPgConnection> = conn.into();
            // Instances starting at once on an empty database would otherwise all see
            // the same pending migrations and all but one fail on "already exists". The
            // session-level lock serializes them per schema (the key names the schema the
            // migrations go to) and is released when this connection closes, whatever
            // happens.
            diesel::connection::SimpleConnection::batch_execute(&mut conn, MIGRATION_LOCK)
                .map_err(SqlError::Query)?;
            conn.run_pending_migrations(PG_MIGRATIONS).map(drop).map_err(SqlError::Migration)
        })
        .await
        .map_err(SqlError::Task)?
    }

    /// The URL of a PostgreSQL store (for connections outside the pool).
    #[cfg(feature = "postgres")]
    pub(crate) fn postgres_url(&self) -> Option<&str> {
        match self.inner.pool {
            Pool::Pg(_) => Some(&self.inner.url),
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => None,
        }
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.inner.config.connect_timeout
    }

    /// Test-only failpoint (feature `test-util`, never in the default build): while on,
    /// `delete` and `delete_user_sessions` commit their transaction and then fail, as if
    /// the instance died between its SQL commit and its cache writes.
    #[cfg(feature = "test-util")]
    pub fn fail_after_revocation_commit(&self, on: bool) {
        self.inner.fail_after_commit.store(on, Ordering::SeqCst);
    }

    /// The failpoint's check (see `fail_after_revocation_commit`); a no-op without
    /// `test-util`.
    #[inline]
    pub(crate) fn after_revocation_commit(&self) -> Result<(), StoreError> {
        #[cfg(feature = "test-util")]
        if self.inner.fail_after_commit.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("failpoint: died after the revocation commit"));
        }
        Ok(())
    }

    /// `"postgres"` or `"sqlite"`.
    pub fn backend(&self) -> &'static str {
        self.inner.backend
    }

    /// The round-trip time of `SELECT 1` (including the wait for a connection).
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        // Scoped: `RunQueryDsl` is implemented for every type, and its `load` would
        // shadow `AtomicU64::load` elsewhere in this module.
        use diesel_async::RunQueryDsl;

        let start = Instant::now();
        self.count(1);
        with_conn!(self, |conn| {
            diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
                .execute(conn)
                .await?;
            Ok(())
        })?;
        Ok(start.elapsed())
    }

    /// Connections open and idle in the pool.
    pub fn pool_state(&self) -> PoolState {
        let state = match &self.inner.pool {
            #[cfg(feature = "postgres")]
            Pool::Pg(pool) => pool.state(),
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => pool.state(),
        };
        PoolState { connections: state.connections, idle: state.idle_connections }
    }

    /// Statements sent to the database so far by this store and its clones (also
    /// counted in the `sql_queries_total` metric). Transaction control and locks are not
    /// counted; each data statement is.
    pub fn query_count(&self) -> u64 {
        self.inner.queries.load(Ordering::Relaxed)
    }

    pub(crate) fn count(&self, statements: u64) {
        self.inner.queries.fetch_add(statements, Ordering::Relaxed);
        self.inner.queries_metric.increment(statements);
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    pub(crate) fn now_ts(&self) -> Ts {
        Ts(self.now())
    }

    pub(crate) fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Runs `fut` under the query timeout.
    pub(crate) async fn with_query_timeout<T>(
        &self,
        fut: impl Future<Output = SqlResult<T>>,
    ) -> SqlResult<T> {
        let limit = self.inner.config.query_timeout;
        tokio::time::timeout(limit, fut).await.unwrap_or(Err(SqlError::Timeout(limit)))
    }

    /// Converts a failure to get a pooled connection.
    pub(crate) fn pool_error(&self, e: bb8::RunError<PoolError>) -> SqlError {
        match e {
            bb8::RunError::TimedOut => SqlError::PoolTimeout {
                timeout: self.inner.config.connect_timeout,
                last: self.inner.last_connect_error.get(),
            },
            bb8::RunError::User(PoolError::ConnectionError(e)) => SqlError::Connect(Box::new(e)),
            bb8::RunError::User(PoolError::QueryError(e)) => SqlError::Query(e),
        }
    }

    /// Logs a failed operation (at debug: the caller decides what it means) and
    /// converts it.
    pub(crate) fn fail(&self, e: SqlError) -> SqlError {
        tracing::debug!(backend = self.inner.backend, error = %e, "SQL operation failed");
        e
    }
}

fn pool_builder<M: bb8::ManageConnection<Error = PoolError>>(
    config: &SqlConfig,
    last_connect_error: &LastError,
) -> bb8::Builder<M> {
    bb8::Pool::builder()
        .max_size(config.pool_size.max(1))
        .connection_timeout(config.connect_timeout)
        // The check is the manager's recycling method: for PostgreSQL a look at the
        // connection's state, without a round trip (see `build`); none for SQLite.
        .test_on_check_out(true)
        .error_sink(Box::new(last_connect_error.clone()))
}

#[cfg(feature = "postgres")]
fn closed_connection() -> DieselError {
    DieselError::DatabaseError(
        DatabaseErrorKind::ClosedConnection,
        Box::new(String::from("connection closed by the server")),
    )
}

#[cfg(feature = "sqlite")]
fn sqlite_config() -> ManagerConfig<SqliteConn> {
    let mut config = ManagerConfig::<SqliteConn>::default();
    config.custom_setup = Box::new(|url: &str| -> BoxFuture<'_, _> {
        async move {
            let mut conn = SqliteConn::establish(url).await?;
            conn.batch_execute(SQLITE_PRAGMAS)
                .await
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
            Ok(conn)
        }
        .boxed()
    });
    // An embedded database does not drop connections: no check on check-out.
    config.recycling_method = RecyclingMethod::Fast;
    config
}

/// Creates the directory of a SQLite file (sqlite itself creates only the file).
#[cfg(feature = "sqlite")]
async fn create_parent_dir(path: &Path) -> SqlResult<()> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || std::fs::create_dir_all(dir))
        .await
        .map_err(SqlError::Task)?
        .map_err(SqlError::Io)
}

/// Keeps the last connection error the pool saw, so that a pool timeout can say why.
#[derive(Debug, Clone, Default)]
struct LastError(Arc<Mutex<Option<String>>>);

impl LastError {
    fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl bb8::ErrorSink<PoolError> for LastError {
    fn sink(&self, error: PoolError) {
        tracing::debug!(error = %error, "SQL connection attempt failed");
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
    }

    fn boxed_clone(&self) -> Box<dyn bb8::ErrorSink<PoolError>> {
        Box::new(self.clone())
    }
}
