//! [`VerificationStore`] for [`RedisStore`]: email-verification and password-reset
//! tokens, each a key whose TTL is its remaining life.

use async_trait::async_trait;
use cache_core::{Purpose, StoreResult, TokenHash, UserId, Verification, VerificationStore};
use fred::interfaces::SetsInterface;
use fred::prelude::Value;

use crate::codec::{self, micros, millis};
use crate::error::RedisError;
use crate::sessions::TIER;
use crate::store::RedisStore;

#[async_trait]
impl VerificationStore for RedisStore {
    fn tier(&self) -> &'static str {
        TIER
    }

    async fn put_verification(&self, verification: &Verification) -> StoreResult<()> {
        let remaining = (verification.expires_at - self.now()).to_std().unwrap_or_default();
        if remaining.is_zero() {
            return Ok(()); // Already expired: nothing a read could return.
        }
        let keys = &self.shared.keys;
        let hex = verification.hash.to_hex();
        let ttl = millis(remaining);
        // The set first: a verification missing from it could not be superseded.
        let set = keys.verification_set(verification.user, verification.purpose);
        let _: i64 = self
            .shared
            .scripts
            .add_to_set
            .call(&self.shared.pool, vec![set], vec![hex.into(), ttl.clone().into()])
            .await?;
        let args: Vec<Value> = vec![
            verification.purpose.as_str().into(),
            micros(verification.expires_at).into(),
            codec::verification_json(verification)?.into(),
            ttl.into(),
        ];
        let _: i64 = self
            .shared
            .scripts
            .put_verification
            .call(&self.shared.pool, vec![keys.verification(&verification.hash)], args)
            .await?;
        Ok(())
    }

    async fn consume(
        &self,
        hash: &TokenHash,
        purpose: Purpose,
    ) -> StoreResult<Option<Verification>> {
        self.ensure_trusted()?;
        let keys = &self.shared.keys;
        let args: Vec<Value> = vec![purpose.as_str().into(), micros(self.now()).into()];
        let reply: Option<String> = self
            .shared
            .scripts
            .consume
            .call(&self.shared.pool, vec![keys.verification(hash)], args)
            .await?;
        let Some(json) = reply else { return Ok(None) };
        let verification = codec::verification_from_json(&json)?;
        // Housekeeping only: a stale set member is skipped by delete_verifications.
        let set = keys.verification_set(verification.user, verification.purpose);
        if let Err(e) = self.shared.pool.srem::<i64, _, _>(set, hash.to_hex()).await {
            tracing::debug!(error = %e, "could not drop a consumed verification from its set");
        }
        Ok(Some(verification))
    }

    async fn delete_verifications(&self, user: UserId, purpose: Purpose) -> StoreResult<u64> {
        let keys = &self.shared.keys;
        let set = keys.verification_set(user, purpose);
        let members: Vec<String> =
            self.shared.pool.smembers(&set).await.map_err(RedisError::from)?;
        if members.is_empty() {
            return Ok(0);
        }
        let now = micros(self.now());
        let calls = members
            .iter()
            .filter_map(|m| TokenHash::from_hex(m))
            .map(|h| {
                (vec![keys.verification(&h)], vec![purpose.as_str().into(), now.clone().into()])
            })
            .collect();
        let deleted =
            self.pipelined_sum(self.shared.scripts.drop_verification.sha(), calls).await?;
        // Remove exactly what was read: a verification added meanwhile stays findable.
        let _: i64 = self.shared.pool.srem(&set, members).await.map_err(RedisError::from)?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }
}
