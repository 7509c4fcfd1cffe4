//! Abuse protection over HTTP, on real `authd` instances (issue 5, items 1-4):
// tidy: long-file the abuse-protection suite of the running app (limits, blocks, CSRF, proxies, fingerprints); splitting it by subject is pending (issue 18)
//!
//! 1. Two instances sharing Redis (a redis-server this test starts) and SQL: 200 parallel
//!    wrong-password logins for one account admit exactly the configured number; spread
//!    over 20 loopback addresses they are still stopped per account; with that Redis
//!    killed, each instance's own limiter still answers 429.
//! 2. Wrong passwords from one address across 50 accounts block it (403, on the other
//!    instance too); an admin unblock lifts it; a blocked CIDR range is refused.
//! 3. One test per fingerprint policy.
//! 4. A cross-origin POST with a valid cookie is refused; same-origin passes; no route
//!    changes state through GET.
//!
//! Plus trusted proxies, per-address limits of the flows without an address, and the
//! admin API's guard. Issue 11: change-password is limited like logins (item 4); a
//! pre-registered account is taken back through a reset, and the janitor removes
//! expired unverified accounts (item 5); link writes are off the request path (item 7).
//! SQL is PostgreSQL (an isolated schema) when `DATABASE_URL` is set,
//! else a SQLite file. Clients bind to loopback aliases (127.0.0.x) with reqwest's
//! `local_address`, which Linux routes to `lo` without configuration.

use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use authd::Application;
use authd::settings::Settings;
use cache_core::ManualClock;
use cache_sql::SqlStore;
use futures::FutureExt as _;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::task::JoinHandle;

use crate::support::{
    PASSWORD, Resp, Served, app_settings, mail_text, own_redis, random_email, random_hex, send,
    serve, token_in_dir,
};

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef-XYZ";
/// `public_base_url` of every instance (the CSRF check compares `Origin` with it). Plain
/// http: the instances serve plain http with `cookie.secure = false`, and an https base
/// URL with an insecure cookie is refused at start-up.
const PUBLIC: &str = "http://auth.example.test";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An HTTP client whose connections come from `from` (a loopback alias).
fn client_from(from: Option<IpAddr>) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// One running instance.
struct Instance {
    base: String,
    handle: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
    /// Its janitor and analytics, for tests that run a janitor pass by hand.
    ops: authd::ops::Ops,
}

impl Instance {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn login(&self, http: &reqwest::Client, email: &str, password: &str) -> Resp {
        let body = json!({"email": email, "password": password});
        send(http.post(self.url("/v1/auth/login")).json(&body)).await
    }

    async fn me(&self, http: &reqwest::Client, cookie: &str) -> Resp {
        send(http.get(self.url("/v1/me")).header("cookie", format!("session={cookie}"))).await
    }

    fn admin(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.bearer_auth(ADMIN_TOKEN)
    }

    async fn stop(self) {
        crate::support::stop_app(self.handle, self.task).await;
    }
}

/// Shared parts of the instances of one test: SQL, clock, mail folder.
struct Env {
    clock: Arc<ManualClock>,
    sql: SqlStore,
    mail: TempDir,
    instances: Vec<Instance>,
}

impl Env {
    async fn new() -> Self {
        if std::env::var_os("TEST_LOG").is_some() {
            authd::telemetry::init_tracing(authd::settings::LogFormat::Text);
        }
        let clock = ManualClock::starting_now();
        let sql = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.trim().is_empty() => {
                cache_sql::testing::isolated_postgres(&url, clock.clone()).await.unwrap()
            }
            _ => cache_sql::testing::temp_sqlite(clock.clone()).await.unwrap(),
        };
        Self {
            clock,
            sql,
            mail: TempDir::with_prefix("authd-abuse-mail-").unwrap(),
            instances: Vec::new(),
        }
    }

    /// Starts an instance on the shared SQL store; returns its index.
    async fn start(&mut self, tweak: impl FnOnce(&mut Settings)) -> usize {
        let mut settings = app_settings(self.mail.path());
        settings.public_base_url = PUBLIC.to_owned();
        settings.admin.token = Some(ADMIN_TOKEN.into());
        settings.abuse.block_refresh_ms = 100;
        tweak(&mut settings);
        let app = Application::builder(settings)
            .clock(self.clock.clone())
            .sql_store(self.sql.clone())
            .insecure_fast_hashing()
            .build()
            .await
            .expect("the app builds");
        let ops = app.ops().clone();
        let Served { base, handle, task, .. } = serve(app);
        self.instances.push(Instance { base, handle, task, ops });
        self.instances.len() - 1
    }

    fn at(&self, i: usize) -> &Instance {
        &self.instances[i]
    }

    /// Runs `test`, then stops every instance even when it failed.
    async fn run<F>(mut self, test: F)
    where
        F: for<'a> FnOnce(&'a mut Env) -> futures::future::BoxFuture<'a, ()>,
    {
        let result = AssertUnwindSafe(test(&mut self)).catch_unwind().await;
        for instance in self.instances.drain(..) {
            instance.stop().await;
        }
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }

    /// Registers `email` through `instance` and verifies it through the mailed link.
    async fn verified(&self, instance: usize, email: &str) {
        let http = client_from(None);
        let app = self.at(instance);
        let body = json!({"name": "Test User", "email": email, "password": PASSWORD});
        send(http.post(app.url("/v1/auth/register")).json(&body)).await.expect(202);
        let deadline = Instant::now() + Duration::from_secs(10);
        let token = loop {
            if let Some(token) = token_in_dir(self.mail.path(), email, "/verify-email") {
                break token;
            }
            assert!(Instant::now() < deadline, "no verification mail to {email}");
            // The mail is written by a spawned task: this waits for real I/O.
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let verify = http.post(app.url("/v1/auth/verify-email")).json(&json!({"token": token}));
        send(verify).await.expect(200);
    }

    /// A verified user's session cookie, logged in through `instance` by `http`.
    async fn session(&self, instance: usize, http: &reqwest::Client) -> (String, String) {
        let email = random_email();
        self.verified(instance, &email).await;
        let login = self.at(instance).login(http, &email, PASSWORD).await;
        login.expect(200);
        (email, login.session_cookie().expect("login sets the cookie"))
    }
}

