//! The one typed configuration of `authd`, layered with figment:
// tidy: long-file every settings section and its tests; one file per section is pending (issue 18)
//! built-in defaults, then a TOML file (`AUTHD_CONFIG`, else `./authd.toml` when present),
//! then the conventional `DATABASE_URL` / `REDIS_URL`, then `AUTHD_*` variables (nested
//! with `__`, e.g. `AUTHD_MEMORY__TTL_SECS=10`). Every key is documented in
//! `docs/configuration.md`. Every secret may instead come from a file named by its
//! `..._file` key (`DATABASE_URL_FILE`, `AUTHD_ADMIN__TOKEN_FILE`, ...), as container
//! platforms mount secrets.
//!
//! The defaults are the embedded setup that runs on a fresh machine: SQLite under
//! `./data/`, the memory tier on, Redis off, mail written to `./data/mail/`, plain-http
//! cookies on 127.0.0.1:8080.
//!
//! Each feature's section lives here, in its own file when it is large ([`ops`],
//! [`security`]); the features import their settings from here, never the other way
//! round, so that no import circle runs through the configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use figment::providers::{Env, Format as _, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub mod ops;
pub mod security;

/// Environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "AUTHD_CONFIG";
/// Configuration file read when [`CONFIG_ENV`] is unset and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "authd.toml";

/// Everything `authd` can be told. See `docs/configuration.md`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// HTTP listener.
    pub server: ServerSettings,
    /// Base URL of the service as its users reach it; mail links are built from it only
    /// (never from a request's `Host` header).
    pub public_base_url: String,
    /// The authoritative SQL store.
    pub database: DatabaseSettings,
    /// The in-process memory tier.
    pub memory: MemorySettings,
    /// The Redis tier (off unless a URL is set).
    pub redis: RedisSettings,
    /// The session cookie.
    pub cookie: CookieSettings,
    /// Outgoing mail.
    pub mail: MailSettings,
    /// Session lifetimes, token TTLs, password policy and hashing cost.
    pub auth: AuthSettings,
    /// Log output.
    pub log: LogSettings,
    /// The background janitor (expired sessions, verifications, old journal rows).
    pub janitor: ops::JanitorSettings,
    /// Usage analytics (`/v1/admin/analytics`).
    pub analytics: ops::AnalyticsSettings,
    /// Cache warming at start-up.
    pub warm_up: ops::WarmUpSettings,
    /// The admin API (`/v1/admin/*`).
    pub admin: AdminSettings,
    /// Client addresses behind proxies, CSRF, session fingerprints.
    pub security: security::SecuritySettings,
    /// Rate limits and automatic IP blocks.
    pub abuse: security::AbuseSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings::default(),
            public_base_url: "http://127.0.0.1:8080".to_owned(),
            database: DatabaseSettings::default(),
            memory: MemorySettings::default(),
            redis: RedisSettings::default(),
            cookie: CookieSettings::default(),
            mail: MailSettings::default(),
            auth: AuthSettings::default(),
            log: LogSettings::default(),
            janitor: ops::JanitorSettings::default(),
            analytics: ops::AnalyticsSettings::default(),
            warm_up: ops::WarmUpSettings::default(),
            admin: AdminSettings::default(),
            security: security::SecuritySettings::default(),
            abuse: security::AbuseSettings::default(),
        }
    }
}

/// HTTP listener settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind (`host:port`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Number of actix-web worker threads; 0 means one per CPU.
    pub workers: usize,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub shutdown_timeout_secs: u64,
    /// Largest accepted JSON request body, in bytes.
    pub json_limit_bytes: usize,
    /// Address of the operations listener (`/metrics`, the detailed `/health/ready`),
    /// kept off the public listener because metrics tell who has an account. Loopback by
    /// default; `""` or `"off"` serves no metrics at all.
    #[serde(deserialize_with = "optional_addr", serialize_with = "optional_addr_out")]
    pub ops_listen: Option<SocketAddr>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            workers: 0,
            shutdown_timeout_secs: 30,
            json_limit_bytes: 16 * 1024,
            ops_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
        }
    }
}

/// A socket address, or `None` for `""` / `"off"`.
fn optional_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let raw = String::deserialize(d)?;
    match raw.trim() {
        "" | "off" => Ok(None),
        addr => addr.parse().map(Some).map_err(|e| {
            serde::de::Error::custom(format!("{addr:?} is not host:port (or \"off\"): {e}"))
        }),
    }
}

/// `None` as `"off"`, the spelling [`optional_addr`] reads back.
fn optional_addr_out<S: serde::Serializer>(
    addr: &Option<SocketAddr>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match addr {
        Some(addr) => s.collect_str(addr),
        None => s.serialize_str("off"),
    }
}

/// What `authd check-config` prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// A secret URL with its password (and query) replaced, for `authd check-config`.
fn redacted_url_out<S: serde::Serializer>(url: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(secrecy::ExposeSecret::expose_secret(url)))
}

/// A set secret URL, redacted (unset ones are skipped).
fn redacted_optional_url_out<S: serde::Serializer>(
    url: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => redacted_url_out(url, s),
        None => s.serialize_none(),
    }
}

/// A set secret (password, token), never shown (unset ones are skipped).
fn redacted_out<S: serde::Serializer>(_: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(REDACTED)
}

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

/// The in-process memory tier (moka).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemorySettings {
    /// Whether the memory tier is used at all.
    pub enabled: bool,
    /// Most entries kept (per kind: sessions, users, verifications).
    pub max_entries: u64,
    /// How long an entry may be served from memory before asking the tier below again.
    /// This bounds how stale a revocation can be when an invalidation message is lost.
    pub ttl_secs: u64,
    /// How long a revocation is remembered, so that a late cache fill cannot revive the
    /// session (must be at least `ttl_secs`).
    pub fence_ttl_secs: u64,
}

impl Default for MemorySettings {
    fn default() -> Self {
        let memory = cache_memory::MemoryConfig::default();
        Self {
            enabled: true,
            max_entries: memory.max_entries,
            ttl_secs: memory.ttl.as_secs(),
            fence_ttl_secs: memory.fence_ttl.as_secs(),
        }
    }
}

