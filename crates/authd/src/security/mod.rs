//! Abuse protection at the HTTP edge (see `docs/security.md`):
//!
//! - [`guard`] (from `auth-actix`): the middleware in front of every route: client
//!   address (trusted proxies), IP blocks, CSRF, per-address rate limits; its
//!   [`GuardConfig`] from the settings by [`guard_config`];
//! - [`admin`]: the admin API's own bearer credential ([`AdminAuth`]);
//! - [`build_abuse`]: the policy's limiter and block list composed from the stores.
//!
//! Its settings (`[security]`, `[abuse]`) live in [`crate::settings::security`], below
//! this module: features import the settings, never the other way round.

pub mod admin;
pub use auth_actix::{client, csrf};

use std::sync::Arc;

use auth::Abuse;
use cache_core::{BlockList, FallbackLimiter, RateLimitStore, SharedClock};
use cache_memory::MemoryRateLimiter;
use cache_redis::RedisRateLimiter;

pub use crate::settings::security::{AbuseSettings, SecuritySettings};
pub use admin::{AdminAuth, AdminGuard};
pub use auth_actix::guard::{Guard, GuardConfig, Security, guard};
pub use client::ClientAddr;

use crate::settings::Settings;
use crate::stores::Backends;

/// The abuse policy over the composed stores: rate limits in Redis (shared by the
/// instances) with a per-instance fallback behind the Redis breaker settings, or in
/// memory alone without Redis; blocks in SQL.
pub fn build_abuse(
    settings: &Settings,
    backends: &Backends,
    clock: SharedClock,
) -> anyhow::Result<Abuse> {
    let memory = MemoryRateLimiter::new(settings.abuse.memory_max_keys);
    let limiter: Arc<dyn RateLimitStore> = match &backends.redis {
        Some(redis) => {
            let breaker = cache_core::BreakerConfig {
                failure_threshold: settings.redis.breaker_failure_threshold,
                probe_interval: std::time::Duration::from_millis(
                    settings.redis.breaker_probe_interval_ms,
                ),
            };
            Arc::new(FallbackLimiter::new(RedisRateLimiter::new(redis), memory, breaker))
        }
        None => Arc::new(memory),
    };
    let blocks: Arc<dyn BlockList> = Arc::new(backends.sql.clone());
    Ok(Abuse::new(settings.abuse.config(), limiter, blocks, clock)?)
}

/// The guard's configuration from `[security]` and `[abuse]`.
pub fn guard_config(settings: &Settings) -> GuardConfig {
    let s = &settings.security;
    GuardConfig {
        limits: settings.abuse.enabled,
        trusted_proxies: s.trusted_proxies.clone(),
        csrf: csrf::CsrfPolicy::new(
            settings.public_base_url(),
            &s.csrf_trusted_origins,
            s.csrf_require_origin,
        ),
    }
}
