//! Single-use verification tokens on SQL.

use async_trait::async_trait;
use cache_core::{Purpose, StoreResult, TokenHash, UserId, Verification, VerificationStore};
use diesel::upsert::excluded;
use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
use diesel_async::RunQueryDsl;

use crate::TIER;
use crate::rows::{VerificationRow, verification_columns};
use crate::schema::Ts;
use crate::store::SqlStore;

#[async_trait]
impl VerificationStore for SqlStore {
    fn tier(&self) -> &'static str {
        TIER
    }

    async fn put_verification(&self, v: &Verification) -> StoreResult<()> {
        let (hash, purpose, user) = (v.hash.as_bytes().to_vec(), v.purpose.as_str(), v.user.get());
        let (identifier, created_at, expires_at) =
            (v.identifier.clone(), Ts(v.created_at), Ts(v.expires_at));
        self.count(1);
        with_conn!(self, |conn| {
            diesel::insert_into(verifications::table)
                .values((
                    verifications::token_hash.eq(hash),
                    verifications::purpose.eq(purpose),
                    verifications::user_id.eq(user),
                    verifications::identifier.eq(identifier),
                    verifications::created_at.eq(created_at),
                    verifications::expires_at.eq(expires_at),
                ))
                .on_conflict(verifications::token_hash)
                .do_update()
                .set((
                    verifications::purpose.eq(excluded(verifications::purpose)),
                    verifications::user_id.eq(excluded(verifications::user_id)),
                    verifications::identifier.eq(excluded(verifications::identifier)),
                    verifications::created_at.eq(excluded(verifications::created_at)),
                    verifications::expires_at.eq(excluded(verifications::expires_at)),
                ))
                .execute(conn)
                .await?;
            Ok(())
        })?;
        Ok(())
    }

    async fn consume(
        &self,
        hash: &TokenHash,
        purpose: Purpose,
    ) -> StoreResult<Option<Verification>> {
        let (hash, purpose, now) = (hash.as_bytes().to_vec(), purpose.as_str(), self.now_ts());
        self.count(1);
        // One DELETE ... RETURNING: of concurrent callers, only the one whose statement
        // deletes the row gets it.
        let row = with_conn!(self, |conn| {
            Ok(diesel::delete(
                verifications::table
                    .filter(verifications::token_hash.eq(hash))
                    .filter(verifications::purpose.eq(purpose))
                    .filter(verifications::expires_at.gt(now)),
            )
            .returning(verification_columns!())
            .get_result::<VerificationRow>(conn)
            .await
            .optional()?)
        })?;
        Ok(row.map(Verification::try_from).transpose()?)
    }

    async fn delete_verifications(&self, user: UserId, purpose: Purpose) -> StoreResult<u64> {
        let (user, purpose, now) = (user.get(), purpose.as_str(), self.now_ts());
        self.count(1);
        let expiries = with_conn!(self, |conn| {
            Ok(diesel::delete(
                verifications::table
                    .filter(verifications::user_id.eq(user))
                    .filter(verifications::purpose.eq(purpose)),
            )
            .returning(verifications::expires_at)
            .load::<Ts>(conn)
            .await?)
        })?;
        // Expired rows the janitor has not reached yet were not pending.
        Ok(expiries.iter().filter(|e| now.0 < e.0).count() as u64)
    }
}
