//! Sessions, expired-data cleanup and the revocation journal on SQL.

use async_trait::async_trait;
use cache_core::{
    Conflict, ExpiredCleanup, JournalEntry, Revocation, RevocationJournal, Session, SessionKey,
    SessionStore, SessionWithUser, StoreError, StoreResult, TokenHash, User, UserId,
};
use chrono::{DateTime, Utc};
use diesel::dsl::{case_when, exists, not};
use diesel::sql_types::{BigInt, Binary, Nullable, Text};
use diesel::{
    BoolExpressionMethods, ExpressionMethods, IntoSql, JoinOnDsl, NullableExpressionMethods,
    OptionalExtension, QueryDsl, QueryResult,
};
use diesel_async::{AsyncConnection, RunQueryDsl};

use crate::TIER;
use crate::error::{SqlError, SqlResult};
use crate::rows::{
    RevocationRow, SessionRow, UserRow, revocation_columns, session_columns, user_columns,
};
use crate::schema::Ts;
use crate::store::SqlStore;

/// What the write paths of one dialect need beyond the query builder.
pub(crate) trait Dialect {
    /// Serializes the revocations and cache fills of one user until the end of the
    /// current transaction. PostgreSQL needs it: under READ COMMITTED a fill that checked
    /// the journal before a concurrent revocation committed could re-insert the session
    /// right after the revocation deleted it. SQLite runs one writer at a time already.
    fn lock_user(&mut self, user: i64) -> impl Future<Output = QueryResult<()>> + Send;
}

#[cfg(feature = "postgres")]
impl Dialect for diesel_async::AsyncPgConnection {
    async fn lock_user(&mut self, user: i64) -> QueryResult<()> {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(user)
            .execute(self)
            .await
            .map(drop)
    }
}

#[cfg(feature = "sqlite")]
impl Dialect for crate::store::SqliteConn {
    async fn lock_user(&mut self, _user: i64) -> QueryResult<()> {
        Ok(())
    }
}

/// The journal rows that cover the session of `$p` (a [`SessionParams`]): this very
/// session was deleted, or all of its user's sessions created up to then except `keep`.
macro_rules! revoked {
    ($p:expr) => {
        session_revocations::table
            .select(session_revocations::id)
            .filter(session_revocations::user_id.eq($p.user))
            .filter(
                session_revocations::token_hash.eq($p.hash.clone()).or(
                    session_revocations::token_hash
                        .is_null()
                        .and(session_revocations::revoked_at.ge($p.created_at))
                        .and(
                            session_revocations::keep_hash
                                .is_null()
                                .or(session_revocations::keep_hash.ne($p.hash.clone())),
                        ),
                ),
            )
    };
}

/// A session's columns as owned bind values.
struct SessionParams {
    hash: Vec<u8>,
    user: i64,
    created_at: Ts,
    renewed_at: Ts,
    expires_at: Ts,
    absolute_expires_at: Ts,
    user_agent: Option<String>,
    ip: Option<String>,
    version: i64,
}

impl From<&Session> for SessionParams {
    fn from(s: &Session) -> Self {
        Self {
            hash: s.key.hash.as_bytes().to_vec(),
            user: s.key.user.get(),
            created_at: Ts(s.created_at),
            renewed_at: Ts(s.renewed_at),
            expires_at: Ts(s.expires_at),
            absolute_expires_at: Ts(s.absolute_expires_at),
            user_agent: s.user_agent.clone(),
            ip: s.ip.map(|ip| ip.to_string()),
            version: s.version,
        }
    }
}

/// The outcome of the compare-and-set UPDATE of `extend`.
enum Extended {
    Done(SessionRow),
    /// Nothing updated; whether a live row with another version exists.
    NotUpdated {
        other_version: bool,
    },
}

