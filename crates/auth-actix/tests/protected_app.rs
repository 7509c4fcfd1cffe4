//! Another actix-web app that requires a tiered-auth session, built from `auth-actix`
//! and the stores it composes (here the embedded SQLite store), without `authd`.
//!
//! What an app gets: [`CurrentUser`] answers 401 with the JSON error before the handler
//! runs, `Option<CurrentUser>` serves both, [`RequireSession`] guards a whole scope and
//! hands its result to the extractor, a logout ends the session for every app sharing
//! the stores, and the guard refuses a cross-origin form post carrying the cookie.

use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{App, HttpResponse, test, web};
use auth::{
    Abuse, AbuseConfig, AccountStore as _, AuthConfig, AuthService, ClientInfo, FileMailer,
    LoginInput, ManualClock, RegisterInput, Stores,
};
use auth_actix::{CookiePolicy, CsrfPolicy, CurrentUser, GuardConfig, RequireSession, Security};

const PASSWORD: &str = "correct horse battery staple";
const EMAIL: &str = "ada@example.test";

/// Needs a session: the extractor answers 401 before it runs otherwise.
async fn hello(user: CurrentUser) -> HttpResponse {
    HttpResponse::Ok().body(format!("hello, {}", user.user().name))
}

/// Works with or without a session.
async fn home(user: Option<CurrentUser>) -> HttpResponse {
    match user {
        Some(user) => HttpResponse::Ok().body(format!("signed in as {}", user.user().email)),
        None => HttpResponse::Ok().body("not signed in"),
    }
}

/// Behind `RequireSession`: the extractor reuses the middleware's validation.
async fn whoami(user: CurrentUser) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "user_id": user.user().id.to_string() }))
}

/// A state-changing route, for the CSRF check.
async fn update(user: CurrentUser) -> HttpResponse {
    HttpResponse::Ok().body(format!("updated {}", user.user().id))
}

struct Fixture {
    service: AuthService,
    security: Security,
    _mail: tempfile::TempDir,
}

/// The flows over one SQLite file (every role of the stores), a verified account.
async fn fixture() -> Fixture {
    let clock = ManualClock::starting_now();
    let mail = tempfile::tempdir().unwrap();
    let sql = Arc::new(cache_sql::testing::temp_sqlite(clock.clone()).await.unwrap());
    let stores = Stores {
        sessions: sql.clone(),
        users: sql.clone(),
        verifications: sql.clone(),
        accounts: sql.clone(),
    };
    let config = AuthConfig {
        argon2: auth::Argon2Params::INSECURE_FOR_TESTS,
        public_base_url: "https://app.example.test/".to_owned(),
        ..AuthConfig::default()
    };
    let service = AuthService::new_insecure_for_tests(
        config,
        stores,
        Arc::new(FileMailer::new(mail.path())),
        clock.clone(),
    )
    .unwrap();
    let input = RegisterInput {
        name: "Ada".to_owned(),
        email: EMAIL.to_owned(),
        password: PASSWORD.to_owned(),
    };
    service.register(input).await.unwrap();
    let credentials = sql.credentials_by_email(EMAIL).await.unwrap().unwrap();
    sql.mark_email_verified(credentials.user.id, EMAIL).await.unwrap().unwrap();

    let abuse = Abuse::new(
        AbuseConfig::default(),
        Arc::new(cache_memory::MemoryRateLimiter::new(1_000)),
        sql.clone(),
        clock,
    )
    .unwrap();
    let guard = GuardConfig {
        limits: true,
        trusted_proxies: Vec::new(),
        csrf: CsrfPolicy::new("https://app.example.test/", &[], false),
    };
    let security = Security::new(guard, abuse, CookiePolicy::default());
    Fixture { service, security, _mail: mail }
}

impl Fixture {
    /// A session cookie header value (`name=token`) for the account.
    async fn login(&self) -> String {
        let input = LoginInput { email: EMAIL.to_owned(), password: PASSWORD.to_owned() };
        let outcome = self.service.login(input, &ClientInfo::default()).await.unwrap();
        format!("{}={}", CookiePolicy::default().name(), outcome.token.encode())
    }
}

macro_rules! app {
    ($fx:expr) => {
        test::init_service(
            App::new()
                .wrap($fx.security.guard())
                .app_data(web::Data::new($fx.service.clone()))
                .app_data(web::Data::new(CookiePolicy::default()))
                .route("/", web::get().to(home))
                .route("/hello", web::get().to(hello))
                .route("/update", web::post().to(update))
                .service(
                    web::scope("/private")
                        .wrap(RequireSession)
                        .route("/whoami", web::get().to(whoami)),
                ),
        )
        .await
    };
}

async fn body_of<B: actix_web::body::MessageBody>(
    response: actix_web::dev::ServiceResponse<B>,
) -> (StatusCode, String) {
    let status = response.status();
    let bytes = test::read_body(response).await;
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[actix_web::test]
async fn the_extractor_and_the_middleware_require_a_live_session() {
    let fx = fixture().await;
    let app = app!(fx);

    // Without a cookie: 401 with the JSON error, before the handler; `Option` serves.
    for uri in ["/hello", "/private/whoami"] {
        let (status, body) =
            body_of(test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await)
                .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["code"], "unauthenticated", "{body}");
    }
    let (status, body) =
        body_of(test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await)
            .await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "not signed in"));

    // A made-up cookie is no session either.
    let forged = format!("{}=not-a-token", CookiePolicy::default().name());
    let request = test::TestRequest::get().uri("/hello").insert_header((header::COOKIE, forged));
    let (status, _) = body_of(test::call_service(&app, request.to_request()).await).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // With the session: every route serves the account.
    let cookie = fx.login().await;
    let get = |uri: &str| {
        test::TestRequest::get()
            .uri(uri)
            .insert_header((header::COOKIE, cookie.clone()))
            .to_request()
    };
    let (status, body) = body_of(test::call_service(&app, get("/hello")).await).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hello, Ada"));
    let (status, body) = body_of(test::call_service(&app, get("/")).await).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "signed in as ada@example.test"));
    let (status, body) = body_of(test::call_service(&app, get("/private/whoami")).await).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("user_id"), "{body}");

    // Logged out (by any app sharing the stores): refused everywhere at once.
    let token = cookie.split_once('=').unwrap().1;
    fx.service.logout(token).await.unwrap();
    for uri in ["/hello", "/private/whoami"] {
        let (status, body) = body_of(test::call_service(&app, get(uri)).await).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}: {body}");
    }
}

#[actix_web::test]
async fn the_guard_refuses_a_cross_origin_post_with_the_cookie() {
    let fx = fixture().await;
    let app = app!(fx);
    let cookie = fx.login().await;
    // From a TCP peer, and without one (a Unix socket listener): the check needs no
    // address, so it holds for both.
    for peer in [Some("203.0.113.9:5000".parse().unwrap()), None] {
        let post = |origin: &str| {
            let mut request = test::TestRequest::post()
                .uri("/update")
                .insert_header((header::COOKIE, cookie.clone()))
                .insert_header((header::ORIGIN, origin.to_owned()));
            if let Some(peer) = peer {
                request = request.peer_addr(peer);
            }
            request.to_request()
        };
        let (status, body) =
            body_of(test::call_service(&app, post("https://evil.example")).await).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{peer:?}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["error"]["code"], "csrf", "{body}");
        let (status, body) =
            body_of(test::call_service(&app, post("https://app.example.test")).await).await;
        assert_eq!(status, StatusCode::OK, "{peer:?}: {body}");
    }
}
