//! The one typed configuration of `authd`, layered with figment:
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
//! Each section lives in its own file here (`server.rs`, `database.rs`, `memory.rs`,
//! `redis.rs`, `cookie.rs`, `mail.rs`, `auth.rs`, `log.rs`, `admin.rs`, [`ops`],
//! [`security`], [`events`]); this file holds the root [`Settings`], the loading and
//! the validation across sections. The features import their settings from here, never the other way
//! round, so that no import circle runs through the configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use figment::providers::{Env, Format as _, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

mod admin;
mod auth;
mod cookie;
mod database;
pub mod events;
mod log;
mod mail;
mod memory;
pub mod ops;
mod redact;
mod redis;
pub mod security;
mod server;
#[cfg(test)]
mod tests;

pub use admin::{ADMIN_TOKEN_MIN_BITS, ADMIN_TOKEN_MIN_CHARS, AdminSettings, admin_token_weakness};
pub use auth::AuthSettings;
pub use cookie::CookieSettings;
pub use database::DatabaseSettings;
pub use log::{AccessLevel, LogFormat, LogSettings};
pub use mail::{MailSettings, MailTransport, SmtpSettings, SmtpTlsMode};
pub use memory::MemorySettings;
pub use redact::{REDACTED, redact_url};
pub use redis::RedisSettings;
pub use server::ServerSettings;

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
    /// The security event log and its alerts.
    pub events: events::EventsSettings,
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
            events: events::EventsSettings::default(),
        }
    }
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
        self.events.validate()?;
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
        let min = ::auth::Argon2Params::MINIMUM;
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
    pub fn auth_config(&self) -> ::auth::AuthConfig {
        let a = &self.auth;
        let secs = |s: u64| chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX));
        let defaults = ::auth::AuthConfig::default();
        let password = ::auth::PasswordPolicy {
            min_chars: a.password_min_chars,
            max_chars: a.password_max_chars,
            ..defaults.password
        };
        let hash_concurrency =
            if a.hash_concurrency == 0 { defaults.hash_concurrency } else { a.hash_concurrency };
        ::auth::AuthConfig {
            session_idle: secs(a.session_idle_secs),
            session_update_age: secs(a.session_update_age_secs),
            session_absolute: secs(a.session_absolute_secs),
            email_verification_ttl: secs(a.email_verification_ttl_secs),
            password_reset_ttl: secs(a.password_reset_ttl_secs),
            unverified_account_ttl: secs(a.unverified_account_ttl_secs),
            password,
            argon2: ::auth::Argon2Params {
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