impl SqlStore {
    /// The most recently renewed live sessions, for warming the caches at start-up.
    pub async fn recent_sessions(&self, limit: usize) -> Result<Vec<Session>, StoreError> {
        let now = self.now_ts();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.count(1);
        let rows = with_conn!(self, |conn| {
            Ok(sessions::table
                .select(session_columns!())
                .filter(sessions::expires_at.gt(now))
                .filter(sessions::absolute_expires_at.gt(now))
                .order((sessions::renewed_at.desc(), sessions::token_hash))
                .limit(limit)
                .load::<SessionRow>(conn)
                .await?)
        })?;
        Ok(crate::rows::sessions(rows)?)
    }

    /// Deletes journal rows older than `older_than`; returns how many. Keep the journal
    /// longer than any cache can hold a stale session (the Redis replay window).
    pub async fn prune_journal(&self, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        let cutoff = Ts(older_than);
        self.count(1);
        let n = with_conn!(self, |conn| {
            Ok(diesel::delete(
                session_revocations::table.filter(session_revocations::revoked_at.lt(cutoff)),
            )
            .execute(conn)
            .await?)
        })?;
        Ok(n as u64)
    }
}

#[async_trait]
impl cache_core::SessionLookup for SqlStore {
    /// One statement: the session row, with exactly the filters of
    /// [`SessionStore::get`], LEFT JOINed with its user's profile columns (a user
    /// this store does not know gives `user: None`).
    async fn get_with_user(&self, key: &SessionKey) -> StoreResult<Option<SessionWithUser>> {
        let (hash, user, now) = (key.hash.as_bytes().to_vec(), key.user.get(), self.now_ts());
        self.count(1);
        let row = with_conn!(self, |conn| {
            Ok(sessions::table
                .left_join(users::table.on(users::id.eq(sessions::user_id)))
                .select((session_columns!(), user_columns!().nullable()))
                .filter(sessions::token_hash.eq(hash))
                .filter(sessions::user_id.eq(user))
                .filter(sessions::expires_at.gt(now))
                .filter(sessions::absolute_expires_at.gt(now))
                .get_result::<(SessionRow, Option<UserRow>)>(conn)
                .await
                .optional()?)
        })?;
        let Some((session, user)) = row else { return Ok(None) };
        Ok(Some(SessionWithUser {
            session: Session::try_from(session)?,
            user: user.map(User::try_from).transpose()?,
        }))
    }
}

