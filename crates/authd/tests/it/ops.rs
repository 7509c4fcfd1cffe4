//! Operations tests: `/metrics` (parsed as Prometheus text, counters moving exactly as a
// tidy: long-file the operations suite (metrics and their Prometheus parser, readiness, janitor, warm-up, dashboards); splitting it by subject is pending (issue 18)
//! scripted scenario predicts), `/health/ready` while a Redis of the test's own is killed
//! and restarted, the janitor over 100,000 seeded sessions with validations running,
//! Redis index clean-up, cache warming, the analytics endpoint, and the dashboard and
//! metric documentation against the metric names in the code.
//!
//! Setups: `sqlite` (SQLite file + memory tier, always runs), `postgres` (needs
//! `DATABASE_URL`), `full` (memory + Redis + PostgreSQL, needs both URLs). A test that
//! needs a server it does not have prints `skipped: ...` and passes, unless
//! `AUTH_TEST_REQUIRE_SERVICES=1`.
//!
//! Metrics are process-wide (one Prometheus recorder per test binary), so every test
//! here holds [`SERIAL`] while it runs: a delta measured by one test is never moved by
//! another's traffic.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use auth::{AuthService, ClientInfo};
use authd::Application;
use authd::ops::{JanitorSettings, Ops};
use authd::settings::Settings;
use cache_core::{
    Clock as _, ManualClock, NewUser, Purpose, Session, SessionKey, SessionStore as _,
    SessionToken, User, UserId, Verification, VerificationStore as _, VerificationToken,
};
use cache_memory::MemoryStore;
use cache_redis::RedisStore;
use cache_sql::SqlStore;
use chrono::Duration as Span;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::support::{
    PASSWORD, Resp, Served, Setup, app_settings, configure_tiers, http_client, init_logs,
    own_redis, random_hex, send, serve, sql_store, temp_dir,
};

/// Held by every test (see the module docs).
static SERIAL: Mutex<()> = Mutex::const_new(());

const ADMIN_TOKEN: &str = "ops-test-admin-token-0123456789abcdef";

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// Settings of `setup`: free port, two workers, admin token set, no background janitor
/// (tests run passes themselves), a unique Redis prefix for `full`.
fn settings_for(setup: Setup, mail_dir: &Path) -> Option<Settings> {
    let mut settings = app_settings(mail_dir);
    settings.admin.token = Some(ADMIN_TOKEN.to_owned().into());
    settings.janitor.enabled = false;
    // Every analytics read counts again, so that a test sees its own writes.
    settings.analytics.active_sessions_cache_ms = 0;
    configure_tiers(&mut settings, setup)?;
    Some(settings)
}

/// A running app and handles on its parts.
struct TestApp {
    base: String,
    /// The operations listener (`/metrics`, detailed readiness).
    ops_base: String,
    http: reqwest::Client,
    clock: Arc<ManualClock>,
    ops: Ops,
    service: AuthService,
    sql: SqlStore,
    memory: Option<MemoryStore>,
    redis: Option<RedisStore>,
    mail_dir: TempDir,
    handle: ServerHandle,
    task: JoinHandle<std::io::Result<()>>,
}

/// Starts the app on `sql` with `settings`.
async fn start(
    settings: Settings,
    clock: Arc<ManualClock>,
    sql: SqlStore,
    mail_dir: TempDir,
) -> TestApp {
    init_logs();
    let app = Application::builder(settings)
        .clock(clock.clone())
        .sql_store(sql.clone())
        .insecure_fast_hashing()
        .build()
        .await
        .expect("the app builds");
    let ops = app.ops().clone();
    let service = app.service().clone();
    let memory = app.backends().memory.clone();
    let redis = app.backends().redis.clone();
    let Served { base, ops_base, handle, task } = serve(app);
    let ops_base = ops_base.expect("the operations listener is on");
    let http = http_client();
    TestApp {
        base,
        ops_base,
        http,
        clock,
        ops,
        service,
        sql,
        memory,
        redis,
        mail_dir,
        handle,
        task,
    }
}

/// Starts the app for `setup` (`None` after a skip line), with `tweak` applied to the
/// settings.
async fn spawn_app(setup: Setup, tweak: impl FnOnce(&mut Settings)) -> Option<TestApp> {
    let clock = ManualClock::starting_now();
    let mail_dir = temp_dir("mail");
    let mut settings = settings_for(setup, mail_dir.path())?;
    let sql = sql_store(setup, &clock).await?;
    tweak(&mut settings);
    Some(start(settings, clock, sql, mail_dir).await)
}

impl TestApp {
    async fn stop(self) {
        crate::support::stop_app(self.handle, self.task).await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET on the operations listener.
    async fn ops_get(&self, path: &str) -> Resp {
        send(self.http.get(format!("{}{path}", self.ops_base))).await
    }

    /// A same-origin POST (state-changing requests from another origin may be refused).
    async fn post(&self, path: &str, body: Value, cookie: Option<&str>) -> Resp {
        let mut request = self.http.post(self.url(path)).header("origin", &self.base).json(&body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("session={cookie}"));
        }
        send(request).await
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Resp {
        let mut request = self.http.get(self.url(path));
        if let Some(cookie) = cookie {
            request = request.header("cookie", format!("session={cookie}"));
        }
        send(request).await
    }

    async fn admin_get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        send(request).await
    }

