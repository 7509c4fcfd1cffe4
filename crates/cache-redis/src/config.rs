//! [`RedisConfig`]: where Redis is, how to trust it (TLS) and how patient to be with it.

use std::path::PathBuf;
use std::time::Duration;

use fred::prelude::{Builder, Config, ReconnectPolicy, TcpConfig};
use fred::socket2::TcpKeepalive;
use fred::types::config::UnresponsiveConfig;

use crate::error::RedisError;

/// How to reach Redis and how the tier behaves. Every field has a default that suits a
/// local Redis; production sets at least `url` and `key_prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// fred's own URL forms: `redis://h:p/db`, `rediss://…` (feature `tls`),
    /// `redis-cluster://h:p?node=h:p`, `redis-sentinel://h:p?sentinelServiceName=…&node=h:p`.
    /// A TLS scheme (`rediss…`, `valkeys…`) without the `tls` feature is refused.
    pub url: String,
    /// PEM file of the certificate authorities that sign the server's certificate, for a
    /// TLS URL (`None`: the system's roots). Set for a private CA; ignored without TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// Prefix of every key and of the invalidation channel (environment separation).
    /// Must not contain `{` or `}`, which would change the Cluster hash slot of keys.
    pub key_prefix: String,
    /// Deadline of every command; a command that misses it fails with `Timeout`.
    pub command_timeout: Duration,
    /// Deadline of a TCP connect (and TLS handshake) and of the commands that set up a
    /// connection.
    pub connect_timeout: Duration,
    /// Connections in the pool (each is pipelined).
    pub pool_size: usize,
    /// How many times fred may send one command (after a connection dropped under it).
    pub max_command_attempts: u32,
    /// How long a cached user profile lives.
    pub user_ttl: Duration,
    /// How long revocation fences and tombstones live. Must be at least the absolute
    /// session lifetime, or a snapshot could revive a session after its fence expired.
    pub fence_ttl: Duration,
    /// How far back the revocation journal is replayed after every (re)connect (by id,
    /// in pipelines of 500). At least the absolute session lifetime: a revocation older
    /// than any session it covers can no longer matter, a younger one can.
    pub replay_window: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            tls_ca_file: None,
            key_prefix: "ta:".to_owned(),
            command_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(1),
            pool_size: 4,
            max_command_attempts: 2,
            user_ttl: Duration::from_secs(7 * 24 * 3600),
            fence_ttl: Duration::from_secs(30 * 24 * 3600),
            replay_window: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Whether a Redis URL's scheme asks for TLS (`rediss`, `rediss-cluster`,
/// `rediss-sentinel`, and fred's `valkeys` spellings).
pub fn url_uses_tls(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme).to_ascii_lowercase();
    scheme.starts_with("rediss") || scheme.starts_with("valkeys")
}

/// Whether this build can speak TLS to Redis (cargo feature `tls`, on by default).
pub const TLS_COMPILED: bool = cfg!(feature = "tls");

/// Longest a connection may leave a command unanswered before fred closes it and
/// reconnects (which also triggers a journal replay): a paused Redis is noticed in
/// seconds, and replies that arrive after the caller gave up are not waited for forever.
const UNRESPONSIVE_AFTER: Duration = Duration::from_secs(2);