/// Polls `check` until it holds, for at most `within` (instances refresh their block
/// snapshot every 100 ms here).
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `n` wrong-password logins for `email` at once, the i-th through instance
/// `instances[i % len]` from address `from(i)`; returns the statuses and one 429.
async fn storm(
    env: &Env,
    instances: &[usize],
    email: &str,
    n: usize,
    from: impl Fn(usize) -> Option<IpAddr>,
) -> (Vec<u16>, Option<Resp>) {
    let clients: Vec<reqwest::Client> = (0..n).map(|i| client_from(from(i))).collect();
    let responses = join_all((0..n).map(|i| {
        let app = env.at(instances[i % instances.len()]);
        app.login(&clients[i], email, "wrong password!")
    }))
    .await;
    let statuses = responses.iter().map(|r| r.status.as_u16()).collect();
    let limited = responses.into_iter().find(|r| r.status == StatusCode::TOO_MANY_REQUESTS);
    (statuses, limited)
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

// ---------------------------------------------------------------------------------------
// 1. Login limits across instances, addresses and a Redis outage
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_limits_hold_across_instances_addresses_and_a_redis_outage() {
    let Some(mut redis) = own_redis() else { return };
    let mut env = Env::new().await;
    let prefix = format!("abuse-{}:", random_hex(6));
    for _ in 0..2 {
        let (url, prefix) = (redis.url(), prefix.clone());
        env.start(|s| {
            s.redis.url = Some(url.into());
            s.redis.key_prefix = prefix;
            // Decisions must reach Redis even on a loaded 2-core machine: a timeout would
            // hand them to the per-instance limiter and make the count per instance.
            s.redis.command_timeout_ms = 2000;
            s.abuse.login_per_account = 5;
            s.abuse.login_per_address = 100_000;
            s.abuse.login_per_address_account = 100_000;
            s.abuse.stuffing_accounts = 100_000;
        })
        .await;
    }
    env.run(|env| {
        Box::pin(async move {
            // One account, 200 parallel wrong passwords from one address, both instances.
            let email = random_email();
            env.verified(0, &email).await;
            let (statuses, limited) = storm(env, &[0, 1], &email, 200, |_| None).await;
            assert_eq!(count(&statuses, 401), 5, "{statuses:?}");
            assert_eq!(count(&statuses, 429), 195, "{statuses:?}");
            let limited = limited.unwrap();
            assert_eq!(limited.code(), "rate_limited");
            let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
            assert!((899..=900).contains(&retry), "Retry-After {retry}");
            assert_eq!(limited.header("ratelimit-limit"), Some("5"));
            assert_eq!(limited.header("ratelimit-remaining"), Some("0"));
            assert!(limited.header("ratelimit-reset").is_some());
            // The right password waits for the lockout too.
            env.at(1).login(&client_from(None), &email, PASSWORD).await.expect(429);

            // Another account, the same storm from 20 addresses: still 5.
            let email = random_email();
            env.verified(1, &email).await;
            let from = |i: usize| Some(ip(&format!("127.0.0.{}", 2 + i % 20)));
            let (statuses, _) = storm(env, &[0, 1], &email, 200, from).await;
            assert_eq!(count(&statuses, 401), 5, "{statuses:?}");
            assert_eq!(count(&statuses, 429), 195, "{statuses:?}");

            // Redis dies: each instance's own limiter takes over, and holds.
            tokio::task::spawn_blocking(move || {
                redis.kill9();
                redis
            })
            .await
            .unwrap();
            let email = random_email();
            for instance in [0, 1] {
                let (statuses, _) = storm(env, &[instance], &email, 40, |_| None).await;
                assert_eq!(count(&statuses, 401), 5, "instance {instance}: {statuses:?}");
                assert_eq!(count(&statuses, 429), 35, "instance {instance}: {statuses:?}");
            }
        })
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 2. Credential stuffing, admin unblock, CIDR blocks
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuffing_blocks_the_address_until_an_admin_lifts_it() {
    let mut env = Env::new().await;
    env.start(|_| {}).await;
    env.start(|_| {}).await;
    env.run(|env| {
        Box::pin(async move {
            let (a, b) = (env.at(0), env.at(1));
            let attacker = client_from(Some(ip("127.0.0.5")));
            let bystander = client_from(Some(ip("127.0.0.6")));
            let admin = client_from(None);

            // 50 accounts, one wrong password each (default: 10 distinct accounts block).
            let mut statuses = Vec::new();
            for _ in 0..50 {
                statuses.push(a.login(&attacker, &random_email(), "hunter2hunter2").await);
            }
            for (i, r) in statuses.iter().enumerate() {
                if i < 10 {
                    r.expect_error(401, "invalid_credentials");
                } else {
                    r.expect_error(403, "ip_blocked");
                }
            }
            // Every route is closed to it, health probes aside; other addresses pass.
            send(attacker.get(a.url("/v1/me"))).await.expect_error(403, "ip_blocked");
            send(attacker.get(a.url("/health/live"))).await.expect(200);
            a.login(&bystander, &random_email(), "hunter2hunter2").await.expect(401);
            // The block is shared: the other instance refuses it within its refresh.
            eventually(Duration::from_secs(5), "instance b sees the block", || async {
                b.login(&attacker, &random_email(), "x").await.status == StatusCode::FORBIDDEN
            })
            .await;

            // The admin sees it, and lifts it.
            let list = send(a.admin(admin.get(a.url("/v1/admin/ip-blocks")))).await;
            list.expect(200);
            let blocks = list.body["blocks"].as_array().unwrap();
            assert_eq!(blocks.len(), 1, "{}", list.text);
            assert_eq!(blocks[0]["net"], "127.0.0.5/32");
            assert_eq!(blocks[0]["reason"], "credential_stuffing");
            assert!(blocks[0]["expires_at"].is_string());
            let unblock = a.admin(admin.delete(a.url("/v1/admin/ip-blocks?net=127.0.0.5")));
            send(unblock).await.expect(204);
            let again = a.admin(admin.delete(a.url("/v1/admin/ip-blocks?net=127.0.0.5/32")));
            send(again).await.expect_error(404, "not_found");
            a.login(&attacker, &random_email(), "hunter2hunter2").await.expect(401);
            eventually(Duration::from_secs(5), "instance b sees the unblock", || async {
                b.login(&attacker, &random_email(), "x").await.status == StatusCode::UNAUTHORIZED
            })
            .await;

            // A range, blocked by hand on b, is refused on a too.
            let block = b.admin(admin.post(b.url("/v1/admin/ip-blocks")));
            let created = send(block.json(&json!({"net": "127.0.0.16/28", "ttl_secs": 600}))).await;
            created.expect(201);
            assert_eq!(created.body["net"], "127.0.0.16/28");
            assert_eq!(created.body["reason"], "manual");
            let inside = client_from(Some(ip("127.0.0.20")));
            let outside = client_from(Some(ip("127.0.0.40")));
            b.login(&inside, &random_email(), "x").await.expect_error(403, "ip_blocked");
            b.login(&outside, &random_email(), "x").await.expect(401);
            eventually(Duration::from_secs(5), "instance a sees the range", || async {
                a.login(&inside, &random_email(), "x").await.status == StatusCode::FORBIDDEN
            })
            .await;
            // It expires by the clock.
            env.clock.advance(chrono::Duration::seconds(601));
            a.login(&inside, &random_email(), "x").await.expect(401);

            // Malformed admin input is a 400, never a block.
            let bad = a.admin(admin.post(a.url("/v1/admin/ip-blocks")));
            send(bad.json(&json!({"net": "127.0.0.0/33"})))
                .await
                .expect_error(400, "invalid_input");
        })
    })
    .await;
}

/// Guessing session tokens: 20 distinct well-formed unknown tokens from one address
/// block it; one stale cookie repeated does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guessing_blocks_the_address() {
    let mut env = Env::new().await;
    env.start(|_| {}).await;
    env.run(|env| {
        Box::pin(async move {
            let app = env.at(0);
            let random_token = || {
                let user = cache_core::UserId::random().unwrap();
                cache_core::SessionToken::generate(user).unwrap().encode()
            };
            // A browser with an expired cookie, reloading: never blocked.
            let stale_client = client_from(Some(ip("127.0.0.12")));
            let stale = random_token();
            for _ in 0..50 {
                app.me(&stale_client, &stale).await.expect_error(401, "unauthenticated");
            }
            let guesser = client_from(Some(ip("127.0.0.11")));
            for _ in 0..20 {
                app.me(&guesser, &random_token()).await.expect_error(401, "unauthenticated");
            }
            app.me(&guesser, &random_token()).await.expect_error(403, "ip_blocked");
            app.me(&stale_client, &stale).await.expect_error(401, "unauthenticated");
            let list = send(app.admin(client_from(None).get(app.url("/v1/admin/ip-blocks")))).await;
            assert_eq!(list.body["blocks"][0]["reason"], "token_guessing", "{}", list.text);
            assert_eq!(list.body["blocks"][0]["net"], "127.0.0.11/32");
        })
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 3. Fingerprint policies
// ---------------------------------------------------------------------------------------

/// Logs in from 127.0.0.1 without a user agent (reqwest sends none by default), then
/// uses the session from `other_from` with `other_ua`; returns (the other client's
/// status, the original client's status afterwards).
async fn fingerprint_case(policy: &str, other_ua: Option<&str>, other_from: &str) -> (u16, u16) {
    let mut env = Env::new().await;
    let policy = policy.to_owned();
    env.start(move |s| s.security.fingerprint = serde_json::from_value(json!(policy)).unwrap())
        .await;
    let (other_ua, other_from) = (other_ua.map(str::to_owned), ip(other_from));
    let result = Arc::new(std::sync::Mutex::new((0, 0)));
    let out = result.clone();
    env.run(move |env| {
        Box::pin(async move {
            let original = client_from(Some(ip("127.0.0.1")));
            let email = random_email();
            env.verified(0, &email).await;
            let app = env.at(0);
            let login = app.login(&original, &email, PASSWORD);
            let cookie = login.await.session_cookie().unwrap();
            app.me(&original, &cookie).await.expect(200);
            let mut other = client_from(Some(other_from))
                .get(app.url("/v1/me"))
                .header("cookie", format!("session={cookie}"));
            if let Some(ua) = &other_ua {
                other = other.header("user-agent", ua.clone());
            }
            let other = send(other).await;
            let after = app.me(&original, &cookie).await;
            *out.lock().unwrap() = (other.status.as_u16(), after.status.as_u16());
        })
    })
    .await;
    *result.lock().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprint_off_accepts_any_client() {
    assert_eq!(fingerprint_case("off", Some("curl/8.0"), "127.0.0.9").await, (200, 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprint_lenient_revokes_on_another_user_agent_only() {
    // Another address, no user agent as at login: logged, accepted.
    assert_eq!(fingerprint_case("lenient", None, "127.0.0.9").await, (200, 200));
    // Another user agent: refused, and the session is gone for its owner too.
    assert_eq!(fingerprint_case("lenient", Some("curl/8.0"), "127.0.0.1").await, (401, 401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprint_strict_revokes_on_another_address_or_user_agent() {
    assert_eq!(fingerprint_case("strict", Some("curl/8.0"), "127.0.0.1").await, (401, 401));
    assert_eq!(fingerprint_case("strict", None, "127.0.0.9").await, (401, 401));
}

// ---------------------------------------------------------------------------------------
// 4. CSRF, and no state change through GET
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_origin_posts_with_the_cookie_are_refused() {
    let mut env = Env::new().await;
    env.start(|_| {}).await;
    env.run(|env| {
        Box::pin(async move {
            let http = client_from(None);
            let app = env.at(0);
            let (_, cookie) = env.session(0, &http).await;
            let with_cookie = |request: reqwest::RequestBuilder| {
                request.header("cookie", format!("session={cookie}"))
            };
            let logout = || with_cookie(http.post(app.url("/v1/auth/logout")));
            for (name, value) in [
                ("origin", "https://evil.example"),
                ("origin", "null"),
                // PUBLIC's host with another scheme is another origin.
                ("origin", "https://auth.example.test"),
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-site", "same-site"),
            ] {
                send(logout().header(name, value)).await.expect_error(403, "csrf");
            }
            let sessions = send(with_cookie(http.get(app.url("/v1/sessions")))).await;
            sessions.expect(200);
            let id = sessions.body["sessions"][0]["id"].as_str().unwrap().to_owned();
            let revoke = with_cookie(http.delete(app.url(&format!("/v1/sessions/{id}"))));
            send(revoke.header("origin", "https://evil.example")).await.expect_error(403, "csrf");
            // Nothing happened: the session is alive.
            app.me(&http, &cookie).await.expect(200);
            // Without the cookie there is nothing to forge: not checked.
            let login =
                http.post(app.url("/v1/auth/login")).header("origin", "https://evil.example");
            send(login.json(&json!({"email": random_email(), "password": "x"}))).await.expect(401);

            // Same origin passes (by Origin, or by Sec-Fetch-Site).
            let (_, other) = env.session(0, &http).await;
            let same_site = http
                .post(app.url("/v1/auth/logout"))
                .header("cookie", format!("session={other}"))
                .header("sec-fetch-site", "same-origin");
            send(same_site).await.expect(204);
            app.me(&http, &other).await.expect_error(401, "unauthenticated");
            send(logout().header("origin", PUBLIC)).await.expect(204);
            app.me(&http, &cookie).await.expect_error(401, "unauthenticated");
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_origin_are_refused_when_required() {
    let mut env = Env::new().await;
    env.start(|s| s.security.csrf_require_origin = true).await;
    env.run(|env| {
        Box::pin(async move {
            let http = client_from(None);
            let app = env.at(0);
            let (_, cookie) = env.session(0, &http).await;
            let logout = || {
                http.post(app.url("/v1/auth/logout")).header("cookie", format!("session={cookie}"))
            };
            send(logout()).await.expect_error(403, "csrf");
            send(logout().header("origin", PUBLIC)).await.expect(204);
        })
    })
    .await;
}

/// Every path the API documents without a GET operation refuses GET with 405: state
/// only ever changes through POST or DELETE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_state_changes_through_get() {
    let mut env = Env::new().await;
    env.start(|_| {}).await;
    env.run(|env| {
        Box::pin(async move {
            let http = client_from(None);
            let app = env.at(0);
            let (_, cookie) = env.session(0, &http).await;
            let doc = send(http.get(app.url("/openapi.json"))).await;
            let paths = doc.body["paths"].as_object().unwrap();
            let mut checked = 0;
            for (path, ops) in paths {
                if ops.get("get").is_some() {
                    continue;
                }
                let path = path.replace("{id}", &"0".repeat(64));
                let resp =
                    send(http.get(app.url(&path)).header("cookie", format!("session={cookie}")))
                        .await;
                resp.expect_error(405, "method_not_allowed");
                checked += 1;
            }
            assert!(checked >= 9, "only {checked} state-changing paths documented");
            app.me(&http, &cookie).await.expect(200);
        })
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Client addresses, per-address limits, the admin API
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_forwarded_for_counts_only_from_trusted_proxies() {
    let mut env = Env::new().await;
    env.start(|s| s.security.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    env.run(|env| {
        Box::pin(async move {
            let app = env.at(0);
            let email = random_email();
            env.verified(0, &email).await;
            let login = |http: reqwest::Client, xff: &'static str| {
                let body = json!({"email": email, "password": PASSWORD});
                let request = http.post(app.url("/v1/auth/login")).json(&body);
                async move { send(request.header("x-forwarded-for", xff)).await }
            };
            // Through the trusted proxy: the rightmost hop it did not add.
            let proxied = login(client_from(Some(ip("127.0.0.1"))), "6.6.6.6, 198.51.100.7").await;
            proxied.expect(200);
            assert_eq!(proxied.body["session"]["ip"], "198.51.100.7");
            // From anyone else the header is ignored.
            let direct = login(client_from(Some(ip("127.0.0.3"))), "198.51.100.7").await;
            direct.expect(200);
            assert_eq!(direct.body["session"]["ip"], "127.0.0.3");
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_limited_per_address() {
    let mut env = Env::new().await;
    env.start(|s| s.abuse.register_per_address = 2).await;
    env.run(|env| {
        Box::pin(async move {
            let app = env.at(0);
            let http = client_from(Some(ip("127.0.0.7")));
            let register = |email: String| {
                let body = json!({"name": "N", "email": email, "password": PASSWORD});
                send(http.post(app.url("/v1/auth/register")).json(&body))
            };
            // Refused input does no work and does not count.
            for _ in 0..5 {
                register("not an email".into()).await.expect_error(400, "invalid_input");
            }
            register(random_email()).await.expect(202);
            register(random_email()).await.expect(202);
            let limited = register(random_email()).await;
            limited.expect_error(429, "rate_limited");
            assert_eq!(limited.header("ratelimit-limit"), Some("2"));
            assert_eq!(limited.header("retry-after"), Some("3600"));
            // Another address is not limited.
            let other = client_from(Some(ip("127.0.0.8")));
            let body = json!({"name": "N", "email": random_email(), "password": PASSWORD});
            send(other.post(app.url("/v1/auth/register")).json(&body)).await.expect(202);
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_its_own_token() {
    let mut env = Env::new().await;
    env.start(|_| {}).await;
    env.start(|s| s.admin.token = None).await;
    env.run(|env| {
        Box::pin(async move {
            let http = client_from(None);
            let (app, disabled) = (env.at(0), env.at(1));
            let (email, cookie) = env.session(0, &http).await;
            let user = app.me(&http, &cookie).await.body["user"]["id"].as_str().unwrap().to_owned();
            let second = app.login(&http, &email, PASSWORD).await.session_cookie().unwrap();
            let path = format!("/v1/admin/users/{user}/sessions");

            // A user session is not an admin credential; neither is a wrong token.
            let with_cookie =
                http.get(app.url(&path)).header("cookie", format!("session={cookie}"));
            let refused = send(with_cookie).await;
            refused.expect_error(401, "admin_unauthorized");
            assert!(refused.header("www-authenticate").unwrap().starts_with("Bearer"));
            let wrong = http.get(app.url(&path)).bearer_auth("x".repeat(40));
            send(wrong).await.expect_error(401, "admin_unauthorized");
            let off = disabled.admin(http.get(disabled.url(&path)));
            send(off).await.expect_error(404, "admin_disabled");

            let list = send(app.admin(http.get(app.url(&path)))).await;
            list.expect(200);
            assert_eq!(list.body["sessions"].as_array().unwrap().len(), 2, "{}", list.text);
            let revoke = send(app.admin(http.delete(app.url(&path)))).await;
            revoke.expect(200);
            assert_eq!(revoke.body["revoked"], 2);
            for cookie in [cookie, second] {
                app.me(&http, &cookie).await.expect_error(401, "unauthenticated");
            }
            let bad = send(app.admin(http.get(app.url("/v1/admin/users/abc/sessions")))).await;
            bad.expect_error(400, "invalid_input");
        })
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Issue 11: item 8 (transport and defaults)
// ---------------------------------------------------------------------------------------

/// Settings of one instance on the test's SQL store, as `Env::start` makes them.
fn item8_settings(env: &Env) -> Settings {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.ops_listen = Some("127.0.0.1:0".parse().unwrap());
    settings.server.workers = 1;
    settings.mail.dir = env.mail.path().to_path_buf();
    settings.admin.token = Some(ADMIN_TOKEN.into());
    settings
}

/// The start-up error of `settings` (which must be refused), all causes included.
async fn startup_error(env: &Env, settings: Settings) -> String {
    let built = Application::builder(settings)
        .clock(env.clock.clone())
        .sql_store(env.sql.clone())
        .insecure_fast_hashing()
        .build()
        .await;
    match built {
        Ok(app) => panic!("started with forbidden settings on port {}", app.port()),
        Err(e) => format!("{e:#}"),
    }
}

/// An https `public_base_url` with `cookie.secure = false` stops the start-up; the
/// plain-http embedded default still starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_refuses_https_with_an_insecure_cookie() {
    let env = Env::new().await;
    let mut settings = item8_settings(&env);
    settings.public_base_url = "https://auth.example.test".to_owned();
    let err = startup_error(&env, settings.clone()).await;
    assert!(err.contains("public_base_url") && err.contains("cookie.secure"), "{err}");

    settings.cookie.secure = true;
    let app = Application::builder(settings)
        .clock(env.clock.clone())
        .sql_store(env.sql.clone())
        .insecure_fast_hashing()
        .build()
        .await
        .expect("https with a secure cookie starts");
    drop(app);
    let app = Application::builder(item8_settings(&env))
        .clock(env.clock.clone())
        .sql_store(env.sql.clone())
        .insecure_fast_hashing()
        .build()
        .await
        .expect("the plain-http embedded default starts");
    drop(app);
}

/// SMTP credentials over a plain-text connection stop the start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_refuses_smtp_credentials_without_tls() {
    let env = Env::new().await;
    let mut settings = item8_settings(&env);
    settings.mail.transport = authd::settings::MailTransport::Smtp;
    settings.mail.smtp.host = "127.0.0.1".to_owned();
    settings.mail.smtp.port = 2525;
    settings.mail.smtp.tls = authd::settings::SmtpTlsMode::None;
    settings.mail.smtp.username = Some("mailer".to_owned());
    settings.mail.smtp.password = Some("smtp-password-in-clear".to_owned().into());
    let err = startup_error(&env, settings).await;
    assert!(err.contains("mail.smtp.tls") && err.contains("mail.smtp.username"), "{err}");
    assert!(!err.contains("smtp-password-in-clear"), "{err}");
}

/// A weak admin token (long enough, but a pattern) stops the start-up, naming the key
/// and not the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_refuses_a_weak_admin_token() {
    let env = Env::new().await;
    for weak in ["0123456789abcdef0123456789abcdef", "adminadminadminadminadminadmin12"] {
        let mut settings = item8_settings(&env);
        settings.admin.token = Some(weak.into());
        let err = startup_error(&env, settings).await;
        assert!(err.contains("admin.token"), "{err}");
        assert!(!err.contains(weak), "the token is never echoed: {err}");
    }
}

/// Wrong admin bearer tokens are limited per client address: 429 with `Retry-After`
/// after `abuse.admin_per_address` (10) failures, before the token is even compared;
/// other addresses, and requests without a token, are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bearer_failures_are_rate_limited_per_address() {
    let mut env = Env::new().await;
    env.start(|_| {}).await;
    env.run(|env| {
        Box::pin(async move {
            let app = env.at(0);
            let blocks = app.url("/v1/admin/ip-blocks");
            let guesser = client_from(Some(ip("127.0.0.41")));
            for n in 0..10 {
                let guess = format!("guess-{n}-{}", random_hex(16));
                let r = send(guesser.get(&blocks).bearer_auth(guess)).await;
                r.expect_error(401, "admin_unauthorized");
            }
            let limited = send(guesser.get(&blocks).bearer_auth("yet-another-guess")).await;
            limited.expect_error(429, "rate_limited");
            assert_eq!(limited.header("retry-after"), Some("900"));
            assert_eq!(limited.header("ratelimit-limit"), Some("10"));
            // Locked out, even the right token is not compared: a guess cannot be confirmed.
            let right = send(app.admin(guesser.get(&blocks))).await;
            right.expect_error(429, "rate_limited");

            // Another address is not limited; nor is one that sends no token at all.
            let operator = client_from(Some(ip("127.0.0.42")));
            for _ in 0..20 {
                send(operator.get(&blocks)).await.expect_error(401, "admin_unauthorized");
            }
            send(app.admin(operator.get(&blocks))).await.expect(200);
            // Right tokens are not counted either.
            for _ in 0..20 {
                send(app.admin(operator.get(&blocks))).await.expect(200);
            }
        })
    })
    .await;
}

/// IPv6 clients (here through a trusted proxy's `X-Forwarded-For`) are limited per /64
/// and per /48: the /48 admits `ipv6_network_multiplier` (4) times the per-address
/// limit, so moving to a fresh /64 of the same /48 does not buy a fresh quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_limits_also_apply_per_48() {
    let mut env = Env::new().await;
    env.start(|s| {
        s.security.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        s.abuse.register_per_address = 2;
    })
    .await;
    env.run(|env| {
        Box::pin(async move {
            let app = env.at(0);
            let http = client_from(Some(ip("127.0.0.1")));
            let register = |from: String| {
                let body = json!({"name": "N", "email": random_email(), "password": PASSWORD});
                let request = http.post(app.url("/v1/auth/register")).json(&body);
                send(request.header("x-forwarded-for", from))
            };
            // 4 /64s of 2001:db8:48::/48, 2 each: the /48's 8.
            for subnet in 0..4 {
                for host in 1..=2 {
                    register(format!("2001:db8:48:{subnet}::{host}")).await.expect(202);
                }
            }
            // The /64 itself is still within its own limit of 2, yet the /48 refuses.
            let limited = register("2001:db8:48:99::1".to_owned()).await;
            limited.expect_error(429, "rate_limited");
            assert_eq!(limited.header("ratelimit-limit"), Some("8"));
            // Its per-/64 limit still holds, and another /48 has its own quota.
            register("2001:db8:49::1".to_owned()).await.expect(202);
            register("2001:db8:49::2".to_owned()).await.expect(202);
            register("2001:db8:49::3".to_owned()).await.expect_error(429, "rate_limited");
        })
    })
    .await;
}

/// Mails in the folder addressed to `to`, as text.
fn mails_to(dir: &Path, to: &str) -> Vec<String> {
    let to_line = format!("to: {}", to.to_ascii_lowercase());
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .map(|raw| mail_text(&raw))
        .filter(|text| text.lines().any(|l| l.trim().to_ascii_lowercase() == to_line))
        .collect()
}

/// An email whose domain is spelled in full-width capitals is the same account as its
/// plain spelling: registering it again mails the owner a notice (no second account, no
/// second verification link), and it logs in to the original account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_width_domain_is_the_same_account() {
    let mut env = Env::new().await;
    env.start(|_| {}).await;
    env.run(|env| {
        Box::pin(async move {
            let http = client_from(None);
            let app = env.at(0);
            let local = format!("user-{}", random_hex(6));
            let plain = format!("{local}@example.com");
            // ＥＸＡＭＰＬＥ in full-width capitals.
            let wide =
                format!("{local}@\u{FF25}\u{FF38}\u{FF21}\u{FF2D}\u{FF30}\u{FF2C}\u{FF25}.com");
            env.verified(0, &plain).await;
            let owner = app.login(&http, &plain, PASSWORD).await;
            owner.expect(200);
            let owner_id = app.me(&http, &owner.session_cookie().unwrap()).await.body["user"]["id"]
                .as_str()
                .unwrap()
                .to_owned();

            // An attacker registers the full-width spelling with their own password.
            let body =
                json!({"name": "Attacker", "email": wide, "password": "attacker's own password"});
            send(http.post(app.url("/v1/auth/register")).json(&body)).await.expect(202);

            // The owner is mailed a notice, not a verification link (the mail is
            // written by a spawned task: this waits for real I/O).
            let deadline = Instant::now() + Duration::from_secs(10);
            let mails = loop {
                let mails = mails_to(env.mail.path(), &plain);
                if mails.len() >= 2 {
                    break mails;
                }
                assert!(Instant::now() < deadline, "no second mail to {plain}: {mails:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            assert_eq!(mails.len(), 2, "{mails:?}");
            let links = mails.iter().filter(|m| m.contains("/verify-email#token=")).count();
            assert_eq!(links, 1, "only the first registration got a verification link");

            // Any spelling of the domain logs in to the owner's account, with the owner's
            // password only.
            let upper = format!("{}@EXAMPLE.COM", local.to_uppercase());
            for spelling in [&wide, &upper] {
                let login = app.login(&http, spelling, PASSWORD).await;
                login.expect(200);
                let me = app.me(&http, &login.session_cookie().unwrap()).await;
                assert_eq!(me.body["user"]["id"].as_str(), Some(owner_id.as_str()));
                assert_eq!(me.body["user"]["email"].as_str(), Some(plain.as_str()));
                let attacker = app.login(&http, spelling, "attacker's own password").await;
                attacker.expect_error(401, "invalid_credentials");
            }
        })
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Issue 11, item 1: every guard decision keys on the matched route
// ---------------------------------------------------------------------------------------

/// A response to a raw request: its status and headers (lower-case names).
struct RawResp {
    status: u16,
    headers: Vec<(String, String)>,
}

impl RawResp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Sends `method target` exactly as spelled (an HTTP client library would normalise dot
/// segments or re-encode), from the loopback alias `from`, with `headers` and `body`.
async fn raw_request(
    app: &Instance,
    from: IpAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> RawResp {
    let addr: std::net::SocketAddr =
        app.base.trim_start_matches("http://").parse().expect("the base is an address");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let mut stream = socket.connect(addr).await.expect("connects");
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    let (head, _) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawResp { status, headers }
}

/// Spellings of `/v1/auth/{segment}`: those actix-web routes to the same handler
/// (percent-encoded unreserved letters and `-`, a query), and those it routes nowhere (encoded
/// slash, doubled slash, trailing slash, dot segments, other case).
fn spellings(segment: &str) -> (Vec<String>, Vec<String>) {
    let first = segment.as_bytes()[0];
    let encoded_first = format!("%{first:02X}{}", &segment[1..]);
    let mut same = vec![
        format!("/v1/auth/{encoded_first}"),
        format!("/v1/%61uth/{segment}"),
        format!("/v1/auth/{}", encoded_first.to_ascii_lowercase()),
        format!("/%76%31/auth/{segment}"),
        format!("/v1/auth/{segment}?x=1"),
    ];
    if let Some(i) = segment.find('-') {
        same.push(format!("/v1/auth/{}%2D{}", &segment[..i], &segment[i + 1..]));
    }
    let mut upper = segment.to_owned();
    upper[..1].make_ascii_uppercase();
    let elsewhere = vec![
        format!("/v1/auth%2F{segment}"),
        format!("/v1/auth%2f{segment}"),
        format!("/v1//auth/{segment}"),
        format!("/v1/auth//{segment}"),
        format!("//v1/auth/{segment}"),
        format!("/v1/auth/{segment}/"),
        format!("/v1/auth/./{segment}"),
        format!("/v1/auth/%2E/{segment}"),
        format!("/v1/x/../auth/{segment}"),
        format!("/v1/auth/{segment}/.."),
        format!("/v1/auth/{upper}"),
        format!("/V1/auth/{segment}"),
        format!("/v1/auth/{segment}%20"),
        format!("/v1/auth/{segment};x=1"),
    ];
    (same, elsewhere)
}

/// A route with a per-address limit: its last segment, a body for it, and the status of
/// an attempt that counts.
type LimitedRoute = (&'static str, fn() -> Value, u16);

/// Every route with a per-address limit, spelled every way: each spelling either reaches
/// the handler and is counted in the canonical spelling's bucket, or is answered 404
/// without reaching it (and without counting).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_limited_route_is_counted_in_one_bucket_or_refused() {
    const LIMIT: u32 = 3;
    let mut env = Env::new().await;
    env.start(|s| {
        s.abuse.register_per_address = LIMIT;
        s.abuse.resend_per_address = LIMIT;
        s.abuse.forgot_per_address = LIMIT;
        s.abuse.reset_per_address = LIMIT;
    })
    .await;
    env.run(|env| {
        Box::pin(async move {
            let app = env.at(0);
            // (segment, body, the handler's counted answer)
            let routes: [LimitedRoute; 4] = [
                (
                    "register",
                    || json!({"name": "N", "email": random_email(), "password": PASSWORD}),
                    202,
                ),
                ("resend-verification", || json!({"email": random_email()}), 202),
                ("forgot-password", || json!({"email": random_email()}), 202),
                (
                    "reset-password",
                    || json!({"token": "A".repeat(43), "new_password": PASSWORD}),
                    400,
                ),
            ];
            for (i, (segment, body, counted)) in routes.into_iter().enumerate() {
                let from = ip(&format!("127.0.1.{}", 10 + i));
                let (same, elsewhere) = spellings(segment);
                for target in &elsewhere {
                    let r = raw_request(app, from, "POST", target, &[], Some(&body())).await;
                    assert_eq!(r.status, 404, "POST {target} must not reach the handler");
                    assert_eq!(r.header("cache-control"), Some("no-store"), "{target}");
                }
                // The canonical spelling, then the others until the limit: all counted in
                // one bucket, so the first spelling past the limit is refused.
                let canonical = format!("/v1/auth/{segment}");
                let mut reached = 0;
                for target in std::iter::once(&canonical).chain(&same) {
                    let r = raw_request(app, from, "POST", target, &[], Some(&body())).await;
                    reached += 1;
                    if reached <= LIMIT {
                        assert_eq!(r.status, counted, "POST {target} (attempt {reached})");
                    } else {
                        assert_eq!(r.status, 429, "POST {target} is past the limit");
                        assert!(r.header("retry-after").is_some(), "{target}");
                        assert_eq!(r.header("cache-control"), Some("no-store"), "{target}");
                    }
                }
                assert!(reached > LIMIT, "{segment}: too few spellings to pass the limit");
                let r = raw_request(app, from, "POST", &canonical, &[], Some(&body())).await;
                assert_eq!(r.status, 429, "{canonical} shares the bucket");
            }
        })
    })
    .await;
}

/// A blocked address reaches health probes and the admin API, however spelled, and
/// nothing else, however spelled; every refusal is `no-store`. A cross-origin POST with
/// the cookie is refused on every spelling that reaches a handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_and_csrf_hold_on_every_spelling() {
    let mut env = Env::new().await;
    env.start(|_| {}).await;
    env.run(|env| {
        Box::pin(async move {
            let app = env.at(0);
            let admin = client_from(None);
            let http = client_from(None);
            let (_, cookie) = env.session(0, &http).await;
            let bearer = format!("Bearer {ADMIN_TOKEN}");
            let blocked = ip("127.0.1.50");
            let block = app.admin(admin.post(app.url("/v1/admin/ip-blocks")));
            send(block.json(&json!({"net": "127.0.1.50"}))).await.expect(201);

            for target in ["/health/live", "/h%65alth/live", "/health/liv%65", "/health/ready"] {
                let r = raw_request(app, blocked, "GET", target, &[], None).await;
                assert_eq!(r.status, 200, "GET {target} is a probe");
            }
            for target in ["/v1/admin/ip-blocks", "/v1/%61dmin/ip-blocks", "/v1/admin/ip-bl%6Fcks"]
            {
                let auth = [("Authorization", bearer.as_str())];
                let r = raw_request(app, blocked, "GET", target, &auth, None).await;
                assert_eq!(r.status, 200, "GET {target} is the admin API");
            }
            let cookie_header = format!("session={cookie}");
            let with_cookie = [("Cookie", cookie_header.as_str())];
            for target in ["/v1/me", "/v1/m%65", "/v1/%6De", "/nope", "/v1/admin/nope", "/health"] {
                let r = raw_request(app, blocked, "GET", target, &with_cookie, None).await;
                assert_eq!(r.status, 403, "GET {target} from a blocked address");
                assert_eq!(r.header("cache-control"), Some("no-store"), "{target}");
            }

            let cross = [("Cookie", cookie_header.as_str()), ("Origin", "https://evil.example")];
            let from = ip("127.0.1.51");
            for target in ["/v1/auth/logout", "/v1/auth/logou%74", "/v1/%61uth/logout-everywhere"] {
                let r = raw_request(app, from, "POST", target, &cross, Some(&json!({}))).await;
                assert_eq!(r.status, 403, "cross-origin POST {target}");
                assert_eq!(r.header("cache-control"), Some("no-store"), "{target}");
            }
            // The session survived every refused attempt.
            app.me(&http, &cookie).await.expect(200);
        })
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Issue 11, items 3 and 6: made-up and ended cookies
// ---------------------------------------------------------------------------------------

/// A session token in the cookie's format for `user`, naming no session.
fn made_up_token(user: cache_core::UserId) -> String {
    cache_core::SessionToken::generate(user).unwrap().encode()
}

/// A made-up token whose user id names no account either.
fn random_token() -> String {
    made_up_token(cache_core::UserId::random().unwrap())
}

/// The keys the redis-server on `port` holds, but the analytics' daily keys (flushed in
/// the background from earlier requests), sorted. `KEYS` is fine on a test's own server.
async fn redis_session_keys(port: u16) -> Vec<String> {
    use tokio::io::AsyncBufReadExt as _;
    let conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut conn = tokio::io::BufReader::new(conn);
    conn.get_mut().write_all(b"KEYS *\r\n").await.unwrap();
    let mut line = String::new();
    conn.read_line(&mut line).await.unwrap();
    let n: usize = line.trim().trim_start_matches('*').parse().unwrap();
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        conn.read_line(&mut line).await.unwrap(); // $len
        line.clear();
        conn.read_line(&mut line).await.unwrap();
        keys.push(line.trim_end().to_owned());
    }
    keys.retain(|k| !k.contains("{a:"));
    keys.sort();
    keys
}

/// How many rows the revocation journal holds.
async fn journal_rows(env: &Env) -> usize {
    use cache_core::RevocationJournal as _;
    let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    env.sql.revocations_since(epoch).await.unwrap().len()
}

/// 10,000 logouts with made-up cookies (random user ids, and a real user's id with a
/// random secret) write nothing: no journal row, no Redis key, no publish. Then, with
/// the abuse limits on, such logouts count as unknown tokens like on any other route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logouts_with_made_up_cookies_write_nothing() {
    let Some(redis) = own_redis() else { return };
    let mut env = Env::new().await;
    let url = redis.url();
    env.start(|s| {
        s.redis.url = Some(url.clone().into());
        s.abuse.enabled = false;
    })
    .await;
    let url = redis.url();
    env.start(move |s| s.redis.url = Some(url.into())).await;
    env.run(|env| {
        Box::pin(async move {
            let (app, guarded) = (env.at(0), env.at(1));
            let http = reqwest::Client::new();
            let (_, cookie) = env.session(0, &client_from(None)).await;
            let me = app.me(&http, &cookie).await;
            let user: cache_core::UserId = me.body["user"]["id"].as_str().unwrap().parse().unwrap();
            let (rows, keys) = (journal_rows(env).await, redis_session_keys(redis.port).await);

            use futures::StreamExt as _;
            let logouts = futures::stream::iter(0..10_000).map(|i| {
                let token = if i % 2 == 0 { random_token() } else { made_up_token(user) };
                let request = http
                    .post(app.url("/v1/auth/logout"))
                    .header("cookie", format!("session={token}"));
                async move { request.send().await.map(|r| r.status().as_u16()) }
            });
            let statuses: Vec<_> = logouts.buffer_unordered(32).collect().await;
            assert!(statuses.iter().all(|s| matches!(s, Ok(204))), "every logout answers 204");
            assert_eq!(journal_rows(env).await, rows, "no journal row for a made-up cookie");
            assert_eq!(
                redis_session_keys(redis.port).await,
                keys,
                "no Redis key for a made-up cookie"
            );
            app.me(&http, &cookie).await.expect(200);

            // A real logout still journals and reaches every tier.
            send(
                http.post(app.url("/v1/auth/logout")).header("cookie", format!("session={cookie}")),
            )
            .await
            .expect(204);
            assert_eq!(journal_rows(env).await, rows + 1);
            guarded.me(&http, &cookie).await.expect_error(401, "unauthenticated");

            // With the limits on, made-up logouts are token guesses: 20 block the address.
            let guesser = client_from(Some(ip("127.0.1.60")));
            for _ in 0..20 {
                let logout = guesser
                    .post(guarded.url("/v1/auth/logout"))
                    .header("cookie", format!("session={}", random_token()));
                send(logout).await.expect(204);
            }
            guarded.me(&guesser, &random_token()).await.expect_error(403, "ip_blocked");
        })
    })
    .await;
}

/// 200 cookies of sessions that really existed and ended (100 logged out, 100 expired),
/// all from one shared address: each is refused and cleared (`Max-Age=0`), and the
/// address is never blocked. Made-up tokens past the threshold still block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_sessions_never_block_a_shared_address() {
    let mut env = Env::new().await;
    env.start(|_| {}).await;
    env.run(|env| {
        Box::pin(async move {
            let app = env.at(0);
            let http = client_from(None);
            let email = random_email();
            env.verified(0, &email).await;
            let mut cookies = Vec::new();
            for _ in 0..200 {
                let login = app.login(&http, &email, PASSWORD).await;
                cookies.push(login.session_cookie().expect("a session"));
            }
            for cookie in &cookies[..100] {
                let logout = http
                    .post(app.url("/v1/auth/logout"))
                    .header("cookie", format!("session={cookie}"));
                send(logout).await.expect(204);
            }
            // Past the idle timeout (7 days): the other 100 expired.
            env.clock.advance(chrono::Duration::days(8));

            let nat = client_from(Some(ip("127.0.1.70")));
            for cookie in &cookies {
                let refused = app.me(&nat, cookie).await;
                refused.expect_error(401, "unauthenticated");
                let cleared = refused.headers.get_all("set-cookie").iter().any(|v| {
                    let v = v.to_str().unwrap_or_default();
                    v.starts_with("session=;") && v.contains("Max-Age=0")
                });
                assert!(cleared, "the dead cookie is cleared: {:?}", refused.headers);
            }
            // Everyone behind that address can still sign in.
            let login = app.login(&nat, &email, PASSWORD).await;
            login.expect(200);
            app.me(&nat, &login.session_cookie().unwrap()).await.expect(200);

            // Noise with made-up user ids is still caught.
            let guesser = client_from(Some(ip("127.0.1.71")));
            for _ in 0..20 {
                app.me(&guesser, &random_token()).await.expect_error(401, "unauthenticated");
            }
            app.me(&guesser, &random_token()).await.expect_error(403, "ip_blocked");
        })
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Issue 11: items 4, 5, 7
// ---------------------------------------------------------------------------------------

/// Whether a mail to `to` whose text contains every one of `needles` is in `dir`.
fn mail_in_dir(dir: &Path, to: &str, needles: &[&str]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    let to_line = format!("to: {}", to.to_ascii_lowercase());
    entries.filter_map(Result::ok).any(|entry| {
        let Ok(raw) = std::fs::read_to_string(entry.path()) else { return false };
        let text = mail_text(&raw);
        text.lines().any(|l| l.trim().to_ascii_lowercase() == to_line)
            && needles.iter().all(|needle| text.contains(needle))
    })
}

/// Waits for a mail to `to` containing every one of `needles` (mail is written by a
/// spawned task: this waits for real I/O).
async fn wait_for_mail(dir: &Path, to: &str, needles: &[&str]) {
    eventually(Duration::from_secs(10), &format!("a mail to {to} with {needles:?}"), || async {
        mail_in_dir(dir, to, needles)
    })
    .await;
}

/// Waits for the token of a mail to `to` linking to `path`, other than `except`.
async fn wait_for_token(dir: &Path, to: &str, path: &str, except: Option<&str>) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(token) = token_in_dir(dir, to, path)
            && Some(token.as_str()) != except
        {
            return token;
        }
        assert!(Instant::now() < deadline, "no new {path} mail to {to}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn post_json(http: &reqwest::Client, app: &Instance, path: &str, body: Value) -> Resp {
    send(http.post(app.url(path)).json(&body)).await
}

async fn register_as(http: &reqwest::Client, app: &Instance, email: &str, password: &str) -> Resp {
    let body = json!({"name": "Someone", "email": email, "password": password});
    post_json(http, app, "/v1/auth/register", body).await
}

async fn change_password(
    http: &reqwest::Client,
    app: &Instance,
    cookie: &str,
    current: &str,
    new: &str,
) -> Resp {
    let body = json!({"current_password": current, "new_password": new});
    let request = http.post(app.url("/v1/auth/change-password")).json(&body);
    send(request.header("cookie", format!("session={cookie}"))).await
}

/// Item 4: wrong current passwords on change-password are limited per session and count
/// toward the login lockout of the account (429 with `Retry-After`), so a stolen cookie
/// is no unlimited password oracle. On the old code every attempt answered 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_password_wrong_guesses_are_limited_like_logins() {
    let mut env = Env::new().await;
    env.start(|s| {
        // Per session (and per account from one address): 3; per account: 5.
        s.abuse.login_per_address_account = 3;
        s.abuse.login_per_account = 5;
        s.abuse.login_per_address = 100;
        s.abuse.stuffing_accounts = 100;
    })
    .await;
    env.run(|env| {
        Box::pin(async move {
            let app = env.at(0);
            let first = client_from(Some(ip("127.0.0.41")));
            let (email, cookie) = env.session(0, &first).await;

            // A right current password is not a guess: released, it counts for nothing.
            let new = "a new password for the limit test";
            change_password(&first, app, &cookie, PASSWORD, new).await.expect(200);
            change_password(&first, app, &cookie, new, PASSWORD).await.expect(200);

            // Three wrong guesses through this session, then 429 before any check: even
            // the right password waits.
            for _ in 0..3 {
                let wrong = change_password(&first, app, &cookie, "not the password", new).await;
                wrong.expect_error(401, "invalid_credentials");
            }
            let limited = change_password(&first, app, &cookie, "still guessing", new).await;
            limited.expect_error(429, "rate_limited");
            let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
            assert!(retry > 0, "Retry-After {retry}");
            assert_eq!(limited.header("ratelimit-limit"), Some("3"));
            change_password(&first, app, &cookie, PASSWORD, new).await.expect(429);

            // Another session from another address: the account has 2 failures left.
            let second = client_from(Some(ip("127.0.0.42")));
            let login = app.login(&second, &email, PASSWORD).await;
            login.expect(200);
            let other = login.session_cookie().unwrap();
            for _ in 0..2 {
                change_password(&second, app, &other, "wrong again", new).await.expect(401);
            }
            let limited = change_password(&second, app, &other, "wrong again", new).await;
            limited.expect_error(429, "rate_limited");
            assert_eq!(limited.header("ratelimit-limit"), Some("5"));

            // The same lockout as logins: the right password cannot log in from anywhere.
            let third = client_from(Some(ip("127.0.0.43")));
            app.login(&third, &email, PASSWORD).await.expect_error(429, "rate_limited");
            // The password is unchanged, and the account is free again after the window.
            env.clock.advance(chrono::Duration::minutes(16));
            app.login(&third, &email, PASSWORD).await.expect(200);
        })
    })
    .await;
}

/// Item 5: account pre-hijacking. An attacker registers the victim's address with the
/// attacker's password; the owner registers (and gets the "already registered" notice),
/// follows forgot-password and the reset link. Afterwards the attacker's password no
/// longer logs in, the owner's does, and the account is verified. On the old code
/// forgot-password mailed nothing for an unverified account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_registered_account_is_taken_back_through_a_password_reset() {
    let mut env = Env::new().await;
    env.start(|_| {}).await;
    env.run(|env| {
        Box::pin(async move {
            let app = env.at(0);
            let mail = env.mail.path().to_path_buf();
            let victim = random_email();
            let attacker = client_from(Some(ip("127.0.0.51")));
            let owner = client_from(Some(ip("127.0.0.52")));
            let attackers = "the attacker's chosen password";
            let owners = "the owner's own new password";

            register_as(&attacker, app, &victim, attackers).await.expect(202);
            // The owner receives a verification link that says what it does not do.
            let pending = wait_for_token(&mail, &victim, "/verify-email", None).await;
            let says = ["does not sign you in", "does not set a password", "deleted after 1 day"];
            assert!(mail_in_dir(&mail, &victim, &says), "the verification mail says {says:?}");
            app.login(&attacker, &victim, attackers).await.expect_error(403, "email_not_verified");

            // The owner registers, and is told to use forgot-password.
            register_as(&owner, app, &victim, owners).await.expect(202);
            wait_for_mail(&mail, &victim, &["which already has one", "Forgot password"]).await;
            let forgot = json!({"email": victim});
            post_json(&owner, app, "/v1/auth/forgot-password", forgot).await.expect(202);
            let reset = wait_for_token(&mail, &victim, "/reset-password", None).await;
            let body = json!({"token": reset, "new_password": owners});
            post_json(&owner, app, "/v1/auth/reset-password", body).await.expect(204);

            app.login(&attacker, &victim, attackers).await.expect_error(401, "invalid_credentials");
            let login = app.login(&owner, &victim, owners).await;
            login.expect(200);
            assert_eq!(login.body["user"]["email_verified"], true, "{}", login.text);
            // The link mailed at the attacker's registration is void.
            let verify = json!({"token": pending});
            post_json(&owner, app, "/v1/auth/verify-email", verify)
                .await
                .expect_error(400, "invalid_token");
        })
    })
    .await;
}

/// Item 5: an account left unverified past `auth.unverified_account_ttl_secs` is
/// deleted by the janitor (by the injected clock), with its links, and its address can
/// be registered afresh; a verified account of the same age stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_removes_expired_unverified_accounts() {
    let mut env = Env::new().await;
    env.start(|s| s.auth.unverified_account_ttl_secs = 3600).await;
    env.run(|env| {
        Box::pin(async move {
            let app = env.at(0);
            let mail = env.mail.path().to_path_buf();
            let http = client_from(None);
            let kept = random_email();
            env.verified(0, &kept).await;
            let email = random_email();
            register_as(&http, app, &email, "a squatter's password").await.expect(202);
            let stale = wait_for_token(&mail, &email, "/verify-email", None).await;

            // Not yet expired: kept, and the address is still taken.
            env.clock.advance(chrono::Duration::minutes(59));
            let pass = app.ops.janitor().run_once().await.unwrap();
            assert_eq!(pass.unverified_accounts, 0, "{pass:?}");
            register_as(&http, app, &email, PASSWORD).await.expect(202);
            wait_for_mail(&mail, &email, &["which already has one"]).await;

            env.clock.advance(chrono::Duration::minutes(2));
            let pass = app.ops.janitor().run_once().await.unwrap();
            assert_eq!(pass.unverified_accounts, 1, "{pass:?}");
            let pass = app.ops.janitor().run_once().await.unwrap();
            assert_eq!(pass.unverified_accounts, 0, "{pass:?}");

            // The address registers afresh, with a new password and a new link.
            register_as(&http, app, &email, PASSWORD).await.expect(202);
            let fresh = wait_for_token(&mail, &email, "/verify-email", Some(&stale)).await;
            let verify = |token: String| {
                post_json(&http, app, "/v1/auth/verify-email", json!({"token": token}))
            };
            verify(stale).await.expect_error(400, "invalid_token");
            verify(fresh).await.expect(200);
            app.login(&http, &email, PASSWORD).await.expect(200);
            app.login(&http, &kept, PASSWORD).await.expect(200);
        })
    })
    .await;
}

/// Item 7: register, resend-verification and forgot-password store and mail their links
/// off the request's path, so a known address costs what an unknown one does. Pinned
/// without a clock: with every write of a link made to fail (a trigger in SQL), known
/// and unknown addresses still get the same answer. On the old code the known path
/// awaited those writes and answered 500 (an enumeration oracle of its own). The
/// timing figures come from `cargo xtask timing` (docs/security.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_writes_are_off_the_request_path_for_known_addresses() {
    let mut env = Env::new().await;
    env.start(|_| {}).await;
    env.run(|env| {
        Box::pin(async move {
            let app = env.at(0);
            let mail = env.mail.path().to_path_buf();
            let http = client_from(None);
            let verified = random_email();
            env.verified(0, &verified).await;
            let unverified = random_email();
            register_as(&http, app, &unverified, PASSWORD).await.expect(202);
            wait_for_token(&mail, &unverified, "/verify-email", None).await;

            let refuse = match env.sql.backend() {
                "postgres" => {
                    "CREATE FUNCTION refuse_links() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'links are down'; END $$; \
                     CREATE TRIGGER refuse_links BEFORE INSERT ON verifications \
                     FOR EACH ROW EXECUTE FUNCTION refuse_links();"
                }
                _ => {
                    "CREATE TRIGGER refuse_links BEFORE INSERT ON verifications \
                     BEGIN SELECT RAISE(ABORT, 'links are down'); END;"
                }
            };
            cache_sql::testing::execute(&env.sql, refuse).await.unwrap();

            for (path, known) in [
                ("/v1/auth/register", &verified),
                ("/v1/auth/resend-verification", &unverified),
                ("/v1/auth/forgot-password", &verified),
            ] {
                let body = |email: &str| match path {
                    "/v1/auth/register" => {
                        json!({"name": "N", "email": email, "password": PASSWORD})
                    }
                    _ => json!({"email": email}),
                };
                let a = post_json(&http, app, path, body(known)).await;
                let b = post_json(&http, app, path, body(&random_email())).await;
                a.expect(202);
                b.expect(202);
                assert_eq!(a.text, b.text, "{path}");
            }

            // The links flow again once their writes do.
            let drop_trigger = match env.sql.backend() {
                "postgres" => "DROP TRIGGER refuse_links ON verifications;",
                _ => "DROP TRIGGER refuse_links;",
            };
            cache_sql::testing::execute(&env.sql, drop_trigger).await.unwrap();
            let forgot = json!({"email": verified});
            post_json(&http, app, "/v1/auth/forgot-password", forgot).await.expect(202);
            wait_for_token(&mail, &verified, "/reset-password", None).await;
        })
    })
    .await;
}