/// The Redis tier.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://`, `rediss://`, `redis-cluster://` or `redis-sentinel://` URL; Redis is
    /// off when unset. Also read from `REDIS_URL`. May hold a password.
    #[serde(serialize_with = "redacted_optional_url_out", skip_serializing_if = "Option::is_none")]
    pub url: Option<SecretString>,
    /// A file whose content is `url` (trailing newline trimmed); also `REDIS_URL_FILE`.
    /// Setting both is an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    /// PEM file of the CA certificates that sign a `rediss://` server's certificate
    /// (a private CA); unset: the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca_file: Option<PathBuf>,
    /// Prefix of every key and channel (environment separation).
    pub key_prefix: String,
    /// Deadline of one Redis command; past it the tier is skipped for that request.
    pub command_timeout_ms: u64,
    /// Deadline of connecting (and of the first connection at start-up).
    pub connect_timeout_ms: u64,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Consecutive failures that open the circuit breaker.
    pub breaker_failure_threshold: u32,
    /// How often an open breaker lets one probe through.
    pub breaker_probe_interval_ms: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        let redis = cache_redis::RedisConfig::default();
        let breaker = cache_core::BreakerConfig::default();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            url: None,
            url_file: None,
            tls_ca_file: redis.tls_ca_file,
            key_prefix: redis.key_prefix,
            command_timeout_ms: ms(redis.command_timeout),
            connect_timeout_ms: ms(redis.connect_timeout),
            pool_size: redis.pool_size,
            breaker_failure_threshold: breaker.failure_threshold,
            breaker_probe_interval_ms: ms(breaker.probe_interval),
        }
    }
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = self.url.as_ref().map(|u| redact_url(secrecy::ExposeSecret::expose_secret(u)));
        f.debug_struct("RedisSettings")
            .field("url", &url)
            .field("url_file", &self.url_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("key_prefix", &self.key_prefix)
            .field("command_timeout_ms", &self.command_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("pool_size", &self.pool_size)
            .field("breaker_failure_threshold", &self.breaker_failure_threshold)
            .field("breaker_probe_interval_ms", &self.breaker_probe_interval_ms)
            .finish()
    }
}

/// The session cookie.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CookieSettings {
    /// `true`: cookie `__Host-session` with `Secure` (HTTPS only). `false` (the embedded
    /// default, for plain-http local use): cookie `session` without `Secure`, and a warning
    /// at start-up.
    pub secure: bool,
}

/// Where mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MailTransport {
    /// One `.eml` file per message in `mail.dir`, plus a log line.
    File,
    /// An SMTP server (`mail.smtp.*`).
    Smtp,
}

/// Outgoing mail.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailSettings {
    /// `file` (default) or `smtp`.
    pub transport: MailTransport,
    /// Folder of the file transport.
    pub dir: PathBuf,
    /// The `From:` address.
    pub from: String,
    /// SMTP settings, used when `transport = "smtp"`.
    pub smtp: SmtpSettings,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            transport: MailTransport::File,
            dir: PathBuf::from("data/mail"),
            from: "tiered-auth <no-reply@localhost>".to_owned(),
            smtp: SmtpSettings::default(),
        }
    }
}

/// Transport security of the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTlsMode {
    /// Plain text (a local relay only).
    None,
    /// Plain connection upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// SMTP server settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    /// Host name of the server.
    pub host: String,
    /// Port (587 for STARTTLS, 465 for TLS, 25 for a local relay).
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    pub tls: SmtpTlsMode,
    /// Login user, if the server wants one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Login password.
    #[serde(serialize_with = "redacted_out", skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretString>,
    /// A file whose content is `password` (trailing newline trimmed). Setting both is an
    /// error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Deadline of one SMTP exchange.
    pub timeout_secs: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 587,
            tls: SmtpTlsMode::Starttls,
            username: None,
            password: None,
            password_file: None,
            timeout_secs: 10,
        }
    }
}

/// Lifetimes, TTLs, password policy and argon2 cost; defaults from `auth::AuthConfig`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Idle timeout: a session expires this long after its last renewal.
    pub session_idle_secs: u64,
    /// A session used this long after its last renewal is extended in place.
    pub session_update_age_secs: u64,
    /// Absolute lifetime of a session from login; never extended.
    pub session_absolute_secs: u64,
    /// Lifetime of an email verification link.
    pub email_verification_ttl_secs: u64,
    /// Lifetime of a password reset link.
    pub password_reset_ttl_secs: u64,
    /// How long an account may stay unverified before the janitor deletes it (freeing
    /// its address); default 24 hours.
    pub unverified_account_ttl_secs: u64,
    /// Shortest accepted password, in characters.
    pub password_min_chars: usize,
    /// Longest accepted password, in characters (at least 128).
    pub password_max_chars: usize,
    /// argon2id memory cost in KiB (at least 19456).
    pub argon2_memory_kib: u32,
    /// argon2id passes (at least 2).
    pub argon2_iterations: u32,
    /// argon2id lanes (at least 1).
    pub argon2_parallelism: u32,
    /// Most password hashes computed at once; 0 means one per CPU.
    pub hash_concurrency: usize,
    /// User agents stored with a session are cut to this many bytes.
    pub user_agent_max_len: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        let d = auth::AuthConfig::default();
        let secs = |d: chrono::Duration| u64::try_from(d.num_seconds()).unwrap_or(0);
        Self {
            session_idle_secs: secs(d.session_idle),
            session_update_age_secs: secs(d.session_update_age),
            session_absolute_secs: secs(d.session_absolute),
            email_verification_ttl_secs: secs(d.email_verification_ttl),
            password_reset_ttl_secs: secs(d.password_reset_ttl),
            unverified_account_ttl_secs: secs(d.unverified_account_ttl),
            password_min_chars: d.password.min_chars,
            password_max_chars: d.password.max_chars,
            argon2_memory_kib: d.argon2.memory_kib,
            argon2_iterations: d.argon2.iterations,
            argon2_parallelism: d.argon2.parallelism,
            hash_concurrency: 0,
            user_agent_max_len: d.user_agent_max_len,
        }
    }
}

/// Log output format. The filter comes from `RUST_LOG` (default `info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Level of the access log line (`log.access_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLevel {
    /// No access line (server errors are still logged at `warn`).
    Off,
    /// One line per request at `debug` (the default: shown with `RUST_LOG=authd=debug`).
    #[default]
    Debug,
    /// One line per request at `info`.
    Info,
}

/// Log settings.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (default) or `json`.
    pub format: LogFormat,
    /// Level of the one access line per request (`off`, `debug` (default), `info`);
    /// server errors are logged at `warn` regardless.
    pub access_level: AccessLevel,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self { format: LogFormat::Text, access_level: AccessLevel::Debug }
    }
}

/// The admin API.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// The bearer token of `/v1/admin/*` (at least 32 characters; generate it, e.g.
    /// `openssl rand -base64 32`). Unset (the default): the admin API is disabled and
    /// answers 404 `admin_disabled`. Only its SHA-256 is kept in memory.
    #[serde(serialize_with = "redacted_out", skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretString>,
    /// A file whose content is `token` (trailing newline trimmed). Setting both is an
    /// error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// Shortest accepted admin token: 32 characters of a generated secret are far beyond
/// guessing, and rule out a typed-in password.
pub const ADMIN_TOKEN_MIN_CHARS: usize = 32;

/// Least estimated entropy of an admin token, in bits: the token's length times the
/// Shannon entropy of its own character distribution. 32 random hex characters (128
/// bits) estimate at about 115, and at no less than 89 in 200,000 draws (the estimate
/// of a short random string runs low), so the bar sits well below that: a generated
/// token of the documented minimum is never refused, while `aaaa…` estimates at 0 and
/// `abab…` at one bit per character. (96 refused about one such token in 10,000.)
pub const ADMIN_TOKEN_MIN_BITS: f64 = 80.0;

