//! The SQL tier's hit path (docs/benchmarks.md, goal B6): `SqlStore::get` of a stored session next to a
//! raw diesel primary-key select of the same row on a connection of its own (prepared
//! and cached, as the store's statements are). Next to them, what `/v1/me` asks of the
//! tier: `get_with_user` (the session joined with its user's profile, one statement)
//! and, for comparison, the two reads it replaces (`get`, then `get_user`). SQLite
//! always (a temporary file); PostgreSQL when `DATABASE_URL` is set, in the schema
//! `bench_criterion`.

use cache_core::token::Secret;
use cache_core::{
    Session, SessionKey, SessionLookup, SessionStore, SharedClock, SystemClock, User, UserCache,
    UserId,
};
use cache_sql::diesel_async::{AsyncConnection as _, RunQueryDsl as _};
use cache_sql::{SqlConfig, SqlStore, diesel_async};
use criterion::{Criterion, criterion_group, criterion_main};
use diesel::{ExpressionMethods as _, QueryDsl as _};

diesel::table! {
    sessions (token_hash) {
        token_hash -> Binary,
        user_id -> BigInt,
        created_at -> Timestamptz,
        renewed_at -> Timestamptz,
        expires_at -> Timestamptz,
        absolute_expires_at -> Timestamptz,
        user_agent -> Nullable<Text>,
        ip -> Nullable<Text>,
        version -> BigInt,
    }
}

mod sqlite_schema {
    diesel::table! {
        sessions (token_hash) {
            token_hash -> Binary,
            user_id -> BigInt,
            created_at -> BigInt,
            renewed_at -> BigInt,
            expires_at -> BigInt,
            absolute_expires_at -> BigInt,
            user_agent -> Nullable<Text>,
            ip -> Nullable<Text>,
            version -> BigInt,
        }
    }
}

type Ts = chrono::DateTime<chrono::Utc>;
type PgRow = (Vec<u8>, i64, Ts, Ts, Ts, Ts, Option<String>, Option<String>, i64);
type SqliteRow = (Vec<u8>, i64, i64, i64, i64, i64, Option<String>, Option<String>, i64);

fn session(clock: &SharedClock) -> Session {
    let now = clock.now();
    Session {
        key: SessionKey {
            user: UserId::new(4242).unwrap(),
            hash: Secret::generate().unwrap().hash(),
        },
        created_at: now,
        renewed_at: now,
        expires_at: now + chrono::Duration::hours(1),
        absolute_expires_at: now + chrono::Duration::hours(1),
        user_agent: Some("bench".to_owned()),
        ip: None,
        version: 0,
    }
}

fn user(clock: &SharedClock) -> User {
    User {
        id: UserId::new(4242).unwrap(),
        name: "Bench User".to_owned(),
        email: "bench-4242@bench.example".to_owned(),
        email_verified: true,
        created_at: clock.now(),
    }
}

/// The `get_with_user` point and the two reads it replaces, on `store`.
fn lookup_points(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    backend: &str,
    store: &SqlStore,
    key: SessionKey,
) {
    group.bench_function(format!("{backend}_store_get_with_user"), |b| {
        b.to_async(rt).iter(|| async {
            let found = store.get_with_user(&key).await.unwrap().unwrap();
            assert!(found.user.is_some());
            found
        })
    });
    group.bench_function(format!("{backend}_store_get_then_get_user"), |b| {
        b.to_async(rt).iter(|| async {
            let session = store.get(&key).await.unwrap().unwrap();
            (session, store.get_user(key.user).await.unwrap().unwrap())
        })
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn sql_hit(c: &mut Criterion) {
    let rt = runtime();
    let clock = SystemClock::shared();
    let s = session(&clock);
    let u = user(&clock);
    let key = s.key;
    let hash = key.hash.as_bytes().to_vec();

    // SQLite: a temporary file, removed at the end.
    let dir = std::env::temp_dir().join(format!("cache-sql-bench-{}", std::process::id()));
    let path = dir.join("bench.db");
    let url = format!("sqlite://{}", path.display());
    let store = rt.block_on(async {
        let store = SqlStore::connect(&url, SqlConfig::default(), clock.clone()).await.unwrap();
        store.migrate().await.unwrap();
        store.put_user(&u).await.unwrap();
        store.create(&s).await.unwrap();
        store
    });
    let raw = rt.block_on(diesel_async::sync_connection_wrapper::SyncConnectionWrapper::<
        diesel::SqliteConnection,
    >::establish(path.to_str().unwrap()));
    let mut raw = raw.unwrap();
    let raw_conn = tokio::sync::Mutex::new(&mut raw);
    let mut group = c.benchmark_group("sql");
    group.bench_function("sqlite_store_get_hit", |b| {
        b.to_async(&rt).iter(|| async { store.get(&key).await.unwrap().unwrap() })
    });
    group.bench_function("sqlite_raw_select", |b| {
        b.to_async(&rt).iter(|| async {
            let mut conn = raw_conn.lock().await;
            sqlite_schema::sessions::table
                .filter(sqlite_schema::sessions::token_hash.eq(hash.as_slice()))
                .first::<SqliteRow>(&mut **conn)
                .await
                .unwrap()
        })
    });
    lookup_points(&mut group, &rt, "sqlite", &store, key);
    drop(store);

    if let Ok(base) = std::env::var("DATABASE_URL") {
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-csearch_path%3Dbench_criterion");
        let store = rt.block_on(async {
            let admin =
                SqlStore::connect(&base, SqlConfig::default(), clock.clone()).await.unwrap();
            let mut conn = diesel_async::AsyncPgConnection::establish(&base).await.unwrap();
            diesel::sql_query("CREATE SCHEMA IF NOT EXISTS bench_criterion")
                .execute(&mut conn)
                .await
                .unwrap();
            drop(admin);
            let store = SqlStore::connect(&url, SqlConfig::default(), clock.clone()).await.unwrap();
            store.migrate().await.unwrap();
            store.put_user(&u).await.unwrap();
            store.create(&s).await.unwrap();
            store
        });
        let raw = rt.block_on(diesel_async::AsyncPgConnection::establish(&url)).unwrap();
        let raw_conn = tokio::sync::Mutex::new(raw);
        group.bench_function("postgres_store_get_hit", |b| {
            b.to_async(&rt).iter(|| async { store.get(&key).await.unwrap().unwrap() })
        });
        group.bench_function("postgres_raw_select", |b| {
            b.to_async(&rt).iter(|| async {
                let mut conn = raw_conn.lock().await;
                sessions::table
                    .filter(sessions::token_hash.eq(hash.as_slice()))
                    .first::<PgRow>(&mut *conn)
                    .await
                    .unwrap()
            })
        });
        lookup_points(&mut group, &rt, "postgres", &store, key);
        rt.block_on(store.delete(&key)).unwrap();
    } else {
        eprintln!("skipped: the PostgreSQL benchmarks need DATABASE_URL");
    }
    group.finish();
    let _ = std::fs::remove_dir_all(dir);
}

criterion_group!(benches, sql_hit);
criterion_main!(benches);
