//! The test app (actix-web with `SessionMiddleware` over our store), a client that
//! carries the session cookie from response to request, and the store configurations
//! the behaviour tests run on.

use std::sync::Arc;
use std::time::Duration;

use actix_session::config::{CookieContentSecurity, PersistentSession, TtlExtensionPolicy};
use actix_session::{Session, SessionMiddleware};
use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, Key};
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, test, web};
use cache_core::ManualClock;
use session_actix::{StackConfig, TieredSessionStore};

/// The session TTL of the test app.
pub const TTL_SECS: i64 = 60;

/// The field the app keeps the user id in (bound by the store).
pub const USER_FIELD: &str = "user_id";

async fn insert(
    session: Session,
    path: web::Path<(String, String)>,
) -> actix_web::Result<HttpResponse> {
    let (key, value) = path.into_inner();
    session.insert(key, value)?;
    Ok(HttpResponse::Ok().finish())
}

async fn get(session: Session, key: web::Path<String>) -> actix_web::Result<HttpResponse> {
    let value: Option<String> = session.get(&key)?;
    Ok(HttpResponse::Ok().json(value))
}

async fn remove(session: Session, key: web::Path<String>) -> HttpResponse {
    session.remove(&key);
    HttpResponse::Ok().finish()
}

async fn purge(session: Session) -> HttpResponse {
    session.purge();
    HttpResponse::Ok().finish()
}

async fn renew(session: Session) -> HttpResponse {
    session.renew();
    HttpResponse::Ok().finish()
}

async fn login(session: Session, id: web::Path<i64>) -> actix_web::Result<HttpResponse> {
    session.insert(USER_FIELD, id.into_inner())?;
    session.renew();
    Ok(HttpResponse::Ok().finish())
}

/// The app: `SessionMiddleware` with a persistent session of `TTL_SECS`, extended as
/// `policy` says, over `store`.
pub async fn app(
    store: TieredSessionStore,
    key: Key,
    policy: TtlExtensionPolicy,
) -> impl Service<
    actix_http::Request,
    Response = ServiceResponse<impl MessageBody>,
    Error = actix_web::Error,
> {
    let lifecycle = PersistentSession::default()
        .session_ttl(actix_web::cookie::time::Duration::seconds(TTL_SECS))
        .session_ttl_extension_policy(policy);
    test::init_service(
        App::new()
            .wrap(
                SessionMiddleware::builder(store, key)
                    .cookie_secure(false)
                    // Signed, not encrypted: the same key gives the same cookie value, so
                    // the tests can tell a kept key from a rotated one.
                    .cookie_content_security(CookieContentSecurity::Signed)
                    .session_lifecycle(lifecycle)
                    .build(),
            )
            .route("/insert/{key}/{value}", web::post().to(insert))
            .route("/get/{key}", web::get().to(get))
            .route("/remove/{key}", web::post().to(remove))
            .route("/purge", web::post().to(purge))
            .route("/renew", web::post().to(renew))
            .route("/login/{id}", web::post().to(login)),
    )
    .await
}

/// What one request gave back.
pub struct Reply {
    pub status: StatusCode,
    /// The session cookie the response set (`Some("")`-valued with max-age 0 on purge).
    pub cookie: Option<Cookie<'static>>,
    pub body: String,
}

/// Sends `method path` with `cookie` (when any).
pub async fn call<S, B>(
    app: &S,
    method: &str,
    path: &str,
    cookie: Option<&Cookie<'static>>,
) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let mut req = match method {
        "GET" => test::TestRequest::get(),
        _ => test::TestRequest::post(),
    }
    .uri(path);
    if let Some(cookie) = cookie {
        req = req.cookie(cookie.clone());
    }
    let res = test::call_service(app, req.to_request()).await;
    let status = res.status();
    let cookie = res.response().cookies().find(|c| c.name() == "id").map(|c| c.into_owned());
    let body = test::read_body(res).await;
    Reply { status, cookie, body: String::from_utf8_lossy(&body).into_owned() }
}

/// A unique Redis key prefix.
pub fn unique_prefix(tag: &str) -> String {
    format!("test:session-actix:{tag}:{}:", cache_testkit::random_user())
}

/// A memory tier that outlives every clock jump of the tests.
pub const MEMORY_TTL: Duration = Duration::from_secs(24 * 3600);

/// Our store on a temporary SQLite file.
pub async fn sqlite(clock: Arc<ManualClock>) -> Option<TieredSessionStore> {
    let sql = cache_sql::testing::temp_sqlite(clock.clone()).await.expect("temporary SQLite");
    Some(TieredSessionStore::new(sql).with_clock(clock).with_user_field(USER_FIELD))
}

/// Our store on a fresh PostgreSQL schema (skipped without `DATABASE_URL`).
pub async fn postgres(clock: Arc<ManualClock>) -> Option<TieredSessionStore> {
    let url = cache_testkit::service_url("DATABASE_URL")?;
    let sql = cache_sql::testing::isolated_postgres(&url, clock.clone()).await.expect("Postgres");
    Some(TieredSessionStore::new(sql).with_clock(clock).with_user_field(USER_FIELD))
}

/// The whole stack, memory -> Redis -> PostgreSQL, built by `session_actix::connect`
/// (skipped without `DATABASE_URL` or `REDIS_URL`).
pub async fn stack(clock: Arc<ManualClock>) -> Option<TieredSessionStore> {
    let db = cache_testkit::service_url("DATABASE_URL")?;
    let redis = cache_testkit::service_url("REDIS_URL")?;
    stack_on(clock, &db, &redis).await
}

/// The whole stack on a fresh schema of the database at `db` and the Redis at `redis`.
pub async fn stack_on(
    clock: Arc<ManualClock>,
    db: &str,
    redis: &str,
) -> Option<TieredSessionStore> {
    let url = cache_sql::testing::empty_postgres_schema(db, clock.clone()).await.expect("schema");
    Some(stack_at(clock, &url, redis, &unique_prefix("stack")).await)
}

/// The whole stack on the (migrated on connect) database at `url`, under `prefix`.
pub async fn stack_at(
    clock: Arc<ManualClock>,
    url: &str,
    redis: &str,
    prefix: &str,
) -> TieredSessionStore {
    let mut config =
        StackConfig::new(url).with_redis(redis, prefix).with_memory(10_000, MEMORY_TTL);
    if let Some(r) = config.redis.as_mut() {
        // Generous for a loaded test machine; the outage test kills the server instead.
        r.command_timeout = Duration::from_millis(500);
        r.pool_size = 2;
    }
    session_actix::connect(config, clock).await.expect("stack").with_user_field(USER_FIELD)
}
