//! Isolated stores for tests (feature `test-util`): each test gets its own PostgreSQL
//! schema or its own SQLite file, so test binaries running at once, or one after the
//! other, never see each other's rows.

use cache_core::{SharedClock, StoreError};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};

use crate::store::{SqlConfig, SqlStore};

/// Test schemas are named `t_<unix seconds at creation>_<random hex>`.
const SCHEMA_PREFIX: &str = "t_";

/// Schemas of test runs older than this are dropped by the next run.
const STALE_AFTER_SECS: i64 = 3600;

/// Small pools: many test stores share one server's connection limit.
fn test_config() -> SqlConfig {
    SqlConfig { pool_size: 4, ..SqlConfig::default() }
}

fn random_hex() -> Result<String, StoreError> {
    let mut bytes = [0u8; 8];
    cache_core::token::fill_random(&mut bytes).map_err(StoreError::unavailable)?;
    Ok(hex::encode(bytes))
}

#[derive(QueryableByName)]
struct Schema {
    #[diesel(sql_type = Text)]
    nspname: String,
}

#[derive(QueryableByName)]
struct Epoch {
    #[diesel(sql_type = BigInt)]
    secs: i64,
}

/// A store on a fresh, migrated schema `t_<secs>_<random>` of the PostgreSQL database
/// at `base_url`, selected through the connection URL
/// (`options=-csearch_path%3D...`). Drops test schemas older than an hour, left by
/// earlier runs.
pub async fn isolated_postgres(base_url: &str, clock: SharedClock) -> Result<SqlStore, StoreError> {
    isolated_postgres_with(base_url, test_config(), clock).await
}

/// [`isolated_postgres`] with a given configuration (tests of timeouts and pools).
pub async fn isolated_postgres_with(
    base_url: &str,
    config: SqlConfig,
    clock: SharedClock,
) -> Result<SqlStore, StoreError> {
    let url = empty_postgres_schema(base_url, clock.clone()).await?;
    let store = SqlStore::connect(&url, config, clock).await?;
    store.migrate().await?;
    Ok(store)
}

/// The URL of a fresh, empty (not migrated) schema `t_<secs>_<random>` of the
/// PostgreSQL database at `base_url`, selected through the URL
/// (`options=-csearch_path%3D...`): for tests that start several instances on one
/// database, or that migrate themselves. Drops test schemas older than an hour, left by
/// earlier runs.
pub async fn empty_postgres_schema(
    base_url: &str,
    clock: SharedClock,
) -> Result<String, StoreError> {
    let admin =
        SqlStore::connect(base_url, SqlConfig { pool_size: 1, ..SqlConfig::default() }, clock)
            .await?;
    // The server's clock, not the (manual) test clock, dates the schemas.
    let (now, stale) = with_conn!(&admin, |conn| {
        let now = diesel::sql_query("SELECT CAST(EXTRACT(EPOCH FROM now()) AS BIGINT) AS secs")
            .get_result::<Epoch>(conn)
            .await?
            .secs;
        let schemas = diesel::sql_query(
            "SELECT nspname::text AS nspname FROM pg_namespace WHERE nspname LIKE 't\\_%'",
        )
        .load::<Schema>(conn)
        .await?;
        let stale: Vec<String> = schemas
            .into_iter()
            .map(|s| s.nspname)
            .filter(|name| schema_created(name).is_some_and(|t| t < now - STALE_AFTER_SECS))
            .collect();
        Ok((now, stale))
    })?;
    for name in stale {
        // Another binary may be dropping it too: a failure here is not the test's.
        let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
        if let Err(e) = with_conn!(&admin, |conn| Ok(conn.batch_execute(&sql).await?)) {
            tracing::debug!(schema = %name, error = %e, "could not drop a stale test schema");
        }
    }
    let schema = format!("{SCHEMA_PREFIX}{now}_{}", random_hex()?);
    let sql = format!("CREATE SCHEMA \"{schema}\"");
    with_conn!(&admin, |conn| Ok(conn.batch_execute(&sql).await?))?;
    drop(admin);

    let separator = if base_url.contains('?') { '&' } else { '?' };
    Ok(format!("{base_url}{separator}options=-csearch_path%3D{schema}"))
}

/// Runs raw SQL statements on `store`: for tests that plant rows the store itself would
/// never write (corrupt data, rows of an older version).
pub async fn execute(store: &SqlStore, sql: &str) -> Result<(), StoreError> {
    let sql = sql.to_owned();
    with_conn!(store, |conn| Ok(conn.batch_execute(&sql).await?))?;
    Ok(())
}

/// Every row of `security_events`, each as one text of all its columns joined by `|`:
/// for tests that check what the event log stores (never a secret).
pub async fn security_event_rows(store: &SqlStore) -> Result<Vec<String>, StoreError> {
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text)]
        line: String,
    }
    let rows = with_conn!(store, |conn| {
        Ok(diesel::sql_query(
            "SELECT CAST(id AS TEXT) || '|' || CAST(user_id AS TEXT) || '|' || kind || '|' \
             || CAST(at AS TEXT) || '|' || COALESCE(ip, '') || '|' || COALESCE(device, '') \
             || '|' || COALESCE(device_key, '') AS line FROM security_events ORDER BY id",
        )
        .load::<Line>(conn)
        .await?)
    })?;
    Ok(rows.into_iter().map(|r| r.line).collect())
}

/// The creation time encoded in a test schema's name.
fn schema_created(name: &str) -> Option<i64> {
    let rest = name.strip_prefix(SCHEMA_PREFIX)?;
    let (secs, random) = rest.split_once('_')?;
    (random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| secs.parse().ok())
        .flatten()
}

/// A store on a fresh, migrated SQLite file in a new directory of the system's temp
/// dir, removed when the last clone of the store is dropped.
pub async fn temp_sqlite(clock: SharedClock) -> Result<SqlStore, StoreError> {
    let dir = tempfile::TempDir::with_prefix("cache-sql-test-").map_err(StoreError::unavailable)?;
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    let store = SqlStore::build(&url, test_config(), clock, Some(Box::new(dir))).await?;
    store.migrate().await?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_carry_their_age() {
        assert_eq!(schema_created("t_1700000000_0123456789abcdef"), Some(1_700_000_000));
        for other in ["t_", "t_abc_0123456789abcdef", "t_1700000000_short", "tx_1_0123456789abcdef"]
        {
            assert_eq!(schema_created(other), None, "{other}");
        }
    }
}
