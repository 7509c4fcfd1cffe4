//! The Redis tier's hit path (docs/benchmarks.md, goal B6): `RedisStore::get` of a cached session (one
//! pipeline of plain reads, no script) and the same through `Tiered<Breaker<redis>, back>`,
//! next to a raw fred `GET` of a string key holding a value of the same size; and what
//! a validation reads, the session and its user (`SessionLookup::get_with_user`, then
//! `get_user` when the lookup brought no user, as `auth` does), on the store and through
//! the tiered store.
//!
//! Needs `REDIS_URL`; without it the benchmark says so and measures nothing. Keys are
//! under a random prefix and expire within minutes.

use std::time::Duration;

use cache_core::token::Secret;
use cache_core::{
    Breaker, BreakerConfig, Session, SessionKey, SessionLookup, SessionStore, SessionWithUser,
    SharedClock, SystemClock, Tiered, User, UserCache, UserId,
};
use cache_memory::{MemoryConfig, MemoryStore};
use cache_redis::fred::interfaces::KeysInterface as _;
use cache_redis::{RedisConfig, RedisStore};
use criterion::{Criterion, criterion_group, criterion_main};

fn redis_hit(c: &mut Criterion) {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("skipped: the Redis tier benchmarks need REDIS_URL");
        return;
    };
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let clock: SharedClock = SystemClock::shared();
    let mut prefix = [0u8; 6];
    cache_core::token::fill_random(&mut prefix).unwrap();
    let prefix = hex::encode(prefix);
    let ttl = Duration::from_secs(600);
    let config = RedisConfig {
        url,
        key_prefix: format!("bench-{prefix}:"),
        user_ttl: ttl,
        fence_ttl: ttl,
        // The default 50 ms deadline is for serving; a busy benchmark machine can miss it
        // now and then without it saying anything about the happy path measured here.
        command_timeout: Duration::from_secs(5),
        ..RedisConfig::default()
    };
    let store = rt.block_on(RedisStore::connect(config, clock.clone())).unwrap();
    let now = clock.now();
    let session = Session {
        key: SessionKey {
            user: UserId::new(4242).unwrap(),
            hash: Secret::generate().unwrap().hash(),
        },
        created_at: now,
        renewed_at: now,
        expires_at: now + chrono::Duration::minutes(10),
        absolute_expires_at: now + chrono::Duration::minutes(10),
        user_agent: Some("bench".to_owned()),
        ip: None,
        version: 0,
    };
    let user = User {
        id: session.key.user,
        name: "Bench User".to_owned(),
        email: "bench@example.com".to_owned(),
        email_verified: true,
        created_at: now,
    };
    let raw_key = format!("bench-{prefix}:raw");
    let back = MemoryStore::new(MemoryConfig::default(), clock.clone());
    rt.block_on(async {
        store.put(&session).await.unwrap();
        store.put_user(&user).await.unwrap();
        // The authority below the Redis tier knows the user too (as SQL would).
        back.put_user(&user).await.unwrap();
        let value = serde_json::to_string(&session).unwrap();
        let expire = Some(cache_redis::fred::types::Expiration::EX(600));
        store.pool().set::<(), _, _>(raw_key.as_str(), value, expire, None, false).await.unwrap();
    });
    let tiered = Tiered::new(Breaker::new(store.clone(), "redis", BreakerConfig::default()), back);
    let key = session.key;

    let mut group = c.benchmark_group("redis");
    group.bench_function("store_get_hit", |b| {
        b.to_async(&rt).iter(|| async { store.get(&key).await.unwrap().unwrap() })
    });
    group.bench_function("tiered_get_hit", |b| {
        b.to_async(&rt).iter(|| async { tiered.get(&key).await.unwrap().unwrap() })
    });
    group.bench_function("store_get_with_user_hit", |b| {
        b.to_async(&rt).iter(|| async { session_and_user(&store, &key).await })
    });
    group.bench_function("tiered_get_with_user_hit", |b| {
        b.to_async(&rt).iter(|| async { session_and_user(&tiered, &key).await })
    });
    group.bench_function("raw_fred_get", |b| {
        b.to_async(&rt).iter(|| async {
            store.pool().get::<Option<String>, _>(raw_key.as_str()).await.unwrap().unwrap()
        })
    });
    group.finish();
}

/// The session and its user as a validation reads them: the combined lookup, then the
/// user cache when the lookup did not bring the user.
async fn session_and_user<S: SessionLookup + UserCache>(
    store: &S,
    key: &SessionKey,
) -> (Session, User) {
    let SessionWithUser { session, user } = store.get_with_user(key).await.unwrap().unwrap();
    let user = match user {
        Some(user) => user,
        None => store.get_user(key.user).await.unwrap().unwrap(),
    };
    (session, user)
}

criterion_group!(benches, redis_hit);
criterion_main!(benches);
