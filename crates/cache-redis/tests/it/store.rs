//! Behaviour of the Redis tier beyond the shared conformance suite: what is stored (token
//! hashes only, the documented key layout), `clear`, `forget_sessions`, health calls,
//! starting without Redis, the invalidation listener (on a Cluster, and flushing when its
//! connection drops), and the read-time revocation checks of `get_with_user`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{
    Clock, ExpiredCleanup, ManualClock, Purpose, RevocationSink, Session, SessionLookup,
    SessionStore, SessionToken, SessionWithUser, SharedClock, StoreError, User, UserCache,
    VerificationStore, VerificationToken,
};
use cache_redis::fred::interfaces::{
    HashesInterface, KeysInterface, SetsInterface, SortedSetsInterface,
};
use cache_redis::fred::prelude::Value;
use cache_redis::fred::types::scan::Scanner;
use cache_redis::{InvalidationListener, RedisConfig, RedisStore};
use cache_testkit::{random_user, sample_session, sample_verification, service_url};
use futures::StreamExt;

use crate::support::{
    RedisCluster, RedisServer, free_port, memory, redis_server_available, test_config, wait_trusted,
};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Every key under the store's prefix (a test prefix: a handful of keys).
async fn keys_of(store: &RedisStore) -> BTreeSet<String> {
    let pattern = format!("{}*", store.config().key_prefix);
    let mut pages = store.pool().next().scan(pattern, Some(100), None);
    let mut keys = BTreeSet::new();
    while let Some(page) = pages.next().await {
        let mut page = page.unwrap();
        for key in page.take_results().unwrap_or_default() {
            keys.insert(key.as_str().unwrap().to_owned());
        }
        page.next();
    }
    keys
}

/// Everything stored under a key, as text.
async fn dump_text(store: &RedisStore, key: &str) -> String {
    let pool = store.pool();
    let kind: String = pool.r#type(key).await.unwrap();
    let value: Value = match kind.as_str() {
        "hash" => pool.hgetall(key).await.unwrap(),
        "zset" => pool.zrange(key, 0, -1, None, false, None, true).await.unwrap(),
        "set" => pool.smembers(key).await.unwrap(),
        _ => pool.get(key).await.unwrap(),
    };
    format!("{value:?}")
}

/// Keys and values hold token hashes, never the secrets themselves; and the keys are the
/// ones `docs/redis.md` describes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_only_token_hashes_under_the_documented_keys() {
    let Some(url) = service_url("REDIS_URL") else { return };
    let clock = ManualClock::starting_now();
    let store = RedisStore::connect(test_config(&url, "layout"), clock.clone()).await.unwrap();
    let user = random_user();
    let token = SessionToken::generate(user).unwrap();
    let session = cache_core::Session { key: token.key(), ..sample_session(&clock, user) };
    store.create(&session).await.unwrap();
    let verify = VerificationToken::generate().unwrap();
    let verification = cache_core::Verification {
        hash: verify.hash(),
        ..sample_verification(
            &clock,
            user,
            Purpose::EmailVerification,
            chrono::Duration::minutes(10),
        )
    };
    store.put_verification(&verification).await.unwrap();
    store
        .put_user(&User {
            id: user,
            name: "Ada".into(),
            email: "ada@example.com".into(),
            email_verified: true,
            created_at: clock.now(),
        })
        .await
        .unwrap();
    let revoked = sample_session(&clock, user);
    store.create(&revoked).await.unwrap();
    assert!(store.delete(&revoked.key).await.unwrap());

    let p = &store.config().key_prefix;
    let (h, r, v) = (session.key.hash.to_hex(), revoked.key.hash.to_hex(), verify.hash().to_hex());
    let expected: BTreeSet<String> = [
        format!("{p}{{u:{user}}}:s:{h}"),
        format!("{p}{{u:{user}}}:t:{r}"),
        format!("{p}{{u:{user}}}:idx"),
        format!("{p}{{u:{user}}}:user"),
        format!("{p}{{u:{user}}}:vs:email"),
        format!("{p}v:{{{v}}}"),
    ]
    .into();
    let keys = keys_of(&store).await;
    assert_eq!(keys, expected);

    let cookie = token.encode();
    let session_secret = cookie.split_once('.').unwrap().1;
    let link_secret = verify.encode();
    for key in &keys {
        let text = format!("{key} {}", dump_text(&store, key).await);
        assert!(!text.contains(session_secret), "session secret stored under {key}");
        assert!(!text.contains(&link_secret), "verification secret stored under {key}");
    }
}

