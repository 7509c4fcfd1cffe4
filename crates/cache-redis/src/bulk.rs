//! Bulk cache fills for seeding and benchmarks: many sessions or user profiles written
//! as [`SessionStore::put`](cache_core::SessionStore::put) (its script) and
//! [`UserCache::put_user`](cache_core::UserCache::put_user) (a `SET`) write them, sent
//! in pipelines of [`BULK_PIPELINE`] calls instead of one round trip each.
//!
//! Same semantics as the single calls (a revoked or expired session is refused), so a
//! bulk fill is as safe as many single fills; only the round trips are saved.

use cache_core::{Session, StoreError, User};
use fred::prelude::Value;

use crate::codec::{self, micros};
use crate::error::RedisError;
use crate::scripts::{is_noscript, queue_evalsha};
use crate::store::RedisStore;

/// Script calls per pipeline. fred times a pipeline as one command: 200 calls answer
/// well within the default command timeout; callers loading millions of entries run
/// several bulk calls at once (the pool spreads them over its connections) and may
/// raise `command_timeout` for their own store.
pub const BULK_PIPELINE: usize = 200;

impl RedisStore {
    /// Cache fills of `sessions` (as [`cache_core::SessionStore::put`] each), pipelined.
    /// Returns how many were stored (the others were revoked, expired, or older than
    /// the cached copy).
    pub async fn put_sessions_bulk(&self, sessions: &[Session]) -> Result<u64, StoreError> {
        let keys = &self.shared.keys;
        let now = micros(self.shared.clock.now());
        let calls = sessions
            .iter()
            .map(|s| {
                let k = s.key;
                let mut args: Vec<Value> =
                    vec![k.hash.to_hex().into(), now.clone().into(), "put".into()];
                args.extend(codec::session_args(s));
                (
                    vec![
                        keys.session(k.user, &k.hash),
                        keys.index(k.user),
                        keys.fence(k.user),
                        keys.tombstone(k.user, &k.hash),
                    ],
                    args,
                )
            })
            .collect();
        let stored = self.pipelined(self.shared.scripts.write.sha(), calls).await?;
        Ok(stored)
    }

    /// Cache fills of user profiles (as [`cache_core::UserCache::put_user`] each: a plain
    /// `SET` with `PX`), pipelined. Returns how many were written.
    pub async fn put_users_bulk(&self, users: &[User]) -> Result<u64, StoreError> {
        let mut written = 0;
        for batch in users.chunks(BULK_PIPELINE) {
            let pipeline = self.shared.pool.next().pipeline();
            for u in batch {
                self.set_user(&pipeline, u).await.map_err(RedisError::from)?;
            }
            for result in pipeline.try_all::<Value>().await {
                result.map_err(RedisError::from)?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// Runs one script per call in pipelines of [`BULK_PIPELINE`] and counts the calls
    /// that answered 1. A pipeline that met a server without the scripts is sent again
    /// after loading them (the write script is idempotent).
    async fn pipelined(
        &self,
        sha: &str,
        calls: Vec<(Vec<String>, Vec<Value>)>,
    ) -> Result<u64, RedisError> {
        let mut total = 0;
        for batch in calls.chunks(BULK_PIPELINE) {
            let mut reloaded = false;
            loop {
                let pipeline = self.shared.pool.next().pipeline();
                for (keys, args) in batch {
                    queue_evalsha(&pipeline, sha, keys, args).await?;
                }
                let mut ok = 0;
                let mut failure = None;
                for result in pipeline.try_all::<i64>().await {
                    match result {
                        Ok(1) => ok += 1,
                        Ok(_) => {}
                        Err(e) => failure = failure.or(Some(e)),
                    }
                }
                match failure {
                    None => {
                        total += ok;
                        break;
                    }
                    Some(e) if is_noscript(&e) && !reloaded => {
                        self.shared.scripts.load_all(&self.shared.pool).await?;
                        reloaded = true;
                    }
                    Some(e) => return Err(e.into()),
                }
            }
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use cache_core::token::Secret;
    use cache_core::{ManualClock, SessionKey, SessionStore, SharedClock, UserCache, UserId};
    use chrono::Duration;

    use super::*;
    use crate::RedisConfig;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_fills_are_read_back() {
        // The testkit's skip policy (a skip fails under AUTH_TEST_REQUIRE_SERVICES=1).
        let Some(url) = cache_testkit::service_url("REDIS_URL") else { return };
        let clock: SharedClock = ManualClock::starting_now();
        let mut prefix = [0u8; 6];
        cache_core::token::fill_random(&mut prefix).unwrap();
        let prefix = hex::encode(prefix);
        let config =
            RedisConfig { url, key_prefix: format!("bulk-{prefix}:"), ..Default::default() };
        let store = RedisStore::connect(config, clock.clone()).await.unwrap();
        let now = clock.now();
        let n = BULK_PIPELINE + 3;
        let (mut users, mut sessions) = (Vec::new(), Vec::new());
        for i in 0..n {
            let id = UserId::random().unwrap();
            users.push(User {
                id,
                name: format!("user {i}"),
                email: format!("user{i}@bulk.example"),
                email_verified: true,
                created_at: now,
            });
            sessions.push(Session {
                key: SessionKey { user: id, hash: Secret::generate().unwrap().hash() },
                created_at: now,
                renewed_at: now,
                expires_at: now + Duration::minutes(2),
                absolute_expires_at: now + Duration::minutes(2),
                user_agent: Some("bench".to_owned()),
                ip: None,
                version: 0,
            });
        }
        // A revoked session is refused by a bulk fill as by a single one.
        store.delete(&sessions[1].key).await.unwrap();
        assert_eq!(store.put_users_bulk(&users).await.unwrap(), n as u64);
        assert_eq!(store.put_sessions_bulk(&sessions).await.unwrap(), n as u64 - 1);
        for i in [0, 2, n - 1] {
            assert_eq!(store.get(&sessions[i].key).await.unwrap().as_ref(), Some(&sessions[i]));
            assert_eq!(store.get_user(users[i].id).await.unwrap().as_ref(), Some(&users[i]));
        }
        assert_eq!(store.get(&sessions[1].key).await.unwrap(), None);
    }
}
