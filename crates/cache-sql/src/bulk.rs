//! Bulk loading for seeding and benchmarks: many accounts or sessions in multi-row
//! INSERTs, thousands of rows per statement, one transaction per call.
//!
//! These bypass the per-row checks of the store traits on purpose (no revocation journal
//! lookup, no per-user lock) and the query timeout (a large batch takes longer than one
//! lookup may): they are meant for an empty or freshly seeded database, as
//! `cargo xtask seed` uses them, never for serving traffic. A duplicate key fails the
//! whole call (`Conflict(Exists)`) and rolls it back.

use cache_core::{NewUser, Session, StoreError};

use crate::error::SqlError;
use crate::schema::Ts;
use crate::store::{Pool, SqlStore};

/// Rows per INSERT statement. Sessions bind 9 parameters a row, accounts 7: 3,000 rows
/// stay under both SQLite's 32,766 and PostgreSQL's 65,535 bind parameters.
pub const BULK_ROWS_PER_STATEMENT: usize = 3_000;

/// One `users` row as owned bind values.
type AccountRow = (i64, String, String, bool, Option<String>, Ts, Ts);

/// One `sessions` row as owned bind values.
type SessionRowValues = (Vec<u8>, i64, Ts, Ts, Ts, Ts, Option<String>, Option<String>, i64);

/// Inserts `$rows` in a transaction, `BULK_ROWS_PER_STATEMENT` rows per statement, into
/// `$table`, each row mapped to its insertable tuple by `$map` (written once, compiled
/// against each dialect's schema). PostgreSQL runs on the async connection; SQLite on
/// the blocking pool through the synchronous connection, whose batch insert is the one
/// that renders a multi-row `VALUES` list.
macro_rules! bulk_insert {
    ($store:expr, $rows:expr, $table:ident, $map:expr) => {{
        let store: &SqlStore = $store;
        let rows = $rows;
        let result: Result<usize, SqlError> = match store.pool() {
            #[cfg(feature = "postgres")]
            Pool::Pg(pool) => {
                use crate::schema::pg::*;
                use diesel_async::{AsyncConnection as _, RunQueryDsl as _};
                let mut conn = pool.get().await.map_err(|e| store.pool_error(e))?;
                conn.transaction::<_, SqlError, _>(async move |conn| {
                    let mut inserted = 0;
                    for chunk in rows.chunks(BULK_ROWS_PER_STATEMENT) {
                        let values: Vec<_> = chunk.iter().map($map).collect();
                        inserted +=
                            diesel::insert_into($table::table).values(values).execute(conn).await?;
                    }
                    Ok(inserted)
                })
                .await
            }
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pool) => {
                use crate::schema::sqlite::*;
                let mut conn = pool.get_owned().await.map_err(|e| store.pool_error(e))?;
                conn.spawn_blocking(move |conn| {
                    use diesel::{Connection as _, RunQueryDsl as _};
                    conn.transaction(|conn| {
                        let mut inserted = 0;
                        for chunk in rows.chunks(BULK_ROWS_PER_STATEMENT) {
                            let values: Vec<_> = chunk.iter().map($map).collect();
                            inserted +=
                                diesel::insert_into($table::table).values(values).execute(conn)?;
                        }
                        Ok(inserted)
                    })
                })
                .await
                .map_err(SqlError::Query)
            }
        };
        result.map_err(|e| store.fail(e))
    }};
}

impl SqlStore {
    /// Inserts `accounts` (profile and password hash each) in one transaction, in
    /// statements of [`BULK_ROWS_PER_STATEMENT`] rows. Returns the number of rows
    /// inserted. For seeding: no other check than the database's own constraints.
    pub async fn insert_accounts_bulk(&self, accounts: &[NewUser]) -> Result<u64, StoreError> {
        let now = self.now_ts();
        let rows: Vec<AccountRow> = accounts
            .iter()
            .map(|a| {
                let u = &a.user;
                (
                    u.id.get(),
                    u.name.clone(),
                    u.email.clone(),
                    u.email_verified,
                    Some(a.password_hash.clone()),
                    Ts(u.created_at),
                    now,
                )
            })
            .collect();
        self.count(statements(rows.len()));
        let inserted = bulk_insert!(self, rows, users, |(
            id,
            name,
            email,
            verified,
            hash,
            created,
            updated,
        ): &AccountRow| {
            use diesel::ExpressionMethods as _;
            (
                users::id.eq(*id),
                users::name.eq(name.as_str()),
                users::email.eq(email.as_str()),
                users::email_verified.eq(*verified),
                users::password_hash.eq(hash.as_deref()),
                users::created_at.eq(*created),
                users::updated_at.eq(*updated),
            )
        })?;
        Ok(inserted as u64)
    }

