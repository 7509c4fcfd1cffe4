//! IP blocks on SQL ([`BlockList`]): the authority every instance reads its block
//! snapshot from (table `ip_blocks`, migration `*_ip_blocks`).
//!
//! Written with `sql_query` and positional `$n` parameters, which both dialects accept
//! (SQLite reads `$1` as a named parameter and numbers them in order of appearance), so
//! that the table needs no entry in the shared diesel schema. The row type is declared
//! inside each query body, where [`crate::schema`]'s `TsSql` names the dialect's
//! timestamp type.

use async_trait::async_trait;
use cache_core::{BlockList, BlockReason, Cidr, IpBlock, StoreResult};
use chrono::{DateTime, Utc};
use diesel::sql_types::{Nullable, Text};
use diesel_async::RunQueryDsl;

use crate::schema::Ts;
use crate::store::SqlStore;

/// One row as read back, before parsing.
struct RawBlock {
    net: String,
    expires_at: Option<Ts>,
    reason: String,
    created_at: Ts,
}

impl RawBlock {
    /// The block, or `None` (logged) for a row no code of ours writes: a hand-edited
    /// `net` or `reason`. One bad row must not keep every other block from applying.
    fn parse(self) -> Option<IpBlock> {
        let block = self.net.parse::<Cidr>().ok().zip(BlockReason::parse(&self.reason)).map(
            |(net, reason)| IpBlock {
                net,
                expires_at: self.expires_at.map(|t| t.0),
                reason,
                created_at: self.created_at.0,
            },
        );
        if block.is_none() {
            tracing::warn!(net = %self.net, reason = %self.reason, "ignoring a malformed ip_blocks row");
        }
        block
    }
}

#[async_trait]
impl BlockList for SqlStore {
    /// Upserts the block, and purges expired ones on the way (so that reads need not).
    async fn block(&self, block: &IpBlock) -> StoreResult<()> {
        let net = block.net.to_string();
        let expires_at = block.expires_at.map(Ts);
        let (reason, created_at, now) =
            (block.reason.as_str(), Ts(block.created_at), self.now_ts());
        self.count(2);
        with_conn!(self, |conn| {
            diesel::sql_query(
                "DELETE FROM ip_blocks WHERE expires_at IS NOT NULL AND expires_at <= $1",
            )
            .bind::<TsSql, _>(now)
            .execute(conn)
            .await?;
            diesel::sql_query(
                "INSERT INTO ip_blocks (net, expires_at, reason, created_at) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (net) DO UPDATE SET expires_at = excluded.expires_at, \
                 reason = excluded.reason, created_at = excluded.created_at",
            )
            .bind::<Text, _>(net)
            .bind::<Nullable<TsSql>, _>(expires_at)
            .bind::<Text, _>(reason)
            .bind::<TsSql, _>(created_at)
            .execute(conn)
            .await?;
            Ok(())
        })?;
        Ok(())
    }

    async fn unblock(&self, net: &Cidr) -> StoreResult<bool> {
        let net = net.to_string();
        self.count(1);
        let deleted = with_conn!(self, |conn| {
            Ok(diesel::sql_query("DELETE FROM ip_blocks WHERE net = $1")
                .bind::<Text, _>(net)
                .execute(conn)
                .await?)
        })?;
        Ok(deleted > 0)
    }

    async fn active_blocks(&self, now: DateTime<Utc>) -> StoreResult<Vec<IpBlock>> {
        let now = Ts(now);
        self.count(1);
        let rows = with_conn!(self, |conn| {
            #[derive(diesel::QueryableByName)]
            struct Row {
                #[diesel(sql_type = Text)]
                net: String,
                #[diesel(sql_type = Nullable<TsSql>)]
                expires_at: Option<Ts>,
                #[diesel(sql_type = Text)]
                reason: String,
                #[diesel(sql_type = TsSql)]
                created_at: Ts,
            }
            let rows = diesel::sql_query(
                "SELECT net, expires_at, reason, created_at FROM ip_blocks \
                 WHERE expires_at IS NULL OR expires_at > $1 \
                 ORDER BY created_at DESC, net",
            )
            .bind::<TsSql, _>(now)
            .load::<Row>(conn)
            .await?;
            Ok(rows
                .into_iter()
                .map(|r| RawBlock {
                    net: r.net,
                    expires_at: r.expires_at,
                    reason: r.reason,
                    created_at: r.created_at,
                })
                .collect::<Vec<_>>())
        })?;
        Ok(rows.into_iter().filter_map(RawBlock::parse).collect())
    }
}
