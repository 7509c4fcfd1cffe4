//! The Lua scripts. Each session operation is one script, so it is atomic with respect to
//! every other operation on the same user (they all touch one hash slot), in a Cluster as
//! on a single server.
//!
//! Conventions: times are integer microseconds passed as decimal strings (exact in Lua's
//! doubles until the year 2255) and compared with `tonumber`; they are never formatted
//! back from Lua numbers, whose `tostring` switches to exponent notation. "Now" is always
//! an argument taken from the injected clock, never Redis `TIME`, so expiry decisions
//! match the other tiers' (and a test's `ManualClock`).

use fred::clients::{Client, Pipeline, Pool};
use fred::interfaces::{ClientLike, LuaInterface};
use fred::prelude::{FromValue, Value};
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand, Key};
use fred::util::redis_keyslot;

use crate::error::RedisError;

/// Helpers shared by the session scripts.
const PRELUDE: &str = r"
local function num(s) return tonumber(s) end
-- A single revoke left a tombstone, or a revoke-all at `at` covers sessions created at
-- or before it, except the one it kept.
-- A fence is the string `at keep` (codec.rs); one that does not parse covers everything
-- (a revocation is never lost to a bad value).
local function covered(fence, tomb, hex, created)
  if redis.call('EXISTS', tomb) == 1 then return true end
  local f = redis.call('GET', fence)
  if not f then return false end
  local at, keep = string.match(f, '^(%-?%d+) (.*)$')
  if not at then return true end
  return num(created) <= num(at) and keep ~= hex
end
-- Milliseconds from now to expiry, at least 1 (PX needs a positive integer).
local function ttl_ms(expiry, now)
  local ms = math.ceil((num(expiry) - num(now)) / 1000)
  if ms < 1 then return 1 end
  return ms
end
-- Drops expired index entries and lets the index expire with its last session.
local function trim(idx, now)
  redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)
  local top = redis.call('ZRANGE', idx, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIRE', idx, ttl_ms(top[2], now)) end
end
-- The session at `s`: its value `c r e a v rest` (codec.rs) split into
-- {c, r, e, a, v, rest, value}, or nil when the key is missing or does not parse (an
-- unreadable value is as good as none: reads skip it, writes replace it).
local function read(s)
  local value = redis.call('GET', s)
  if not value then return nil end
  local c, r, e, a, v, rest =
    string.match(value, '^(%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+) (.*)$')
  if not c then return nil end
  return {c, r, e, a, v, rest, value}
end
local function live(f, now) return num(now) < num(f[3]) and num(now) < num(f[4]) end
-- The fields of the live session at KEYS[1] (KEYS: session, index, fence, tombstone;
-- ARGV: hash, now), or nil; a session that is expired or covered by a tombstone or fence
-- is deleted (key and index entry) on the way.
local function get_live()
  local f = read(KEYS[1])
  if not f then return nil end
  if not live(f, ARGV[2]) or covered(KEYS[3], KEYS[4], ARGV[1], f[1]) then
    redis.call('DEL', KEYS[1])
    redis.call('ZREM', KEYS[2], ARGV[1])
    return nil
  end
  return f
end
";

/// create / put. KEYS: session, index, fence, tombstone. ARGV: hash, now, mode
/// (`create`|`put`), created, expires, absolute, version (what the checks compare), and
/// the value to store (`codec::session_value`). Returns 1 stored, 0 refused, -1 exists
/// (create).
const WRITE: &str = r"
local s, idx, fence, tomb = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local hex, now, create = ARGV[1], ARGV[2], ARGV[3] == 'create'
if covered(fence, tomb, hex, ARGV[4]) then return 0 end
local cur = read(s)
if cur and live(cur, now) then
  if create then return -1 end
  if num(cur[5]) >= num(ARGV[7]) then return 0 end
end
local expiry = ARGV[5]
if num(ARGV[6]) < num(expiry) then expiry = ARGV[6] end
if num(now) >= num(expiry) then return 0 end
redis.call('SET', s, ARGV[8], 'PX', ttl_ms(expiry, now))
redis.call('ZADD', idx, expiry, hex)
trim(idx, now)
return 1
";

/// extend. KEYS: session, index, fence, tombstone. ARGV: hash, now, expected version,
/// new expiry. Returns the new value, nil (gone), or -1 (version conflict).
const EXTEND: &str = r"
local f = get_live()
if not f then return false end
if num(f[5]) ~= num(ARGV[3]) then return -1 end
local e = ARGV[4]
if num(f[4]) < num(e) then e = f[4] end
local v = string.format('%d', num(f[5]) + 1)
local value = f[1] .. ' ' .. ARGV[2] .. ' ' .. e .. ' ' .. f[4] .. ' ' .. v .. ' ' .. f[6]
redis.call('SET', KEYS[1], value, 'PX', ttl_ms(e, ARGV[2]))
redis.call('ZADD', KEYS[2], e, ARGV[1])
trim(KEYS[2], ARGV[2])
return value
";

/// delete (and replayed single revocations). KEYS: session, index, fence, tombstone.
/// ARGV: hash, now, tombstone TTL ms, channel, message (empty: do not publish).
/// Returns 1 when a live session was deleted.
const DELETE: &str = r"
local f = read(KEYS[1])
local present = 0
local ttl = num(ARGV[3])
if f then
  if live(f, ARGV[2]) and not covered(KEYS[3], KEYS[4], ARGV[1], f[1]) then present = 1 end
  -- The tombstone need not outlive the session's absolute expiry.
  local rest = ttl_ms(f[4], ARGV[2])
  if rest < ttl then ttl = rest end
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[4], '1', 'PX', ttl)
if ARGV[5] ~= '' then redis.call('PUBLISH', ARGV[4], ARGV[5]) end
return present
";

