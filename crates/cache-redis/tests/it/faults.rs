//! Faults injected into a redis-server this binary starts itself on a free loopback port:
//! SIGKILL and restart under load (F1), SIGSTOP/SIGCONT (F2) through the production
//! composition on PostgreSQL (`DATABASE_URL`), and a Redis that lost acknowledged deletes
//! (a key restored, a restart from an older snapshot) on SQLite (F5).
//!
//! Process management (kill, restart, signals) blocks, so it runs on tokio's blocking
//! pool: the load generators keep both worker threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cache_core::{
    Breaker, BreakerConfig, BreakerHandle, BreakerState, ManualClock, Session, SessionKey,
    SessionStore, SharedClock, StoreError, StoreResult, SystemClock, Tiered, TokenHash, UserId,
};
use cache_memory::{MemoryConfig, MemoryStore};
use cache_redis::fred::interfaces::KeysInterface;
use cache_redis::fred::prelude::Value;
use cache_redis::{RedisConfig, RedisStore};
use cache_sql::SqlStore;
use cache_testkit::{random_user, sample_session, service_url};
use chrono::{DateTime, Utc};
use futures::future::join_all;

use crate::support::{
    RedisServer, memory, redis_server_available, stack, unique_prefix, wait_trusted,
};

/// Runs blocking process management off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// A session store that counts the hits it serves (here: the Redis tier's).
struct CountHits<S> {
    inner: S,
    hits: Arc<AtomicU64>,
}

#[async_trait]
impl<S: SessionStore> SessionStore for CountHits<S> {
    fn tier(&self) -> &'static str {
        self.inner.tier()
    }
    async fn create(&self, session: &Session) -> StoreResult<()> {
        self.inner.create(session).await
    }
    async fn get(&self, key: &SessionKey) -> StoreResult<Option<Session>> {
        let found = self.inner.get(key).await;
        if matches!(found, Ok(Some(_))) {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        found
    }
    async fn put(&self, session: &Session) -> StoreResult<bool> {
        self.inner.put(session).await
    }
    async fn extend(
        &self,
        key: &SessionKey,
        expected_version: i64,
        new_expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<Session>> {
        self.inner.extend(key, expected_version, new_expires_at).await
    }
    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        self.inner.delete(key).await
    }
    async fn delete_user_sessions(
        &self,
        user: UserId,
        keep: Option<TokenHash>,
    ) -> StoreResult<u64> {
        self.inner.delete_user_sessions(user, keep).await
    }
    async fn list_user_sessions(&self, user: UserId) -> StoreResult<Vec<Session>> {
        self.inner.list_user_sessions(user).await
    }
}

type LoadStack = Tiered<MemoryStore, Tiered<Breaker<CountHits<RedisStore>>, SqlStore>>;

/// What the validation workers saw.
#[derive(Default)]
struct Stats {
    calls: AtomicU64,
    errors: AtomicU64,
    missing: AtomicU64,
    max_micros: AtomicU64,
}

