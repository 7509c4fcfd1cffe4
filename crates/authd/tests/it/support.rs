//! What the test modules share: random names, temporary directories, the mails the app
//! writes (decoded, their links found), a redis-server of a test's own (the harness of
//! every crate's tests, `cache_testkit::servers`), and the app harness: the settings of
//! a test instance, starting and stopping it, and responses read whole.

use std::path::Path;
use std::time::{Duration, SystemTime};

use std::sync::Arc;

use actix_web::dev::ServerHandle;
use authd::Application;
use authd::settings::Settings;
use cache_core::ManualClock;
use cache_sql::SqlStore;
pub use cache_testkit::servers::RedisServer;
use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;

pub const PASSWORD: &str = "correct horse battery staple";

pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    cache_core::token::fill_random(&mut bytes).unwrap();
    hex::encode(bytes)
}

pub fn random_email() -> String {
    format!("user-{}@example.com", random_hex(6))
}

/// A new temporary directory, removed on drop.
pub fn temp_dir(tag: &str) -> TempDir {
    TempDir::with_prefix(format!("authd-test-{tag}-")).unwrap()
}

pub fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        authd::telemetry::init_tracing(authd::settings::LogFormat::Text);
    }
}

/// The newest mail in `dir` to `to` with a `path` link: its token.
pub fn token_in_dir(dir: &Path, to: &str, path: &str) -> Option<String> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut newest: Option<(SystemTime, String)> = None;
    for entry in entries.filter_map(|e| e.ok()) {
        let Ok(raw) = std::fs::read_to_string(entry.path()) else { continue };
        let text = mail_text(&raw);
        let to_line = format!("to: {}", to.to_ascii_lowercase());
        let marker = format!("{path}#token=");
        if !text.lines().any(|l| l.trim().to_ascii_lowercase() == to_line) {
            continue;
        }
        let Some(i) = text.find(&marker) else { continue };
        let token: String = text[i + marker.len()..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        let modified = entry.metadata().ok()?.modified().ok()?;
        if newest.as_ref().is_none_or(|(t, _)| modified >= *t) {
            newest = Some((modified, token));
        }
    }
    newest.map(|(_, token)| token)
}

/// The `To:` addresses (one `To: address` line each), the `Subject:` line and the text
/// body of a mail file, parsed by mail-parser, which undoes the transfer encoding lettre
/// picked (quoted-printable or 8bit). Empty when the file is not a mail (yet).
pub fn mail_text(raw: &str) -> String {
    let Some(message) = mail_parser::MessageParser::default().parse(raw) else {
        return String::new();
    };
    let mut text: String = message
        .to()
        .into_iter()
        .flat_map(|to| to.iter())
        .filter_map(|addr| addr.address())
        .map(|addr| format!("To: {addr}\n"))
        .collect();
    if let Some(subject) = message.subject() {
        text.push_str(&format!("Subject: {subject}\n"));
    }
    text.push_str(&message.body_text(0).unwrap_or_default());
    text
}

/// A redis-server of the test's own on a free loopback port, killed on drop; `None` (a
/// recorded skip) when `redis-server` is not installed.
pub fn own_redis() -> Option<RedisServer> {
    cache_testkit::servers::redis_server_available().then(|| RedisServer::start("authd", &[]))
}

/// Stops an app the tests started and waits for it, every step bounded, so that a stop
/// that never completes cannot hang the test binary (and CI): a graceful stop takes the
/// app's `shutdown_timeout_secs` (1 s in these tests), so 30 s means it is stuck. A stuck
/// stop is reported on stderr and the server is stopped by force, and the test, whose
/// subject is something else, keeps its own verdict. (Graceful stops themselves are the
/// subject of `api::graceful_shutdown_finishes_in_flight_requests`.)
pub async fn stop_app(
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
) {
    // Straight to stderr, past libtest's capture: a passing test's output is not shown.
    let report = |what: &str| {
        use std::io::Write as _;
        let test = std::thread::current().name().unwrap_or("<test>").to_owned();
        let _ = writeln!(std::io::stderr().lock(), "{test}: {what}");
    };
    let bound = std::time::Duration::from_secs(30);
    if tokio::time::timeout(bound, handle.stop(true)).await.is_err() {
        report("graceful stop did not complete within 30 s; forcing it");
        if tokio::time::timeout(bound, handle.stop(false)).await.is_err() {
            report("forced stop did not complete within 30 s either; abandoning the app");
        }
    }
    if tokio::time::timeout(bound, task).await.is_err() {
        report("run_until_stopped did not return within 30 s after the stop");
    }
}

