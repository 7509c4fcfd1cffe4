//! [`UserCache`] for [`MemoryStore`]: profiles kept for at most `ttl`.

use async_trait::async_trait;
use cache_core::{StoreResult, User, UserCache, UserId};
use chrono::{DateTime, Utc};

use crate::TIER;
use crate::entry::{Cached, Key, Value};
use crate::store::{Inner, MemoryStore};

impl Inner {
    /// The cached profile of `id`, if fresh at `now`.
    pub(crate) fn fresh_user(&self, id: UserId, now: DateTime<Utc>) -> Option<User> {
        match self.main.get(&Key::User(id)) {
            Some(Value::User(cached)) if cached.is_fresh(now) => Some(cached.item),
            _ => None,
        }
    }
}

#[async_trait]
impl UserCache for MemoryStore {
    fn tier(&self) -> &'static str {
        TIER
    }

    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        let inner = &self.inner;
        Ok(inner.fresh_user(id, inner.now()))
    }

    async fn put_user(&self, user: &User) -> StoreResult<()> {
        let inner = &self.inner;
        // A profile has no expiry of its own: only the tier's ttl bounds its staleness.
        if let Some(cached) =
            Cached::new(user.clone(), inner.now(), inner.ttl, DateTime::<Utc>::MAX_UTC)
        {
            let value = Value::User(cached);
            inner.count_insert(&value);
            inner.main.insert(Key::User(user.id), value);
        }
        Ok(())
    }

    async fn invalidate_user(&self, id: UserId) -> StoreResult<()> {
        self.inner.main.invalidate(&Key::User(id));
        Ok(())
    }
}