impl RedisConfig {
    /// Checks the settings that would otherwise fail late or silently.
    pub(crate) fn validate(&self) -> Result<(), RedisError> {
        if self.key_prefix.contains(['{', '}']) {
            return Err(RedisError::Config("key_prefix must not contain '{' or '}'"));
        }
        if self.pool_size == 0 {
            return Err(RedisError::Config("pool_size must be at least 1"));
        }
        if self.command_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(RedisError::Config("timeouts must be positive"));
        }
        // fred without a TLS feature parses `rediss://`, logs a warning and connects in
        // plain text: credentials and session data would cross the network in clear.
        if self.uses_tls() && !TLS_COMPILED {
            return Err(RedisError::Config(
                "url asks for TLS (rediss://) but this build has no TLS support \
                 (cache-redis feature `tls`)",
            ));
        }
        if self.tls_ca_file.is_some() && !self.uses_tls() {
            return Err(RedisError::Config("tls_ca_file is set but url is not a rediss:// URL"));
        }
        Ok(())
    }

    /// Whether the URL's scheme asks for TLS (`rediss`, `rediss-cluster`,
    /// `rediss-sentinel`, and fred's `valkeys` spellings).
    pub fn uses_tls(&self) -> bool {
        url_uses_tls(&self.url)
    }

    /// A fred builder with our timeouts, retry bound, reconnect policy and TCP settings.
    /// fred's defaults have no command timeout and retry commands three times after a
    /// reconnect; both are set explicitly here.
    pub(crate) fn builder(&self) -> Result<Builder, RedisError> {
        self.validate()?;
        let mut fred_config = Config::from_url(&self.url)?;
        #[cfg(feature = "tls")]
        if let Some(ca_file) = &self.tls_ca_file {
            // Replaces the connector fred built from the system roots.
            fred_config.tls = Some(tls::connector_trusting(ca_file)?.into());
        }
        // Start without Redis: the first connection is retried in the background like any
        // later reconnect, and callers get errors (then the breaker) meanwhile.
        fred_config.fail_fast = false;
        let mut builder = Builder::from_config(fred_config);
        let connect_timeout = self.connect_timeout;
        let attempts = self.max_command_attempts.max(1);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = connect_timeout;
                c.internal_command_timeout = connect_timeout;
                c.max_command_attempts = attempts;
                c.tcp = TcpConfig {
                    nodelay: Some(true),
                    keepalive: Some(
                        TcpKeepalive::new()
                            .with_time(Duration::from_secs(30))
                            .with_interval(Duration::from_secs(10)),
                    ),
                    ..TcpConfig::default()
                };
                c.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(UNRESPONSIVE_AFTER),
                    interval: Duration::from_millis(500),
                };
            })
            .with_performance_config(|p| {
                p.default_command_timeout = self.command_timeout;
                // Event and pub/sub channels: a lagging receiver loses messages, which the
                // listener treats as a drop (flush), so make that rare.
                p.broadcast_channel_capacity = 1024;
            })
            // Unlimited attempts, 20 ms doubling to at most 1 s: a Redis that returns is
            // used again within about a second.
            .set_policy(ReconnectPolicy::new_exponential(0, 20, 1000, 2));
        Ok(builder)
    }
}

#[cfg(feature = "tls")]
mod tls {
    use std::path::Path;

    use fred::prelude::TlsConnector;
    use fred::rustls::pki_types::CertificateDer;
    use fred::rustls::pki_types::pem::PemObject as _;
    use fred::rustls::{ClientConfig, RootCertStore};

    use crate::error::RedisError;

    /// A rustls connector that trusts exactly the certificates in the PEM file `ca_file`.
    pub(super) fn connector_trusting(ca_file: &Path) -> Result<TlsConnector, RedisError> {
        let failed =
            |what: String| RedisError::Tls(format!("tls_ca_file {}: {what}", ca_file.display()));
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca_file).map_err(|e| failed(e.to_string()))?;
        for cert in certs {
            let cert = cert.map_err(|e| failed(e.to_string()))?;
            roots.add(cert).map_err(|e| failed(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(failed("holds no PEM certificate".to_owned()));
        }
        Ok(ClientConfig::builder().with_root_certificates(roots).with_no_client_auth().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> RedisConfig {
        RedisConfig { url: url.to_owned(), ..RedisConfig::default() }
    }

    #[test]
    fn tls_schemes_are_recognised() {
        for url in ["rediss://h:1", "REDISS://h", "rediss-cluster://h", "valkeys://h"] {
            assert!(with_url(url).uses_tls(), "{url}");
        }
        for url in ["redis://h:1", "redis-cluster://h", "redis-sentinel://h", "h:6379"] {
            assert!(!with_url(url).uses_tls(), "{url}");
        }
    }

    #[test]
    fn a_tls_url_needs_tls_compiled_in() {
        let result = with_url("rediss://127.0.0.1:6380").validate();
        assert_eq!(result.is_ok(), TLS_COMPILED, "{result:?}");
        if let Err(e) = result {
            assert!(e.to_string().contains("rediss://"), "{e}");
        }
    }

    #[test]
    fn a_ca_file_needs_a_tls_url() {
        let config = RedisConfig { tls_ca_file: Some("/ca.pem".into()), ..with_url("redis://h") };
        assert!(config.validate().is_err());
    }

    #[cfg(feature = "tls")]
    #[test]
    fn a_missing_or_empty_ca_file_is_a_config_error() {
        let missing = RedisConfig {
            tls_ca_file: Some("/nonexistent/ca.pem".into()),
            ..with_url("rediss://127.0.0.1:6380")
        };
        let refusal = |config: &RedisConfig| match config.builder() {
            Ok(_) => panic!("{config:?} accepted"),
            Err(e) => e.to_string(),
        };
        let err = refusal(&missing);
        assert!(err.contains("tls_ca_file") && err.contains("/nonexistent/ca.pem"), "{err}");
        let empty = std::env::temp_dir().join(format!("empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let config = RedisConfig { tls_ca_file: Some(empty.clone()), ..missing };
        let err = refusal(&config);
        let _ = std::fs::remove_file(&empty);
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