/// The composition under load, on a Redis of our own with the default 50 ms command
/// timeout, and PostgreSQL.
struct Rig {
    server: Option<RedisServer>,
    stack: Arc<LoadStack>,
    hits: Arc<AtomicU64>,
    breaker: BreakerHandle,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Rig {
    async fn start(tag: &str, db_url: &str) -> Self {
        let server = blocking({
            let tag = tag.to_owned();
            move || RedisServer::start(&tag, &[])
        })
        .await;
        // Real time: the faults happen in real time, and the memory tier's short TTL
        // must pass for requests to reach Redis at all.
        let clock: SharedClock = SystemClock::shared();
        let sql = cache_sql::testing::isolated_postgres(db_url, clock.clone()).await.unwrap();
        let config = RedisConfig {
            url: server.url(),
            key_prefix: unique_prefix(tag),
            ..RedisConfig::default()
        };
        assert_eq!(config.command_timeout, Duration::from_millis(50));
        let redis = RedisStore::connect(config, clock.clone()).await.unwrap();
        redis.set_journal(Arc::new(sql.clone()));
        wait_trusted(&redis, Duration::from_secs(5)).await;
        let hits = Arc::new(AtomicU64::new(0));
        let front = Breaker::new(
            CountHits { inner: redis, hits: hits.clone() },
            cache_redis::TIER,
            BreakerConfig::default(),
        );
        let breaker = front.handle();
        // A 10 ms memory TTL sends most validations on to Redis.
        let memory = MemoryStore::new(
            MemoryConfig { ttl: Duration::from_millis(10), ..MemoryConfig::default() },
            clock.clone(),
        );
        let stack = Arc::new(Tiered::new(memory, Tiered::new(front, sql)));

        let user = random_user();
        let sessions: Vec<Session> =
            (0..100).map(|_| sample_session(&ManualClock::new(clock.now()), user)).collect();
        for result in join_all(sessions.iter().map(|s| stack.create(s))).await {
            result.unwrap();
        }
        let keys: Arc<Vec<SessionKey>> = Arc::new(sessions.iter().map(|s| s.key).collect());
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..4)
            .map(|w| {
                let (stack, keys, stats, stop) =
                    (stack.clone(), keys.clone(), stats.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut i = w * 25;
                    while !stop.load(Ordering::Relaxed) {
                        let key = keys[i % keys.len()];
                        i += 1;
                        let start = Instant::now();
                        let result = stack.get(&key).await;
                        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                        stats.calls.fetch_add(1, Ordering::Relaxed);
                        stats.max_micros.fetch_max(micros, Ordering::Relaxed);
                        match result {
                            Ok(Some(_)) => {}
                            Ok(None) => drop(stats.missing.fetch_add(1, Ordering::Relaxed)),
                            Err(_) => drop(stats.errors.fetch_add(1, Ordering::Relaxed)),
                        }
                        // Leave the other tasks (Redis events, replay) room on 2 cores.
                        tokio::time::sleep(Duration::from_micros(500)).await;
                    }
                })
            })
            .collect();
        Self { server: Some(server), stack, hits, breaker, stats, stop, workers }
    }

    fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Waits until `done` holds, checking every 10 ms; returns how long it took.
    async fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        done: impl Fn(&Self) -> bool,
    ) -> Duration {
        let start = Instant::now();
        while !done(self) {
            assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        start.elapsed()
    }

    /// Waits until the Redis tier has served `n` more hits.
    async fn wait_for_hits(&self, what: &str, n: u64, limit: Duration) -> Duration {
        let target = self.hits() + n;
        self.wait_for(what, limit, |rig| rig.hits() >= target).await
    }

    async fn with_server<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut RedisServer) -> T + Send + 'static,
    ) -> T {
        let mut server = self.server.take().expect("server");
        let (server, out) = blocking(move || {
            let out = f(&mut server);
            (server, out)
        })
        .await;
        self.server = Some(server);
        out
    }

    /// Stops the load and checks what every F1/F2 run must show: no errors, no valid
    /// session reported missing, no call slower than the bound.
    async fn finish(mut self, name: &str) {
        self.stop.store(true, Ordering::Relaxed);
        for worker in std::mem::take(&mut self.workers) {
            worker.await.unwrap();
        }
        let stats = &self.stats;
        let (calls, errors, missing) = (
            stats.calls.load(Ordering::Relaxed),
            stats.errors.load(Ordering::Relaxed),
            stats.missing.load(Ordering::Relaxed),
        );
        let max = Duration::from_micros(stats.max_micros.load(Ordering::Relaxed));
        eprintln!(
            "{name}: {calls} validations, {errors} errors, {missing} missing, slowest {max:?}"
        );
        assert!(calls > 1000, "too little load to mean anything: {calls}");
        assert_eq!(errors, 0, "validations failed");
        assert_eq!(missing, 0, "valid sessions reported missing");
        // The promise is "command timeout (50 ms) plus the SQL lookup": the slowest call is
        // printed above; speed is measured by `cargo xtask bench`, not asserted here.
        drop(self.stack);
    }
}