/// Why `token` is too weak to guard the admin API, or `None` when it is acceptable.
///
/// Length alone lets `aaaa…aaaa` or `0123456789abcdef0123456789abcdef` through. A
/// generated token (`openssl rand -hex 16` or `-base64 32`, a UUID) passes every rule
/// below with overwhelming probability; a typed-in phrase or a pattern does not:
/// - at least [`ADMIN_TOKEN_MIN_CHARS`] characters;
/// - at least two character classes (lower case, upper case, digits, others);
/// - at most a quarter of its 3-character sequences seen before in it (`abcdabcd…`,
///   `Password1Password2…`);
/// - not mostly runs: at most half of the neighbouring pairs are equal or consecutive
///   characters (`aaaa`, `abcd`, `9876`);
/// - at least [`ADMIN_TOKEN_MIN_BITS`] of estimated entropy.
pub fn admin_token_weakness(token: &str) -> Option<String> {
    let chars: Vec<char> = token.chars().collect();
    let n = chars.len();
    if n < ADMIN_TOKEN_MIN_CHARS {
        return Some(format!("it must be at least {ADMIN_TOKEN_MIN_CHARS} characters long"));
    }
    let classes = [
        chars.iter().any(char::is_ascii_lowercase),
        chars.iter().any(char::is_ascii_uppercase),
        chars.iter().any(char::is_ascii_digit),
        chars.iter().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if classes.iter().filter(|&&present| present).count() < 2 {
        return Some("it uses one class of characters only".to_owned());
    }
    // Random text rarely repeats a 3-character sequence; `abab…`, `PasswordPassword…`
    // or `2024-2024-…` mostly consist of repeats.
    let mut seen = std::collections::HashSet::new();
    let repeats = chars.windows(3).filter(|gram| !seen.insert(*gram)).count();
    if repeats * 4 > n - 2 {
        return Some("it repeats parts of itself".to_owned());
    }
    let steps = chars
        .windows(2)
        .filter(|pair| (i64::from(u32::from(pair[1])) - i64::from(u32::from(pair[0]))).abs() <= 1)
        .count();
    if steps * 2 > n - 1 {
        return Some("it is mostly repeated or consecutive characters".to_owned());
    }
    let mut counts = std::collections::HashMap::<char, u32>::new();
    for &c in &chars {
        *counts.entry(c).or_default() += 1;
    }
    #[allow(clippy::cast_precision_loss)] // Token lengths are far below 2^52.
    let bits = {
        let len = n as f64;
        let per_char: f64 = counts
            .values()
            .map(|&k| {
                let p = f64::from(k) / len;
                -p * p.log2()
            })
            .sum();
        per_char * len
    };
    if bits < ADMIN_TOKEN_MIN_BITS {
        return Some(format!(
            "its estimated entropy is {bits:.0} bits, below {ADMIN_TOKEN_MIN_BITS:.0} \
             (too few distinct characters)"
        ));
    }
    None
}

impl Settings {
    /// Loads the settings from the process environment and the configuration file, and
    /// validates them.
    pub fn load() -> anyhow::Result<Self> {
        Self::from_figment(Self::figment()?)
    }

    /// The layered sources, without extracting them: file (if any), then `DATABASE_URL` /
    /// `REDIS_URL`, then `AUTHD_*`. Defaults come from `Default` (every struct is
    /// `#[serde(default)]`).
    pub fn figment() -> anyhow::Result<Figment> {
        let mut figment = Figment::new();
        match std::env::var_os(CONFIG_ENV) {
            Some(path) => {
                let path = PathBuf::from(path);
                ensure!(
                    path.is_file(),
                    "{CONFIG_ENV} names {}, which is not a readable file",
                    path.display()
                );
                figment = figment.merge(Toml::file_exact(path));
            }
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        for (var, key) in [
            ("DATABASE_URL", "database.url"),
            ("DATABASE_URL_FILE", "database.url_file"),
            ("REDIS_URL", "redis.url"),
            ("REDIS_URL_FILE", "redis.url_file"),
        ] {
            if let Ok(value) = std::env::var(var) {
                figment = figment.merge(EnvVar::new(var, key, value));
            }
        }
        for (key, value) in Env::prefixed("AUTHD_").ignore(&["CONFIG"]).split("__").iter() {
            let name = format!("AUTHD_{}", key.as_str().replace('.', "__").to_ascii_uppercase());
            figment = figment.merge(EnvVar::new(&name, key.as_str(), value));
        }
        Ok(figment)
    }

    /// Extracts and validates settings from `figment`.
    pub fn from_figment(figment: Figment) -> anyhow::Result<Self> {
        // Lossy: environment values are strings, and "30" or "true" must still fill a
        // number or a flag.
        let mut settings: Settings = figment.extract_lossy().context("invalid configuration")?;
        settings.read_secret_files(&figment)?;
        settings.validate()?;
        Ok(settings)
    }

    /// Replaces each secret whose `..._file` key is set by that file's content. `figment`
    /// tells whether the secret itself was set too (defaults are not in it): both is an
    /// error naming the two keys and where each came from.
    fn read_secret_files(&mut self, figment: &Figment) -> anyhow::Result<()> {
        if let Some(path) = &self.database.url_file {
            self.database.url = secret_from_file(figment, "database.url", path)?;
        }
        if let Some(path) = &self.redis.url_file {
            self.redis.url = Some(secret_from_file(figment, "redis.url", path)?);
        }
        if let Some(path) = &self.mail.smtp.password_file {
            self.mail.smtp.password = Some(secret_from_file(figment, "mail.smtp.password", path)?);
        }
        if let Some(path) = &self.admin.token_file {
            self.admin.token = Some(secret_from_file(figment, "admin.token", path)?);
        }
        Ok(())
    }

    /// Checks what serde cannot: ranges, URL schemes and cross-field rules. The message
    /// names the key at fault.
    pub fn validate(&self) -> anyhow::Result<()> {
        use secrecy::ExposeSecret as _;

        let base = self.public_base_url.trim_end_matches('/');
        ensure!(
            (base.starts_with("http://") || base.starts_with("https://"))
                && base.len() > "https://".len()
                && !base.contains(['?', '#', ' ']),
            "public_base_url must be an absolute http(s) URL without query or fragment, got {:?}",
            self.public_base_url
        );
        ensure!(self.server.json_limit_bytes >= 1024, "server.json_limit_bytes must be >= 1024");

        let db = self.database.url.expose_secret();
        ensure!(
            db.starts_with("postgres://")
                || db.starts_with("postgresql://")
                || db.starts_with("sqlite:"),
            "database.url must start with postgres://, postgresql:// or sqlite:, got {:?}",
            redact_url(db)
        );
        ensure!(self.database.pool_size >= 1, "database.pool_size must be >= 1");
        ensure!(self.database.query_timeout_ms >= 1, "database.query_timeout_ms must be >= 1");
        ensure!(
            (10..=1000).contains(&self.database.journal_poll_ms),
            "database.journal_poll_ms must be between 10 and 1000 (revocations reach every \
             instance within a second)"
        );
        ensure!(self.database.connect_timeout_ms >= 1, "database.connect_timeout_ms must be >= 1");

        if self.memory.enabled {
            ensure!(self.memory.max_entries >= 1, "memory.max_entries must be >= 1");
            ensure!(self.memory.ttl_secs >= 1, "memory.ttl_secs must be >= 1");
            ensure!(
                self.memory.fence_ttl_secs >= self.memory.ttl_secs,
                "memory.fence_ttl_secs must be >= memory.ttl_secs"
            );
        }

        if let Some(url) = &self.redis.url {
            let url = url.expose_secret();
            ensure!(
                ["redis://", "rediss://", "redis-cluster://", "rediss-cluster://"]
                    .iter()
                    .chain(&["redis-sentinel://", "rediss-sentinel://"])
                    .any(|scheme| url.starts_with(scheme)),
                "redis.url must be a redis://, rediss://, redis-cluster:// or redis-sentinel:// \
                 URL, got {:?}",
                redact_url(url)
            );
            ensure!(self.redis.command_timeout_ms >= 1, "redis.command_timeout_ms must be >= 1");
            ensure!(self.redis.connect_timeout_ms >= 1, "redis.connect_timeout_ms must be >= 1");
            ensure!(
                !self.redis.key_prefix.contains(['{', '}']),
                "redis.key_prefix must not contain '{{' or '}}'"
            );
            ensure!(self.redis.pool_size >= 1, "redis.pool_size must be >= 1");
            ensure!(
                self.redis.breaker_failure_threshold >= 1,
                "redis.breaker_failure_threshold must be >= 1"
            );
        }

        self.janitor.validate()?;
        self.analytics.validate()?;
        self.warm_up.validate()?;

        if self.mail.transport == MailTransport::Smtp {
            ensure!(!self.mail.smtp.host.is_empty(), "mail.smtp.host must be set for smtp");
            ensure!(self.mail.smtp.port != 0, "mail.smtp.port must not be 0");
            if self.mail.smtp.password.is_some() && self.mail.smtp.username.is_none() {
                bail!("mail.smtp.password is set but mail.smtp.username is not");
            }
        }
        ensure!(self.mail.from.contains('@'), "mail.from must be an email address");

        let a = &self.auth;
        ensure!(a.session_idle_secs >= 1, "auth.session_idle_secs must be >= 1");
        ensure!(
            a.session_update_age_secs < a.session_idle_secs,
            "auth.session_update_age_secs must be below auth.session_idle_secs"
        );
        ensure!(
            a.session_absolute_secs >= a.session_idle_secs,
            "auth.session_absolute_secs must be >= auth.session_idle_secs"
        );
        ensure!(
            a.email_verification_ttl_secs >= 1,
            "auth.email_verification_ttl_secs must be >= 1"
        );
        ensure!(a.password_reset_ttl_secs >= 1, "auth.password_reset_ttl_secs must be >= 1");
        ensure!(
            a.unverified_account_ttl_secs >= a.email_verification_ttl_secs,
            "auth.unverified_account_ttl_secs must be >= auth.email_verification_ttl_secs \
             (an account must outlive its verification link)"
        );
        ensure!(a.password_min_chars >= 8, "auth.password_min_chars must be >= 8");
        ensure!(a.password_max_chars >= 128, "auth.password_max_chars must be >= 128");
        ensure!(
            a.password_max_chars >= a.password_min_chars,
            "auth.password_max_chars must be >= auth.password_min_chars"
        );
        self.security.validate()?;
        self.abuse.validate()?;
        if let Some(token) = &self.admin.token
            && let Some(why) = admin_token_weakness(token.expose_secret())
        {
            bail!("admin.token is too weak: {why}; generate one, e.g. `openssl rand -base64 32`");
        }
        let min = auth::Argon2Params::MINIMUM;
        ensure!(
            a.argon2_memory_kib >= min.memory_kib
                && a.argon2_iterations >= min.iterations
                && a.argon2_parallelism >= min.parallelism,
            "auth.argon2_* must be at least memory_kib={}, iterations={}, parallelism={}",
            min.memory_kib,
            min.iterations,
            min.parallelism
        );
        self.validate_transport()
    }

    /// Transport rules (issue 11, item 8): what would put a secret on the wire in clear.
    fn validate_transport(&self) -> anyhow::Result<()> {
        use secrecy::ExposeSecret as _;

        // A browser sends a cookie without `Secure` over plain http too, and without the
        // `__Host-` prefix a sibling subdomain can overwrite it: behind https that is a
        // misconfiguration, never what the operator wants.
        ensure!(
            self.cookie.secure || !self.public_base_url().starts_with("https://"),
            "public_base_url is https ({}) but cookie.secure is false: the session cookie \
             would lack Secure and the __Host- prefix; set cookie.secure = true \
             (AUTHD_COOKIE__SECURE=true)",
            self.public_base_url()
        );

        if let Some(url) = &self.redis.url {
            let url = url.expose_secret();
            let tls = cache_redis::url_uses_tls(url);
            ensure!(
                !tls || cache_redis::TLS_COMPILED,
                "redis.url is a rediss:// (TLS) URL but this authd was built without TLS \
                 support (cargo feature `redis-tls`); it would connect in plain text"
            );
            if let Some(ca) = &self.redis.tls_ca_file {
                ensure!(tls, "redis.tls_ca_file is set but redis.url is not a rediss:// URL");
                ensure!(
                    ca.is_file(),
                    "redis.tls_ca_file names {}, which is not a readable file",
                    ca.display()
                );
            }
        } else if self.redis.tls_ca_file.is_some() {
            bail!("redis.tls_ca_file is set but redis.url is not");
        }

        let smtp = &self.mail.smtp;
        if self.mail.transport == MailTransport::Smtp
            && smtp.tls == SmtpTlsMode::None
            && (smtp.username.is_some() || smtp.password.is_some())
        {
            bail!(
                "mail.smtp.tls = \"none\" with mail.smtp.username/mail.smtp.password would \
                 send the SMTP credentials in clear; use tls = \"starttls\" or \"tls\", or \
                 drop the credentials (an unauthenticated local relay)"
            );
        }
        Ok(())
    }

    /// The base URL without a trailing slash.
    pub fn public_base_url(&self) -> &str {
        self.public_base_url.trim_end_matches('/')
    }

    /// The flows' configuration: these settings over `auth::AuthConfig::default()`.
    // Spelled with `..defaults` so that a field `auth` adds keeps its default here until a
    // setting exposes it.
    #[allow(clippy::needless_update)]
    pub fn auth_config(&self) -> auth::AuthConfig {
        let a = &self.auth;
        let secs = |s: u64| chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
        let defaults = auth::AuthConfig::default();
        let password = auth::PasswordPolicy {
            min_chars: a.password_min_chars,
            max_chars: a.password_max_chars,
            ..defaults.password
        };
        let hash_concurrency =
            if a.hash_concurrency == 0 { defaults.hash_concurrency } else { a.hash_concurrency };
        auth::AuthConfig {
            session_idle: secs(a.session_idle_secs),
            session_update_age: secs(a.session_update_age_secs),
            session_absolute: secs(a.session_absolute_secs),
            email_verification_ttl: secs(a.email_verification_ttl_secs),
            password_reset_ttl: secs(a.password_reset_ttl_secs),
            unverified_account_ttl: secs(a.unverified_account_ttl_secs),
            password,
            argon2: auth::Argon2Params {
                memory_kib: a.argon2_memory_kib,
                iterations: a.argon2_iterations,
                parallelism: a.argon2_parallelism,
            },
            hash_concurrency,
            public_base_url: self.public_base_url().to_owned(),
            user_agent_max_len: a.user_agent_max_len,
            fingerprint: self.security.fingerprint,
            ..defaults
        }
    }

    /// The effective settings as TOML, every secret redacted (URLs keep everything but
    /// their password and query): what `authd check-config` prints. Not a loadable file
    /// when secrets are set, by design.
    pub fn to_redacted_toml(&self) -> anyhow::Result<String> {
        toml::to_string(self).context("the settings cannot be rendered as TOML")
    }

    /// Graceful shutdown deadline.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.server.shutdown_timeout_secs)
    }
}

/// One environment variable, its value kept as the string it is. figment's own `Env`
/// parses values, which would turn a password like `007` into the number 7; numbers and
/// flags are recovered from strings by the lossy extraction instead.
struct EnvVar {
    name: String,
    key: String,
    value: String,
}

impl EnvVar {
    fn new(name: &str, key: &str, value: String) -> Self {
        Self { name: name.to_owned(), key: key.to_owned(), value }
    }
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict = figment::util::nest(&self.key, Value::from(self.value.clone()))
            .into_dict()
            .unwrap_or_default();
        Ok(Profile::Default.collect(dict))
    }
}

