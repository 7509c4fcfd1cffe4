//! Session states on Redis ([`SessionStateStore`] for [`RedisStore`]).
//!
//! Key layout (works on a Cluster: every command touches one key, or one slot):
//! - `{prefix}st:{<sha256 hex>}`: the state, a string `<expires µs> <user id|0> <json>`
//!   with `PX` = its remaining life. The hash tag is the state's own hash, so states
//!   spread over the slots.
//! - `{prefix}su:{<user id>}`: the set of the hashes of a user's states (for "log this
//!   user out everywhere"), expiring with the longest-lived of them. It may name states
//!   that are gone or now belong to someone else: a delete checks the state's user.
//!
//! Every write is one Lua script on the state's key, deciding on expiry with the injected
//! clock's now (ARGV), never Redis `TIME`, and publishing `t <hash>` on the invalidation
//! channel so that the other instances' memory tiers drop their copy; a user-wide delete
//! publishes `w <user>`. Reads are one `GET`, refused while the store does not trust
//! Redis (after a reconnect, until the journal replay), so a tiered store reads SQL then.

use std::sync::OnceLock;

use async_trait::async_trait;
use cache_core::invalidation::Invalidation;
use cache_core::{
    Conflict, SessionState, SessionStateStore, StateKey, StateRecord, StoreError, StoreResult,
    UserId,
};
use chrono::{DateTime, Utc};
use fred::interfaces::{KeysInterface, SetsInterface};
use fred::prelude::Value;

use crate::TIER;
use crate::error::RedisError;
use crate::scripts::Lua;
use crate::store::RedisStore;

/// Writes a state. KEYS: state. ARGV: now µs, value, px, mode (`new`: only when no live
/// state is there; `live`: only when one is; `any`), channel, message (empty: do not
/// publish). Returns 1 when written.
const WRITE: &str = r"
local v = redis.call('GET', KEYS[1])
local live = false
if v then
  local e = tonumber(string.match(v, '^(%d+) '))
  live = e ~= nil and e > tonumber(ARGV[1])
end
if ARGV[4] == 'new' and live then return 0 end
if ARGV[4] == 'live' and not live then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if ARGV[6] ~= '' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
return 1
";

/// Moves a live state's expiry. KEYS: state. ARGV: now µs, new expiry µs, px.
const TTL: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local e = tonumber(string.match(v, '^(%d+) '))
if e == nil or e <= tonumber(ARGV[1]) then return 0 end
local sp = string.find(v, ' ', 1, true)
redis.call('SET', KEYS[1], ARGV[2] .. string.sub(v, sp), 'PX', ARGV[3])
return 1
";

/// Deletes a state, only if bound to the user when ARGV[1] is not empty. KEYS: state.
/// ARGV: user id or empty, now µs, channel, message. Returns 1 when a live state was
/// deleted.
const DELETE: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local e, u = string.match(v, '^(%d+) (%d+) ')
if ARGV[1] ~= '' and u ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
if e ~= nil and tonumber(e) > tonumber(ARGV[2]) then return 1 end
return 0
";

/// Adds a hash to a user's index, which lives at least as long as the state. KEYS:
/// index. ARGV: hash hex, px.
const INDEX_ADD: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 1
";

struct StateScripts {
    write: Lua,
    ttl: Lua,
    delete: Lua,
    index_add: Lua,
}

fn scripts() -> &'static StateScripts {
    static SCRIPTS: OnceLock<StateScripts> = OnceLock::new();
    SCRIPTS.get_or_init(|| StateScripts {
        write: Lua::new(WRITE),
        ttl: Lua::new(TTL),
        delete: Lua::new(DELETE),
        index_add: Lua::new(INDEX_ADD),
    })
}

/// `<expires µs> <user id|0> <json>`.
fn encode(record: &StateRecord) -> StoreResult<String> {
    let json = serde_json::to_string(&record.state).map_err(StoreError::corrupt)?;
    let user = record.user.map_or(0, UserId::get);
    Ok(format!("{} {user} {json}", record.expires_at.timestamp_micros()))
}

fn decode(value: &str) -> Result<StateRecord, RedisError> {
    let bad = || RedisError::reply("malformed session state");
    let mut parts = value.splitn(3, ' ');
    let expires = parts.next().and_then(|s| s.parse::<i64>().ok()).ok_or_else(bad)?;
    let user = parts.next().and_then(|s| s.parse::<i64>().ok()).ok_or_else(bad)?;
    let state: SessionState =
        serde_json::from_str(parts.next().ok_or_else(bad)?).map_err(|_| bad())?;
    Ok(StateRecord {
        state,
        user: UserId::new(user),
        expires_at: DateTime::from_timestamp_micros(expires).ok_or_else(bad)?,
    })
}

/// Milliseconds from `now` to `expires_at`, at least 1.
fn px(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (expires_at - now).num_milliseconds().max(1)
}

impl RedisStore {
    fn state_key(&self, key: &StateKey) -> String {
        format!("{}st:{{{}}}", self.shared.keys.prefix(), key.to_hex())
    }