/// `clear` drops cached entries but keeps what refuses revoked sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_drops_cache_entries_but_keeps_revocations() {
    let Some(url) = service_url("REDIS_URL") else { return };
    let clock = ManualClock::starting_now();
    let store = RedisStore::connect(test_config(&url, "clear"), clock.clone()).await.unwrap();
    let user = random_user();
    let (live, revoked) = (sample_session(&clock, user), sample_session(&clock, user));
    store.create(&live).await.unwrap();
    store.create(&revoked).await.unwrap();
    assert!(store.delete(&revoked.key).await.unwrap());
    let other = random_user();
    let fenced = sample_session(&clock, other);
    store.create(&fenced).await.unwrap();
    assert_eq!(store.delete_user_sessions(other, None).await.unwrap(), 1);

    store.clear().await.unwrap();
    assert_eq!(store.get(&live.key).await.unwrap(), None);
    assert!(store.list_user_sessions(user).await.unwrap().is_empty());
    // The tombstone and the fence survived the clear.
    assert!(!store.put(&revoked).await.unwrap());
    assert!(!store.put(&fenced).await.unwrap());
    assert!(store.put(&live).await.unwrap());
}

/// `forget_sessions` drops index entries of expired sessions, not of live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_sessions_drops_only_dead_index_entries() {
    let Some(url) = service_url("REDIS_URL") else { return };
    let clock = ManualClock::starting_now();
    let config = test_config(&url, "forget");
    let store = RedisStore::connect(config.clone(), clock.clone()).await.unwrap();
    let user = random_user();
    let mut short = sample_session(&clock, user);
    short.expires_at = clock.now() + chrono::Duration::minutes(1);
    let long = sample_session(&clock, user);
    store.create(&short).await.unwrap();
    store.create(&long).await.unwrap();
    let index = format!("{}{{u:{user}}}:idx", config.key_prefix);
    let size = || async { store.pool().zcard::<i64, _>(&index).await.unwrap() };
    assert_eq!(size().await, 2);
    // Redis keeps its own expiry; nothing to sweep here.
    assert!(store.delete_expired_sessions(10).await.unwrap().is_empty());

    clock.advance(chrono::Duration::minutes(2));
    store.forget_sessions(&[short.key, long.key]).await.unwrap();
    assert_eq!(size().await, 1);
    assert_eq!(store.list_user_sessions(user).await.unwrap(), vec![long]);
}

/// Health calls answer, and a bad prefix is refused before connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_calls_and_config_validation() {
    let clock: SharedClock = ManualClock::starting_now();
    let bad = RedisConfig { key_prefix: "a{b}:".into(), ..RedisConfig::default() };
    assert!(RedisStore::connect(bad, clock.clone()).await.is_err());
    let Some(url) = service_url("REDIS_URL") else { return };
    let store = RedisStore::connect(test_config(&url, "health"), clock).await.unwrap();
    assert!(store.ping().await.unwrap() < Duration::from_secs(5));
    let info = store.info().await.unwrap();
    assert!(info.used_memory > 0 && info.connected_clients >= 2, "{info:?}");
    assert!(store.replays() >= 1);
}

/// A store built while Redis is down comes up anyway, answers `Unavailable` at once, and
/// works as soon as Redis appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_without_redis_and_recovers_when_it_appears() {
    if !redis_server_available() {
        return;
    }
    let port = free_port(false);
    let clock = ManualClock::starting_now();
    let config = RedisConfig {
        url: format!("redis://127.0.0.1:{port}"),
        key_prefix: crate::support::unique_prefix("late"),
        ..RedisConfig::default()
    };
    let store = RedisStore::connect(config, clock.clone()).await.unwrap();
    assert!(!store.is_trusted());
    let session = sample_session(&clock, random_user());
    // Refused before any I/O (the replay is pending), so it cannot wait for the dead
    // Redis: shown by the error, not by a wall clock.
    let err = store.get(&session.key).await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let cause = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
    assert!(cause.contains("not trusted"), "{err}: {cause}");
    assert!(store.create(&session).await.is_err_and(|e: StoreError| e.is_unavailable()));

    let server = blocking(move || RedisServer::start_on("late", port, &[])).await;
    wait_trusted(&store, Duration::from_secs(5)).await;
    store.create(&session).await.unwrap();
    assert_eq!(store.get(&session.key).await.unwrap(), Some(session));
    drop(server);
}

