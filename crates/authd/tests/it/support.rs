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
        let text = decode_quoted_printable(&raw);
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

/// The text of a mail file, with a quoted-printable body decoded (soft line breaks and
/// `=XX` escapes). Other encodings pass through unchanged: decoding them would turn the
/// `=9e` of a `token=9e...` link into a byte.
pub fn decode_quoted_printable(raw: &str) -> String {
    let quoted = raw
        .lines()
        .any(|l| l.trim().eq_ignore_ascii_case("content-transfer-encoding: quoted-printable"));
    if !quoted {
        return raw.to_owned();
    }
    let joined = raw.replace("=\r\n", "").replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A redis-server of the test's own on a free loopback port, killed on drop; `None` (a
/// recorded skip) when `redis-server` is not installed.
pub fn own_redis() -> Option<RedisServer> {
    cache_testkit::servers::redis_server_available().then(|| RedisServer::start("authd", &[]))
}
