//! Bench-only routes, compiled only with the `bench-routes` cargo feature (never in the
//! default build): the baselines `cargo xtask bench` puts next to `/v1/me` and login.
//!
//! - `GET /bench/baseline/redis`: one raw fred `GET` of the Redis key of the request's
//!   session (`{prefix}{u:ID}:s:HASH`, the string the Redis tier stores), nothing else.
//! - `GET /bench/baseline/sql`: one raw diesel primary-key select of the request's
//!   session row (prepared and cached per connection, as the store's own queries are),
//!   nothing else.
//!
//! Both read the record of the session the request's cookie names, as `/v1/me` does (the
//! bench draws cookies from a Zipf distribution over every seeded session), so a baseline
//! pays the same spread of keys and rows over the server's memory: a fixed key, read
//! again and again, stays in the CPU's caches, and made Redis answer a `GET` in 0.3 µs
//! where the same server took 5.5 µs for a validation's `MGET` of four spread-out keys.
//! To know which record to read, they parse the cookie and hash the token as `/v1/me`
//! must; a request without a valid one answers 401.
//! - `GET /bench/baseline/argon2`: one argon2 verification of a fixed password against a
//!   hash made at start-up with the configured parameters
//!   ([`auth::AuthService::verify_dummy_password`]), run as a login runs its own (on
//!   auth's hash pool, paying the same thread hand-off and reusing the same argon2
//!   memory), nothing else. It answers 200 `ok` when the password verified.
//!
//! The Redis and SQL baselines' clients are this module's own, built on the first request
//! from the settings the process was started with ([`crate::Settings::load`]) with the
//! same pool sizes as the stores, so a baseline costs what the tier's driver costs and
//! nothing of ours. A baseline whose backend is not configured answers 503.

use actix_web::{HttpRequest, HttpResponse, web};
use auth::AuthService;
use cache_core::SessionKey;
use cache_core::token::SessionToken;
use cache_redis::fred;
use cache_redis::fred::interfaces::{ClientLike as _, KeysInterface as _};
use cache_sql::{bb8, diesel_async};
use diesel::{ExpressionMethods as _, OptionalExtension as _, QueryDsl as _};
use diesel_async::RunQueryDsl as _;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use secrecy::ExposeSecret as _;
use tokio::sync::OnceCell;

use crate::cookies::CookiePolicy;
use crate::settings::Settings;

diesel::table! {
    /// The `sessions` table, as far as the SQL baseline reads it.
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

/// One session row, read as raw values (no conversion into domain types).
type RawSessionRow = (
    Vec<u8>,
    i64,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
    Option<String>,
    Option<String>,
    i64,
);

type PgPool = bb8::Pool<AsyncDieselConnectionManager<diesel_async::AsyncPgConnection>>;

/// The baselines' own clients (Redis with its key prefix) and the session cookie's policy.
struct Baselines {
    redis: Option<(fred::clients::Pool, String)>,
    sql: Option<PgPool>,
    cookies: CookiePolicy,
}

static BASELINES: OnceCell<Baselines> = OnceCell::const_new();

/// Mounts the bench-only routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/bench/baseline/redis", web::get().to(baseline_redis))
        .route("/bench/baseline/sql", web::get().to(baseline_sql))
        .route("/bench/baseline/argon2", web::get().to(baseline_argon2));
}

async fn baselines() -> Result<&'static Baselines, HttpResponse> {
    BASELINES.get_or_try_init(connect).await.map_err(|e| {
        tracing::warn!(error = %e, "bench baselines could not connect");
        unavailable("the bench baselines could not connect")
    })
}

async fn connect() -> anyhow::Result<Baselines> {
    let settings = Settings::load()?;
    let redis = match &settings.redis.url {
        Some(url) => {
            let config = fred::prelude::Config::from_url(url.expose_secret())?;
            let pool = fred::prelude::Builder::from_config(config)
                .with_connection_config(|c| {
                    c.tcp = fred::prelude::TcpConfig { nodelay: Some(true), ..Default::default() };
                })
                .build_pool(settings.redis.pool_size.max(1))?;
            pool.init().await?;
            Some((pool, settings.redis.key_prefix.clone()))
        }
        None => None,
    };
    let url = settings.database.url.expose_secret();
    let sql = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let manager = AsyncDieselConnectionManager::new(url);
        // Exactly one select per request: no `SELECT 1` check-out test (bb8's default).
        let pool = bb8::Pool::builder()
            .max_size(settings.database.pool_size.max(1))
            .test_on_check_out(false)
            .build(manager)
            .await?;
        Some(pool)
    } else {
        None
    };
    Ok(Baselines { redis, sql, cookies: CookiePolicy::new(settings.cookie.secure) })
}

/// The key of the session the request's cookie names.
fn request_session(req: &HttpRequest, baselines: &Baselines) -> Result<SessionKey, HttpResponse> {
    baselines
        .cookies
        .read(req)
        .and_then(|value| SessionToken::parse(&value).ok())
        .map(|token| token.key())
        .ok_or_else(|| HttpResponse::Unauthorized().body("no valid session cookie"))
}

fn unavailable(what: &'static str) -> HttpResponse {
    HttpResponse::ServiceUnavailable().body(what)
}

/// One raw fred `GET` of the request's session key.
async fn baseline_redis(req: HttpRequest) -> HttpResponse {
    let baselines = match baselines().await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let Some((pool, prefix)) = &baselines.redis else {
        return unavailable("redis is not configured");
    };
    let key = match request_session(&req, baselines) {
        Ok(key) => cache_redis::session_key(prefix, &key),
        Err(response) => return response,
    };
    match pool.get::<Option<String>, _>(key).await {
        Ok(Some(value)) => HttpResponse::Ok().body(value),
        Ok(None) => HttpResponse::NotFound().body("session not in redis"),
        Err(e) => {
            tracing::debug!(error = %e, "baseline GET failed");
            unavailable("redis GET failed")
        }
    }
}

/// One raw diesel primary-key select of the request's session row.
async fn baseline_sql(req: HttpRequest) -> HttpResponse {
    let baselines = match baselines().await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let Some(pool) = &baselines.sql else {
        return unavailable("postgres is not configured");
    };
    let hash = match request_session(&req, baselines) {
        Ok(key) => key.hash,
        Err(response) => return response,
    };
    let row = async {
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        sessions::table
            .filter(sessions::token_hash.eq(hash.as_bytes().as_slice()))
            .first::<RawSessionRow>(&mut conn)
            .await
            .optional()
            .map_err(|e| e.to_string())
    }
    .await;
    match row {
        Ok(Some(row)) => HttpResponse::Ok().body(row.1.to_string()),
        Ok(None) => HttpResponse::NotFound().body("session not in postgres"),
        Err(e) => {
            tracing::debug!(error = %e, "baseline select failed");
            unavailable("postgres select failed")
        }
    }
}

/// One argon2 verification, the way a login runs it.
async fn baseline_argon2(service: web::Data<AuthService>) -> HttpResponse {
    match service.verify_dummy_password().await {
        Ok(true) => HttpResponse::Ok().body("ok"),
        Ok(false) => HttpResponse::InternalServerError().body("the password did not verify"),
        Err(e) => {
            tracing::debug!(error = %e, "baseline argon2 verify failed");
            HttpResponse::InternalServerError().body("argon2 verify failed")
        }
    }
}
