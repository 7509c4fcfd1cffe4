//! actix-session's documented behaviours through a real actix-web app with
//! `SessionMiddleware` over our store: insert / get / remove / purge / renew, the TTL
//! extension policies, cookie rotation on renew, "log this user out everywhere"; on
//! SQLite, PostgreSQL (`DATABASE_URL`) and memory -> Redis -> PostgreSQL (`DATABASE_URL`
//! and `REDIS_URL`). Expiry is decided by a manual clock the tests move.

use std::sync::Arc;

use actix_session::config::TtlExtensionPolicy;
use actix_session::storage::{SessionKey, SessionStore as _};
use actix_web::cookie::Key;
use actix_web::http::StatusCode;
use cache_core::{ManualClock, StateKey, UserId};
use chrono::Duration;
use session_actix::TieredSessionStore;

use crate::common::{TTL_SECS, app, call};

/// Values are stored as JSON by actix-session: what `/get` answers for `v`.
fn json(v: &str) -> String {
    format!("\"{v}\"")
}

pub async fn insert_get_and_remove(store: TieredSessionStore, _clock: Arc<ManualClock>) {
    let app = app(store, Key::generate(), TtlExtensionPolicy::OnStateChanges).await;
    let reply = call(&app, "GET", "/get/a", None).await;
    assert_eq!(
        (reply.status, reply.body.as_str(), reply.cookie.is_none()),
        (StatusCode::OK, "null", true)
    );
    let cookie = call(&app, "POST", "/insert/a/1", None).await.cookie.expect("a session cookie");
    let cookie2 = call(&app, "POST", "/insert/b/2", Some(&cookie)).await.cookie;
    // An update of a live state keeps its key: the same cookie value comes back.
    assert_eq!(cookie2.as_ref().map(|c| c.value()), Some(cookie.value()));
    assert_eq!(call(&app, "GET", "/get/a", Some(&cookie)).await.body, json("1"));
    assert_eq!(call(&app, "GET", "/get/b", Some(&cookie)).await.body, json("2"));
    call(&app, "POST", "/remove/a", Some(&cookie)).await;
    assert_eq!(call(&app, "GET", "/get/a", Some(&cookie)).await.body, "null");
    assert_eq!(call(&app, "GET", "/get/b", Some(&cookie)).await.body, json("2"));
}

pub async fn purge_deletes_the_state_and_the_cookie(
    store: TieredSessionStore,
    _clock: Arc<ManualClock>,
) {
    let app = app(store, Key::generate(), TtlExtensionPolicy::OnStateChanges).await;
    let cookie = call(&app, "POST", "/insert/a/1", None).await.cookie.expect("cookie");
    let purged = call(&app, "POST", "/purge", Some(&cookie)).await;
    let removal = purged.cookie.expect("a removal cookie");
    assert_eq!(removal.value(), "");
    assert_eq!(removal.max_age(), Some(actix_web::cookie::time::Duration::ZERO));
    // The old cookie finds nothing: the state is gone from the store.
    assert_eq!(call(&app, "GET", "/get/a", Some(&cookie)).await.body, "null");
}

pub async fn renew_rotates_the_cookie_and_keeps_the_state(
    store: TieredSessionStore,
    _clock: Arc<ManualClock>,
) {
    let app = app(store, Key::generate(), TtlExtensionPolicy::OnStateChanges).await;
    let old = call(&app, "POST", "/insert/a/1", None).await.cookie.expect("cookie");
    let new = call(&app, "POST", "/renew", Some(&old)).await.cookie.expect("a new cookie");
    assert_ne!(new.value(), old.value());
    assert_eq!(call(&app, "GET", "/get/a", Some(&new)).await.body, json("1"));
    // The old key was deleted: a stolen pre-login cookie is worthless.
    assert_eq!(call(&app, "GET", "/get/a", Some(&old)).await.body, "null");
}

pub async fn on_every_request_extends_the_ttl(store: TieredSessionStore, clock: Arc<ManualClock>) {
    let app = app(store, Key::generate(), TtlExtensionPolicy::OnEveryRequest).await;
    let cookie = call(&app, "POST", "/insert/a/1", None).await.cookie.expect("cookie");
    for _ in 0..3 {
        clock.advance(Duration::seconds(TTL_SECS * 2 / 3));
        let reply = call(&app, "GET", "/get/a", Some(&cookie)).await;
        assert_eq!(reply.body, json("1"), "the read-only request extended the session");
        // The cookie's max-age is refreshed too.
        assert_eq!(reply.cookie.map(|c| c.value().to_owned()), Some(cookie.value().to_owned()));
    }
    clock.advance(Duration::seconds(TTL_SECS));
    assert_eq!(call(&app, "GET", "/get/a", Some(&cookie)).await.body, "null");
}

