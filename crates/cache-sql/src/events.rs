//! The security event log on SQL ([`EventLog`], table `security_events`, migration
//! `*_security_events`).
//!
//! Written with `sql_query` and positional `$n` parameters as `blocks.rs` is (both
//! dialects accept them), so that the table needs no entry in the shared diesel schema.
//! A batch is appended in one transaction.

use async_trait::async_trait;
use cache_core::{EventKind, EventLog, NewEvent, SecurityEvent, StoreResult, UserId};
use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::RunQueryDsl;

use crate::error::{SqlError, SqlResult};
use crate::schema::Ts;
use crate::store::SqlStore;

/// One row as read back, before parsing.
struct RawEvent {
    id: i64,
    user_id: i64,
    kind: String,
    at: Ts,
    ip: Option<String>,
    device: Option<String>,
}

impl RawEvent {
    /// The event, or `None` (logged) for a row no code of ours writes (an unknown kind
    /// or user id); an unparsable address reads as unknown.
    fn parse(self) -> Option<SecurityEvent> {
        let event =
            UserId::new(self.user_id).zip(EventKind::parse(&self.kind)).map(|(user, kind)| {
                SecurityEvent {
                    id: self.id,
                    user,
                    kind,
                    at: self.at.0,
                    ip: self.ip.as_deref().and_then(|ip| ip.parse().ok()),
                    device: self.device,
                }
            });
        if event.is_none() {
            tracing::warn!(id = self.id, kind = %self.kind, "ignoring a malformed security_events row");
        }
        event
    }
}

/// An insert's values, owned (the query body is `'static`).
struct Row {
    user_id: i64,
    kind: &'static str,
    at: Ts,
    ip: Option<String>,
    device: Option<String>,
    device_key: Option<String>,
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[async_trait]
impl EventLog for SqlStore {
    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        use diesel_async::AsyncConnection as _;

        if events.is_empty() {
            return Ok(());
        }
        let rows: Vec<Row> = events
            .iter()
            .map(|e| Row {
                user_id: e.user.get(),
                kind: e.kind.as_str(),
                at: Ts(e.at),
                ip: e.ip.map(|ip| ip.to_canonical().to_string()),
                device: e.device.clone(),
                device_key: e.device_key.clone(),
            })
            .collect();
        self.count(rows.len() as u64);
        with_conn!(self, |conn| {
            conn.transaction::<_, SqlError, _>(async move |conn| {
                for row in rows {
                    diesel::sql_query(
                        "INSERT INTO security_events \
                             (user_id, kind, at, ip, device, device_key) \
                             VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind::<BigInt, _>(row.user_id)
                    .bind::<Text, _>(row.kind)
                    .bind::<TsSql, _>(row.at)
                    .bind::<Nullable<Text>, _>(row.ip)
                    .bind::<Nullable<Text>, _>(row.device)
                    .bind::<Nullable<Text>, _>(row.device_key)
                    .execute(conn)
                    .await?;
                }
                Ok(())
            })
            .await
        })?;
        Ok(())
    }

    async fn list_events(
        &self,
        user: UserId,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<SecurityEvent>> {
        let (user, before, limit) = (user.get(), before.unwrap_or(i64::MAX), limit_i64(limit));
        self.count(1);
        let rows = with_conn!(self, |conn| {
            #[derive(diesel::QueryableByName)]
            struct Found {
                #[diesel(sql_type = BigInt)]
                id: i64,
                #[diesel(sql_type = BigInt)]
                user_id: i64,
                #[diesel(sql_type = Text)]
                kind: String,
                #[diesel(sql_type = TsSql)]
                at: Ts,
                #[diesel(sql_type = Nullable<Text>)]
                ip: Option<String>,
                #[diesel(sql_type = Nullable<Text>)]
                device: Option<String>,
            }
            let rows = diesel::sql_query(
                "SELECT id, user_id, kind, at, ip, device FROM security_events \
                 WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            )
            .bind::<BigInt, _>(user)
            .bind::<BigInt, _>(before)
            .bind::<BigInt, _>(limit)
            .load::<Found>(conn)
            .await?;
            Ok(rows
                .into_iter()
                .map(|r| RawEvent {
                    id: r.id,
                    user_id: r.user_id,
                    kind: r.kind,
                    at: r.at,
                    ip: r.ip,
                    device: r.device,
                })
                .collect::<Vec<_>>())
        })?;
        Ok(rows.into_iter().filter_map(RawEvent::parse).collect())
    }

    async fn count_events(
        &self,
        user: UserId,
        kind: EventKind,
        device_key: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> StoreResult<u64> {
        let (user, kind) = (user.get(), kind.as_str());
        let since = Ts(since.unwrap_or(DateTime::UNIX_EPOCH));
        let device_key = device_key.map(str::to_owned);
        self.count(1);
        let n: i64 = with_conn!(self, |conn| {
            #[derive(diesel::QueryableByName)]
            struct Count {
                #[diesel(sql_type = BigInt)]
                n: i64,
            }
            let query = "SELECT COUNT(*) AS n FROM security_events \
                         WHERE user_id = $1 AND kind = $2 AND at >= $3";
            let count = match device_key {
                Some(key) => {
                    diesel::sql_query(format!("{query} AND device_key = $4"))
                        .bind::<BigInt, _>(user)
                        .bind::<Text, _>(kind)
                        .bind::<TsSql, _>(since)
                        .bind::<Text, _>(key)
                        .get_result::<Count>(conn)
                        .await?
                }
                None => {
                    diesel::sql_query(query)
                        .bind::<BigInt, _>(user)
                        .bind::<Text, _>(kind)
                        .bind::<TsSql, _>(since)
                        .get_result::<Count>(conn)
                        .await?
                }
            };
            SqlResult::Ok(count.n)
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn trim_events(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        let (cutoff, limit) = (Ts(before), limit_i64(limit));
        self.count(1);
        let n = with_conn!(self, |conn| {
            Ok(diesel::sql_query(
                "DELETE FROM security_events WHERE id IN \
                 (SELECT id FROM security_events WHERE at < $1 ORDER BY id LIMIT $2)",
            )
            .bind::<TsSql, _>(cutoff)
            .bind::<BigInt, _>(limit)
            .execute(conn)
            .await?)
        })?;
        Ok(n as u64)
    }
}