/// F1: SIGKILL Redis under concurrent validations, restart it empty on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_then_restart() {
    if !redis_server_available() {
        return;
    }
    let Some(db_url) = service_url("DATABASE_URL") else { return };
    let mut rig = Rig::start("f1", &db_url).await;
    rig.wait_for_hits("warm-up hits on the redis tier", 200, Duration::from_secs(10)).await;

    rig.with_server(RedisServer::kill9).await;
    let opened = rig
        .wait_for("breaker open after SIGKILL", Duration::from_secs(5), |r| {
            r.breaker.state() == BreakerState::Open
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await; // Serve from memory + SQL a while.

    // An empty Redis (no persistence) on the same port.
    rig.with_server(RedisServer::restart).await;
    let back = rig.wait_for_hits("redis hits after restart", 50, Duration::from_secs(5)).await;
    assert_eq!(rig.breaker.state(), BreakerState::Closed);
    eprintln!(
        "F1: breaker open {opened:?} after SIGKILL; redis tier serving hits {back:?} after restart"
    );
    rig.finish("F1").await;
}

/// F2: SIGSTOP (a black hole) opens the breaker; after SIGCONT the tier is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_opens_the_breaker_and_sigcont_closes_it() {
    if !redis_server_available() {
        return;
    }
    let Some(db_url) = service_url("DATABASE_URL") else { return };
    let mut rig = Rig::start("f2", &db_url).await;
    rig.wait_for_hits("warm-up hits on the redis tier", 200, Duration::from_secs(10)).await;

    rig.with_server(|s| s.pause()).await;
    let opened = rig
        .wait_for("breaker open after SIGSTOP", Duration::from_secs(10), |r| {
            r.breaker.state() == BreakerState::Open
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await; // Past fred's unresponsive check too.
    let hits_while_paused = rig.hits();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.hits(), hits_while_paused, "a paused redis served hits");

    rig.with_server(|s| s.resume()).await;
    let back = rig.wait_for_hits("redis hits after SIGCONT", 50, Duration::from_secs(5)).await;
    assert_eq!(rig.breaker.state(), BreakerState::Closed);
    eprintln!(
        "F2: breaker open {opened:?} after SIGSTOP; redis tier serving hits {back:?} after SIGCONT"
    );
    rig.finish("F2").await;
}

/// F5: a Redis that lost acknowledged deletes brings no revoked session back: a key
/// restored after its revoke is refused by the tombstone, and a restart from a snapshot
/// taken before the revocations is repaired by the journal replay before any read is
/// trusted. SQLite is the authority and journal here (no server needed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restored_snapshot_brings_no_revoked_session_back() {
    if !redis_server_available() {
        return;
    }
    let mut server = blocking(|| RedisServer::start("f5", &[])).await;
    let manual = ManualClock::starting_now();
    let clock: SharedClock = manual.clone();
    let sql = cache_sql::testing::temp_sqlite(clock.clone()).await.unwrap();
    let config = RedisConfig {
        url: server.url(),
        key_prefix: unique_prefix("f5"),
        command_timeout: Duration::from_millis(500),
        ..RedisConfig::default()
    };
    let redis = RedisStore::connect(config.clone(), clock.clone()).await.unwrap();
    let stack = stack(memory(clock.clone()), redis.clone(), sql.clone()).await;
    let session_key =
        |k: &SessionKey| format!("{}{{u:{}}}:s:{}", config.key_prefix, k.user, k.hash.to_hex());
    let exists = |redis: &RedisStore, k: &SessionKey| {
        let (redis, name) = (redis.clone(), session_key(k));
        async move { redis.pool().exists::<i64, _>(name).await.unwrap() == 1 }
    };

    // (a) One key comes back (DUMP before the revoke, RESTORE after).
    let one = sample_session(&manual, random_user());
    stack.create(&one).await.unwrap();
    let dump: Value = redis.pool().dump(session_key(&one.key)).await.unwrap();
    assert!(!dump.is_null(), "DUMP of a live session");
    assert!(stack.delete(&one.key).await.unwrap());
    assert!(!exists(&redis, &one.key).await);
    let _: Value = redis
        .pool()
        .restore(session_key(&one.key), 0, dump, false, false, None, None)
        .await
        .unwrap();
    assert!(exists(&redis, &one.key).await, "the revoked key is back in redis");
    assert_eq!(redis.get(&one.key).await.unwrap(), None);
    assert_eq!(stack.get(&one.key).await.unwrap(), None);
    assert!(!exists(&redis, &one.key).await, "the read dropped the revived key");

    // (b) A snapshot taken before a revoke and a revoke-all.
    let single = sample_session(&manual, random_user());
    let user = random_user();
    let all: Vec<_> = (0..3).map(|_| sample_session(&manual, user)).collect();
    for s in all.iter().chain([&single]) {
        stack.create(s).await.unwrap();
    }
    let saved = server.cli(&["SAVE"]);
    assert_eq!(saved.trim(), "OK");
    let rdb = server.dir().join("dump.rdb");
    manual.advance(chrono::Duration::seconds(1));
    assert!(stack.delete(&single.key).await.unwrap());
    assert_eq!(stack.delete_user_sessions(user, None).await.unwrap(), 3);
    let revoked: Vec<SessionKey> = all.iter().chain([&single]).map(|s| s.key).collect();

    // Proof that the snapshot holds the revoked sessions: a copy of it served by a second
    // server, read by a store without a journal, returns them.
    let copy = blocking(move || RedisServer::start_from_rdb("f5-copy", &rdb)).await;
    let naive =
        RedisStore::connect(RedisConfig { url: copy.url(), ..config.clone() }, clock.clone())
            .await
            .unwrap();
    for key in &revoked {
        assert!(naive.get(key).await.unwrap().is_some(), "snapshot lacks a revoked session");
    }
    // The same store once given the journal: replayed, they are gone for good.
    naive.set_journal(Arc::new(sql.clone()));
    wait_trusted(&naive, Duration::from_secs(10)).await;
    for key in &revoked {
        assert_eq!(naive.get(key).await.unwrap(), None);
        assert!(!exists(&naive, key).await);
    }

    // The real thing: the store's own Redis restarts from that snapshot.
    let replays = redis.replays();
    server = blocking(move || {
        server.restart();
        server
    })
    .await;
    // The connection loss was noticed, and reads are refused until a new replay is done.
    let start = Instant::now();
    while redis.replays() == replays {
        assert!(start.elapsed() < Duration::from_secs(10), "no replay after the restart");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(redis.is_trusted());
    for key in &revoked {
        assert_eq!(redis.get(key).await.unwrap(), None, "a revoked session came back");
        assert_eq!(stack.get(key).await.unwrap(), None);
        assert!(!exists(&redis, key).await);
    }
    for s in all.iter().chain([&single]) {
        assert!(!redis.put(s).await.unwrap(), "a late fill revived a revoked session");
    }
    drop(server);
}

/// A revocation Redis does not confirm (here: it times out on a paused server, for much
/// less than fred's unresponsive check, so the connection survives) makes the store
/// distrust Redis and replay the journal, which also repairs revocations Redis never saw
/// (here: one written to SQL only, as when an open breaker skips the Redis tier).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_revocation_makes_the_store_replay_the_journal() {
    if !redis_server_available() {
        return;
    }
    let server = blocking(|| RedisServer::start("unconfirmed", &[])).await;
    let manual = ManualClock::starting_now();
    let clock: SharedClock = manual.clone();
    let sql = cache_sql::testing::temp_sqlite(clock.clone()).await.unwrap();
    let config = RedisConfig {
        url: server.url(),
        key_prefix: unique_prefix("unconfirmed"),
        ..RedisConfig::default()
    };
    let redis = RedisStore::connect(config, clock.clone()).await.unwrap();
    let stack = stack(memory(clock.clone()), redis.clone(), sql.clone()).await;
    let (a, b) = (sample_session(&manual, random_user()), sample_session(&manual, random_user()));
    stack.create(&a).await.unwrap();
    stack.create(&b).await.unwrap();

    assert!(sql.delete(&b.key).await.unwrap());
    assert_eq!(redis.get(&b.key).await.unwrap(), Some(b.clone()), "redis never saw b's revocation");

    let replays = redis.replays();
    let server = blocking(move || {
        server.pause();
        server
    })
    .await;
    assert!(sql.delete(&a.key).await.unwrap());
    let unconfirmed = redis.delete(&a.key).await;
    assert!(matches!(unconfirmed, Err(StoreError::Timeout(_))), "{unconfirmed:?}");
    assert!(!redis.is_trusted());
    assert!(redis.get(&b.key).await.is_err(), "reads are refused until the replay");
    let server = blocking(move || {
        server.resume();
        server
    })
    .await;

    let start = Instant::now();
    while redis.replays() == replays {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no replay after the unconfirmed revocation"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(redis.get(&a.key).await.unwrap(), None);
    assert_eq!(redis.get(&b.key).await.unwrap(), None);
    drop(server);
}
