//! [`RedisRateLimiter`]: the rate limiter shared by every instance, a sliding-window log
//! per key in Redis with one Lua script per decision.
//!
//! Layout, under the store's key prefix, for a [`RateKey`] `k`:
//! - `rl:{k}`: sorted set of the events in the window, scored by time (µs);
//! - `rl:{k}:s`: hash of the key's lockout (`l`: locked until, `s`: strikes, `su`:
//!   strikes remembered until, all µs).
//!
//! Both carry the hash tag `{k}`, so they share a Cluster slot and one script reads and
//! writes them atomically: of any number of parallel attempts on any number of instances,
//! exactly the limit is admitted. The script performs the steps of
//! [`cache_core::SlidingLog`], with "now" from the injected clock (never Redis `TIME`);
//! TTLs only collect garbage. [`RateKey`]s hold a digest of their subject, never an
//! address or an email, and no braces.
//!
//! Counters are not journaled: a Redis that restarts empty forgets them, which costs at
//! most one window of attempts. Wrap the limiter in a [`cache_core::FallbackLimiter`]
//! so that a per-instance limiter decides while Redis is down.

use std::time::Duration;

use async_trait::async_trait;
use cache_core::{Decision, EventId, Limit, RateKey, RateLimitStore, StoreResult};
use chrono::{DateTime, Utc};
use fred::clients::Pool;
use fred::interfaces::{KeysInterface, LuaInterface, SortedSetsInterface};
use fred::prelude::{FromValue, Value};
use fred::types::scripts::Script;

use crate::error::RedisError;
use crate::scripts::is_noscript;
use crate::store::RedisStore;

/// The name this limiter reports as its tier.
pub const LIMITER_TIER: &str = "redis";

/// One decision. KEYS: log, state. ARGV: now, window, limit, event, max lockout (times
/// in µs as decimal strings). Returns {allowed (0|1), remaining, µs until a slot frees
/// (allowed) or until the lockout ends (refused)}.
const ACQUIRE: &str = r"
local log, st = KEYS[1], KEYS[2]
local now, window, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local event, cap = ARGV[4], tonumber(ARGV[5])
if cap < window then cap = window end
local function ms(us)
  local m = math.ceil(us / 1000)
  if m < 1 then return 1 end
  return m
