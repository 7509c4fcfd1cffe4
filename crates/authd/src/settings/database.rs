//! `[database]`: the SQL store (the authority).

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::redact::{redact_url, redacted_url_out};

/// The SQL store (the authority).
#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://...`, `sqlite://path` or `sqlite::memory:`. Also read from
    /// `DATABASE_URL`. May hold a password, so it is a secret.
    #[serde(serialize_with = "redacted_url_out")]
    pub url: SecretString,
    /// A file whose content is `url` (trailing newline trimmed), as container platforms
    /// mount secrets; also `DATABASE_URL_FILE`. Setting both is an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// Connections in the pool.
    pub pool_size: u32,
    /// How long to wait for a connection.
    pub connect_timeout_ms: u64,
    /// Deadline of one query.
    pub query_timeout_ms: u64,
    /// Run the embedded migrations at start-up.
    pub migrate: bool,
    /// How often the revocation journal is read for other instances' revocations
    /// without a notification: the delivery bound on SQLite, the safety net behind
    /// `LISTEN/NOTIFY` on PostgreSQL.
    pub journal_poll_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        let sql = cache_sql::SqlConfig::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            url: SecretString::from("sqlite://data/authd.db"),
            url_file: None,
            pool_size: sql.pool_size,
            connect_timeout_ms: ms(sql.connect_timeout),
            query_timeout_ms: ms(sql.query_timeout),
            migrate: true,
            journal_poll_ms: ms(cache_sql::FollowConfig::default().poll_interval),
        }
    }
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(secrecy::ExposeSecret::expose_secret(&self.url)))
            .field("url_file", &self.url_file)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("query_timeout_ms", &self.query_timeout_ms)
            .field("migrate", &self.migrate)
            .field("journal_poll_ms", &self.journal_poll_ms)
            .finish()
    }
}
