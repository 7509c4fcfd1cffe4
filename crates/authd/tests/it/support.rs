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
