//! [`SessionLookup`], [`SessionStore`], [`ExpiredCleanup`] and [`RevocationSink`] for
//! [`RedisStore`]: the session scripts' callers, the one-`MGET` read, and the pipelined
//! batch work.

use async_trait::async_trait;
use cache_core::invalidation::Invalidation;
use cache_core::{
    Conflict, ExpiredCleanup, Revocation, RevocationSink, Session, SessionKey, SessionLookup,
    SessionStore, SessionWithUser, StoreError, StoreResult, TokenHash, UserId,
};
use chrono::{DateTime, Utc};
use fred::interfaces::{ClientLike, KeysInterface, SortedSetsInterface};
use fred::prelude::Value;
use fred::types::Key;
use futures::StreamExt;

use crate::codec::{self, SessionFields, micros, millis};
use crate::error::RedisError;
use crate::keys::SessionCall;
use crate::scripts::{is_noscript, queue_evalsha};
use crate::store::{RedisStore, apply_revocations};

/// The name every Redis store reports as its tier.
pub const TIER: &str = "redis";

/// Keys per pipeline in batch work (forget, delete verifications, clear).
const BATCH: usize = 500;
impl RedisStore {
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.shared.clock.now()
    }

    /// Session, index, fence and tombstone keys of one session (the KEYS of every
    /// single-session script; with `with_user`, the user's profile too), the hash and
    /// now, in one buffer.
    fn session_call(&self, key: &SessionKey, with_user: bool) -> SessionCall {
        self.shared.keys.session_call(key, self.now().timestamp_micros(), with_user)
    }

    async fn write(&self, session: &Session, mode: &'static str) -> Result<i64, RedisError> {
        let call = self.session_call(&session.key, false);
        let fields = codec::session_args(session);
        self.shared
            .scripts
            .write
            .call_with(&self.shared.pool, || {
                let mut args = Vec::with_capacity(3 + fields.len());
                args.extend([call.hex(), call.now(), mode.into()]);
                args.extend(fields.iter().cloned());
                (call.keys(), args)
            })
            .await
    }

    /// The live session at `key` and, with `with_user`, the user's cached profile value
    /// (nil when it is not cached), in one `MGET` of the session, its tombstone, the
    /// user's fence [and profile]. Every key shares the user's hash slot, so a Cluster
    /// answers it from one node. Liveness and revocation are decided here with the
    /// session scripts' rules (`live` and `covered` in `scripts.rs`): live means `now`
    /// before both the expiry and the absolute expiry; covered means a tombstone, or a
    /// fence at or after the session's creation that did not keep it (or a fence that
    /// does not parse). A session that is present but dead, covered, or unreadable (as
    /// the scripts' `read` treats it: absent, for the next fill to replace) is refused
    /// and dropped in the background ([`RedisStore::drop_dead`]). Why a read without a
    /// script is safe: `docs/redis.md`, "Reads without a script".
    async fn read_live(
        &self,
        key: &SessionKey,
        with_user: bool,
    ) -> Result<Option<(Session, Value)>, RedisError> {
        let now = self.now().timestamp_micros();
        let call = self.shared.keys.session_call(key, now, with_user);
        let mut keys = call.keys().into_iter();
        let (Some(session), Some(index), Some(fence), Some(tombstone)) =
            (keys.next(), keys.next(), keys.next(), keys.next())
        else {
            return Err(RedisError::reply("session call without its keys"));
        };
        let mut names = Vec::with_capacity(4);
        names.extend([session.clone(), tombstone, fence]);
        names.extend(keys.next());
        let reply: Value = self.shared.pool.mget(names).await?;
        // Trusted when sent is not enough: fred retries a command on a new connection
        // after a reconnect or a Sentinel failover, so the answer may come from a server
        // the revocations were not replayed into yet, while the flag (flipped by the
        // event task) still said trusted. Such an answer is dropped; the tiers below it
        // answer instead.
        self.ensure_trusted()?;
        let Value::Array(values) = reply else {
            return Err(RedisError::reply(format!("MGET reply is {:?}", reply.kind())));
        };
        let mut values = values.into_iter();
        let (Some(value), Some(tombstone), Some(fence)) =
            (values.next(), values.next(), values.next())
        else {
            return Err(RedisError::reply("MGET reply is too short"));
        };
        if value.is_null() {
            return Ok(None);
        }
        let live = value
            .as_str()
            .ok_or_else(|| RedisError::reply("session value is not a string"))
            .and_then(|text| {
                let fields = SessionFields::parse(&text)?;
                // A fence that is not a readable string covers, as a malformed one does.
                let fenced = !fence.is_null()
                    && fence.as_str().is_none_or(|fence| {
                        codec::fence_covers(&fence, call.hex_str(), fields.created)
                    });
                let covered = !tombstone.is_null() || fenced;
                if covered || !fields.live_at(now) {
                    return Ok(None);
                }
                fields.session(*key).map(Some)
            });
        match live {
            Ok(Some(found)) => Ok(Some((found, values.next().unwrap_or(Value::Null)))),
            Ok(None) => {
                self.drop_dead(session, index, call.hex());
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(error = %e, "unreadable session value in redis; dropping it");
                self.drop_dead(session, index, call.hex());
                Ok(None)
            }
        }
    }

    /// Deletes a session found dead or revoked (key and index entry, as the scripts
    /// did) without making the reader wait: a failure is only logged, the next read
    /// refuses the session again. A concurrent fill of the same session is refused by
    /// the write script when the session was revoked; when it had only expired by the
    /// reader's clock, a fill racing this delete is lost, which costs a cache miss.
    fn drop_dead(&self, session: Key, index: Key, hex: Value) {
        let client = self.shared.pool.next().clone();
        tokio::spawn(async move {
            let pipeline = client.pipeline();
            let queued: Result<(), fred::error::Error> = async {
                let () = pipeline.del(session).await?;
                let () = pipeline.zrem(index, hex).await?;
                let _: Value = pipeline.all().await?;
                Ok(())
            }
            .await;
            if let Err(error) = queued {
                tracing::debug!(%error, "could not drop a dead or revoked session from redis");
            }
        });
    }

    /// A revocation Redis did not confirm (timeout, dropped connection) may never have
    /// reached it: the journal already holds it (SQL is written first), so distrust
    /// Redis until a replay has applied it.
    fn confirm_revocation<T>(&self, result: Result<T, RedisError>) -> Result<T, RedisError> {
        if result.is_err() {
            self.shared.revocation_unconfirmed();
        }
        result
    }

    /// Runs one script per item in a pipeline and sums the integer replies. A batch
    /// that met a server without the scripts (restarted) is sent again after loading
    /// them; every batch script is idempotent.
    pub(crate) async fn pipelined_sum(
        &self,
        sha: &str,
        calls: Vec<(Vec<String>, Vec<Value>)>,
    ) -> Result<i64, RedisError> {
        let mut total = 0;
        for batch in calls.chunks(BATCH) {
            let mut reloaded = false;
            loop {
                let pipeline = self.shared.pool.next().pipeline();
                for (keys, args) in batch {
                    queue_evalsha(&pipeline, sha, keys, args).await?;
                }
                let mut sum = 0;
                let mut failure = None;
                for result in pipeline.try_all::<i64>().await {
                    match result {
                        Ok(n) => sum += n,
                        Err(e) => failure = failure.or(Some(e)),
                    }
                }
                match failure {
                    None => {
                        total += sum;
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

#[async_trait]
impl SessionLookup for RedisStore {
    /// One `MGET` (see [`RedisStore::read_live`]): the session, its tombstone and the
    /// user's fence, checked here (a revoked or expired session is never returned, and
    /// is dropped in the background), and the user's profile, which shares the
    /// session's hash slot.
    async fn get_with_user(&self, key: &SessionKey) -> StoreResult<Option<SessionWithUser>> {
        self.ensure_trusted()?;
        let Some((session, user)) = self.read_live(key, true).await? else { return Ok(None) };
        Ok(Some(SessionWithUser { session, user: codec::user_from_value(&user)? }))
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    fn tier(&self) -> &'static str {
        TIER
    }

    async fn create(&self, session: &Session) -> StoreResult<()> {
        match self.write(session, "create").await? {
            -1 => Err(StoreError::Conflict(Conflict::Exists)),
            // 0: revoked (tombstone or fence) or already expired: refused silently, as
            // the contract asks of a cache.
            _ => Ok(()),
        }
    }

    async fn get(&self, key: &SessionKey) -> StoreResult<Option<Session>> {
        self.ensure_trusted()?;
        let Some((session, _)) = self.read_live(key, false).await? else { return Ok(None) };
        Ok(Some(session))
    }

    async fn put(&self, session: &Session) -> StoreResult<bool> {
        Ok(self.write(session, "put").await? == 1)
    }

    async fn extend(
        &self,
        key: &SessionKey,
        expected_version: i64,
        new_expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<Session>> {
        self.ensure_trusted()?;
        let call = self.session_call(key, false);
        let (version, expiry) = (Value::from(expected_version.to_string()), micros(new_expires_at));
        let reply: Value = self
            .shared
            .scripts
            .extend
            .call_with(&self.shared.pool, || {
                let args = vec![call.hex(), call.now(), version.clone(), expiry.as_str().into()];
                (call.keys(), args)
            })
            .await?;
        match reply {
            Value::Integer(-1) => Err(StoreError::Conflict(Conflict::Version)),
            reply => Ok(codec::optional_session(*key, reply)?),
        }
    }

    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        let now = self.now();
        let message = Invalidation::Revoked(Revocation::Session { key: *key, at: now }).encode();
        let call = self.shared.keys.session_call(key, now.timestamp_micros(), false);
        let ttl = millis(self.shared.config.fence_ttl);
        let result = self
            .shared
            .scripts
            .delete
            .call_with(&self.shared.pool, || {
                let args = vec![
                    call.hex(),
                    call.now(),
                    ttl.as_str().into(),
                    self.shared.keys.channel().into(),
                    message.as_str().into(),
                ];
                (call.keys(), args)
            })
            .await;
        let deleted: i64 = self.confirm_revocation(result)?;
        Ok(deleted == 1)
    }

    async fn delete_user_sessions(
        &self,
        user: UserId,
        keep: Option<TokenHash>,
    ) -> StoreResult<u64> {
        let now = self.now();
        let message = Invalidation::Revoked(Revocation::AllOfUser { user, keep, at: now }).encode();
        let keys = &self.shared.keys;
        let args: Vec<Value> = vec![
            keys.user_base(user).into(),
            keep.map(|k| k.to_hex()).unwrap_or_default().into(),
            micros(now).into(),
            micros(now).into(),
            millis(self.shared.config.fence_ttl).into(),
            keys.channel().into(),
            message.into(),
            "all".into(),
        ];
        let result = self
            .shared
            .scripts
            .revoke_all
            .call(&self.shared.pool, vec![keys.index(user), keys.fence(user)], args)
            .await;
        let deleted: i64 = self.confirm_revocation(result)?;
        Ok(u64::try_from(deleted).unwrap_or(0))
    }

    async fn list_user_sessions(&self, user: UserId) -> StoreResult<Vec<Session>> {
        self.ensure_trusted()?;
        let keys = &self.shared.keys;
        let args: Vec<Value> = vec![keys.user_base(user).into(), micros(self.now()).into()];
        let reply: Value = self
            .shared
            .scripts
            .list
            .call(&self.shared.pool, vec![keys.index(user), keys.fence(user)], args)
            .await?;
        let mut sessions = codec::session_list(user, reply)?;
        sessions.sort_by_key(|s| std::cmp::Reverse(s.renewed_at));
        Ok(sessions)
    }
}

#[async_trait]
impl ExpiredCleanup for RedisStore {
    /// Redis expires sessions by itself (every key's TTL is its remaining life), so
    /// there is nothing to find here; the janitor deletes expired sessions from SQL and
    /// hands their keys to [`ExpiredCleanup::forget_sessions`].
    async fn delete_expired_sessions(&self, _limit: usize) -> StoreResult<Vec<SessionKey>> {
        Ok(Vec::new())
    }

    /// Redis expires verifications by itself (TTL = remaining life).
    async fn delete_expired_verifications(&self, _limit: usize) -> StoreResult<u64> {
        Ok(0)
    }

    /// Drops the index entries (pipelined) of sessions found expired by another tier,
    /// unless Redis still holds a live copy.
    async fn forget_sessions(&self, keys: &[SessionKey]) -> StoreResult<()> {
        let now = micros(self.now());
        let names = &self.shared.keys;
        let calls = keys
            .iter()
            .map(|k| {
                (
                    vec![names.session(k.user, &k.hash), names.index(k.user)],
                    vec![k.hash.to_hex().into(), now.clone().into()],
                )
            })
            .collect();
        self.pipelined_sum(self.shared.scripts.forget.sha(), calls).await?;
        Ok(())
    }
}

#[async_trait]
impl RevocationSink for RedisStore {
    /// Writes tombstones and fences and deletes the covered sessions (pipelined);
    /// publishes nothing (the revoking instance did).
    async fn apply_revocations(&self, revocations: &[Revocation]) -> StoreResult<()> {
        let result = apply_revocations(&self.shared, revocations).await;
        if result.is_err() {
            self.shared.revocation_unconfirmed();
        }
        result
    }

    /// Deletes every cached session, index, user and verification under the prefix
    /// (found with `SCAN`, on every primary of a Cluster). Fences and tombstones stay:
    /// they are revocation knowledge, not cache, and dropping them could let a stale
    /// copy in another tier be written back. Keys of other features under the same
    /// prefix (analytics, markers) are left alone.
    async fn clear(&self) -> StoreResult<()> {
        let pattern = format!("{}*", glob_escape(self.shared.keys.prefix()));
        let client = self.shared.pool.next();
        let mut stream = if client.is_clustered() {
            client.scan_cluster_buffered(pattern, Some(1000), None).boxed()
        } else {
            client.scan_buffered(pattern, Some(1000), None).boxed()
        };
        let mut doomed = Vec::new();
        while let Some(key) = stream.next().await {
            let key = key.map_err(RedisError::from)?;
            let Some(name) = key.as_str() else { continue };
            if self.shared.keys.is_cache_entry(name) {
                doomed.push(name.to_owned());
            }
        }
        for batch in doomed.chunks(BATCH) {
            let pipeline = client.pipeline();
            for key in batch {
                let _: () = pipeline.del(key.as_str()).await.map_err(RedisError::from)?;
            }
            if let Some(Err(e)) = pipeline.try_all::<i64>().await.into_iter().find(Result::is_err) {
                return Err(RedisError::from(e).into());
            }
        }
        Ok(())
    }
}

/// Escapes glob metacharacters for `SCAN MATCH`.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
