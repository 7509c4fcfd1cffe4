//! `[redis]`: the Redis tier.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::redact::{redact_url, redacted_optional_url_out};

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