/// Revocations published by a store reach a listener through a Redis Cluster (PUBLISH
/// from inside the scripts is broadcast to every node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidations_cross_a_cluster() {
    if !redis_server_available() {
        return;
    }
    let cluster = blocking(RedisCluster::start).await;
    let clock = ManualClock::starting_now();
    let config = RedisConfig { url: cluster.url(), ..test_config("", "cluster-pubsub") };
    let local = memory(clock.clone());
    let listener = InvalidationListener::spawn(&config, Arc::new(local.clone())).await.unwrap();
    let store = RedisStore::connect(config, clock.clone()).await.unwrap();
    assert!(store.is_trusted());

    let user = random_user();
    let (one, all) = (sample_session(&clock, user), sample_session(&clock, user));
    for s in [&one, &all] {
        store.create(s).await.unwrap();
        assert!(local.put(s).await.unwrap());
    }
    let profile = User {
        id: user,
        name: "Ada".into(),
        email: "ada@example.com".into(),
        email_verified: false,
        created_at: clock.now(),
    };
    local.put_user(&profile).await.unwrap();

    store.delete(&one.key).await.unwrap();
    store.delete_user_sessions(user, None).await.unwrap();
    store.invalidate_user(user).await.unwrap();
    let start = Instant::now();
    loop {
        let gone = local.get(&one.key).await.unwrap().is_none()
            && local.get(&all.key).await.unwrap().is_none()
            && local.get_user(user).await.unwrap().is_none();
        if gone {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "invalidations did not arrive");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Remembered, not just evicted: a late fill of the local tier is refused.
    assert!(!local.put(&one).await.unwrap());
    listener.stop().await;
    drop(store);
    blocking(move || drop(cluster)).await;
}

/// When the listener's connection drops, messages may be missed: it flushes its target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_flushes_its_target_when_the_connection_drops() {
    if !redis_server_available() {
        return;
    }
    let mut server = blocking(|| RedisServer::start("listener", &[])).await;
    let clock = ManualClock::starting_now();
    let config = RedisConfig { url: server.url(), ..test_config("", "listener") };
    let local = memory(clock.clone());
    let _listener = InvalidationListener::spawn(&config, Arc::new(local.clone())).await.unwrap();
    let session = sample_session(&clock, random_user());
    assert!(local.put(&session).await.unwrap());

    server = blocking(move || {
        server.kill9();
        server
    })
    .await;
    let start = Instant::now();
    while local.get(&session.key).await.unwrap().is_some() {
        assert!(start.elapsed() < Duration::from_secs(5), "memory tier not flushed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(server);
}

/// A live revoke-all deletes every session of the user but the kept one, as SQL does,
/// even one stamped by a clock running ahead; a replayed (older) revoke-all deletes only
/// the sessions it covers, never a later login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_all_scope_live_and_replayed() {
    let Some(url) = service_url("REDIS_URL") else { return };
    let clock = ManualClock::starting_now();
    let store = RedisStore::connect(test_config(&url, "scope"), clock.clone()).await.unwrap();
    let user = random_user();
    let mut ahead = sample_session(&clock, user);
    ahead.created_at = clock.now() + chrono::Duration::seconds(5);
    ahead.renewed_at = ahead.created_at;
    store.create(&ahead).await.unwrap();
    assert_eq!(store.delete_user_sessions(user, None).await.unwrap(), 1);
    assert_eq!(store.get(&ahead.key).await.unwrap(), None);

    let other = random_user();
    let before = sample_session(&clock, other);
    store.create(&before).await.unwrap();
    let at = clock.now();
    clock.advance(chrono::Duration::seconds(1));
    let after = sample_session(&clock, other);
    store.create(&after).await.unwrap();
    let replayed = cache_core::Revocation::AllOfUser { user: other, keep: None, at };
    store.apply_revocations(&[replayed]).await.unwrap();
    assert_eq!(store.get(&before.key).await.unwrap(), None);
    assert_eq!(store.get(&after.key).await.unwrap(), Some(after));
}

