//! Figures for operations, read without scanning a table: live sessions counted over the
//! expiry index, and expired sessions deleted together with their lifetimes (so that the
//! janitor can report how long sessions lasted without a second query).

use cache_core::{SessionKey, StoreError, TokenHash, UserId};
use chrono::{DateTime, Duration, Utc};
use diesel::{BoolExpressionMethods, ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;

use crate::error::{SqlError, SqlResult};
use crate::schema::Ts;
use crate::store::SqlStore;

/// A session deleted because it had expired, with what the analytics need of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiredSession {
    /// Owner and token hash (for dropping other tiers' index entries).
    pub key: SessionKey,
    /// Login time.
    pub created_at: DateTime<Utc>,
    /// When it stopped being valid: the earlier of its sliding and absolute expiry.
    pub ended_at: DateTime<Utc>,
}

impl ExpiredSession {
    /// How long the session was valid, from login to expiry (never negative).
    pub fn lifetime(&self) -> Duration {
        (self.ended_at - self.created_at).max(Duration::zero())
    }
}

impl SqlStore {
    /// Sessions live at the clock's now. A range count over the `expires_at` index (a
    /// sliding expiry never exceeds the absolute one, so the second filter only guards
    /// against rows written by hand).
    pub async fn count_live_sessions(&self) -> Result<u64, StoreError> {
        let now = self.now_ts();
        self.count(1);
        let n = with_conn!(self, |conn| {
            Ok(sessions::table
                .filter(sessions::expires_at.gt(now))
                .filter(sessions::absolute_expires_at.gt(now))
                .count()
                .get_result::<i64>(conn)
                .await?)
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Session rows expired at the clock's now that are still stored (what a janitor pass
    /// would delete).
    pub async fn count_expired_sessions(&self) -> Result<u64, StoreError> {
        let now = self.now_ts();
        self.count(1);
        let n = with_conn!(self, |conn| {
            Ok(sessions::table
                .filter(sessions::expires_at.le(now).or(sessions::absolute_expires_at.le(now)))
                .count()
                .get_result::<i64>(conn)
                .await?)
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Deletes at most `limit` sessions expired at the clock's now, like
    /// [`cache_core::ExpiredCleanup::delete_expired_sessions`] (one statement, the same
    /// rows), and returns each with its creation and end time.
    pub async fn delete_expired_sessions_with_lifetimes(
        &self,
        limit: usize,
    ) -> Result<Vec<ExpiredSession>, StoreError> {
        let now = self.now_ts();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.count(1);
        let rows = with_conn!(self, |conn| {
            // The batch is a subquery on the same table, hence the alias.
            diesel::alias!(sessions as expired: ExpiredSessions);
            let batch = expired
                .select(expired.field(sessions::token_hash))
                .filter(
                    expired
                        .field(sessions::expires_at)
                        .le(now)
                        .or(expired.field(sessions::absolute_expires_at).le(now)),
                )
                .limit(limit);
            Ok(diesel::delete(sessions::table.filter(sessions::token_hash.eq_any(batch)))
                .returning((
                    sessions::user_id,
                    sessions::token_hash,
                    sessions::created_at,
                    sessions::expires_at,
                    sessions::absolute_expires_at,
                ))
                .load::<(i64, Vec<u8>, Ts, Ts, Ts)>(conn)
                .await?)
        })?;
        let expired = rows
            .into_iter()
            .map(|(user, hash, created_at, expires_at, absolute_expires_at)| {
                Ok(ExpiredSession {
                    key: SessionKey {
                        user: UserId::new(user)
                            .ok_or(SqlError::Corrupt("user id is not positive"))?,
                        hash: TokenHash::from_slice(&hash)
                            .ok_or(SqlError::Corrupt("token hash is not 32 bytes"))?,
                    },
                    created_at: created_at.0,
                    ended_at: expires_at.0.min(absolute_expires_at.0),
                })
            })
            .collect::<SqlResult<Vec<_>>>()?;
        Ok(expired)
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use std::collections::HashSet;

    use cache_core::{ManualClock, Session, SessionToken, SharedClock};

    use super::*;

    /// `n` sessions of one user created at the clock's now, the `i`-th idle-expiring
    /// `i + 1` minutes from now (so each clock step expires a known number of them).
    fn sessions(clock: &ManualClock, n: usize) -> Vec<Session> {
        let now = cache_core::Clock::now(clock);
        let user = UserId::random().unwrap();
        (0..n)
            .map(|i| {
                let minutes = i64::try_from(i).unwrap() + 1;
                Session {
                    key: SessionToken::generate(user).unwrap().key(),
                    created_at: now,
                    renewed_at: now,
                    expires_at: now + Duration::minutes(minutes),
                    absolute_expires_at: now + Duration::days(1),
                    user_agent: None,
                    ip: None,
                    version: 0,
                }
            })
            .collect()
    }

    async fn check(store: SqlStore, clock: std::sync::Arc<ManualClock>) {
        let seeded = sessions(&clock, 25);
        store.insert_sessions_bulk(&seeded).await.unwrap();
        assert_eq!(store.count_live_sessions().await.unwrap(), 25);
        assert_eq!(store.count_expired_sessions().await.unwrap(), 0);
        assert!(store.delete_expired_sessions_with_lifetimes(100).await.unwrap().is_empty());

        // Ten minutes on: exactly the first ten have expired.
        clock.advance(Duration::minutes(10));
        assert_eq!(store.count_live_sessions().await.unwrap(), 15);
        assert_eq!(store.count_expired_sessions().await.unwrap(), 10);
        let mut deleted = Vec::new();
        loop {
            let batch = store.delete_expired_sessions_with_lifetimes(4).await.unwrap();
            assert!(batch.len() <= 4);
            if batch.is_empty() {
                break;
            }
            deleted.extend(batch);
        }
        assert_eq!(deleted.len(), 10);
        let expected: HashSet<_> = seeded[..10].iter().map(|s| s.key).collect();
        assert_eq!(deleted.iter().map(|e| e.key).collect::<HashSet<_>>(), expected);
        for e in &deleted {
            let s = seeded.iter().find(|s| s.key == e.key).unwrap();
            assert_eq!(e.created_at, s.created_at);
            assert_eq!(e.ended_at, s.expires_at);
            assert_eq!(e.lifetime(), s.expires_at - s.created_at);
        }
        assert_eq!(store.count_expired_sessions().await.unwrap(), 0);
        assert_eq!(store.count_live_sessions().await.unwrap(), 15);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_and_expired_deletes_on_sqlite() {
        let clock = ManualClock::starting_now();
        let store = crate::testing::temp_sqlite(clock.clone() as SharedClock).await.unwrap();
        check(store, clock).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_and_expired_deletes_on_postgres() {
        let Some(url) = cache_testkit::service_url("DATABASE_URL") else { return };
        let clock = ManualClock::starting_now();
        let store = crate::testing::isolated_postgres(&url, clock.clone()).await.unwrap();
        check(store, clock).await;
    }
}
