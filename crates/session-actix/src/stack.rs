//! [`connect`]: the tiered stack from URLs, as one [`TieredSessionStore`].
//!
//! | memory | Redis | composition |
//! |---|---|---|
//! | on  | on  | `TieredStates(memory, TieredStates(Breaker(redis), sql))` + listener |
//! | on  | off | `TieredStates(memory, sql)` |
//! | off | on  | `TieredStates(Breaker(redis), sql)` |
//! | off | off | `sql` |
//!
//! SQL is the authority: every write reaches it first, so a state whose write was
//! acknowledged survives the loss of Redis; while Redis is down its breaker opens and
//! requests are served from memory and SQL. With memory and Redis, an invalidation
//! listener drops from this instance's memory tier the states changed on other
//! instances (and flushes it whenever the channel was lost). Without Redis, a memory
//! tier is only coherent on a single instance: keep its TTL short otherwise.

use std::sync::Arc;
use std::time::Duration;

use cache_core::{
    Breaker, BreakerConfig, SessionStateStore, SharedClock, StoreError, TieredStates,
};
use cache_memory::{MemoryStateConfig, MemoryStateStore};
use cache_redis::{InvalidationListener, RedisConfig, RedisStore};
use cache_sql::{SqlConfig, SqlStore};

use crate::store::TieredSessionStore;

/// Where the tiers are and how they behave.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// The SQL authority: `postgres://...` or `sqlite://path.db`.
    pub database_url: String,
    /// SQL pool and timeouts.
    pub sql: SqlConfig,
    /// Apply the embedded migrations (table `session_states` among them) at start-up.
    pub migrate: bool,
    /// The Redis tier (`redis://`, `rediss://`, `redis-cluster://`, `redis-sentinel://`
    /// as `cache-redis` reads them); `None` for none. `url` empty means none too.
    pub redis: Option<RedisConfig>,
    /// The memory tier; `None` for none.
    pub memory: Option<MemoryStateConfig>,
    /// The breaker around Redis.
    pub breaker: BreakerConfig,
}

impl StackConfig {
    /// SQL at `database_url` (migrated), no Redis, no memory tier.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            sql: SqlConfig::default(),
            migrate: true,
            redis: None,
            memory: None,
            breaker: BreakerConfig::default(),
        }
    }

    /// Adds a Redis tier at `url` with `cache-redis`'s defaults under `key_prefix`.
    pub fn with_redis(mut self, url: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        self.redis = Some(RedisConfig {
            url: url.into(),
            key_prefix: key_prefix.into(),
            ..RedisConfig::default()
        });
        self
    }

    /// Adds a memory tier of `max_entries` states kept at most `ttl` each.
    pub fn with_memory(mut self, max_entries: u64, ttl: Duration) -> Self {
        self.memory = Some(MemoryStateConfig { max_entries, ttl });
        self
    }
}

/// Why the stack could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The SQL store could not be reached or migrated.
    #[error("SQL tier: {0}")]
    Sql(#[source] StoreError),
    /// The Redis settings cannot work (an unreachable Redis is not an error: the stack
    /// serves from the other tiers until it is back).
    #[error("Redis tier: {0}")]
    Redis(#[source] StoreError),
}

/// Connects the tiers of `config` and composes them (table above) into a
/// [`TieredSessionStore`], taking every expiry decision from `clock`.
pub async fn connect(
    config: StackConfig,
    clock: SharedClock,
) -> Result<TieredSessionStore, StackError> {
    let sql = SqlStore::connect(&config.database_url, config.sql.clone(), clock.clone())
        .await
        .map_err(StackError::Sql)?;
    if config.migrate {
        sql.migrate().await.map_err(StackError::Sql)?;
    }
    let memory = config.memory.map(|m| MemoryStateStore::new(m, clock.clone()));
    let redis_config = config.redis.filter(|r| !r.url.is_empty());
    let mut listener = None;
    let redis = match &redis_config {
        None => None,
        Some(redis_config) => {
            let redis = RedisStore::connect(redis_config.clone(), clock.clone())
                .await
                .map_err(StackError::Redis)?;
            if let Some(memory) = &memory {
                listener = Some(
                    InvalidationListener::spawn_for_states(redis_config, Arc::new(memory.clone()))
                        .await
                        .map_err(StackError::Redis)?,
                );
            }
            Some(Breaker::new(redis, cache_redis::TIER, config.breaker))
        }
    };
    let store: Arc<dyn SessionStateStore> = match (memory, redis) {
        (Some(m), Some(r)) => Arc::new(TieredStates::new(m, TieredStates::new(r, sql))),
        (Some(m), None) => Arc::new(TieredStates::new(m, sql)),
        (None, Some(r)) => Arc::new(TieredStates::new(r, sql)),
        (None, None) => Arc::new(sql),
    };
    tracing::info!(
        tier = store.state_tier(),
        redis = redis_config.is_some(),
        "session state stack composed"
    );
    Ok(TieredSessionStore::with_keep_alive(store, Arc::new(listener)).with_clock(clock))
}