    /// Inserts `sessions` in one transaction, in statements of
    /// [`BULK_ROWS_PER_STATEMENT`] rows. Returns the number of rows inserted. For
    /// seeding: the revocation journal is not consulted.
    pub async fn insert_sessions_bulk(&self, sessions: &[Session]) -> Result<u64, StoreError> {
        let rows: Vec<SessionRowValues> = sessions
            .iter()
            .map(|s| {
                (
                    s.key.hash.as_bytes().to_vec(),
                    s.key.user.get(),
                    Ts(s.created_at),
                    Ts(s.renewed_at),
                    Ts(s.expires_at),
                    Ts(s.absolute_expires_at),
                    s.user_agent.clone(),
                    s.ip.map(|ip| ip.to_string()),
                    s.version,
                )
            })
            .collect();
        self.count(statements(rows.len()));
        let inserted = bulk_insert!(self, rows, sessions, |(
            hash,
            user,
            created,
            renewed,
            expires,
            absolute,
            ua,
            ip,
            v,
        ): &SessionRowValues| {
            use diesel::ExpressionMethods as _;
            (
                sessions::token_hash.eq(hash.as_slice()),
                sessions::user_id.eq(*user),
                sessions::created_at.eq(*created),
                sessions::renewed_at.eq(*renewed),
                sessions::expires_at.eq(*expires),
                sessions::absolute_expires_at.eq(*absolute),
                sessions::user_agent.eq(ua.as_deref()),
                sessions::ip.eq(ip.as_deref()),
                sessions::version.eq(*v),
            )
        })?;
        Ok(inserted as u64)
    }
}

/// INSERT statements needed for `rows` rows.
fn statements(rows: usize) -> u64 {
    u64::try_from(rows.div_ceil(BULK_ROWS_PER_STATEMENT)).unwrap_or(u64::MAX)
}

#[cfg(all(test, feature = "test-util", feature = "sqlite"))]
mod tests {
    use cache_core::token::Secret;
    use cache_core::{
        AccountStore, ManualClock, SessionKey, SessionStore, SharedClock, User, UserId,
    };
    use chrono::Duration;

    use super::*;

    fn data(clock: &SharedClock, n: usize) -> (Vec<NewUser>, Vec<Session>) {
        let now = clock.now();
        let mut users = Vec::new();
        let mut sessions = Vec::new();
        for i in 0..n {
            let id = UserId::random().unwrap();
            users.push(NewUser {
                user: User {
                    id,
                    name: format!("user {i}"),
                    email: format!("user{i}-{id}@bulk.example"),
                    email_verified: true,
                    created_at: now,
                },
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_owned(),
            });
            sessions.push(Session {
                key: SessionKey { user: id, hash: Secret::generate().unwrap().hash() },
                created_at: now,
                renewed_at: now,
                expires_at: now + Duration::days(7),
                absolute_expires_at: now + Duration::days(30),
                user_agent: (i % 2 == 0).then(|| "bench".to_owned()),
                ip: (i % 3 == 0).then(|| "127.0.0.1".parse().unwrap()),
                version: 0,
            });
        }
        (users, sessions)
    }

    async fn round_trip(store: SqlStore, clock: SharedClock) {
        // More than one statement's worth, so the chunking is exercised.
        let n = BULK_ROWS_PER_STATEMENT + 17;
        let (users, sessions) = data(&clock, n);
        assert_eq!(store.insert_accounts_bulk(&users).await.unwrap(), n as u64);
        assert_eq!(store.insert_sessions_bulk(&sessions).await.unwrap(), n as u64);
        for i in [0, 1, 2, n - 1] {
            assert_eq!(store.get(&sessions[i].key).await.unwrap().as_ref(), Some(&sessions[i]));
            let creds = store.credentials_by_email(&users[i].user.email).await.unwrap().unwrap();
            assert_eq!(creds.user, users[i].user);
        }
        // A duplicate fails the whole call and leaves nothing of it behind.
        let (_, mut more) = data(&clock, 3);
        more.push(sessions[5].clone());
        assert!(store.insert_sessions_bulk(&more).await.is_err());
        assert_eq!(store.get(&more[0].key).await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_inserts_round_trip_on_sqlite() {
        let clock: SharedClock = ManualClock::starting_now();
        let store = crate::testing::temp_sqlite(clock.clone()).await.unwrap();
        round_trip(store, clock).await;
    }

    #[cfg(feature = "postgres")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_inserts_round_trip_on_postgres() {
        let Some(url) = cache_testkit::service_url("DATABASE_URL") else { return };
        let clock: SharedClock = ManualClock::starting_now();
        let store = crate::testing::isolated_postgres(&url, clock.clone()).await.unwrap();
        round_trip(store, clock).await;
    }
}
