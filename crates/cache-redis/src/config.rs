//! [`RedisConfig`]: where Redis is and how patient to be with it.

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
    pub url: String,
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
        Ok(())
    }

    /// A fred builder with our timeouts, retry bound, reconnect policy and TCP settings.
    /// fred's defaults have no command timeout and retry commands three times after a
    /// reconnect; both are set explicitly here.
    pub(crate) fn builder(&self) -> Result<Builder, RedisError> {
        self.validate()?;
        let mut fred_config = Config::from_url(&self.url)?;
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
