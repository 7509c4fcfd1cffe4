//! Redis killed mid-run: every state whose request was acknowledged (answered 200)
//! before or during the outage is still served, by this instance and by a new one that
//! never saw it (its memory tier empty, Redis dead): SQL, written first, has them all.
//! The stack runs on memory -> Redis (its own redis-server on a free port) -> PostgreSQL
//! (`DATABASE_URL`).

use cache_testkit::servers::{RedisServer, redis_server_available};

use actix_session::config::TtlExtensionPolicy;
use actix_web::cookie::Key;
use actix_web::http::StatusCode;

use crate::common::{app, call, stack_at, unique_prefix};

#[actix_web::test]
async fn redis_killed_mid_run_loses_no_acknowledged_state() {
    let Some(db) = cache_testkit::service_url("DATABASE_URL") else { return };
    if !redis_server_available() {
        return;
    }
    let mut redis = RedisServer::start("session-actix-outage", &[]);
    let clock = cache_testkit::new_clock();
    let url = cache_sql::testing::empty_postgres_schema(&db, clock.clone()).await.unwrap();
    let prefix = unique_prefix("outage");
    let key = Key::generate();
    let store = stack_at(clock.clone(), &url, &redis.url(), &prefix).await;
    let first = app(store, key.clone(), TtlExtensionPolicy::OnStateChanges).await;

    // Acknowledged while Redis is up.
    let mut sessions = Vec::new();
    for i in 0..20 {
        let reply = call(&first, "POST", &format!("/insert/n/{i}"), None).await;
        assert_eq!(reply.status, StatusCode::OK);
        sessions.push((reply.cookie.expect("cookie"), i));
    }

    redis.kill9();

    // Acknowledged while Redis is dead: new sessions, and changes to old ones.
    for i in 20..40 {
        let reply = call(&first, "POST", &format!("/insert/n/{i}"), None).await;
        assert_eq!(reply.status, StatusCode::OK, "a write failed with Redis down");
        sessions.push((reply.cookie.expect("cookie"), i));
    }
    for (cookie, i) in &sessions[..10] {
        let reply = call(&first, "POST", &format!("/insert/m/{i}"), Some(cookie)).await;
        assert_eq!(reply.status, StatusCode::OK, "an update failed with Redis down");
    }

    // Another instance: empty memory tier, the same dead Redis, the same SQL.
    let store = stack_at(clock.clone(), &url, &redis.url(), &prefix).await;
    let second = app(store, key.clone(), TtlExtensionPolicy::OnStateChanges).await;
    for app_name in ["first", "second"] {
        for (cookie, i) in &sessions {
            let reply = if app_name == "first" {
                call(&first, "GET", "/get/n", Some(cookie)).await
            } else {
                call(&second, "GET", "/get/n", Some(cookie)).await
            };
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.body, format!("\"{i}\""), "{app_name} lost session {i}");
        }
        for (cookie, i) in &sessions[..10] {
            let reply = if app_name == "first" {
                call(&first, "GET", "/get/m", Some(cookie)).await
            } else {
                call(&second, "GET", "/get/m", Some(cookie)).await
            };
            assert_eq!(reply.body, format!("\"{i}\""), "{app_name} lost an update of {i}");
        }
    }

    // Redis comes back (empty: no persistence): still all there.
    redis.restart();
    for (cookie, i) in &sessions {
        let reply = call(&second, "GET", "/get/n", Some(cookie)).await;
        assert_eq!(reply.body, format!("\"{i}\""), "lost session {i} after Redis returned");
    }
}