pub async fn on_state_changes_extends_only_on_changes(
    store: TieredSessionStore,
    clock: Arc<ManualClock>,
) {
    let app = app(store, Key::generate(), TtlExtensionPolicy::OnStateChanges).await;
    let cookie = call(&app, "POST", "/insert/a/1", None).await.cookie.expect("cookie");
    clock.advance(Duration::seconds(TTL_SECS * 2 / 3));
    // A change extends ...
    call(&app, "POST", "/insert/b/2", Some(&cookie)).await;
    clock.advance(Duration::seconds(TTL_SECS * 2 / 3));
    let reply = call(&app, "GET", "/get/a", Some(&cookie)).await;
    assert_eq!(reply.body, json("1"));
    assert!(reply.cookie.is_none(), "a read-only request set a cookie");
    // ... a read does not.
    clock.advance(Duration::seconds(TTL_SECS * 2 / 3));
    assert_eq!(call(&app, "GET", "/get/a", Some(&cookie)).await.body, "null");
}

pub async fn expired_sessions_start_afresh(store: TieredSessionStore, clock: Arc<ManualClock>) {
    let app = app(store, Key::generate(), TtlExtensionPolicy::OnStateChanges).await;
    let cookie = call(&app, "POST", "/insert/a/1", None).await.cookie.expect("cookie");
    clock.advance(Duration::seconds(TTL_SECS));
    let fresh = call(&app, "POST", "/insert/b/2", Some(&cookie)).await.cookie.expect("cookie");
    assert_ne!(fresh.value(), cookie.value(), "an expired key was reused");
    assert_eq!(call(&app, "GET", "/get/a", Some(&fresh)).await.body, "null");
    assert_eq!(call(&app, "GET", "/get/b", Some(&fresh)).await.body, json("2"));
}

pub async fn log_out_everywhere(store: TieredSessionStore, _clock: Arc<ManualClock>) {
    let user = cache_testkit::random_user();
    let app = app(store.clone(), Key::generate(), TtlExtensionPolicy::OnStateChanges).await;
    let login = format!("/login/{user}");
    let phone = call(&app, "POST", &login, None).await.cookie.expect("cookie");
    let laptop = call(&app, "POST", &login, None).await.cookie.expect("cookie");
    let other = call(&app, "POST", &format!("/login/{}", cache_testkit::random_user()), None)
        .await
        .cookie
        .expect("cookie");
    call(&app, "POST", "/insert/a/1", Some(&phone)).await;
    assert_eq!(call(&app, "GET", "/get/a", Some(&phone)).await.body, json("1"));
    assert_eq!(store.log_out_user(user).await.unwrap(), 2);
    assert_eq!(call(&app, "GET", "/get/a", Some(&phone)).await.body, "null");
    assert_eq!(call(&app, "GET", "/get/user_id", Some(&laptop)).await.body, "null");
    assert_ne!(call(&app, "GET", "/get/user_id", Some(&other)).await.body, "null");
}

/// The store directly: keys are 64 characters, stored only hashed, and an update of a
/// state that expired since it was loaded saves it under a new key.
pub async fn store_keys_are_hashed_and_rotate_when_gone(
    store: TieredSessionStore,
    clock: Arc<ManualClock>,
) {
    let ttl = actix_web::cookie::time::Duration::seconds(TTL_SECS);
    let state = [("user_id".to_owned(), "42".to_owned())].into_iter().collect();
    let key = store.save(state, &ttl).await.unwrap();
    assert_eq!(key.as_ref().len(), session_actix::SESSION_KEY_LEN);
    let stored = store.state_store().load_state(&StateKey::of(key.as_ref())).await.unwrap();
    let stored = stored.expect("stored under the SHA-256 of the key");
    assert_eq!(stored.user, UserId::new(42));
    let raw = StateKey::from_hash(cache_core::TokenHash::from_bytes([0; 32]));
    assert_eq!(store.state_store().load_state(&raw).await.unwrap(), None);

    let copy = SessionKey::try_from(key.as_ref().to_owned()).unwrap();
    clock.advance(Duration::seconds(TTL_SECS));
    let state = [("a".to_owned(), "1".to_owned())].into_iter().collect();
    let rotated = store.update(copy, state, &ttl).await.unwrap();
    assert_ne!(rotated.as_ref(), key.as_ref());
    let loaded = store.load(&rotated).await.unwrap().expect("saved under the new key");
    assert_eq!(loaded.get("a").map(String::as_str), Some("1"));
    assert_eq!(store.load(&key).await.unwrap(), None);
}

macro_rules! behaviours {
    ($factory:path) => {
        behaviours!(@each $factory, [
            insert_get_and_remove,
            purge_deletes_the_state_and_the_cookie,
            renew_rotates_the_cookie_and_keeps_the_state,
            on_every_request_extends_the_ttl,
            on_state_changes_extends_only_on_changes,
            expired_sessions_start_afresh,
            log_out_everywhere,
            store_keys_are_hashed_and_rotate_when_gone,
        ]);
    };
    (@each $factory:path, [$($name:ident),* $(,)?]) => {
        $(
            #[actix_web::test]
            async fn $name() {
                let clock = cache_testkit::new_clock();
                let Some(store) = $factory(clock.clone()).await else { return };
                super::$name(store, clock).await;
            }
        )*
    };
}

mod sqlite {
    behaviours!(crate::common::sqlite);
}

mod postgres {
    behaviours!(crate::common::postgres);
}

mod memory_redis_postgres {
    behaviours!(crate::common::stack);
}
