//! The abuse policy (rate limits and IP blocks, `auth::Abuse`) composed from the stores
//! at start-up; the HTTP guard in front of the routes is `crate::security`'s.

use std::sync::Arc;

use auth::Abuse;
use cache_core::{BlockList, FallbackLimiter, RateLimitStore, SharedClock};
use cache_memory::MemoryRateLimiter;
use cache_redis::RedisRateLimiter;

use crate::app::stores::Backends;
use crate::settings::Settings;

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