/// `get_with_user` (one script: the session's checks, then the profile) never returns a
/// revoked session, even when its hash is back in Redis behind the scripts' backs (an
/// evicted index that a revoke-all could not walk, a `clear` racing a fill, a restored
/// key): the tombstone of a delete and the fence of a revoke-all are checked at read
/// time, and the revoked copy is deleted on the way. The kept session stays readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_with_user_checks_tombstones_and_fences_at_read_time() {
    let Some(url) = service_url("REDIS_URL") else { return };
    let clock = ManualClock::starting_now();
    let store = RedisStore::connect(test_config(&url, "lookup"), clock.clone()).await.unwrap();
    let prefix = store.config().key_prefix.clone();
    let id = random_user();
    let user = User {
        id,
        name: "Ada".to_owned(),
        email: format!("ada{}@example.com", id.get()),
        email_verified: false,
        created_at: clock.now(),
    };
    store.put_user(&user).await.unwrap();
    let (deleted, revoked, kept) =
        (sample_session(&clock, id), sample_session(&clock, id), sample_session(&clock, id));
    for s in [&deleted, &revoked, &kept] {
        store.create(s).await.unwrap();
        assert!(store.get_with_user(&s.key).await.unwrap().is_some());
    }
    let name = |s: &Session| format!("{prefix}{{u:{}}}:s:{}", s.key.user, s.key.hash.to_hex());
    let mut copies = Vec::new();
    for s in [&deleted, &revoked] {
        let value: String = store.pool().get(name(s)).await.unwrap();
        assert!(value.split(' ').count() >= 7, "{value:?}");
        copies.push((name(s), value));
    }

    assert!(store.delete(&deleted.key).await.unwrap());
    assert_eq!(store.delete_user_sessions(id, Some(kept.key.hash)).await.unwrap(), 1);
    // A stale fill through the store is refused by the write script...
    for s in [&deleted, &revoked] {
        assert!(!store.put(s).await.unwrap());
    }
    // ...so put the values back directly.
    for (key, value) in &copies {
        let expiry = Some(fred::types::Expiration::PX(60_000));
        let _: () =
            store.pool().set(key.as_str(), value.as_str(), expiry, None, false).await.unwrap();
    }
    for s in [&deleted, &revoked] {
        assert_eq!(store.get_with_user(&s.key).await.unwrap(), None);
        // The read drops the revoked copy in the background.
        assert_eventually_gone(&store, &name(s), &s.key.hash.to_hex()).await;
    }
    let found = store.get_with_user(&kept.key).await.unwrap();
    assert_eq!(found, Some(SessionWithUser { session: kept, user: Some(user) }));
}

