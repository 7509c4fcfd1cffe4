//! Session states on SQL ([`SessionStateStore`], table `session_states`, migration
//! `*_session_states`): the authority of the tiered state store.
//!
//! Written with `sql_query` and positional `$n` parameters, as `blocks.rs` is, so that
//! the table needs no entry in the shared diesel schema. Every statement is one round
//! trip and decides on expiry with the injected clock's `now`, so an expired row is
//! treated as absent whether or not it was purged yet.

use async_trait::async_trait;
use cache_core::{
    Conflict, SessionState, SessionStateStore, StateKey, StateRecord, StoreError, StoreResult,
    UserId,
};
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Binary, Nullable, Text};
use diesel_async::RunQueryDsl;

use crate::TIER;
use crate::error::SqlError;
use crate::schema::Ts;
use crate::store::SqlStore;

fn encode(state: &SessionState) -> StoreResult<String> {
    serde_json::to_string(state).map_err(StoreError::corrupt)
}

fn decode(user: Option<i64>, state: &str, expires_at: Ts) -> StoreResult<StateRecord> {
    let state: SessionState = serde_json::from_str(state).map_err(StoreError::corrupt)?;
    let user = match user {
        None => None,
        Some(id) => Some(UserId::new(id).ok_or(SqlError::Corrupt("session_states.user_id"))?),
    };
    Ok(StateRecord { state, user, expires_at: expires_at.0 })
}

/// What an upsert does with a live row under the same key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Upsert {
    /// Leave it (and report a conflict).
    KeepLive,
    /// Replace it.
    Replace,
}

impl SqlStore {
    /// Deletes the expired session states (the janitor's job; reads never see them
    /// anyway); returns how many.
    pub async fn delete_expired_states(&self) -> StoreResult<u64> {
        let now = self.now_ts();
        self.count(1);
        let deleted = with_conn!(self, |conn| {
            Ok(diesel::sql_query("DELETE FROM session_states WHERE expires_at <= $1")
                .bind::<TsSql, _>(now)
                .execute(conn)
                .await?)
        })?;
        Ok(deleted as u64)
    }

    /// Inserts the state, or replaces the row under its key (an expired one only, for
    /// `KeepLive`); returns whether a row was written.
    async fn upsert_state(
        &self,
        key: &StateKey,
        record: &StateRecord,
        mode: Upsert,
    ) -> StoreResult<bool> {
        let (hash, state) = (key.hash().as_bytes().to_vec(), encode(&record.state)?);
        let (user, expires_at, now) =
            (record.user.map(UserId::get), Ts(record.expires_at), self.now_ts());
        let only_expired = mode == Upsert::KeepLive;
        self.count(1);
        let written = with_conn!(self, |conn| {
            let insert = "INSERT INTO session_states (key_hash, user_id, state, expires_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (key_hash) DO UPDATE SET \
                 user_id = excluded.user_id, state = excluded.state, \
                 expires_at = excluded.expires_at";
            let query = if only_expired {
                diesel::sql_query(format!("{insert} WHERE session_states.expires_at <= $5"))
            } else {
                diesel::sql_query(insert)
            };
            let query = query
                .bind::<Binary, _>(hash)
                .bind::<Nullable<BigInt>, _>(user)
                .bind::<Text, _>(state)
                .bind::<TsSql, _>(expires_at);
            Ok(if only_expired {
                query.bind::<TsSql, _>(now).execute(conn).await?
            } else {
                query.execute(conn).await?
            })
        })?;
        Ok(written > 0)
    }
}

#[async_trait]
impl SessionStateStore for SqlStore {
    fn state_tier(&self) -> &'static str {
        TIER
    }

    async fn load_state(&self, key: &StateKey) -> StoreResult<Option<StateRecord>> {
        let (hash, now) = (key.hash().as_bytes().to_vec(), self.now_ts());
        self.count(1);
        let row = with_conn!(self, |conn| {
            #[derive(diesel::QueryableByName)]
            struct Row {
                #[diesel(sql_type = Nullable<BigInt>)]
                user_id: Option<i64>,
                #[diesel(sql_type = Text)]
                state: String,
                #[diesel(sql_type = TsSql)]
                expires_at: Ts,
            }
            let mut rows = diesel::sql_query(
                "SELECT user_id, state, expires_at FROM session_states \
                 WHERE key_hash = $1 AND expires_at > $2",
            )
            .bind::<Binary, _>(hash)
            .bind::<TsSql, _>(now)
            .load::<Row>(conn)
            .await?;
            Ok(rows.pop().map(|r| (r.user_id, r.state, r.expires_at)))
        })?;
        row.map(|(user, state, expires_at)| decode(user, &state, expires_at)).transpose()
    }

    async fn save_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()> {
        if self.upsert_state(key, record, Upsert::KeepLive).await? {
            Ok(())
        } else {
            Err(StoreError::Conflict(Conflict::Exists))
        }
    }

    async fn update_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<bool> {
        let (hash, state) = (key.hash().as_bytes().to_vec(), encode(&record.state)?);
        let (user, expires_at, now) =
            (record.user.map(UserId::get), Ts(record.expires_at), self.now_ts());
        self.count(1);
        let updated = with_conn!(self, |conn| {
            Ok(diesel::sql_query(
                "UPDATE session_states SET user_id = $1, state = $2, expires_at = $3 \
                 WHERE key_hash = $4 AND expires_at > $5",
            )
            .bind::<Nullable<BigInt>, _>(user)
            .bind::<Text, _>(state)
            .bind::<TsSql, _>(expires_at)
            .bind::<Binary, _>(hash)
            .bind::<TsSql, _>(now)
            .execute(conn)
            .await?)
        })?;
        Ok(updated > 0)
    }

    async fn update_state_ttl(
        &self,
        key: &StateKey,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (hash, expires_at, now) =
            (key.hash().as_bytes().to_vec(), Ts(expires_at), self.now_ts());
        self.count(1);
        let updated = with_conn!(self, |conn| {
            Ok(diesel::sql_query(
                "UPDATE session_states SET expires_at = $1 WHERE key_hash = $2 AND expires_at > $3",
            )
            .bind::<TsSql, _>(expires_at)
            .bind::<Binary, _>(hash)
            .bind::<TsSql, _>(now)
            .execute(conn)
            .await?)
        })?;
        Ok(updated > 0)
    }

    async fn delete_state(&self, key: &StateKey) -> StoreResult<()> {
        let hash = key.hash().as_bytes().to_vec();
        self.count(1);
        with_conn!(self, |conn| {
            Ok(diesel::sql_query("DELETE FROM session_states WHERE key_hash = $1")
                .bind::<Binary, _>(hash)
                .execute(conn)
                .await?)
        })?;
        Ok(())
    }

    async fn delete_user_states(&self, user: UserId) -> StoreResult<u64> {
        let (user, now) = (user.get(), self.now_ts());
        self.count(2);
        let live = with_conn!(self, |conn| {
            let live = diesel::sql_query(
                "DELETE FROM session_states WHERE user_id = $1 AND expires_at > $2",
            )
            .bind::<BigInt, _>(user)
            .bind::<TsSql, _>(now)
            .execute(conn)
            .await?;
            // The expired ones too: nothing of a logged-out user is kept.
            diesel::sql_query("DELETE FROM session_states WHERE user_id = $1")
                .bind::<BigInt, _>(user)
                .execute(conn)
                .await?;
            Ok(live)
        })?;
        Ok(live as u64)
    }

    async fn put_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()> {
        self.upsert_state(key, record, Upsert::Replace).await.map(drop)
    }
}