/// Settings of a test instance: free ports (public and operations listeners), two
/// workers, a 1 s shutdown timeout, mail into `mail_dir`.
pub fn app_settings(mail_dir: &Path) -> Settings {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.ops_listen = Some("127.0.0.1:0".parse().unwrap());
    settings.server.workers = 2;
    settings.server.shutdown_timeout_secs = 1;
    settings.mail.dir = mail_dir.to_path_buf();
    settings
}

/// Which tiers an app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// A SQLite file + the memory tier (the embedded default); always runs.
    Sqlite,
    /// PostgreSQL alone (an isolated schema); needs `DATABASE_URL`.
    Postgres,
    /// Memory + Redis (a random key prefix) + PostgreSQL; needs both URLs.
    Full,
}

/// Sets the cache tiers of `setup`: Redis with a key prefix of the test's own for
/// `Full`, no memory tier for `Postgres`. `None` (after a skip line) when `REDIS_URL` is
/// needed and not configured.
pub fn configure_tiers(settings: &mut Settings, setup: Setup) -> Option<()> {
    settings.memory.enabled = setup != Setup::Postgres;
    if setup == Setup::Full {
        let redis = cache_testkit::service_url("REDIS_URL")?;
        settings.redis.url = Some(redis.into());
        settings.redis.key_prefix = format!("authd-test-{}:", random_hex(6));
        // A loaded 2-core machine can be slow; the breaker is not what these tests check.
        settings.redis.command_timeout_ms = 500;
    }
    Some(())
}

/// The SQL store of `setup` (`None` after a skip line when its server is not configured).
pub async fn sql_store(setup: Setup, clock: &Arc<ManualClock>) -> Option<SqlStore> {
    Some(match setup {
        Setup::Sqlite => cache_sql::testing::temp_sqlite(clock.clone()).await.unwrap(),
        Setup::Postgres | Setup::Full => {
            let url = cache_testkit::service_url("DATABASE_URL")?;
            cache_sql::testing::isolated_postgres(&url, clock.clone()).await.unwrap()
        }
    })
}

/// A built app, serving: its addresses and what stops it ([`stop_app`]).
pub struct Served {
    /// `http://127.0.0.1:port` of the public listener.
    pub base: String,
    /// The operations listener's base URL, when it is on.
    pub ops_base: Option<String>,
    pub handle: ServerHandle,
    pub task: JoinHandle<std::io::Result<()>>,
}

/// Runs `app` until it is stopped (take what the test needs from it first).
pub fn serve(app: Application) -> Served {
    let base = format!("http://127.0.0.1:{}", app.port());
    let ops_base = app.ops_addr().map(|addr| format!("http://{addr}"));
    let handle = app.handle();
    let task = tokio::spawn(app.run_until_stopped());
    Served { base, ops_base, handle, task }
}

/// An HTTP client that does not follow redirects, with a 30 s liveness bound.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

/// Sends `request` and reads the whole response (the body as JSON when it is).
pub async fn send(request: reqwest::RequestBuilder) -> Resp {
    let response = request.send().await.expect("the request is answered");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, headers, body, text }
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect()
    }

    /// The value of the session cookie set by this response, if any (empty when cleared).
    pub fn session_cookie(&self) -> Option<String> {
        self.set_cookies().iter().find_map(|c| {
            let (pair, _) = c.split_once(';').unwrap_or((c, ""));
            let (name, value) = pair.split_once('=')?;
            (name == "session" || name == "__Host-session").then(|| value.to_owned())
        })
    }

    /// The error code of an error body (empty when it is not one).
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    /// Asserts the `{"error":{"code","message"}}` shape and returns the code.
    pub fn error_code(&self) -> &str {
        let code = self.body["error"]["code"].as_str();
        let message = self.body["error"]["message"].as_str();
        assert!(
            code.is_some() && message.is_some_and(|m| !m.is_empty()),
            "not an error body ({}): {}",
            self.status,
            self.text
        );
        assert_eq!(self.header("content-type"), Some("application/json"), "{}", self.text);
        code.unwrap_or_default()
    }

    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        self
    }

    /// Asserts `status` and an error body (its shape too) with `code`.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        self.expect(status);
        assert_eq!(self.error_code(), code, "{}", self.text);
    }
}
