//! What the test modules share: random names, temporary directories, the mails the app
//! writes (decoded, their links found), and a redis-server of a test's own (the harness
//! of every crate's tests, `cache_testkit::servers`).

use std::path::Path;
use std::time::SystemTime;

pub use cache_testkit::servers::RedisServer;
use tempfile::TempDir;

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
