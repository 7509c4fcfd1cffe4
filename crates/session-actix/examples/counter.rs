//! A counter per visitor on the tiered stack: the one-line swap from actix-session's
//! `RedisSessionStore` to ours.
//!
//! ```text
//! DATABASE_URL=sqlite://counter.db cargo run -p session-actix --example counter
//! DATABASE_URL=postgres://... REDIS_URL=redis://127.0.0.1:6379 cargo run -p session-actix --example counter
//! curl -c jar -b jar localhost:8080/          # {"visits":1}, then 2, 3 ...
//! curl -c jar -b jar -X POST localhost:8080/login/7   # binds the session to user 7
//! curl -X POST localhost:8080/logout-everywhere/7      # ends every session of user 7
//! ```

use std::time::Duration;

use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::Key;
use actix_web::{App, HttpResponse, HttpServer, web};
use cache_core::{SystemClock, UserId};
use session_actix::{StackConfig, TieredSessionStore};

async fn visit(session: Session) -> actix_web::Result<HttpResponse> {
    let visits = session.get::<u64>("visits")?.unwrap_or(0) + 1;
    session.insert("visits", visits)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "visits": visits })))
}

async fn login(session: Session, id: web::Path<i64>) -> actix_web::Result<HttpResponse> {
    session.insert("user_id", id.into_inner())?;
    // A new key at login: a cookie planted before it is worthless.
    session.renew();
    Ok(HttpResponse::Ok().finish())
}

async fn logout_everywhere(
    store: web::Data<TieredSessionStore>,
    id: web::Path<i64>,
) -> actix_web::Result<HttpResponse> {
    let user =
        UserId::new(id.into_inner()).ok_or_else(|| actix_web::error::ErrorBadRequest("id"))?;
    let ended =
        store.log_out_user(user).await.map_err(actix_web::error::ErrorServiceUnavailable)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ended": ended })))
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let database_url =
        std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://counter.db".to_owned());
    let mut config = StackConfig::new(database_url).with_memory(100_000, Duration::from_secs(60));
    if let Ok(redis_url) = std::env::var("REDIS_URL") {
        config = config.with_redis(redis_url, "counter:");
    }
    // The one line that differs from an app on `RedisSessionStore`:
    let store =
        session_actix::connect(config, SystemClock::shared()).await?.with_user_field("user_id");
    // In production: a key from configuration, so cookies survive restarts.
    let key = Key::generate();
    HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(store.clone()))
            .wrap(SessionMiddleware::new(store.clone(), key.clone()))
            .route("/", web::get().to(visit))
            .route("/login/{id}", web::post().to(login))
            .route("/logout-everywhere/{id}", web::post().to(logout_everywhere))
    })
    .bind(("127.0.0.1", 8080))?
    .run()
    .await?;
    Ok(())
}