/// The secret `key` read from `path` (the value of `{key}_file`): the file's content
/// without its trailing line break(s), which `echo` and editors add. Refused when `key`
/// is set as well, when the file cannot be read, or when it is empty. The content never
/// appears in an error.
fn secret_from_file(figment: &Figment, key: &str, path: &Path) -> anyhow::Result<SecretString> {
    let file_key = format!("{key}_file");
    if figment.find_value(key).is_ok() {
        bail!(
            "{key} ({}) and {file_key} ({}) are both set; set one of them",
            source_of(figment, key),
            source_of(figment, &file_key)
        );
    }
    let mut value = std::fs::read_to_string(path)
        .with_context(|| format!("{file_key}: cannot read {}", path.display()))?;
    let len = value.trim_end_matches(['\n', '\r']).len();
    value.truncate(len);
    ensure!(!value.is_empty(), "{file_key}: {} is empty", path.display());
    Ok(SecretString::from(value))
}

/// Where `key` was set: "environment variable DATABASE_URL", "TOML file /etc/authd.toml".
fn source_of(figment: &Figment, key: &str) -> String {
    match figment.find_metadata(key) {
        Some(meta) => match &meta.source {
            Some(source) => format!("{} {source}", meta.name),
            None => meta.name.to_string(),
        },
        None => "unknown source".to_owned(),
    }
}

