//! The server of `cargo xtask bench`'s session point: one handler (read one value from
//! the session, answer small JSON) behind `SessionMiddleware`, on actix-session's own
//! `RedisSessionStore` or on ours (memory on or off, over Redis and PostgreSQL).
//!
//! ```text
//! session_bench --store actix-redis|tiered [--memory] --port P --redis-url R \
//!     [--database-url D] --prefix KEYS: --sessions N --tokens FILE
//! session_bench --store none --port P
//! ```
//!
//! Before it listens it creates N sessions through the store and writes their cookie
//! values (signed, as the middleware would set them) to FILE, one a line, for
//! `xtask/bench/zipf.lua`. `GET /health` answers once it listens.
//!
//! `--store none` is the framework's ceiling (`ceiling/actix`): a bare actix-web app, no
//! middleware, whose `GET /health` answers the same small JSON as authd's
//! `/health/live`, on actix-web's default worker count (authd's default too).

use std::io::Write as _;
use std::time::Duration;

use actix_session::config::{CookieContentSecurity, PersistentSession};
use actix_session::storage::{RedisSessionStore, SessionStore};
use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::{Cookie, CookieJar, Key};
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context as _;
use clap::Parser;
use futures::StreamExt as _;
use session_actix::StackConfig;

#[derive(Parser)]
struct Args {
    /// `actix-redis` (actix-session's RedisSessionStore) or `tiered` (ours).
    #[arg(long)]
    store: String,
    /// With `tiered`: the memory tier on.
    #[arg(long)]
    memory: bool,
    #[arg(long)]
    port: u16,
    /// The Redis server (not with `none`).
    #[arg(long, default_value = "")]
    redis_url: String,
    /// With `tiered`: the SQL authority.
    #[arg(long)]
    database_url: Option<String>,
    /// Redis key prefix of this run.
    #[arg(long, default_value = "")]
    prefix: String,
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Where to write the seeded sessions' cookie values (not with `none`).
    #[arg(long, default_value = "")]
    tokens: std::path::PathBuf,
}

const COOKIE: &str = "id";

async fn me(session: Session) -> actix_web::Result<HttpResponse> {
    let user: Option<i64> = session.get("user_id")?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "user_id": user })))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().finish()
}

/// The ceiling's handler: the body of authd's `/health/live`.
async fn live() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("cache-control", "no-store"))
        .body(r#"{"status":"ok"}"#)
}

/// `--store none`: no middleware, one handler.
async fn serve_bare(port: u16) -> anyhow::Result<()> {
    HttpServer::new(|| App::new().route("/health", web::get().to(live)))
        .bind(("127.0.0.1", port))?
        .run()
        .await?;
    Ok(())
}

/// The cookie value the middleware would set for `session_key` (signed with `key`).
fn cookie_value(key: &Key, session_key: String) -> anyhow::Result<String> {
    let mut jar = CookieJar::new();
    jar.signed_mut(key).add(Cookie::new(COOKIE, session_key));
    let cookie = jar.delta().next().context("no cookie")?;
    let encoded = cookie.encoded().to_string();
    Ok(encoded.strip_prefix("id=").context("cookie name")?.to_owned())
}

/// Creates the sessions (32 at a time) and writes their cookie values.
async fn seed<S: SessionStore>(store: &S, key: &Key, args: &Args) -> anyhow::Result<()> {
    let ttl = actix_web::cookie::time::Duration::days(1);
    let keys: Vec<anyhow::Result<String>> = futures::stream::iter(0..args.sessions)
        .map(|i| async move {
            let state = [("user_id".to_owned(), (i + 1).to_string())].into_iter().collect();
            let session_key = store.save(state, &ttl).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            cookie_value(key, session_key.into())
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let mut out = std::io::BufWriter::new(std::fs::File::create(&args.tokens)?);
    for value in keys {
        writeln!(out, "{}", value?)?;
    }
    out.flush()?;
    Ok(())
}

async fn serve<S: SessionStore + Clone + Send + 'static>(
    store: S,
    key: Key,
    port: u16,
) -> anyhow::Result<()> {
    HttpServer::new(move || {
        App::new()
            .wrap(
                SessionMiddleware::builder(store.clone(), key.clone())
                    .cookie_name(COOKIE.to_owned())
                    .cookie_secure(false)
                    .cookie_content_security(CookieContentSecurity::Signed)
                    .session_lifecycle(
                        PersistentSession::default()
                            .session_ttl(actix_web::cookie::time::Duration::days(1)),
                    )
                    .build(),
            )
            .route("/me", web::get().to(me))
            .route("/health", web::get().to(health))
    })
    .bind(("127.0.0.1", port))?
    .run()
    .await?;
    Ok(())
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let key = Key::generate();
    match args.store.as_str() {
        "actix-redis" => {
            let prefix = args.prefix.clone();
            let store = RedisSessionStore::builder(args.redis_url.clone())
                .cache_keygen(move |k| format!("{prefix}{k}"))
                .build()
                .await?;
            seed(&store, &key, &args).await?;
            serve(store, key, args.port).await
        }
        "tiered" => {
            let db = args.database_url.clone().context("--database-url is required")?;
            let mut config = StackConfig::new(db).with_redis(&args.redis_url, &args.prefix);
            if args.memory {
                config = config.with_memory(args.sessions as u64 * 2, Duration::from_secs(3600));
            }
            let store = session_actix::connect(config, cache_core::SystemClock::shared()).await?;
            seed(&store, &key, &args).await?;
            serve(store, key, args.port).await
        }
        "none" => serve_bare(args.port).await,
        other => anyhow::bail!("unknown --store {other}"),
    }
}