    fn state_index(&self, user: UserId) -> String {
        format!("{}su:{{{user}}}", self.shared.keys.prefix())
    }

    fn channel_value(&self) -> Value {
        self.shared.keys.channel().into()
    }

    /// Runs the write script in `mode`; `Ok(false)` when the mode's condition failed.
    async fn write_state(
        &self,
        key: &StateKey,
        record: &StateRecord,
        mode: &'static str,
    ) -> StoreResult<bool> {
        let now = self.shared.clock.now();
        if !record.is_live_at(now) {
            // Nothing to keep: make sure no older copy is served either.
            self.delete_state(key).await?;
            return Ok(false);
        }
        let message = Invalidation::State(*key).encode();
        let args: Vec<Value> = vec![
            now.timestamp_micros().to_string().into(),
            encode(record)?.into(),
            px(record.expires_at, now).into(),
            mode.into(),
            self.channel_value(),
            message.into(),
        ];
        let written: i64 =
            scripts().write.call(&self.shared.pool, vec![self.state_key(key)], args).await?;
        if written == 1
            && let Some(user) = record.user
        {
            let args: Vec<Value> = vec![key.to_hex().into(), px(record.expires_at, now).into()];
            let _: i64 = scripts()
                .index_add
                .call(&self.shared.pool, vec![self.state_index(user)], args)
                .await?;
        }
        Ok(written == 1)
    }
}

#[async_trait]
impl SessionStateStore for RedisStore {
    fn state_tier(&self) -> &'static str {
        TIER
    }

    async fn load_state(&self, key: &StateKey) -> StoreResult<Option<StateRecord>> {
        self.ensure_trusted()?;
        let value: Option<String> =
            self.shared.pool.get(self.state_key(key)).await.map_err(RedisError::from)?;
        let Some(value) = value else { return Ok(None) };
        let record = decode(&value)?;
        Ok(record.is_live_at(self.shared.clock.now()).then_some(record))
    }

    async fn save_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()> {
        if self.write_state(key, record, "new").await?
            || !record.is_live_at(self.shared.clock.now())
        {
            Ok(())
        } else {
            Err(StoreError::Conflict(Conflict::Exists))
        }
    }

    async fn update_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<bool> {
        self.write_state(key, record, "live").await
    }

    async fn update_state_ttl(
        &self,
        key: &StateKey,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let now = self.shared.clock.now();
        let args: Vec<Value> = vec![
            now.timestamp_micros().to_string().into(),
            expires_at.timestamp_micros().to_string().into(),
            px(expires_at, now).into(),
        ];
        let updated: i64 =
            scripts().ttl.call(&self.shared.pool, vec![self.state_key(key)], args).await?;
        Ok(updated == 1)
    }

    async fn delete_state(&self, key: &StateKey) -> StoreResult<()> {
        let args: Vec<Value> = vec![
            "".into(),
            self.shared.clock.now().timestamp_micros().to_string().into(),
            self.channel_value(),
            Invalidation::State(*key).encode().into(),
        ];
        let _: i64 =
            scripts().delete.call(&self.shared.pool, vec![self.state_key(key)], args).await?;
        Ok(())
    }

    async fn delete_user_states(&self, user: UserId) -> StoreResult<u64> {
        let index = self.state_index(user);
        let members: Vec<String> =
            self.shared.pool.smembers(&index).await.map_err(RedisError::from)?;
        let now = self.shared.clock.now().timestamp_micros().to_string();
        let mut deleted = 0;
        for hex in &members {
            let Some(hash) = cache_core::TokenHash::from_hex(hex) else { continue };
            let key = StateKey::from_hash(hash);
            let args: Vec<Value> = vec![
                user.get().to_string().into(),
                now.clone().into(),
                self.channel_value(),
                Invalidation::State(key).encode().into(),
            ];
            let live: i64 =
                scripts().delete.call(&self.shared.pool, vec![self.state_key(&key)], args).await?;
            deleted += u64::try_from(live).unwrap_or(0);
        }
        let _: i64 = self.shared.pool.del(&index).await.map_err(RedisError::from)?;
        let _: i64 = fred::interfaces::PubsubInterface::publish(
            self.shared.pool.next(),
            self.shared.keys.channel(),
            Invalidation::UserStates(user).encode(),
        )
        .await
        .map_err(RedisError::from)?;
        Ok(deleted)
    }

    async fn put_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()> {
        self.write_state(key, record, "any").await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_garbage_is_refused() {
        let record = StateRecord {
            state: [("a b".to_owned(), "\"x y\"".to_owned())].into_iter().collect(),
            user: UserId::new(42),
            expires_at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
        };
        assert_eq!(decode(&encode(&record).unwrap()).unwrap(), record);
        let anonymous = StateRecord { user: None, ..record };
        assert_eq!(decode(&encode(&anonymous).unwrap()).unwrap(), anonymous);
        for bad in ["", "1", "1 2", "x 0 {}", "1 0 [", "1 y {}"] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }
}