/// A URL with any password (and any query string, which may carry one) replaced by
/// `***`, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((base, _)) => (base, "?***"),
        None => (url, ""),
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("{url}{query}");
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{path}{query}")
        }
        None => format!("{url}{query}"),
    }
}

#[cfg(test)]
// figment's Jail closures return its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;
    use secrecy::ExposeSecret as _;

    #[test]
    fn defaults_are_the_embedded_setup_and_valid() {
        let s = Settings::default();
        s.validate().unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database.url.expose_secret(), "sqlite://data/authd.db");
        assert!(s.memory.enabled);
        assert_eq!(s.memory.max_entries, 100_000);
        assert_eq!(s.memory.ttl_secs, 30);
        assert!(s.redis.url.is_none());
        assert_eq!(s.mail.transport, MailTransport::File);
        assert_eq!(s.mail.dir, PathBuf::from("data/mail"));
        assert!(!s.cookie.secure);
        assert_eq!(s.public_base_url(), "http://127.0.0.1:8080");
        // Metrics are served on loopback only, never on the public listener by default.
        assert_eq!(s.server.ops_listen, Some(SocketAddr::from(([127, 0, 0, 1], 9464))));
        let cfg = s.auth_config();
        let d = auth::AuthConfig::default();
        assert_eq!(cfg.session_idle, d.session_idle);
        assert_eq!(cfg.session_absolute, d.session_absolute);
        assert_eq!(cfg.argon2, d.argon2);
    }

    #[test]
    fn the_operations_listener_can_move_or_be_turned_off() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            let load = || Settings::from_figment(Settings::figment().unwrap());
            jail.set_env("AUTHD_SERVER__OPS_LISTEN", "10.0.0.5:9100");
            assert_eq!(load().unwrap().server.ops_listen, Some("10.0.0.5:9100".parse().unwrap()));
            jail.set_env("AUTHD_SERVER__OPS_LISTEN", "off");
            assert_eq!(load().unwrap().server.ops_listen, None);
            jail.set_env("AUTHD_SERVER__OPS_LISTEN", "");
            assert_eq!(load().unwrap().server.ops_listen, None);
            jail.set_env("AUTHD_SERVER__OPS_LISTEN", "localhost");
            let e = format!("{:#}", load().unwrap_err());
            assert!(e.contains("ops_listen"), "{e}");
            Ok(())
        });
    }

    #[test]
    fn file_then_conventional_env_then_authd_env() {
        Jail::expect_with(|jail| {
            // The test environment may carry DATABASE_URL, REDIS_URL or AUTHD_*.
            jail.clear_env();
            jail.create_file(
                "authd.toml",
                r#"
                public_base_url = "https://auth.example.com/"
                [memory]
                ttl_secs = 10
                fence_ttl_secs = 20
                [redis]
                key_prefix = "file:"
                [mail]
                transport = "smtp"
                [mail.smtp]
                host = "smtp.example.com"
                tls = "tls"
                username = "mailer"
                "#,
            )?;
            jail.set_env("DATABASE_URL", "postgres://app:pw@db/auth");
            jail.set_env("REDIS_URL", "redis://127.0.0.1:6379");
            jail.set_env("AUTHD_MEMORY__TTL_SECS", "5");
            jail.set_env("AUTHD_REDIS__KEY_PREFIX", "env:");
            jail.set_env("AUTHD_COOKIE__SECURE", "true");
            jail.set_env("AUTHD_MAIL__SMTP__PASSWORD", "hunter2hunter2");
            let s = Settings::from_figment(Settings::figment().unwrap()).unwrap();
            assert_eq!(s.public_base_url(), "https://auth.example.com");
            assert_eq!(s.memory.ttl_secs, 5);
            assert_eq!(s.memory.fence_ttl_secs, 20);
            assert_eq!(s.database.url.expose_secret(), "postgres://app:pw@db/auth");
            assert_eq!(s.redis.url.as_ref().unwrap().expose_secret(), "redis://127.0.0.1:6379");
            assert_eq!(s.redis.key_prefix, "env:");
            assert!(s.cookie.secure);
            assert_eq!(s.mail.transport, MailTransport::Smtp);
            assert_eq!(s.mail.smtp.tls, SmtpTlsMode::Tls);
            assert_eq!(s.mail.smtp.password.as_ref().unwrap().expose_secret(), "hunter2hunter2");
            // Secrets never show up in Debug output.
            let debug = format!("{s:?}");
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(!debug.contains(":pw@"), "{debug}");
            Ok(())
        });
    }

    #[test]
    fn authd_config_names_the_file_and_a_missing_one_is_an_error() {
        Jail::expect_with(|jail| {
            // The test environment may carry DATABASE_URL, REDIS_URL or AUTHD_*.
            jail.clear_env();
            jail.create_file("other.toml", "[server]\nlisten = \"127.0.0.1:0\"\n")?;
            jail.set_env(CONFIG_ENV, "other.toml");
            let s = Settings::load().unwrap();
            assert_eq!(s.server.listen.port(), 0);
            jail.set_env(CONFIG_ENV, "missing.toml");
            let err = Settings::load().unwrap_err();
            assert!(format!("{err:#}").contains("missing.toml"), "{err:#}");
            Ok(())
        });
    }

    #[test]
    fn bad_settings_are_clear_errors() {
        let cases: &[(&str, &str)] = &[
            ("[memory]\nttl_secs = \"ten\"\n", "ttl_secs"),
            ("[memory]\nttl_sec = 10\n", "ttl_sec"),
            ("[database]\nurl = \"mysql://x\"\n", "database.url"),
            ("[redis]\nurl = \"http://x\"\n", "redis.url"),
            ("[auth]\nargon2_memory_kib = 1024\n", "argon2"),
            ("[auth]\npassword_max_chars = 64\n", "password_max_chars"),
            ("public_base_url = \"example.com\"\n", "public_base_url"),
            ("[admin]\ntoken = \"short\"\n", "admin.token"),
            ("[server]\nlisten = \"nowhere\"\n", "listen"),
        ];
        for (toml, needle) in cases {
            Jail::expect_with(|jail| {
                // The test environment may carry DATABASE_URL, REDIS_URL or AUTHD_*.
                jail.clear_env();
                jail.create_file("authd.toml", toml)?;
                let err = Settings::load().unwrap_err();
                let text = format!("{err:#}");
                assert!(text.contains(needle), "{toml:?}: {text}");
                Ok(())
            });
        }
    }

    #[test]
    fn numeric_looking_secrets_stay_strings() {
        Jail::expect_with(|jail| {
            // The test environment may carry DATABASE_URL, REDIS_URL or AUTHD_*.
            jail.clear_env();
            jail.set_env("AUTHD_MAIL__SMTP__USERNAME", "12345");
            jail.set_env("AUTHD_MAIL__SMTP__PASSWORD", "007");
            jail.set_env("AUTHD_REDIS__KEY_PREFIX", "1.50");
            jail.set_env("AUTHD_SERVER__WORKERS", "3");
            jail.set_env("AUTHD_MEMORY__ENABLED", "false");
            let s = Settings::load().unwrap();
            assert_eq!(s.mail.smtp.username.as_deref(), Some("12345"));
            assert_eq!(s.mail.smtp.password.as_ref().unwrap().expose_secret(), "007");
            assert_eq!(s.redis.key_prefix, "1.50");
            assert_eq!(s.server.workers, 3);
            assert!(!s.memory.enabled);
            jail.set_env("AUTHD_SERVER__WORKERS", "many");
            let err = format!("{:#}", Settings::load().unwrap_err());
            assert!(err.contains("AUTHD_SERVER__WORKERS"), "{err}");
            Ok(())
        });
    }

    // -- Issue 17, item 2: secrets from files ----------------------------------------

    /// The admin token of the file tests (strong enough for the start-up check).
    const FILE_TOKEN: &str = "q3J9vX+2mB/Lk8ZtR1wYc0pH7sNf5aGdEiUo4TxWl6M=";

    /// Writes the four secret files, each with the trailing newline `echo` leaves.
    fn write_secret_files(jail: &mut Jail) -> figment::error::Result<()> {
        jail.create_file("db.secret", "postgres://app:from-file@db/auth\n")?;
        jail.create_file("redis.secret", "redis://:from-file@127.0.0.1:6379\r\n")?;
        jail.create_file("smtp.secret", "smtp from file\n")?;
        jail.create_file("admin.secret", &format!("{FILE_TOKEN}\n"))?;
        Ok(())
    }

    fn assert_file_secrets(s: &Settings) {
        assert_eq!(s.database.url.expose_secret(), "postgres://app:from-file@db/auth");
        let redis = s.redis.url.as_ref().unwrap().expose_secret();
        assert_eq!(redis, "redis://:from-file@127.0.0.1:6379");
        let smtp = s.mail.smtp.password.as_ref().unwrap().expose_secret();
        assert_eq!(smtp, "smtp from file");
        assert_eq!(s.admin.token.as_ref().unwrap().expose_secret(), FILE_TOKEN);
        // Read from files, still secrets: never in Debug or check-config's output.
        for text in [format!("{s:?}"), s.to_redacted_toml().unwrap()] {
            assert!(!text.contains("from-file") && !text.contains(FILE_TOKEN), "{text}");
            assert!(!text.contains("smtp from file"), "{text}");
        }
    }

    #[test]
    fn secrets_come_from_files_named_in_the_environment() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            write_secret_files(jail)?;
            jail.set_env("DATABASE_URL_FILE", "db.secret");
            jail.set_env("REDIS_URL_FILE", "redis.secret");
            jail.set_env("AUTHD_MAIL__TRANSPORT", "smtp");
            jail.set_env("AUTHD_MAIL__SMTP__USERNAME", "mailer");
            jail.set_env("AUTHD_MAIL__SMTP__PASSWORD_FILE", "smtp.secret");
            jail.set_env("AUTHD_ADMIN__TOKEN_FILE", "admin.secret");
            let s = Settings::load().unwrap();
            assert_file_secrets(&s);
            assert_eq!(s.database.url_file.as_deref(), Some(Path::new("db.secret")));

            // The AUTHD_ spelling of the URL files works too.
            jail.clear_env();
            jail.set_env("AUTHD_DATABASE__URL_FILE", "db.secret");
            jail.set_env("AUTHD_REDIS__URL_FILE", "redis.secret");
            let s = Settings::load().unwrap();
            assert_eq!(s.database.url.expose_secret(), "postgres://app:from-file@db/auth");
            assert!(s.redis.url.is_some());
            Ok(())
        });
    }

    #[test]
    fn secrets_come_from_files_named_in_the_config_file() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            write_secret_files(jail)?;
            jail.create_file(
                "authd.toml",
                r#"
                [database]
                url_file = "db.secret"
                [redis]
                url_file = "redis.secret"
                [mail]
                transport = "smtp"
                [mail.smtp]
                username = "mailer"
                password_file = "smtp.secret"
                [admin]
                token_file = "admin.secret"
                "#,
            )?;
            assert_file_secrets(&Settings::load().unwrap());
            Ok(())
        });
    }

    #[test]
    fn a_secret_set_both_ways_is_refused_naming_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("DATABASE_URL", "DATABASE_URL_FILE", "database.url"),
            ("AUTHD_DATABASE__URL", "DATABASE_URL_FILE", "database.url"),
            ("REDIS_URL", "REDIS_URL_FILE", "redis.url"),
            ("AUTHD_MAIL__SMTP__PASSWORD", "AUTHD_MAIL__SMTP__PASSWORD_FILE", "mail.smtp.password"),
            ("AUTHD_ADMIN__TOKEN", "AUTHD_ADMIN__TOKEN_FILE", "admin.token"),
        ];
        for (var, file_var, key) in cases {
            Jail::expect_with(|jail| {
                jail.clear_env();
                write_secret_files(jail)?;
                let path = match *key {
                    "database.url" => "db.secret",
                    "redis.url" => "redis.secret",
                    "mail.smtp.password" => "smtp.secret",
                    _ => "admin.secret",
                };
                jail.set_env(var, "set-directly-0123456789abcdef-XYZ");
                jail.set_env(file_var, path);
                let err = format!("{:#}", Settings::load().unwrap_err());
                assert!(err.contains(&format!("{key} (")), "{err}");
                assert!(err.contains(&format!("{key}_file (")), "{err}");
                // Where each came from, and never a value.
                assert!(err.contains(var) && err.contains(file_var), "{err}");
                assert!(!err.contains("set-directly") && !err.contains("from-file"), "{err}");
                Ok(())
            });
        }
        // In the file and in the environment: both named, with their sources.
        Jail::expect_with(|jail| {
            jail.clear_env();
            write_secret_files(jail)?;
            jail.create_file(
                "authd.toml",
                "[admin]
token_file = \"admin.secret\"\n",
            )?;
            jail.set_env("AUTHD_ADMIN__TOKEN", FILE_TOKEN);
            let err = format!("{:#}", Settings::load().unwrap_err());
            assert!(err.contains("admin.token (environment variable AUTHD_ADMIN__TOKEN)"), "{err}");
            assert!(err.contains("admin.token_file (TOML file"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn missing_or_empty_secret_files_are_refused_naming_the_key() {
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("AUTHD_ADMIN__TOKEN_FILE", "nowhere.secret");
            let err = format!("{:#}", Settings::load().unwrap_err());
            assert!(err.contains("admin.token_file") && err.contains("nowhere.secret"), "{err}");
            jail.create_file("empty.secret", "\n")?;
            jail.set_env("AUTHD_ADMIN__TOKEN_FILE", "empty.secret");
            let err = format!("{:#}", Settings::load().unwrap_err());
            assert!(err.contains("admin.token_file") && err.contains("empty"), "{err}");
            // The content is validated like a value set directly.
            jail.create_file("weak.secret", "short\n")?;
            jail.set_env("AUTHD_ADMIN__TOKEN_FILE", "weak.secret");
            let err = format!("{:#}", Settings::load().unwrap_err());
            assert!(err.contains("admin.token is too weak"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("redis://:secret@h"), "redis://:***@h");
        assert_eq!(redact_url("sqlite://data/a.db"), "sqlite://data/a.db");
        assert_eq!(redact_url("redis://h/0?password=x"), "redis://h/0?***");
    }

    // -- Issue 11, item 8: transport and defaults ------------------------------------

    /// Loads `toml` alone (no environment) and returns the error text, if any.
    fn load_error(toml: &str) -> Option<String> {
        let mut out = None;
        Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("authd.toml", toml)?;
            out = Settings::load().err().map(|e| format!("{e:#}"));
            Ok(())
        });
        out
    }

    #[test]
    fn https_with_an_insecure_cookie_is_refused() {
        let err = load_error("public_base_url = \"https://auth.example.com\"\n").expect("refused");
        assert!(err.contains("public_base_url") && err.contains("cookie.secure"), "{err}");
        let ok = "public_base_url = \"https://auth.example.com\"\n[cookie]\nsecure = true\n";
        assert_eq!(load_error(ok), None);
        // The embedded default (plain http, cookie not secure) still starts.
        assert_eq!(load_error(""), None);
        assert_eq!(load_error("public_base_url = \"http://10.0.0.5:8080\"\n"), None);
    }

    #[test]
    fn smtp_credentials_without_tls_are_refused() {
        let smtp = |tls: &str, creds: &str| {
            format!(
                "[mail]\ntransport = \"smtp\"\n[mail.smtp]\nhost = \"relay\"\ntls = \"{tls}\"\n{creds}"
            )
        };
        for creds in ["username = \"u\"\n", "username = \"u\"\npassword = \"p\"\n"] {
            let err = load_error(&smtp("none", creds)).expect("refused");
            assert!(err.contains("mail.smtp.tls") && err.contains("mail.smtp.username"), "{err}");
            assert!(!err.contains("= \"p\""), "{err}");
            assert_eq!(load_error(&smtp("starttls", creds)), None);
            assert_eq!(load_error(&smtp("tls", creds)), None);
        }
        // An unauthenticated local relay in plain text is fine.
        assert_eq!(load_error(&smtp("none", "")), None);
    }

    #[test]
    fn redis_tls_settings_are_checked() {
        let with_tls = "[redis]\nurl = \"rediss://127.0.0.1:6380\"\n";
        assert_eq!(load_error(with_tls).is_none(), cache_redis::TLS_COMPILED);
        if !cache_redis::TLS_COMPILED {
            let err = load_error(with_tls).unwrap_or_default();
            assert!(err.contains("redis.url") && err.contains("TLS"), "{err}");
        }
        let ca_plain = "[redis]\nurl = \"redis://h\"\ntls_ca_file = \"/etc/hostname\"\n";
        assert!(load_error(ca_plain).is_some_and(|e| e.contains("redis.tls_ca_file")));
        let ca_missing = "[redis]\nurl = \"rediss://h\"\ntls_ca_file = \"/nonexistent.pem\"\n";
        assert!(load_error(ca_missing).is_some_and(|e| e.contains("redis.tls_ca_file")));
        let ca_alone = "[redis]\ntls_ca_file = \"/etc/hostname\"\n";
        assert!(load_error(ca_alone).is_some_and(|e| e.contains("redis.tls_ca_file")));
    }

    #[test]
    fn weak_admin_tokens_are_refused() {
        for weak in [
            "short",
            "a".repeat(64).as_str(),
            "abababababababababababababababab",
            "0123456789abcdef0123456789abcdef",
            "abcdefghijklmnopqrstuvwxyz0123456789",
            "thequickbrownfoxjumpsoverthelazydog",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
            "Password1Password2Password3Password4",
            "zyxwvutsrqponmlkjihgfedcba9876543210",
            "11112222333344445555666677778888aaaa",
        ] {
            assert!(admin_token_weakness(weak).is_some(), "{weak:?} accepted");
            let toml = format!("[admin]\ntoken = \"{weak}\"\n");
            let err = load_error(&toml).expect("refused");
            assert!(err.contains("admin.token"), "{err}");
            assert!(!err.contains(weak), "the token is never echoed: {err}");
        }
        for strong in [
            // openssl rand -hex 16, -hex 32, -base64 32; a UUID v4.
            "3f9c2a7be1d04c58a6e2b71f0c9d8e45",
            "9b1e6a4fd2c87035e0af4b9c1d72e6835f08a3c94be17d260c5a8f3e91b4d7a2",
            "q3J9vX+2mB/Lk8ZtR1wYc0pH7sNf5aGdEiUo4TxWl6M=",
            "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
            // The tokens of the test suites.
            "test-admin-token-0123456789abcdef-XYZ",
            "ops-test-admin-token-0123456789abcdef",
        ] {
            assert_eq!(admin_token_weakness(strong), None, "{strong:?} refused");
        }
    }

    #[test]
    fn random_hex_tokens_pass_the_strength_check() {
        // 32 hex characters: the shortest generated token the docs suggest.
        for _ in 0..2000 {
            let mut bytes = [0u8; 16];
            cache_core::token::fill_random(&mut bytes).unwrap();
            let hex = hex::encode(bytes);
            assert_eq!(admin_token_weakness(&hex), None, "{hex}");
        }
    }

    /// Configuration loading from arbitrary TOML: real sections and keys (and some that
    /// are not), values of every TOML type. Loading answers settings or an error that
    /// names a key of the document, and never panics.
    mod properties {
        use std::collections::BTreeMap;

        use figment::providers::{Format as _, Toml};
        use proptest::prelude::*;

        use super::*;

        const SECTIONS: &[&str] = &[
            "server",
            "database",
            "memory",
            "redis",
            "cookie",
            "mail",
            "auth",
            "log",
            "janitor",
            "analytics",
            "warm_up",
            "admin",
            "security",
            "abuse",
            "mail.smtp",
            "bogus",
        ];

        /// Every field name of the settings (any section's: misplaced ones are errors too).
        const KEYS: &[&str] = &[
            "abuse",
            "active_sessions_cache_ms",
            "admin",
            "admin_per_address",
            "analytics",
            "argon2_iterations",
            "argon2_memory_kib",
            "argon2_parallelism",
            "auth",
            "batch_size",
            "block_refresh_ms",
            "block_secs",
            "breaker_failure_threshold",
            "breaker_probe_interval_ms",
            "command_timeout_ms",
            "connect_timeout_ms",
            "cookie",
            "csrf_require_origin",
            "csrf_trusted_origins",
            "database",
            "dir",
            "email_verification_ttl_secs",
            "enabled",
            "fence_ttl_secs",
            "fingerprint",
            "flush_interval_ms",
            "forgot_per_account",
            "forgot_per_address",
            "format",
            "from",
            "guessing_tokens",
            "guessing_window_secs",
            "hash_concurrency",
            "host",
            "interval_secs",
            "ipv6_network_multiplier",
            "ipv6_network_prefix",
            "ipv6_prefix",
            "janitor",
            "journal_poll_ms",
            "json_limit_bytes",
            "key_prefix",
            "listen",
            "log",
            "login_per_account",
            "login_per_address",
            "login_per_address_account",
            "mail",
            "max_batches_per_pass",
            "max_entries",
            "max_lockout_secs",
            "max_pending_users",
            "memory",
            "memory_max_keys",
            "migrate",
            "ops_listen",
            "password",
            "password_max_chars",
            "password_min_chars",
            "password_reset_ttl_secs",
            "pool_size",
            "port",
            "public_base_url",
            "query_timeout_ms",
            "redis",
            "register_per_address",
            "register_window_secs",
            "resend_per_account",
            "resend_per_address",
            "reset_per_address",
            "retention_days",
            "secure",
            "security",
            "server",
            "session_absolute_secs",
            "session_idle_secs",
            "session_update_age_secs",
            "sessions",
            "shutdown_timeout_secs",
            "smtp",
            "stuffing_accounts",
            "stuffing_window_secs",
            "timeout_ms",
            "timeout_secs",
            "tls",
            "tls_ca_file",
            "token",
            "transport",
            "trusted_proxies",
            "ttl_secs",
            "unverified_account_ttl_secs",
            "url",
            "user_agent_max_len",
            "username",
            "warm_up",
            "window_secs",
            "workers",
            "not_a_key",
        ];

        fn value() -> impl Strategy<Value = String> {
            let scalar = prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                (0i64..100_000).prop_map(|n| n.to_string()),
                any::<bool>().prop_map(|b| b.to_string()),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(|f| format!("{f:?}")),
                // TOML basic strings escape what JSON escapes (no raw DEL or controls).
                "\\PC{0,24}".prop_map(|s| serde_json::to_string(&s).unwrap()),
                prop_oneof![
                    Just("postgres://u:p@h/db"),
                    Just("sqlite::memory:"),
                    Just("redis://127.0.0.1:6379"),
                    Just("127.0.0.1:0"),
                    Just("off"),
                    Just("http://x"),
                    Just("https://a.example"),
                    Just("10.0.0.0/8"),
                    Just("smtp"),
                    Just("file"),
                    Just("json"),
                    Just("strict"),
                ]
                .prop_map(|s| format!("\"{s}\"")),
            ];
            scalar.prop_recursive(2, 8, 4, |inner| {
                proptest::collection::vec(inner, 0..4).prop_map(|v| format!("[{}]", v.join(", ")))
            })
        }

        fn document() -> impl Strategy<Value = BTreeMap<String, BTreeMap<String, String>>> {
            let table = proptest::collection::btree_map(
                proptest::sample::select(KEYS).prop_map(str::to_owned),
                value(),
                0..4,
            );
            proptest::collection::btree_map(
                proptest::sample::select(SECTIONS).prop_map(str::to_owned),
                table,
                0..4,
            )
        }

        fn toml_text(doc: &BTreeMap<String, BTreeMap<String, String>>) -> String {
            let mut out = String::new();
            for (section, table) in doc {
                out.push_str(&format!("[{section}]\n"));
                for (key, value) in table {
                    out.push_str(&format!("{key} = {value}\n"));
                }
            }
            out
        }

        proptest! {
            #[test]
            fn any_document_loads_or_names_a_key(doc in document()) {
                let text = toml_text(&doc);
                let figment = figment::Figment::new().merge(Toml::string(&text));
                // A panic fails the case: proptest catches it and shrinks the document.
                if let Err(e) = Settings::from_figment(figment) {
                    let message = format!("{e:#}");
                    let named = doc.iter().any(|(section, table)| {
                        let leaf = section.rsplit('.').next().unwrap_or(section);
                        message.contains(leaf) || table.keys().any(|k| message.contains(k.as_str()))
                    });
                    prop_assert!(named, "{} names no key of:\n{}", message, text);
                }
            }
        }
    }
}