#[async_trait]
impl SessionStore for SqlStore {
    fn tier(&self) -> &'static str {
        TIER
    }

    async fn create(&self, session: &Session) -> StoreResult<()> {
        let p = SessionParams::from(session);
        self.count(1);
        with_conn!(self, |conn| {
            diesel::insert_into(sessions::table)
                .values((
                    sessions::token_hash.eq(p.hash),
                    sessions::user_id.eq(p.user),
                    sessions::created_at.eq(p.created_at),
                    sessions::renewed_at.eq(p.renewed_at),
                    sessions::expires_at.eq(p.expires_at),
                    sessions::absolute_expires_at.eq(p.absolute_expires_at),
                    sessions::user_agent.eq(p.user_agent),
                    sessions::ip.eq(p.ip),
                    sessions::version.eq(p.version),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })?;
        Ok(())
    }

    async fn get(&self, key: &SessionKey) -> StoreResult<Option<Session>> {
        let (hash, user, now) = (key.hash.as_bytes().to_vec(), key.user.get(), self.now_ts());
        self.count(1);
        let row = with_conn!(self, |conn| {
            Ok(sessions::table
                .select(session_columns!())
                .filter(sessions::token_hash.eq(hash))
                .filter(sessions::user_id.eq(user))
                .filter(sessions::expires_at.gt(now))
                .filter(sessions::absolute_expires_at.gt(now))
                .get_result::<SessionRow>(conn)
                .await
                .optional()?)
        })?;
        Ok(row.map(Session::try_from).transpose()?)
    }

    async fn put(&self, session: &Session) -> StoreResult<bool> {
        let p = SessionParams::from(session);
        let (stored, statements) = with_conn!(self, |conn| {
            conn.transaction::<_, SqlError, _>(async move |conn| {
                conn.lock_user(p.user).await?;
                // Both statements write first and check the journal in the same
                // statement: each is atomic on its own (SQLite never has to upgrade a
                // read lock), and the PostgreSQL lock orders them against revocations.
                let inserted = diesel::insert_into(sessions::table)
                    .values(
                        diesel::select((
                            p.hash.clone().into_sql::<Binary>(),
                            p.user.into_sql::<BigInt>(),
                            p.created_at.into_sql::<TsSql>(),
                            p.renewed_at.into_sql::<TsSql>(),
                            p.expires_at.into_sql::<TsSql>(),
                            p.absolute_expires_at.into_sql::<TsSql>(),
                            p.user_agent.clone().into_sql::<Nullable<Text>>(),
                            p.ip.clone().into_sql::<Nullable<Text>>(),
                            p.version.into_sql::<BigInt>(),
                        ))
                        .filter(not(exists(revoked!(p)))),
                    )
                    .into_columns(session_columns!())
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
                if inserted > 0 {
                    return Ok((true, 1));
                }
                // Present already: only a newer snapshot of the same user's session
                // replaces it.
                let updated = diesel::update(
                    sessions::table
                        .filter(sessions::token_hash.eq(p.hash.clone()))
                        .filter(sessions::user_id.eq(p.user))
                        .filter(sessions::version.lt(p.version))
                        .filter(not(exists(revoked!(p)))),
                )
                .set((
                    sessions::renewed_at.eq(p.renewed_at),
                    sessions::expires_at.eq(p.expires_at),
                    sessions::absolute_expires_at.eq(p.absolute_expires_at),
                    sessions::user_agent.eq(p.user_agent.clone()),
                    sessions::ip.eq(p.ip.clone()),
                    sessions::version.eq(p.version),
                ))
                .execute(conn)
                .await?;
                Ok((updated > 0, 2))
            })
            .await
        })?;
        self.count(statements);
        Ok(stored)
    }

    async fn extend(
        &self,
        key: &SessionKey,
        expected_version: i64,
        new_expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<Session>> {
        let (hash, user, now) = (key.hash.as_bytes().to_vec(), key.user.get(), self.now_ts());
        let new_expires_at = Ts(new_expires_at);
        self.count(1);
        let outcome = with_conn!(self, |conn| {
            let updated = diesel::update(
                sessions::table
                    .filter(sessions::token_hash.eq(hash.clone()))
                    .filter(sessions::user_id.eq(user))
                    .filter(sessions::version.eq(expected_version))
                    .filter(sessions::expires_at.gt(now))
                    .filter(sessions::absolute_expires_at.gt(now)),
            )
            .set((
                sessions::expires_at.eq(case_when::<_, _, TsSql>(
                    sessions::absolute_expires_at.lt(new_expires_at),
                    sessions::absolute_expires_at,
                )
                .otherwise(new_expires_at)),
                sessions::renewed_at.eq(now),
                sessions::version.eq(sessions::version + 1),
            ))
            .returning(session_columns!())
            .get_result::<SessionRow>(conn)
            .await
            .optional()?;
            if let Some(row) = updated {
                return Ok(Extended::Done(row));
            }
            // Tell a lost compare-and-set from a session that is gone.
            let live = sessions::table
                .select(sessions::version)
                .filter(sessions::token_hash.eq(hash))
                .filter(sessions::user_id.eq(user))
                .filter(sessions::expires_at.gt(now))
                .filter(sessions::absolute_expires_at.gt(now))
                .get_result::<i64>(conn)
                .await
                .optional()?;
            Ok(Extended::NotUpdated { other_version: live.is_some() })
        })?;
        match outcome {
            Extended::Done(row) => Ok(Some(Session::try_from(row)?)),
            Extended::NotUpdated { other_version } => {
                self.count(1);
                if other_version { Err(StoreError::Conflict(Conflict::Version)) } else { Ok(None) }
            }
        }
    }

    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        let (hash, user, now) = (key.hash.as_bytes().to_vec(), key.user.get(), self.now_ts());
        self.count(2);
        let deleted = with_conn!(self, |conn| {
            conn.transaction::<_, SqlError, _>(async move |conn| {
                conn.lock_user(user).await?;
                let n = diesel::delete(
                    sessions::table
                        .filter(sessions::token_hash.eq(hash.clone()))
                        .filter(sessions::user_id.eq(user)),
                )
                .execute(conn)
                .await?;
                // Nothing to journal when no session was here: the session never
                // existed (a made-up token, which must cost no state anywhere), or
                // its deletion was journaled when it happened. Caches only ever hold
                // sessions this table held.
                if n == 0 {
                    return Ok(false);
                }
                diesel::insert_into(session_revocations::table)
                    .values((
                        session_revocations::user_id.eq(user),
                        session_revocations::token_hash.eq(Some(hash)),
                        session_revocations::revoked_at.eq(now),
                    ))
                    .execute(conn)
                    .await?;
                Ok(true)
            })
            .await
        })?;
        self.after_revocation_commit()?;
        Ok(deleted)
    }

    async fn delete_user_sessions(
        &self,
        user: UserId,
        keep: Option<TokenHash>,
    ) -> StoreResult<u64> {
        let (user, now) = (user.get(), self.now_ts());
        let keep = keep.map(|k| k.as_bytes().to_vec());
        // No hash is empty, so `token_hash <> x''` keeps no row when there is no `keep`.
        let keep_or_empty = keep.clone().unwrap_or_default();
        self.count(2);
        let deleted = with_conn!(self, |conn| {
            conn.transaction::<_, SqlError, _>(async move |conn| {
                conn.lock_user(user).await?;
                let expiries = diesel::delete(
                    sessions::table
                        .filter(sessions::user_id.eq(user))
                        .filter(sessions::token_hash.ne(keep_or_empty)),
                )
                .returning((sessions::expires_at, sessions::absolute_expires_at))
                .load::<(Ts, Ts)>(conn)
                .await?;
                // No row, no fence: as for `delete`, there is nothing a cache can hold.
                if expiries.is_empty() {
                    return Ok(0);
                }
                diesel::insert_into(session_revocations::table)
                    .values((
                        session_revocations::user_id.eq(user),
                        session_revocations::keep_hash.eq(keep),
                        session_revocations::revoked_at.eq(now),
                    ))
                    .execute(conn)
                    .await?;
                // Expired rows the janitor has not reached yet were not sessions.
                Ok(expiries.iter().filter(|(e, a)| now.0 < e.0 && now.0 < a.0).count() as u64)
            })
            .await
        })?;
        self.after_revocation_commit()?;
        Ok(deleted)
    }

    async fn list_user_sessions(&self, user: UserId) -> StoreResult<Vec<Session>> {
        let (user, now) = (user.get(), self.now_ts());
        self.count(1);
        let rows = with_conn!(self, |conn| {
            Ok(sessions::table
                .select(session_columns!())
                .filter(sessions::user_id.eq(user))
                .filter(sessions::expires_at.gt(now))
                .filter(sessions::absolute_expires_at.gt(now))
                .order((sessions::renewed_at.desc(), sessions::token_hash))
                .load::<SessionRow>(conn)
                .await?)
        })?;
        Ok(crate::rows::sessions(rows)?)
    }
}

#[async_trait]
impl ExpiredCleanup for SqlStore {
    async fn delete_expired_sessions(&self, limit: usize) -> StoreResult<Vec<SessionKey>> {
        // One statement serves both: the janitor wants the lifetimes too.
        let expired = self.delete_expired_sessions_with_lifetimes(limit).await?;
        Ok(expired.into_iter().map(|e| e.key).collect())
    }

    async fn delete_expired_verifications(&self, limit: usize) -> StoreResult<u64> {
        let now = self.now_ts();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.count(1);
        let n = with_conn!(self, |conn| {
            diesel::alias!(verifications as expired: ExpiredVerifications);
            let batch = expired
                .select(expired.field(verifications::token_hash))
                .filter(expired.field(verifications::expires_at).le(now))
                .limit(limit);
            Ok(diesel::delete(verifications::table.filter(verifications::token_hash.eq_any(batch)))
                .execute(conn)
                .await?)
        })?;
        Ok(n as u64)
    }
}

#[async_trait]
impl RevocationJournal for SqlStore {
    async fn revocations_since(&self, since: DateTime<Utc>) -> StoreResult<Vec<Revocation>> {
        let since = Ts(since);
        self.count(1);
        let rows = with_conn!(self, |conn| {
            Ok(session_revocations::table
                .select(revocation_columns!())
                .filter(session_revocations::revoked_at.ge(since))
                .order((session_revocations::revoked_at, session_revocations::id))
                .load::<RevocationRow>(conn)
                .await?)
        })?;
        Ok(rows.into_iter().map(Revocation::try_from).collect::<SqlResult<Vec<_>>>()?)
    }

    async fn revocations_page(
        &self,
        since: DateTime<Utc>,
        after: i64,
        limit: usize,
    ) -> StoreResult<Vec<JournalEntry>> {
        let (since, limit) = (Ts(since), i64::try_from(limit).unwrap_or(i64::MAX));
        self.count(1);
        let rows = with_conn!(self, |conn| {
            Ok(session_revocations::table
                .select((session_revocations::id, revocation_columns!()))
                .filter(session_revocations::id.gt(after))
                .filter(session_revocations::revoked_at.ge(since))
                .order(session_revocations::id)
                .limit(limit)
                .load::<(i64, RevocationRow)>(conn)
                .await?)
        })?;
        Ok(entries(rows)?)
    }
}

fn entries(rows: Vec<(i64, RevocationRow)>) -> SqlResult<Vec<JournalEntry>> {
    rows.into_iter()
        .map(|(id, row)| Ok(JournalEntry { id, revocation: Revocation::try_from(row)? }))
        .collect()
}

/// The journal as the follower reads it (`crate::follow`): not counted in
/// [`SqlStore::query_count`], which counts the statements of store operations.
impl SqlStore {
    /// The highest journal id (0 when the journal is empty).
    pub(crate) async fn journal_head(&self) -> SqlResult<i64> {
        with_conn!(self, |conn| {
            Ok(session_revocations::table
                .select(diesel::dsl::max(session_revocations::id))
                .get_result::<Option<i64>>(conn)
                .await?
                .unwrap_or(0))
        })
    }

    /// Entries with an id above `after` (oldest first, at most `limit`), and those among
    /// `ids` (ids the follower saw missing: rows of transactions that had not committed
    /// yet when a later id became visible).
    pub(crate) async fn journal_after(
        &self,
        after: i64,
        limit: usize,
        ids: Vec<i64>,
    ) -> SqlResult<(Vec<JournalEntry>, Vec<JournalEntry>)> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (new, late) = with_conn!(self, |conn| {
            let new = session_revocations::table
                .select((session_revocations::id, revocation_columns!()))
                .filter(session_revocations::id.gt(after))
                .order(session_revocations::id)
                .limit(limit)
                .load::<(i64, RevocationRow)>(conn)
                .await?;
            let late = if ids.is_empty() {
                Vec::new()
            } else {
                session_revocations::table
                    .select((session_revocations::id, revocation_columns!()))
                    .filter(session_revocations::id.eq_any(ids))
                    .order(session_revocations::id)
                    .load::<(i64, RevocationRow)>(conn)
                    .await?
            };
            Ok((new, late))
        })?;
        Ok((entries(new)?, entries(late)?))
    }
}