end
local f = redis.call('HMGET', st, 'l', 's', 'su')
local locked = tonumber(f[1] or '0')
if now < locked then return {0, 0, locked - now} end
local strikes = 0
if f[3] and now < tonumber(f[3]) then strikes = tonumber(f[2] or '0') end
-- The window is (now - window, now]: an event exactly one window old is out.
redis.call('ZREMRANGEBYSCORE', log, '-inf', string.format('%d', now - window))
local known = redis.call('ZSCORE', log, event)
if known or redis.call('ZCARD', log) < limit then
  redis.call('ZADD', log, ARGV[1], event)
  -- Garbage collection only (decisions use the scores): a minute of slack for clocks.
  redis.call('PEXPIRE', log, ms(window) + 60000)
  local oldest = tonumber(redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')[2])
  return {1, limit - redis.call('ZCARD', log), oldest + window - now}
end
strikes = strikes + 1
local e = strikes - 1
if e > 40 then e = 40 end
local lock = window * (2 ^ e)
if lock > cap then lock = cap end
local first = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')[2]
local oldest = now
if first then oldest = tonumber(first) end
local untl = now + lock
if oldest + window > untl then untl = oldest + window end
local su = untl + cap
redis.call('HSET', st, 'l', string.format('%d', untl), 's', strikes, 'su', string.format('%d', su))
redis.call('PEXPIRE', st, ms(su - now) + 60000)
return {0, 0, untl - now}
";

/// The shared rate limiter on a [`RedisStore`]'s pool and key prefix. Cheap to clone.
#[derive(Clone)]
pub struct RedisRateLimiter {
    /// Keeps the store's connections (which close with its last clone) open.
    store: RedisStore,
    prefix: String,
    acquire: Script,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// A limiter sharing `store`'s connections, key prefix and command timeout. It does
    /// not wait for the journal replay: counters do not depend on revocations.
    pub fn new(store: &RedisStore) -> Self {
        Self {
            store: store.clone(),
            prefix: store.config().key_prefix.clone(),
            acquire: Script::from_lua(ACQUIRE),
        }
    }

    fn pool(&self) -> &Pool {
        self.store.pool()
    }

    /// The sorted set of `key`'s events.
    fn log_key(&self, key: &RateKey) -> String {
        format!("{}rl:{{{}}}", self.prefix, key.as_str())
    }

    /// The hash of `key`'s lockout state (same hash tag as its log).
    fn state_key(&self, key: &RateKey) -> String {
        format!("{}rl:{{{}}}:s", self.prefix, key.as_str())
    }

    /// `EVALSHA`, loading the script and retrying once when the server lost it.
    async fn call<R: FromValue>(
        &self,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<R, RedisError> {
        match self.pool().evalsha(self.acquire.sha1().clone(), keys.clone(), args.clone()).await {
            Err(e) if is_noscript(&e) => {
                let lua = self.acquire.lua().cloned().ok_or(RedisError::Config("script"))?;
                self.pool().next().script_load_cluster::<(), _>(lua).await?;
                Ok(self.pool().evalsha(self.acquire.sha1().clone(), keys, args).await?)
            }
            other => Ok(other?),
        }
    }
}

fn micros(d: Duration) -> String {
    d.as_micros().min(u128::from(u64::MAX / 4)).to_string()
}

fn duration(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

#[async_trait]
impl RateLimitStore for RedisRateLimiter {
    fn tier(&self) -> &'static str {
        LIMITER_TIER
    }

    async fn acquire(
        &self,
        key: &RateKey,
        limit: &Limit,
        event: &EventId,
        now: DateTime<Utc>,
    ) -> StoreResult<Decision> {
        let keys = vec![self.log_key(key), self.state_key(key)];
        let args: Vec<Value> = vec![
            now.timestamp_micros().to_string().into(),
            micros(limit.window).into(),
            limit.limit.to_string().into(),
            event.as_str().into(),
            micros(limit.max_lockout).into(),
        ];
        let reply: Vec<i64> = self.call(keys, args).await?;
        let [allowed, remaining, wait] = reply[..] else {
            return Err(
                RedisError::reply(format!("rate limit reply of {} values", reply.len())).into()
            );
        };
        Ok(if allowed == 1 {
            Decision::allowed(limit.limit, u32::try_from(remaining).unwrap_or(0), duration(wait))
        } else {
            Decision::limited(limit.limit, duration(wait))
        })
    }

    async fn release(&self, key: &RateKey, event: &EventId) -> StoreResult<()> {
        let _: i64 =
            self.pool().zrem(self.log_key(key), event.as_str()).await.map_err(RedisError::from)?;
        Ok(())
    }

    async fn reset(&self, key: &RateKey) -> StoreResult<()> {
        let _: i64 = self
            .pool()
            .del(vec![self.log_key(key), self.state_key(key)])
            .await
            .map_err(RedisError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use fred::util::redis_keyslot;

    use super::*;

    #[tokio::test]
    async fn a_keys_log_and_state_share_one_slot() {
        let clock = cache_core::SystemClock::shared();
        // Never connects (nothing listens on port 1); only the key names are looked at.
        let config = crate::RedisConfig {
            url: "redis://127.0.0.1:1".to_owned(),
            connect_timeout: Duration::from_millis(10),
            ..crate::RedisConfig::default()
        };
        let store = RedisStore::connect(config, clock).await.unwrap();
        let limiter = RedisRateLimiter::new(&store);
        let key = RateKey::new("login", "account", "a@example.com");
        let (log, state) = (limiter.log_key(&key), limiter.state_key(&key));
        assert_eq!(log, format!("ta:rl:{{{}}}", key.as_str()));
        assert_eq!(state, format!("{log}:s"));
        assert_eq!(redis_keyslot(log.as_bytes()), redis_keyslot(state.as_bytes()));
        assert!(!log.contains("example.com"));
    }
}