    async fn metrics(&self) -> Metrics {
        let resp = self.ops_get("/metrics").await;
        resp.expect(200);
        Metrics::parse(&resp.text)
            .unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}"))
    }

    /// The token of the newest link to `path` mailed to `email`.
    async fn token_from_mail(&self, email: &str, path: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(token) = self.find_mail(email, path) {
                return token;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no mail to {email} arrived");
            // Mails are sent by a spawned task: this waits for real I/O, not for time.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn find_mail(&self, email: &str, path: &str) -> Option<String> {
        let to_line = format!("to: {}", email.to_ascii_lowercase());
        let marker = format!("{path}#token=");
        for entry in std::fs::read_dir(self.mail_dir.path()).ok()?.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
            if !text.lines().any(|l| l.trim().to_ascii_lowercase() == to_line) {
                continue;
            }
            if let Some(i) = text.find(&marker) {
                let token: String = text[i + marker.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                return Some(token);
            }
        }
        None
    }
}

// ---------------------------------------------------------------------------------------
// A small Prometheus text-format parser
// ---------------------------------------------------------------------------------------

/// One sample line.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A series' labels in order, without `le`.
type Labels = Vec<(String, String)>;

/// A parsed `/metrics` body.
#[derive(Debug)]
struct Metrics {
    samples: Vec<Sample>,
    types: BTreeMap<String, String>,
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("bad value {s:?}")),
    }
}

/// `{a="1",b="x\"y"}` (after the metric name) into labels; returns the rest of the line.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("expected '{'")?;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = rest[..eq].trim();
        if !is_name(name, false) {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or("label value without quotes")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name} repeated"));
        }
        rest = rest[end + 1..].trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

impl Metrics {
    /// Parses the text exposition format (version 0.0.4), checking names, labels, values,
    /// `# TYPE` lines before their samples, and histogram buckets (cumulative, ending in
    /// `+Inf` equal to `_count`).
    fn parse(text: &str) -> Result<Self, String> {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let fail = |e: String| format!("line {}: {e}: {line:?}", n + 1);
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut parts = comment.trim_start().splitn(3, ' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("TYPE"), Some(name), Some(kind)) => {
                        if !is_name(name, true) {
                            return Err(fail("bad metric name".into()));
                        }
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
                        {
                            return Err(fail(format!("unknown type {kind}")));
                        }
                        types.insert(name.to_owned(), kind.to_owned());
                    }
                    (Some("HELP"), Some(name), _) if !is_name(name, true) => {
                        return Err(fail("bad metric name".into()));
                    }
                    _ => {}
                }
                continue;
            }
            let name_end = line.find(['{', ' ']).ok_or_else(|| fail("no value".into()))?;
            let name = &line[..name_end];
            if !is_name(name, true) {
                return Err(fail("bad metric name".into()));
            }
            let (labels, rest) = if line[name_end..].starts_with('{') {
                parse_labels(&line[name_end..]).map_err(fail)?
            } else {
                (BTreeMap::new(), &line[name_end..])
            };
            let mut fields = rest.split_whitespace();
            let value =
                parse_value(fields.next().ok_or_else(|| fail("no value".into()))?).map_err(fail)?;
            if let Some(ts) = fields.next() {
                ts.parse::<i64>().map_err(|_| fail("bad timestamp".into()))?;
            }
            if fields.next().is_some() {
                return Err(fail("trailing fields".into()));
            }
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| types.contains_key(*f)))
                .unwrap_or(name);
            if !types.contains_key(family) {
                return Err(fail("sample before its # TYPE line".into()));
            }
            samples.push(Sample { name: name.to_owned(), labels, value });
        }
        let metrics = Self { samples, types };
        metrics.check_histograms()?;
        Ok(metrics)
    }

    fn check_histograms(&self) -> Result<(), String> {
        for (family, kind) in &self.types {
            if kind != "histogram" {
                continue;
            }
            // Buckets per series (labels without `le`), in order of appearance.
            let mut series: BTreeMap<Labels, Vec<(f64, f64)>> = BTreeMap::new();
            for s in self.samples.iter().filter(|s| s.name == format!("{family}_bucket")) {
                let le = s.labels.get("le").ok_or(format!("{family}_bucket without le"))?;
                let key = s
                    .labels
                    .iter()
                    .filter(|(k, _)| *k != "le")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                series.entry(key).or_default().push((parse_value(le)?, s.value));
            }
            for (labels, buckets) in series {
                if !buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1) {
                    return Err(format!("{family}{labels:?}: buckets not cumulative"));
                }
                let inf = buckets
                    .last()
                    .filter(|b| b.0.is_infinite())
                    .ok_or(format!("{family}: no +Inf bucket"))?
                    .1;
                let count = self
                    .samples
                    .iter()
                    .find(|s| {
                        s.name == format!("{family}_count")
                            && s.labels
                                .iter()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect::<Vec<_>>()
                                == labels
                    })
                    .ok_or(format!("{family}: no _count"))?
                    .value;
                if inf != count {
                    return Err(format!("{family}{labels:?}: +Inf bucket {inf} != count {count}"));
                }
            }
        }
        Ok(())
    }

    /// The sum of the samples named `name` whose labels include `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v)))
            .map(|s| s.value)
            .sum()
    }

    fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

/// `after - before` of one series.
fn delta(before: &Metrics, after: &Metrics, name: &str, labels: &[(&str, &str)]) -> f64 {
    after.get(name, labels) - before.get(name, labels)
}