/// delete_user_sessions (and replayed revoke-alls). KEYS: index, fence. ARGV: user key
/// base, kept hash (or empty), revocation time, now, fence TTL ms, channel, message,
/// scope (`all`: every indexed session but the kept one, as SQL deletes them, whatever a
/// skewed clock stamped on them; `covered`: only those created at or before the
/// revocation, for a replay that must not touch later logins). Raises the fence (never
/// lowers it), deletes the sessions in scope and returns how many of them were live.
const REVOKE_ALL: &str = r"
local idx, fence, base, keep, at, now = KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local cur = redis.call('GET', fence)
local cur_at = cur and string.match(cur, '^(%-?%d+) ')
if not cur_at or num(cur_at) <= num(at) then
  redis.call('SET', fence, at .. ' ' .. keep)
end
if redis.call('PTTL', fence) < num(ARGV[5]) then redis.call('PEXPIRE', fence, ARGV[5]) end
local n = 0
for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
  if m ~= keep then
    local s = base .. 's:' .. m
    local f = read(s)
    if not f then
      redis.call('DEL', s)
      redis.call('ZREM', idx, m)
    elseif ARGV[8] == 'all' or num(f[1]) <= num(at) then
      if live(f, now) then n = n + 1 end
      redis.call('DEL', s)
      redis.call('ZREM', idx, m)
    end
  end
end
trim(idx, now)
if ARGV[7] ~= '' then redis.call('PUBLISH', ARGV[6], ARGV[7]) end
return n
";

