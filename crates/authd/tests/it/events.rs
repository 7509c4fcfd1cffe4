//! Security events and alerts against the real app: a login from a new device mails
//! exactly one alert and a repeat mails none, the first login after registration mails
//! none; events page newest first at `/v1/me/events` and an admin sees them; failed
//! sign-ins over the threshold mail the owner once; bad queries are 400; the stored rows
//! hold no token or password; the janitor trims old events (the clock advanced).
//!
//! Setups as in `api.rs`: SQLite with memory (always), PostgreSQL alone, and memory,
//! Redis and PostgreSQL (when `DATABASE_URL` / `REDIS_URL` are set). The writer is
//! asynchronous: tests wait for what it writes with a deadline (polling), never a fixed
//! sleep.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use authd::Application;
use authd::settings::Settings;
use cache_core::ManualClock;
use chrono::Duration as Span;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;

use crate::support::{
    PASSWORD, Resp, Served, Setup, app_settings, configure_tiers, http_client, init_logs,
    mail_text, random_email, send, serve, sql_store, temp_dir, token_in_dir,
};

const ADMIN_TOKEN: &str = "test-admin-token-events-0123456789abcdef";
const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
const CHROME_WINDOWS: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
/// How long the writer may take before a test gives up (liveness, not timing).
const DEADLINE: Duration = Duration::from_secs(20);

