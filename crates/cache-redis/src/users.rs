//! [`UserCache`] for [`RedisStore`]: cached profiles (`SET` with `PX user_ttl`).

use async_trait::async_trait;
use cache_core::invalidation::Invalidation;
use cache_core::{StoreResult, User, UserCache, UserId};
use fred::interfaces::KeysInterface;
use fred::prelude::Value;
use fred::types::Expiration;

use crate::codec;
use crate::error::RedisError;
use crate::sessions::TIER;
use crate::store::RedisStore;

impl RedisStore {
    /// `SET` of `user`'s profile with `PX user_ttl` (at least 1 ms), sent by `client`
    /// (the pool, or a pipeline that queues it).
    pub(crate) async fn set_user<C: KeysInterface + Sync>(
        &self,
        client: &C,
        user: &User,
    ) -> Result<(), fred::error::Error> {
        let ms = self.shared.config.user_ttl.as_millis().clamp(1, i64::MAX as u128);
        let px = Expiration::PX(i64::try_from(ms).unwrap_or(i64::MAX));
        let key = self.shared.keys.user(user.id);
        client.set::<(), _, _>(key, codec::user_value(user), Some(px), None, false).await
    }
}

#[async_trait]
impl UserCache for RedisStore {
    fn tier(&self) -> &'static str {
        TIER
    }

    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        self.ensure_trusted()?;
        let value: Value =
            self.shared.pool.get(self.shared.keys.user(id)).await.map_err(RedisError::from)?;
        Ok(codec::user_from_value(&value)?)
    }

    async fn put_user(&self, user: &User) -> StoreResult<()> {
        Ok(self.set_user(&self.shared.pool, user).await.map_err(RedisError::from)?)
    }

    async fn invalidate_user(&self, id: UserId) -> StoreResult<()> {
        let args: Vec<Value> =
            vec![self.shared.keys.channel().into(), Invalidation::User(id).encode().into()];
        let _: i64 = self
            .shared
            .scripts
            .invalidate_user
            .call(&self.shared.pool, vec![self.shared.keys.user(id)], args)
            .await?;
        Ok(())
    }
}