/// list_user_sessions. KEYS: index, fence. ARGV: user key base, now. Returns
/// `[hash, value, hash, value, …]` of the live sessions; drops dead index entries.
const LIST: &str = r"
local idx, fence, base, now = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
redis.call('ZREMRANGEBYSCORE', idx, '-inf', now)
local out = {}
for _, m in ipairs(redis.call('ZRANGE', idx, 0, -1)) do
  local s = base .. 's:' .. m
  local f = read(s)
  if not f or not live(f, now) or covered(fence, base .. 't:' .. m, m, f[1]) then
    redis.call('DEL', s)
    redis.call('ZREM', idx, m)
  else
    out[#out + 1] = m
    out[#out + 1] = f[7]
  end
end
return out
";

/// forget_sessions. KEYS: session, index. ARGV: hash, now. Drops the index entry (and
/// the key) unless Redis holds a live copy.
const FORGET: &str = r"
local f = read(KEYS[1])
if f and live(f, ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
";

/// invalidate_user. KEYS: user. ARGV: channel, message.
const INVALIDATE_USER: &str = r"
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
";

/// Adds a hash to a user's verification set. KEYS: set. ARGV: hash, TTL ms. The set
/// lives as long as its longest-lived member.
const ADD_TO_SET: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < num(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
";

/// put_verification. KEYS: verification. ARGV: purpose, expiry, JSON, TTL ms.
const PUT_VERIFICATION: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'p', ARGV[1], 'e', ARGV[2], 'd', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

/// consume. KEYS: verification. ARGV: purpose, now. Single use: the first caller deletes
/// the key and gets the JSON; another purpose leaves it alone; an expired one is dropped.
const CONSUME: &str = r"
local f = redis.call('HMGET', KEYS[1], 'p', 'e', 'd')
if not f[1] or f[1] ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
if num(ARGV[2]) >= num(f[2]) then return false end
return f[3]
";

/// One verification of delete_verifications. KEYS: verification. ARGV: purpose, now.
/// Returns 1 when a live one was deleted.
const DROP_VERIFICATION: &str = r"
local f = redis.call('HMGET', KEYS[1], 'p', 'e')
if not f[1] or f[1] ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if num(ARGV[2]) < num(f[2]) then return 1 end
return 0
";

/// One script, called by SHA with a reload when the server lost its script cache (a
/// restarted Redis, a new Cluster node).
pub(crate) struct Lua {
    script: Script,
}

impl Lua {
    pub(crate) fn new(body: &str) -> Self {
        Self { script: Script::from_lua(format!("{PRELUDE}\n{body}")) }
    }

    /// The script's SHA-1.
    pub(crate) fn sha(&self) -> &str {
        self.script.sha1()
    }

    /// Loads the script on every primary.
    pub(crate) async fn load(&self, pool: &Pool) -> Result<(), RedisError> {
        let lua = self.script.lua().cloned().ok_or(RedisError::Config("script without source"))?;
        pool.next().script_load_cluster::<(), _>(lua).await?;
        Ok(())
    }

    /// `EVALSHA` with the KEYS and ARGV that `make` builds, loading the script and
    /// retrying once on `NOSCRIPT`. `make` runs again for the retry instead of the first
    /// call keeping a copy of everything it sends: the hot path (a session read) pays
    /// for one set of arguments.
    pub(crate) async fn call_with<R: FromValue>(
        &self,
        pool: &Pool,
        make: impl Fn() -> (Vec<Key>, Vec<Value>),
    ) -> Result<R, RedisError> {
        let (keys, args) = make();
        match pool.evalsha(self.script.sha1().clone(), keys, args).await {
            Err(e) if is_noscript(&e) => {
                self.load(pool).await?;
                let (keys, args) = make();
                Ok(pool.evalsha(self.script.sha1().clone(), keys, args).await?)
            }
            other => Ok(other?),
        }
    }

    /// `EVALSHA`, loading the script and retrying once on `NOSCRIPT`.
    pub(crate) async fn call<R: FromValue>(
        &self,
        pool: &Pool,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<R, RedisError> {
        match pool.evalsha(self.sha(), keys.clone(), args.clone()).await {
            Err(e) if is_noscript(&e) => {
                self.load(pool).await?;
                Ok(pool.evalsha(self.sha(), keys, args).await?)
            }
            other => Ok(other?),
        }
    }
}

/// Queues an `EVALSHA` on a pipeline. fred's pipelines lack the Lua interface, so this
/// is a custom command routed by the hash slot of its first key.
pub(crate) async fn queue_evalsha(
    pipeline: &Pipeline<Client>,
    sha: &str,
    keys: &[String],
    args: &[Value],
) -> Result<(), fred::error::Error> {
    let slot = keys.first().map(|k| redis_keyslot(k.as_bytes()));
    let command = CustomCommand::new_static("EVALSHA", ClusterHash::from(slot), false);
    let mut all: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
    all.push(sha.into());
    all.push(i64::try_from(keys.len()).unwrap_or(i64::MAX).into());
    all.extend(keys.iter().map(|k| Value::from(k.as_str())));
    all.extend(args.iter().cloned());
    pipeline.custom::<(), Value>(command, all).await
}

/// Whether fred's error is the server's `NOSCRIPT` (its script cache lacks the SHA).
pub(crate) fn is_noscript(e: &fred::error::Error) -> bool {
    e.details().starts_with("NOSCRIPT")
}

/// Every script the store uses.
pub(crate) struct Scripts {
    pub(crate) write: Lua,
    pub(crate) extend: Lua,
    pub(crate) delete: Lua,
    pub(crate) revoke_all: Lua,
    pub(crate) list: Lua,
    pub(crate) forget: Lua,
    pub(crate) invalidate_user: Lua,
    pub(crate) add_to_set: Lua,
    pub(crate) put_verification: Lua,
    pub(crate) consume: Lua,
    pub(crate) drop_verification: Lua,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            write: Lua::new(WRITE),
            extend: Lua::new(EXTEND),
            delete: Lua::new(DELETE),
            revoke_all: Lua::new(REVOKE_ALL),
            list: Lua::new(LIST),
            forget: Lua::new(FORGET),
            invalidate_user: Lua::new(INVALIDATE_USER),
            add_to_set: Lua::new(ADD_TO_SET),
            put_verification: Lua::new(PUT_VERIFICATION),
            consume: Lua::new(CONSUME),
            drop_verification: Lua::new(DROP_VERIFICATION),
        }
    }

    fn all(&self) -> [&Lua; 11] {
        [
            &self.write,
            &self.extend,
            &self.delete,
            &self.revoke_all,
            &self.list,
            &self.forget,
            &self.invalidate_user,
            &self.add_to_set,
            &self.put_verification,
            &self.consume,
            &self.drop_verification,
        ]
    }

    /// Loads every script on every primary (after a (re)connect, before pipelines that
    /// cannot reload a single command).
    pub(crate) async fn load_all(&self, pool: &Pool) -> Result<(), RedisError> {
        for lua in self.all() {
            lua.load(pool).await?;
        }
        Ok(())
    }
}
