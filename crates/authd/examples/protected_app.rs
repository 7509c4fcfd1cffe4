//! Another actix-web app that requires a tiered-auth session, sharing authd's stores.
//!
//! It reads the same configuration as `authd` (`authd.toml`, `AUTHD_*`, `DATABASE_URL`,
//! `REDIS_URL`), so it sees the same users and sessions, and takes the session cookie
//! that authd's login set. Run authd, log in with curl (see `docs/quickstart.md`), then:
//!
//! ```sh
//! cargo run -p authd --example protected_app            # listens on 127.0.0.1:8081
//! curl -b jar.txt http://127.0.0.1:8081/hello           # CurrentUser extractor
//! curl -b jar.txt http://127.0.0.1:8081/private/whoami  # RequireSession middleware
//! curl http://127.0.0.1:8081/hello                      # 401 {"error":{...}}
//! ```

use actix_web::{App, HttpResponse, HttpServer, web};
use authd::{Application, CurrentUser, RequireSession, Settings};

/// A handler that needs a session: the extractor answers 401 before it runs otherwise.
async fn hello(user: CurrentUser) -> HttpResponse {
    HttpResponse::Ok().body(format!("hello, {}\n", user.user().name))
}

/// A handler that works with or without a session.
async fn home(user: Option<CurrentUser>) -> HttpResponse {
    match user {
        Some(user) => HttpResponse::Ok().body(format!("signed in as {}\n", user.user().email)),
        None => HttpResponse::Ok().body("not signed in\n"),
    }
}

/// Behind `RequireSession`: the middleware already validated the session, and the
/// extractor reuses its result.
async fn whoami(user: CurrentUser) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "user_id": user.user().id.to_string(),
        "session_expires_at": user.session().expires_at,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    authd::telemetry::init_tracing(settings.log.format);
    // The stores and flows exactly as authd composes them, without authd's HTTP server.
    let parts = Application::builder(settings).build_parts().await?;
    let service = web::Data::new(parts.service.clone());
    let cookie_policy = web::Data::new(parts.cookie_policy);

    let security = parts.security.clone();

    HttpServer::new(move || {
        App::new()
            // authd's guard: client address (trusted proxies), IP blocks, CSRF.
            .wrap(security.guard())
            .app_data(service.clone())
            .app_data(cookie_policy.clone())
            .route("/", web::get().to(home))
            .route("/hello", web::get().to(hello))
            .service(
                web::scope("/private").wrap(RequireSession).route("/whoami", web::get().to(whoami)),
            )
    })
    .bind(("127.0.0.1", 8081))?
    .run()
    .await?;
    // The stores (and Redis tasks) live until the server stops.
    drop(parts);
    Ok(())
}