/// Waits (at most 10 s, polling) until `session` is gone from Redis and its hash from
/// the user's index.
async fn assert_eventually_gone(store: &RedisStore, session: &str, hex: &str) {
    let index = session.split_once("s:").map(|(base, _)| format!("{base}idx")).unwrap();
    let start = Instant::now();
    loop {
        let left: i64 = store.pool().exists(session).await.unwrap();
        let indexed: Option<f64> = store.pool().zscore(index.as_str(), hex).await.unwrap();
        if left == 0 && indexed.is_none() {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{session} not dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `get` (a pipelined read, no script) refuses a session that is covered by a tombstone,
/// covered by a fence, or expired by the injected clock while Redis still holds it, and
/// drops each afterwards (key and index entry) without the caller waiting; a session the
/// fence kept, or created after it, stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_refuses_and_drops_covered_and_expired_sessions() {
    let Some(url) = service_url("REDIS_URL") else { return };
    let clock = ManualClock::starting_now();
    let store = RedisStore::connect(test_config(&url, "pipelined"), clock.clone()).await.unwrap();
    let prefix = store.config().key_prefix.clone();
    let id = random_user();
    let base = format!("{prefix}{{u:{id}}}:");
    let name = |s: &Session| format!("{base}s:{}", s.key.hash.to_hex());
    // Revocation markers written behind the scripts' backs while the sessions stay in
    // Redis (as after an index lost entries): the read must check them itself. A fence
    // at t0 that keeps `kept`; a tombstone for a session created after it.
    let (fenced, kept) = (sample_session(&clock, id), sample_session(&clock, id));
    for s in [&fenced, &kept] {
        store.create(s).await.unwrap();
        assert_eq!(store.get(&s.key).await.unwrap().as_ref(), Some(s));
    }
    let fence_at = clock.now().timestamp_micros().to_string();
    let keep = kept.key.hash.to_hex();
    let fence = format!("{fence_at} {keep}");
    let _: () = store.pool().set(format!("{base}fence"), fence, None, None, false).await.unwrap();
    clock.advance(chrono::Duration::seconds(1));
    let (tombstoned, later, expired) =
        (sample_session(&clock, id), sample_session(&clock, id), sample_session(&clock, id));
    for s in [&tombstoned, &later, &expired] {
        store.create(s).await.unwrap();
        assert_eq!(store.get(&s.key).await.unwrap().as_ref(), Some(s));
    }
    let tomb = format!("{base}t:{}", tombstoned.key.hash.to_hex());
    let _: () = store.pool().set(tomb.as_str(), "1", None, None, false).await.unwrap();
    for s in [&tombstoned, &fenced] {
        assert_eq!(store.get(&s.key).await.unwrap(), None, "a covered session is refused");
        assert_eventually_gone(&store, &name(s), &s.key.hash.to_hex()).await;
    }
    assert_eq!(store.get(&kept.key).await.unwrap().as_ref(), Some(&kept));
    assert_eq!(store.get(&later.key).await.unwrap().as_ref(), Some(&later));
    // Expired by the injected clock while Redis (real time) still holds it.
    let mut shorter = expired.clone();
    shorter.expires_at = clock.now() + chrono::Duration::seconds(30);
    shorter.version += 1;
    assert!(store.put(&shorter).await.unwrap());
    clock.advance(chrono::Duration::seconds(60));
    assert_eq!(store.get(&expired.key).await.unwrap(), None, "an expired session is refused");
    assert_eventually_gone(&store, &name(&expired), &expired.key.hash.to_hex()).await;
    assert_eq!(store.get(&kept.key).await.unwrap().as_ref(), Some(&kept));
}

/// A value that does not parse (a session or a fence) is never an answer, and never an
/// error that would keep a tiered store from refilling it: a garbled session reads as
/// absent and is dropped, so the next fill replaces it; a garbled fence covers every
/// session of the user, as the write scripts decide.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_values_are_absent_or_covering_never_errors() {
    let Some(url) = service_url("REDIS_URL") else { return };
    let clock = ManualClock::starting_now();
    let store = RedisStore::connect(test_config(&url, "garbled"), clock.clone()).await.unwrap();
    let prefix = store.config().key_prefix.clone();
    let id = random_user();
    let base = format!("{prefix}{{u:{id}}}:");
    let garbled = sample_session(&clock, id);
    store.create(&garbled).await.unwrap();
    let name = format!("{base}s:{}", garbled.key.hash.to_hex());
    let _: () = store.pool().set(name.as_str(), "not a session", None, None, false).await.unwrap();
    assert_eq!(store.get(&garbled.key).await.unwrap(), None);
    assert_eq!(store.get_with_user(&garbled.key).await.unwrap(), None);
    assert_eventually_gone(&store, &name, &garbled.key.hash.to_hex()).await;
    // The next fill replaces it.
    assert!(store.put(&garbled).await.unwrap());
    assert_eq!(store.get(&garbled.key).await.unwrap().as_ref(), Some(&garbled));
    // A garbled fence covers the user's sessions, and the write script agrees.
    let _: () =
        store.pool().set(format!("{base}fence"), "garbled", None, None, false).await.unwrap();
    assert_eq!(store.get(&garbled.key).await.unwrap(), None);
    let later = sample_session(&clock, id);
    assert!(!store.put(&later).await.unwrap(), "the write script refuses it too");
    assert_eq!(store.get(&later.key).await.unwrap(), None);
}

/// A server that lost its script cache (`SCRIPT FLUSH`, as after a restart) answers
/// `NOSCRIPT`; the session scripts reload and retry with the same keys and arguments, so
/// reads, writes, extends and deletes still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_scripts_reload_after_a_script_flush() {
    if !redis_server_available() {
        return;
    }
    let server = blocking(|| RedisServer::start("noscript", &[])).await;
    let clock = ManualClock::starting_now();
    let store =
        RedisStore::connect(test_config(&server.url(), "noscript"), clock.clone()).await.unwrap();
    wait_trusted(&store, Duration::from_secs(5)).await;
    let id = random_user();
    let user = User {
        id,
        name: "Ada".to_owned(),
        email: "ada@example.com".to_owned(),
        email_verified: true,
        created_at: clock.now(),
    };
    let flush = || assert_eq!(server.cli(&["SCRIPT", "FLUSH"]).trim(), "OK");
    flush();
    store.put_user(&user).await.unwrap();
    let session = sample_session(&clock, id);
    flush();
    store.create(&session).await.unwrap();
    flush();
    let found = store.get_with_user(&session.key).await.unwrap();
    assert_eq!(found, Some(SessionWithUser { session: session.clone(), user: Some(user) }));
    flush();
    assert_eq!(store.get(&session.key).await.unwrap(), Some(session.clone()));
    flush();
    let new_expiry = session.expires_at + chrono::Duration::minutes(1);
    let extended = store.extend(&session.key, session.version, new_expiry).await.unwrap();
    assert_eq!(extended.map(|s| s.version), Some(session.version + 1));
    flush();
    assert!(store.delete(&session.key).await.unwrap());
    flush();
    assert_eq!(store.get_with_user(&session.key).await.unwrap(), None);
    drop(server);
}