struct Env {
    base: String,
    ops_base: String,
    http: reqwest::Client,
    clock: Arc<ManualClock>,
    mail_dir: TempDir,
    sql: cache_sql::SqlStore,
    ops: authd::ops::Ops,
    handle: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start(setup: Setup, tweak: impl FnOnce(&mut Settings)) -> Option<Env> {
    init_logs();
    let clock = ManualClock::starting_now();
    let mail_dir = temp_dir("events-mail");
    let mut settings = app_settings(mail_dir.path());
    settings.admin.token = Some(ADMIN_TOKEN.into());
    settings.janitor.enabled = false;
    let sql = sql_store(setup, &clock).await?;
    configure_tiers(&mut settings, setup)?;
    tweak(&mut settings);
    let app = Application::builder(settings)
        .clock(clock.clone())
        .sql_store(sql)
        .insecure_fast_hashing()
        .build()
        .await
        .expect("the app builds");
    let (sql, ops) = (app.backends().sql.clone(), app.ops().clone());
    let Served { base, ops_base, handle, task } = serve(app);
    let ops_base = ops_base.expect("the operations listener is on");
    let http = http_client();
    Some(Env { base, ops_base, http, clock, mail_dir, sql, ops, handle, task })
}

impl Env {
    async fn stop(self) {
        crate::support::stop_app(self.handle, self.task).await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(&self, path: &str, body: Value, user_agent: &str) -> Resp {
        let request = self.http.post(self.url(path)).header("user-agent", user_agent).json(&body);
        send(request).await
    }

    async fn get(&self, path: &str, cookie: &str) -> Resp {
        let request = self.http.get(self.url(path)).header("cookie", format!("session={cookie}"));
        send(request).await
    }

    async fn admin_get(&self, path: &str) -> Resp {
        send(self.http.get(self.url(path)).bearer_auth(ADMIN_TOKEN)).await
    }

    async fn login(&self, email: &str, password: &str, user_agent: &str) -> Resp {
        self.post("/v1/auth/login", json!({"email": email, "password": password}), user_agent).await
    }

    /// Registers and verifies an account (no login).
    async fn register(&self) -> String {
        let email = random_email();
        let body = json!({"name": "Test User", "email": email, "password": PASSWORD});
        self.post("/v1/auth/register", body, FIREFOX_LINUX).await.expect(202);
        let token = self
            .wait("the verification mail", || {
                token_in_dir(self.mail_dir.path(), &email, "/verify-email")
            })
            .await;
        self.post("/v1/auth/verify-email", json!({"token": token}), FIREFOX_LINUX)
            .await
            .expect(200);
        email
    }

    /// Polls `check` until it gives a value, failing after [`DEADLINE`].
    async fn wait<T>(&self, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(Instant::now() < deadline, "{what} did not arrive");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The decoded mails to `to` whose subject is `subject`.
    fn mails(&self, to: &str, subject: &str) -> Vec<String> {
        let to_line = format!("to: {}", to.to_ascii_lowercase());
        let subject_line = format!("subject: {}", subject.to_ascii_lowercase());
        let entries = std::fs::read_dir(self.mail_dir.path()).into_iter().flatten().flatten();
        entries
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .map(|raw| mail_text(&raw))
            .filter(|text| {
                let lines: Vec<String> =
                    text.lines().map(|l| l.trim().to_ascii_lowercase()).collect();
                lines.contains(&to_line) && lines.contains(&subject_line)
            })
            .collect()
    }

    /// Polls until `user` has `n` events, then returns their kinds, newest first.
    async fn wait_events(&self, cookie: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let page = self.get("/v1/me/events?limit=100", cookie).await;
            page.expect(200);
            let events = page.body["events"].as_array().cloned().unwrap_or_default();
            if events.len() >= n {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} events: {}",
                events.len(),
                page.text
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["kind"].as_str().unwrap_or("?")).collect()
}

async fn new_device_alerts_paging_admin_secrets_and_trim(setup: Setup) {
    let Some(env) = start(setup, |_| {}).await else { return };
    let email = env.register().await;

    // The first login after registration: no alert. The same device again: none.
    let first = env.login(&email, PASSWORD, FIREFOX_LINUX).await;
    first.expect(200);
    let cookie = first.session_cookie().expect("a session cookie");
    env.login(&email, PASSWORD, FIREFOX_LINUX).await.expect(200);
    // Another browser and system: one alert; that device again: none.
    env.login(&email, PASSWORD, CHROME_WINDOWS).await.expect(200);
    env.login(&email, PASSWORD, CHROME_WINDOWS).await.expect(200);
    // A third device: its alert is the marker that the writer has sent every mail of
    // the logins before (it works through the queue in order).
    env.login(&email, PASSWORD, SAFARI_IPHONE).await.expect(200);
    let subject = "New sign-in to your account";
    env.wait("the second new-device alert", || {
        let mails = env.mails(&email, subject);
        mails.iter().any(|m| m.contains("Safari on iOS")).then_some(())
    })
    .await;
    let alerts = env.mails(&email, subject);
    assert_eq!(alerts.len(), 2, "one alert per new device: {alerts:#?}");
    let chrome: Vec<_> = alerts.iter().filter(|m| m.contains("Chrome on Windows")).collect();
    assert_eq!(chrome.len(), 1, "{alerts:#?}");
    assert!(!alerts.iter().any(|m| m.contains("Firefox on Linux")), "{alerts:#?}");
    let mail = chrome[0];
    assert!(mail.contains("127.0.0.1"), "{mail}");
    assert!(mail.contains("If this was not you, reset your password"), "{mail}");
    assert!(mail.contains("http://127.0.0.1:8080/forgot-password"), "{mail}");

    // A wrong password and a sign-out are recorded too.
    env.login(&email, "not the password at all", FIREFOX_LINUX).await.expect(401);
    let other_session = env.login(&email, PASSWORD, FIREFOX_LINUX).await.session_cookie().unwrap();
    let logout = env
        .http
        .post(env.url("/v1/auth/logout"))
        .header("cookie", format!("session={other_session}"))
        .json(&json!({}));
    send(logout).await.expect(204);

    let expected = [
        "sign_out",
        "sign_in",
        "sign_in_failed",
        "new_device_sign_in",
        "sign_in",
        "sign_in",
        "new_device_sign_in",
        "sign_in",
        "sign_in",
        "sign_in",
        "email_verified",
    ];
    let events = env.wait_events(&cookie, expected.len()).await;
    assert_eq!(kinds(&events), expected);
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert_eq!(events[3]["device"], "Safari on iOS");
    assert_eq!(events[3]["ip"], "127.0.0.1");

    // Pages of 4 cover the same list, in order.
    let mut paged = Vec::new();
    let mut path = "/v1/me/events?limit=4".to_owned();
    loop {
        let page = env.get(&path, &cookie).await;
        page.expect(200);
        paged.extend(page.body["events"].as_array().unwrap().iter().cloned());
        match page.body["next_before"].as_i64() {
            Some(before) => path = format!("/v1/me/events?limit=4&before={before}"),
            None => break,
        }
    }
    assert_eq!(paged, events);
    let default_page = env.get("/v1/me/events", &cookie).await;
    assert_eq!(default_page.body["events"].as_array().unwrap().len(), expected.len());
    assert!(default_page.body["next_before"].is_null());

    // Bad queries are 400 with the JSON error body.
    for bad in ["limit=0", "limit=101", "limit=abc", "before=0", "before=-3", "before=x", "page=2"]
    {
        env.get(&format!("/v1/me/events?{bad}"), &cookie).await.expect_error(400, "invalid_input");
    }
    let anonymous = send(env.http.get(env.url("/v1/me/events"))).await;
    anonymous.expect_error(401, "unauthenticated");

    // An administrator sees the same events.
    let me = env.get("/v1/me", &cookie).await;
    let id = me.body["user"]["id"].as_str().unwrap().to_owned();
    let admin = env.admin_get(&format!("/v1/admin/users/{id}/events?limit=100")).await;
    admin.expect(200);
    assert_eq!(admin.body["events"].as_array().unwrap(), &events);
    env.admin_get("/v1/admin/users/nope/events").await.expect_error(400, "invalid_input");
    env.admin_get(&format!("/v1/admin/users/{id}/events?limit=1000"))
        .await
        .expect_error(400, "invalid_input");
    let no_token = send(env.http.get(env.url(&format!("/v1/admin/users/{id}/events")))).await;
    no_token.expect(401);

    // No token, password or hash in any stored row.
    let rows = cache_sql::testing::security_event_rows(&env.sql).await.unwrap();
    assert!(rows.len() >= expected.len(), "{rows:#?}");
    let secret_part = cookie.split_once('.').map_or(cookie.as_str(), |(_, s)| s);
    for row in &rows {
        for secret in [PASSWORD, "not the password at all", secret_part, "$argon2"] {
            assert!(!row.contains(secret), "a stored event holds a secret: {row}");
        }
    }

    // Events older than the retention are trimmed by the janitor.
    env.clock.advance(Span::days(91));
    let report = env.ops.janitor().run_once().await.unwrap();
    assert!(report.events >= expected.len() as u64, "{report:?}");
    // A session of 91 days ago is long gone: ask as the administrator.
    let admin = env.admin_get(&format!("/v1/admin/users/{id}/events")).await;
    admin.expect(200);
    assert_eq!(admin.body["events"], json!([]), "{}", admin.text);
    env.stop().await;
}

async fn failure_spike_alerts_once_and_lockouts_are_recorded(setup: Setup) {
    let tweak = |s: &mut Settings| s.events.failure_alert_threshold = 3;
    let Some(env) = start(setup, tweak).await else { return };
    let email = env.register().await;
    let login = env.login(&email, PASSWORD, FIREFOX_LINUX).await;
    login.expect(200);
    let cookie = login.session_cookie().unwrap();
    // Five wrong passwords (the per-pair limit), then the lockout.
    for _ in 0..5 {
        env.login(&email, "wrong password, again", CHROME_WINDOWS).await.expect(401);
    }
    let locked = env.login(&email, "wrong password, again", CHROME_WINDOWS).await;
    locked.expect_error(429, "rate_limited");

    // The marker: another account's new-device alert, queued after all of the above.
    let other = env.register().await;
    env.login(&other, PASSWORD, FIREFOX_LINUX).await.expect(200);
    env.login(&other, PASSWORD, SAFARI_IPHONE).await.expect(200);
    env.wait("the marker alert", || {
        (!env.mails(&other, "New sign-in to your account").is_empty()).then_some(())
    })
    .await;
    let spikes = env.mails(&email, "Failed sign-ins to your account");
    assert_eq!(spikes.len(), 1, "one alert per window: {spikes:#?}");
    assert!(spikes[0].contains("3 failed attempts"), "{}", spikes[0]);
    assert!(env.mails(&email, "New sign-in to your account").is_empty());

    let events = env.wait_events(&cookie, 9).await;
    let kinds = kinds(&events);
    assert_eq!(kinds.iter().filter(|k| **k == "sign_in_failed").count(), 5, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "failed_sign_in_alert").count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "blocked_by_limits").count(), 1, "{kinds:?}");
    assert_eq!(kinds[0], "blocked_by_limits", "{kinds:?}");

    let metrics = send(env.http.get(format!("{}/metrics", env.ops_base))).await.text;
    for name in [
        "auth_failed_sign_in_alerts_total",
        "auth_security_events_total{kind=\"sign_in_failed\"}",
        "auth_security_events_total{kind=\"new_device_sign_in\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    env.stop().await;
}

macro_rules! on_setups {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Setup::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Setup::Postgres).await;
                }
            )*
        }
        mod full {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Setup::Full).await;
                }
            )*
        }
    };
}

on_setups!(
    new_device_alerts_paging_admin_secrets_and_trim,
    failure_spike_alerts_once_and_lockouts_are_recorded
);