#[test]
fn the_parser_refuses_what_is_not_prometheus_text() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"0.1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.3\nh_count 2\n";
    let m = Metrics::parse(good).unwrap();
    assert_eq!(m.get("a_total", &[("y", "q\"")]), 3.0);
    for bad in [
        "a_total 1\n",                  // no TYPE
        "# TYPE a counter\na{x=1} 1\n", // unquoted label
        "# TYPE a counter\na 1 2 3\n",  // trailing field
        "# TYPE a counter\na one\n",    // bad value
        "# TYPE 1a counter\n",          // bad name
        "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n",
    ] {
        assert!(Metrics::parse(bad).is_err(), "{bad:?} parsed");
    }
}

// ---------------------------------------------------------------------------------------
// /metrics: a scripted scenario and its exact deltas
// ---------------------------------------------------------------------------------------

async fn scripted_scenario(setup: Setup) {
    let _serial = SERIAL.lock().await;
    let Some(app) = spawn_app(setup, |_| {}).await else { return };
    let before = app.metrics().await;

    // Register 2, verify 2.
    let emails: Vec<String> =
        (0..2).map(|_| format!("ops-{}@example.com", random_hex(6))).collect();
    for email in &emails {
        app.post(
            "/v1/auth/register",
            json!({"name": "Ops", "email": email, "password": PASSWORD}),
            None,
        )
        .await
        .expect(202);
    }
    for email in &emails {
        let token = app.token_from_mail(email, "/verify-email").await;
        app.post("/v1/auth/verify-email", json!({"token": token}), None).await.expect(200);
    }
    // Login 3: two succeed, one has a wrong password.
    let mut cookies = Vec::new();
    for email in &emails {
        let login =
            app.post("/v1/auth/login", json!({"email": email, "password": PASSWORD}), None).await;
        login.expect(200);
        cookies.push(login.session_cookie().expect("login sets the cookie"));
    }
    app.post("/v1/auth/login", json!({"email": emails[0], "password": "wrong password!!"}), None)
        .await
        .expect(401);
    // 10 x GET /v1/me with the first session, then log it out.
    for _ in 0..10 {
        app.get("/v1/me", Some(&cookies[0])).await.expect(200);
    }
    app.post("/v1/auth/logout", json!({}), Some(&cookies[0])).await.expect(204);

    let after = app.metrics().await;
    let d = |name: &str, labels: &[(&str, &str)]| delta(&before, &after, name, labels);
    let http = |method: &str, route: &str, status: &str| {
        d("http_requests_total", &[("method", method), ("route", route), ("status", status)])
    };
    assert_eq!(http("POST", "/v1/auth/register", "202"), 2.0);
    assert_eq!(http("POST", "/v1/auth/verify-email", "200"), 2.0);
    assert_eq!(http("POST", "/v1/auth/login", "200"), 2.0);
    assert_eq!(http("POST", "/v1/auth/login", "401"), 1.0);
    assert_eq!(http("GET", "/v1/me", "200"), 10.0);
    assert_eq!(http("POST", "/v1/auth/logout", "204"), 1.0);
    let me = [("method", "GET"), ("route", "/v1/me")];
    assert_eq!(d("http_request_duration_seconds_count", &me), 10.0);
    assert_eq!(
        d(
            "http_request_duration_seconds_bucket",
            &[("method", "GET"), ("route", "/v1/me"), ("le", "+Inf")]
        ),
        10.0
    );
    assert!(
        after.get("http_request_duration_seconds_sum", &me)
            > before.get("http_request_duration_seconds_sum", &me)
    );

    assert_eq!(d("auth_registrations_total", &[("result", "created")]), 2.0);
    assert_eq!(d("auth_logins_total", &[("result", "success")]), 2.0);
    assert_eq!(d("auth_logins_total", &[("result", "invalid")]), 1.0);
    assert_eq!(d("auth_sessions_created_total", &[]), 2.0);
    assert_eq!(d("auth_sessions_revoked_total", &[("reason", "logout")]), 1.0);
    assert_eq!(d("auth_sessions_renewed_total", &[]), 0.0);

    // Login wrote the session and the profile through to memory: ten hits each, no miss.
    let memory = |kind: &str, result: &str| {
        d("tier_lookups_total", &[("kind", kind), ("tier", "memory"), ("result", result)])
    };
    assert_eq!(memory("session", "hit"), 10.0);
    assert_eq!(memory("session", "miss"), 0.0);
    if setup == Setup::Full {
        // The invalidation a verification publishes comes back through Redis pub/sub at
        // its own pace and may drop the profile login cached: then one lookup misses.
        assert_eq!(memory("user", "hit") + memory("user", "miss"), 10.0);
        assert!(memory("user", "miss") <= 1.0);
    } else {
        assert_eq!(memory("user", "hit"), 10.0);
        assert_eq!(memory("user", "miss"), 0.0);
    }
    // Entries are moka's estimate, refreshed by its housekeeping; bytes are exact.
    assert!(after.has("memory_tier_entries"));
    assert!(after.get("memory_tier_weighted_size", &[]) > 0.0);
    if setup == Setup::Full {
        assert_eq!(after.get("breaker_open", &[("tier", "redis")]), 0.0);
        assert_eq!(after.get("redis_trusted", &[]), 1.0);
    }

    // The same story in the analytics (per app, so exact).
    let report = app.admin_get("/v1/admin/analytics?days=1", Some(ADMIN_TOKEN)).await;
    report.expect(200);
    let body = &report.body;
    let source = if setup == Setup::Full { "redis" } else { "local" };
    assert_eq!(body["source"], source, "{}", report.text);
    assert_eq!(body["active_sessions"], 1, "{}", report.text);
    assert_eq!(body["days"].as_array().unwrap().len(), 1);
    assert_eq!(body["days"][0]["sessions_created"], 2, "{}", report.text);
    assert_eq!(body["days"][0]["active_users"], 1, "{}", report.text);
    assert_eq!(body["days"][0]["sessions_expired"], 0, "{}", report.text);
    assert!(body["days"][0]["average_session_seconds"].is_null(), "{}", report.text);
    let after_report = app.metrics().await;
    assert_eq!(after_report.get("analytics_active_sessions", &[]), 1.0);
    assert_eq!(after_report.get("analytics_active_users_today", &[]), 1.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_scripted_scenario_sqlite() {
    scripted_scenario(Setup::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_scripted_scenario_full() {
    scripted_scenario(Setup::Full).await;
}

// ---------------------------------------------------------------------------------------
// The analytics endpoint's guard and parameters
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_needs_the_admin_token_and_a_sane_range() {
    let _serial = SERIAL.lock().await;
    let Some(app) = spawn_app(Setup::Sqlite, |_| {}).await else { return };
    let path = "/v1/admin/analytics";
    assert_eq!(app.admin_get(path, None).await.status, 401);
    assert_eq!(app.admin_get(path, Some("not-the-admin-token-at-all-0000000")).await.status, 401);
    for bad in ["?days=0", "?days=36", "?days=x", "?weeks=1"] {
        let resp = app.admin_get(&format!("{path}{bad}"), Some(ADMIN_TOKEN)).await;
        resp.expect(400);
    }
    let resp = app.admin_get(path, Some(ADMIN_TOKEN)).await;
    resp.expect(200);
    let days = resp.body["days"].as_array().unwrap();
    assert_eq!(days.len(), 7, "{}", resp.text);
    let today = app.clock.now().date_naive().to_string();
    assert_eq!(days[0]["day"], today.as_str());
    assert_eq!(resp.body["active_sessions"], 0);
    app.stop().await;

    // Without an admin token the admin API does not exist.
    let Some(app) = spawn_app(Setup::Sqlite, |s| s.admin.token = None).await else { return };
    assert_eq!(app.admin_get(path, Some(ADMIN_TOKEN)).await.status, 404);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// /health/ready with a Redis of the test's own, killed and restarted
// ---------------------------------------------------------------------------------------

/// Polls `/health/ready` until its status is `want`; returns the last body.
async fn wait_ready_status(app: &TestApp, want: &str, within: Duration) -> Value {
    let start = Instant::now();
    loop {
        let resp = app.ops_get("/health/ready").await;
        if resp.body["status"] == want {
            // Degraded and ok are both "ready": 200.
            resp.expect(200);
            return resp.body;
        }
        assert!(start.elapsed() < within, "/health/ready never became {want}: {}", resp.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_degraded_while_its_redis_is_killed_and_ok_when_it_returns() {
    let _serial = SERIAL.lock().await;
    let Some(mut redis) = own_redis() else { return };
    let url = redis.url();
    let Some(app) = spawn_app(Setup::Sqlite, |s| {
        s.redis.url = Some(url.into());
        s.redis.key_prefix = format!("authd-ops-health-{}:", random_hex(4));
        s.redis.command_timeout_ms = 200;
        s.redis.breaker_probe_interval_ms = 100;
    })
    .await
    else {
        return;
    };

    let body = wait_ready_status(&app, "ok", Duration::from_secs(10)).await;
    let tier = &body["tiers"]["redis"];
    assert_eq!(tier["status"], "up", "{body}");
    assert!(tier["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{body}");
    assert!(tier["details"]["used_memory"].as_u64().is_some_and(|b| b > 0), "{body}");
    assert!(tier["details"]["connected_clients"].as_u64().is_some_and(|c| c >= 1), "{body}");
    assert_eq!(tier["details"]["breaker"], "closed", "{body}");
    assert_eq!(tier["details"]["trusted"], true, "{body}");
    assert_eq!(body["tiers"]["sql"]["status"], "up", "{body}");
    assert!(body["tiers"]["sql"]["details"]["pool_connections"].as_u64().is_some(), "{body}");
    assert!(body["tiers"]["memory"]["details"]["entries"].as_u64().is_some(), "{body}");

    // A user whose requests keep going through the outage.
    let email = format!("ops-{}@example.com", random_hex(6));
    app.post(
        "/v1/auth/register",
        json!({"name": "Ops", "email": email, "password": PASSWORD}),
        None,
    )
    .await
    .expect(202);
    let token = app.token_from_mail(&email, "/verify-email").await;
    app.post("/v1/auth/verify-email", json!({"token": token}), None).await.expect(200);
    let login =
        app.post("/v1/auth/login", json!({"email": email, "password": PASSWORD}), None).await;
    login.expect(200);
    let cookie = login.session_cookie().unwrap();

    redis.kill9();
    let body = wait_ready_status(&app, "degraded", Duration::from_secs(10)).await;
    assert_eq!(body["tiers"]["redis"]["status"], "down", "{body}");
    assert_eq!(body["tiers"]["sql"]["status"], "up", "{body}");
    // Requests are served by memory and SQL meanwhile.
    for _ in 0..20 {
        app.get("/v1/me", Some(&cookie)).await.expect(200);
    }

    redis.restart();
    // Requests keep flowing. An open breaker closes on the first request that reaches
    // Redis after its probe interval (memory hits do not): a login writes through.
    let start = Instant::now();
    let body = loop {
        app.get("/v1/me", Some(&cookie)).await.expect(200);
        app.post("/v1/auth/login", json!({"email": email, "password": PASSWORD}), None)
            .await
            .expect(200);
        let resp = app.ops_get("/health/ready").await;
        resp.expect(200);
        if resp.body["status"] == "ok" {
            break resp.body;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "never ok again: {}", resp.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(body["tiers"]["redis"]["details"]["trusted"], true, "{body}");
    assert_eq!(body["tiers"]["redis"]["details"]["breaker"], "closed", "{body}");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------
// The janitor
// ---------------------------------------------------------------------------------------

/// What was seeded, and what the janitor should find.
struct Seeded {
    live_tokens: Vec<String>,
    expired_keys: HashSet<SessionKey>,
    /// Expired sessions and the sum of their lifetimes (seconds), per UTC day of expiry.
    expired_by_day: BTreeMap<chrono::NaiveDate, (u64, u64)>,
}

const USERS: usize = 100;

/// `total` sessions of [`USERS`] verified users, every other one expired (one in ten of
/// those past its absolute lifetime, the others idle-expired).
async fn seed_sessions(sql: &SqlStore, clock: &ManualClock, total: usize) -> Seeded {
    let now = clock.now();
    let users: Vec<User> = (0..USERS)
        .map(|i| User {
            id: UserId::random().unwrap(),
            name: format!("seeded {i}"),
            email: format!("seeded-{i}-{}@example.com", random_hex(4)),
            email_verified: true,
            created_at: now - Span::days(60),
        })
        .collect();
    let accounts: Vec<NewUser> = users
        .iter()
        .map(|u| NewUser { user: u.clone(), password_hash: "not a real hash".to_owned() })
        .collect();
    sql.insert_accounts_bulk(&accounts).await.unwrap();

    let mut sessions = Vec::with_capacity(total);
    let mut seeded = Seeded {
        live_tokens: Vec::new(),
        expired_keys: HashSet::new(),
        expired_by_day: BTreeMap::new(),
    };
    for i in 0..total {
        let token = SessionToken::generate(users[i % USERS].id).unwrap();
        let session = if i % 2 == 1 {
            seeded.live_tokens.push(token.encode());
            Session {
                key: token.key(),
                created_at: now - Span::hours(1),
                renewed_at: now - Span::hours(1),
                expires_at: now + Span::days(7),
                absolute_expires_at: now + Span::days(29),
                user_agent: Some("seed".to_owned()),
                ip: None,
                version: 0,
            }
        } else {
            let (created_at, expires_at, absolute_expires_at) = if i % 20 == 0 {
                let end = now - Span::hours(2);
                (end - Span::days(30), end, end)
            } else {
                let end = now - Span::minutes(i64::try_from(i % 97).unwrap() + 1);
                (end - Span::days(1), end, end - Span::days(1) + Span::days(30))
            };
            let ended = expires_at.min(absolute_expires_at);
            let entry = seeded.expired_by_day.entry(ended.date_naive()).or_default();
            entry.0 += 1;
            entry.1 += u64::try_from((ended - created_at).num_seconds()).unwrap();
            seeded.expired_keys.insert(token.key());
            Session {
                key: token.key(),
                created_at,
                renewed_at: created_at,
                expires_at,
                absolute_expires_at,
                user_agent: None,
                ip: None,
                version: 0,
            }
        };
        sessions.push(session);
    }
    assert_eq!(sql.insert_sessions_bulk(&sessions).await.unwrap(), total as u64);
    seeded
}

async fn janitor_over_100k(setup: Setup) {
    const TOTAL: usize = 100_000;
    const EXPIRED: u64 = 50_000;
    const BATCH: usize = 1_000;
    let _serial = SERIAL.lock().await;
    let Some(app) = spawn_app(setup, |s| {
        // Every validation reaches SQL, concurrently with the deletes.
        s.memory.enabled = false;
        s.janitor.batch_size = BATCH;
    })
    .await
    else {
        return;
    };
    let started = Instant::now();
    let seeded = seed_sessions(&app.sql, &app.clock, TOTAL).await;
    let now = app.clock.now();

    // 100 expired verifications and 5 live ones.
    for i in 0..105 {
        let expired = i < 100;
        let v = Verification {
            hash: VerificationToken::generate().unwrap().hash(),
            purpose: Purpose::PasswordReset,
            user: UserId::random().unwrap(),
            identifier: format!("v{i}@example.com"),
            created_at: now - Span::hours(1),
            expires_at: if expired { now - Span::minutes(1) } else { now + Span::minutes(30) },
        };
        app.sql.put_verification(&v).await.unwrap();
    }
    // One journal row older than any session could live (written 40 days ago).
    app.clock.set(now - Span::days(40));
    let then = app.clock.now();
    let gone = Session {
        key: SessionToken::generate(UserId::random().unwrap()).unwrap().key(),
        created_at: then,
        renewed_at: then,
        expires_at: then + Span::days(7),
        absolute_expires_at: then + Span::days(30),
        user_agent: None,
        ip: None,
        version: 0,
    };
    // Only a session that existed is journaled when revoked.
    app.sql.create(&gone).await.unwrap();
    assert!(app.sql.delete(&gone.key).await.unwrap());
    app.clock.set(now);
    eprintln!("janitor ({setup:?}): seeded in {:?}", started.elapsed());

    assert_eq!(app.sql.count_expired_sessions().await.unwrap(), EXPIRED);
    assert_eq!(app.sql.count_live_sessions().await.unwrap(), TOTAL as u64 - EXPIRED);
    let before = app.metrics().await;

    // Validations of live sessions, concurrently with the whole clean-up.
    let done = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let tokens = Arc::new(seeded.live_tokens.clone());
    let validators: Vec<_> = (0..2)
        .map(|w| {
            let (done, ok, failed, tokens) =
                (done.clone(), ok.clone(), failed.clone(), tokens.clone());
            let service = app.service.clone();
            tokio::spawn(async move {
                let mut i = w * 7919;
                while !done.load(Ordering::SeqCst) {
                    let token = &tokens[i % tokens.len()];
                    match service.validate(token, &ClientInfo::default()).await {
                        Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                        Err(e) => {
                            eprintln!("validation failed: {e}");
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                    i += 1;
                }
            })
        })
        .collect();

    let clean = Instant::now();
    // First a pass capped at 10 batches: it stops there and says so.
    let capped = authd::ops::Janitor::new(
        JanitorSettings { max_batches_per_pass: 10, ..app.ops.janitor().settings().clone() },
        app.sql.clone(),
        None,
        Some(app.ops.analytics().clone()),
        app.clock.clone(),
        Duration::from_secs(30 * 86_400),
    );
    let first = capped.run_once().await.unwrap();
    assert_eq!(first.sessions, 10 * BATCH as u64);
    assert!(!first.complete);
    // Each kind has its own cap: verifications and the journal were done in this pass.
    assert_eq!((first.verifications, first.journal_rows), (100, 1));
    assert_eq!(app.sql.count_expired_sessions().await.unwrap(), EXPIRED - first.sessions);
    // Then the app's janitor finishes the backlog.
    let report = app.ops.janitor().run_once().await.unwrap();
    let cleaned_in = clean.elapsed();
    done.store(true, Ordering::SeqCst);
    for v in validators {
        v.await.unwrap();
    }

    let remaining = EXPIRED - first.sessions;
    assert_eq!(report.sessions, remaining);
    assert!(report.complete);
    // 40 full batches, one empty, and one (empty) batch of verifications.
    assert_eq!(report.batches, remaining / BATCH as u64 + 1 + 1);
    assert_eq!((report.verifications, report.journal_rows), (0, 0));
    eprintln!(
        "janitor ({setup:?}): {EXPIRED} expired rows deleted in {cleaned_in:?} ({} + {} \
         sessions), {} validations meanwhile, {} failed",
        first.sessions,
        report.sessions,
        ok.load(Ordering::SeqCst),
        failed.load(Ordering::SeqCst)
    );
    assert_eq!(failed.load(Ordering::SeqCst), 0, "validations failed during the clean-up");
    assert!(ok.load(Ordering::SeqCst) > 0, "no validation ran during the clean-up");

    // Exactly the expired rows are gone: every live one is still there and valid.
    assert_eq!(app.sql.count_expired_sessions().await.unwrap(), 0);
    assert_eq!(app.sql.count_live_sessions().await.unwrap(), TOTAL as u64 - EXPIRED);
    for token in seeded.live_tokens.iter().step_by(97) {
        app.service.validate(token, &ClientInfo::default()).await.unwrap();
    }
    let a_gone = seeded.expired_keys.iter().next().unwrap();
    assert_eq!(app.sql.get(a_gone).await.unwrap(), None);
    let second = app.ops.janitor().run_once().await.unwrap();
    assert_eq!((second.sessions, second.verifications, second.journal_rows), (0, 0, 0));

    // Counted: metrics for the app's pass, analytics per day of expiry (with lifetimes).
    let after = app.metrics().await;
    assert_eq!(delta(&before, &after, "auth_sessions_expired_total", &[]), EXPIRED as f64);
    assert_eq!(
        delta(&before, &after, "janitor_deleted_total", &[("kind", "session")]),
        EXPIRED as f64
    );
    assert_eq!(delta(&before, &after, "janitor_deleted_total", &[("kind", "verification")]), 100.0);
    assert_eq!(delta(&before, &after, "janitor_deleted_total", &[("kind", "revocation")]), 1.0);
    assert_eq!(delta(&before, &after, "janitor_passes_total", &[("result", "ok")]), 3.0);
    assert!(after.has("janitor_last_success_timestamp_seconds"));
    assert!(after.has("janitor_pass_seconds_bucket"));
    let report = app.ops.analytics().report(2).await.unwrap();
    let mut counted = 0;
    for day in &report.days {
        let (n, seconds) = seeded.expired_by_day.get(&day.day).copied().unwrap_or((0, 0));
        assert_eq!(day.sessions_expired, n, "{day:?}");
        counted += n;
        match day.average_session_seconds {
            Some(average) => assert!((average - seconds as f64 / n as f64).abs() < 1e-6),
            None => assert_eq!(n, 0),
        }
    }
    assert_eq!(counted, EXPIRED);
    eprintln!("janitor ({setup:?}): whole test {:?}", started.elapsed());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_removes_exactly_the_expired_rows_of_100k_while_validating_sqlite() {
    janitor_over_100k(Setup::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_removes_exactly_the_expired_rows_of_100k_while_validating_postgres() {
    janitor_over_100k(Setup::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janitor_drops_redis_index_entries_of_expired_sessions() {
    let _serial = SERIAL.lock().await;
    let Some(app) = spawn_app(Setup::Full, |_| {}).await else { return };
    let redis = app.redis.clone().unwrap();
    let now = app.clock.now();
    let users: Vec<UserId> = (0..3).map(|_| UserId::random().unwrap()).collect();
    let sessions: Vec<Session> = (0..300)
        .map(|i| Session {
            key: SessionToken::generate(users[i % 3]).unwrap().key(),
            created_at: now,
            renewed_at: now,
            expires_at: now + Span::minutes(1),
            absolute_expires_at: now + Span::days(1),
            user_agent: None,
            ip: None,
            version: 0,
        })
        .collect();
    app.sql.insert_sessions_bulk(&sessions).await.unwrap();
    assert_eq!(redis.put_sessions_bulk(&sessions).await.unwrap(), 300);
    let prefix = redis.config().key_prefix.clone();
    let index = |user: UserId| format!("{prefix}{{u:{user}}}:idx");
    use cache_redis::fred::interfaces::{KeysInterface as _, SortedSetsInterface as _};
    for user in &users {
        let n: u64 = redis.pool().zcard(index(*user)).await.unwrap();
        assert_eq!(n, 100);
    }

    app.clock.advance(Span::minutes(2));
    let report = app.ops.janitor().run_once().await.unwrap();
    assert_eq!(report.sessions, 300);
    assert_eq!(report.redis_forgotten, 300);
    assert_eq!(report.redis_skipped, 0);
    for user in &users {
        let n: u64 = redis.pool().zcard(index(*user)).await.unwrap();
        assert_eq!(n, 0, "index of {user} still has entries");
    }
    let first = &sessions[0].key;
    let key = format!("{prefix}{{u:{}}}:s:{}", first.user, first.hash.to_hex());
    let exists: u64 = redis.pool().exists(key).await.unwrap();
    assert_eq!(exists, 0);
    app.stop().await;
}

/// The entry point of `authd cleanup` and `cargo xtask cleanup`: the service's
/// configuration, passes until the backlog is done, a report of what went.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_runs_passes_until_the_backlog_is_done() {
    let _serial = SERIAL.lock().await;
    init_logs();
    let clock = ManualClock::starting_now();
    let dir = temp_dir("cleanup");
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    let sql =
        SqlStore::connect(&url, cache_sql::SqlConfig::default(), clock.clone()).await.unwrap();
    sql.migrate().await.unwrap();
    let seeded = seed_sessions(&sql, &clock, 2_500).await;
    let mut settings = Settings::default();
    settings.database.url = url.into();
    settings.janitor.batch_size = 100;
    settings.janitor.max_batches_per_pass = 5;
    // 1,250 expired rows, 500 per pass: three passes, the last one complete.
    let report = authd::app::cleanup::cleanup(&settings, clock.clone(), 100).await.unwrap();
    assert_eq!(report.passes, 3);
    assert_eq!(report.totals.sessions, seeded.expired_keys.len() as u64);
    assert!(report.totals.complete);
    assert_eq!(sql.count_expired_sessions().await.unwrap(), 0);
    assert_eq!(sql.count_live_sessions().await.unwrap(), 1_250);
    // Capped by `max_passes`, a clean-up says the backlog is not done.
    clock.advance(Span::days(8));
    let report = authd::app::cleanup::cleanup(&settings, clock, 1).await.unwrap();
    assert_eq!((report.passes, report.totals.sessions, report.totals.complete), (1, 500, false));
}

// ---------------------------------------------------------------------------------------
// Cache warming
// ---------------------------------------------------------------------------------------

/// 30 live sessions renewed one minute apart (index 29 most recently) and 5 expired ones.
async fn seed_for_warm_up(sql: &SqlStore, clock: &ManualClock) -> Vec<Session> {
    let now = clock.now();
    let user = UserId::random().unwrap();
    let mut live = Vec::new();
    let mut all = Vec::new();
    for i in 0..35 {
        let renewed_at = now - Span::minutes(60 - i);
        let expired = i >= 30;
        let session = Session {
            key: SessionToken::generate(user).unwrap().key(),
            created_at: now - Span::hours(2),
            renewed_at,
            expires_at: if expired { now - Span::seconds(1) } else { now + Span::days(1) },
            absolute_expires_at: now + Span::days(2),
            user_agent: None,
            ip: None,
            version: 0,
        };
        if !expired {
            live.push(session.clone());
        }
        all.push(session);
    }
    sql.insert_sessions_bulk(&all).await.unwrap();
    live
}

async fn warm_up(setup: Setup) {
    let _serial = SERIAL.lock().await;
    let clock = ManualClock::starting_now();
    let mail_dir = temp_dir("mail");
    let Some(mut settings) = settings_for(setup, mail_dir.path()) else { return };
    let Some(sql) = sql_store(setup, &clock).await else { return };
    let live = seed_for_warm_up(&sql, &clock).await;
    settings.warm_up.sessions = 20;
    let app = start(settings.clone(), clock.clone(), sql.clone(), mail_dir).await;
    let report = app.ops.warmed().expect("the warm-up ran");
    assert_eq!(report.sessions, 20);
    assert_eq!(report.memory, 20);
    let memory = app.memory.clone().unwrap();
    // The 20 most recently renewed are in memory, the others are not.
    for (i, session) in live.iter().enumerate() {
        let cached = memory.get(&session.key).await.unwrap();
        assert_eq!(cached.is_some(), i >= 10, "session {i}");
    }
    if setup == Setup::Full {
        assert_eq!(report.redis, Some(20), "a fresh prefix is a Redis without our keys");
        let redis = app.redis.clone().unwrap();
        let start = Instant::now();
        while !redis.is_trusted() {
            assert!(start.elapsed() < Duration::from_secs(10), "redis never trusted");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(redis.get(&live[29].key).await.unwrap().is_some());
        assert!(redis.get(&live[0].key).await.unwrap().is_none());
    } else {
        assert_eq!(report.redis, None);
    }
    app.stop().await;

    if setup == Setup::Full {
        // A second start on the same Redis (same prefix) finds it warm.
        let again = start(settings, clock, sql, temp_dir("mail")).await;
        let report = again.ops.warmed().unwrap();
        assert_eq!((report.sessions, report.memory, report.redis), (20, 20, None));
        again.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_loads_the_most_recent_sessions_sqlite() {
    warm_up(Setup::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_loads_the_most_recent_sessions_and_a_flushed_redis_full() {
    warm_up(Setup::Full).await;
}

// ---------------------------------------------------------------------------------------
// Dashboard and documentation against the code's metric names
// ---------------------------------------------------------------------------------------

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(2).unwrap().to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target" && n != "tests" && n != "benches") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every metric the code registers (`metrics::counter!("name"`, `gauge!`, `histogram!`),
/// with the series names a histogram exports.
fn code_metric_names() -> (BTreeSet<String>, BTreeSet<String>) {
    let mut files = Vec::new();
    rust_files(&workspace_root().join("crates"), &mut files);
    let mut families = BTreeSet::new();
    let mut series = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (macro_name, histogram) in
            [("counter!(", false), ("gauge!(", false), ("histogram!(", true)]
        {
            let mut rest = text.as_str();
            while let Some(i) = rest.find(macro_name) {
                rest = &rest[i + macro_name.len()..];
                let Some(after) = rest.trim_start().strip_prefix('"') else { continue };
                let Some(end) = after.find('"') else { continue };
                let name = &after[..end];
                families.insert(name.to_owned());
                if histogram {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        series.insert(format!("{name}{suffix}"));
                    }
                } else {
                    series.insert(name.to_owned());
                }
            }
        }
    }
    (families, series)
}

/// Metric names in a PromQL expression: the identifiers that are neither functions
/// (followed by `(`), nor keywords, nor inside label matchers `{...}`, ranges `[...]`,
/// strings, or the label lists of `by (...)` / `without (...)` / `on (...)` /
/// `ignoring (...)` / `group_left (...)` / `group_right (...)`.
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    const LABEL_LISTS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    // Keywords, and aggregation operators (they may be followed by `by (...)`, not `(`).
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "offset",
        "bool",
        "inf",
        "nan",
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let skip_to = |mut i: usize, close: char| {
        while i < chars.len() && chars[i] != close {
            if chars[i] == '"' {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            i += 1;
        }
        i + 1
    };
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' {
            i = skip_to(i + 1, '"');
        } else if c == '{' {
            i = skip_to(i + 1, '}');
        } else if c == '[' {
            i = skip_to(i + 1, ']');
        } else if c.is_ascii_digit() || c == '.' {
            // Numbers, including exponents and durations (`5m`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let call = chars.get(j) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) && call {
                i = skip_to(j + 1, ')');
            } else if !call && !KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn the_dashboard_queries_only_metrics_the_code_exports() {
    let path = workspace_root().join("docs/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("docs/grafana-dashboard.json exists");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    let (_, series) = code_metric_names();
    let mut exprs = Vec::new();
    fn collect(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr", Value::String(s)) => out.push(s.clone()),
                        _ => collect(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
            _ => {}
        }
    }
    collect(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "only {} queries in the dashboard", exprs.len());
    let mut unknown = BTreeSet::new();
    let mut used = BTreeSet::new();
    for expr in &exprs {
        for name in promql_metrics(expr) {
            if series.contains(&name) {
                used.insert(name);
            } else {
                unknown.insert(format!("{name} (in {expr})"));
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics the code does not export: {unknown:#?}"
    );
    assert!(used.len() >= 10, "the dashboard uses only {used:?}");
}

#[test]
fn every_metric_of_the_code_is_documented() {
    let (families, _) = code_metric_names();
    assert!(families.len() >= 20, "found only {families:?}");
    let ops = std::fs::read_to_string(workspace_root().join("docs/operations.md"))
        .expect("docs/operations.md exists");
    let missing: Vec<_> =
        families.iter().filter(|name| !ops.contains(&format!("`{name}`"))).collect();
    assert!(missing.is_empty(), "metrics not described in docs/operations.md: {missing:?}");
}

#[test]
fn promql_names_are_found() {
    let names = promql_metrics(
        "histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{route=~\"/v1/.*\"}[5m])))",
    );
    assert_eq!(names, BTreeSet::from(["http_request_duration_seconds_bucket".to_owned()]));
    let names = promql_metrics(
        "sum(rate(tier_lookups_total{result=\"hit\"}[5m])) / sum(rate(tier_lookups_total[5m]))",
    );
    assert_eq!(names, BTreeSet::from(["tier_lookups_total".to_owned()]));
    let names = promql_metrics("time() - janitor_last_success_timestamp_seconds > 3600");
    assert_eq!(names, BTreeSet::from(["janitor_last_success_timestamp_seconds".to_owned()]));
}
