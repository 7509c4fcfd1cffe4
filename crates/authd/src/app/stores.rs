//! Composes the tiers chosen by the settings into the stores the flows use, and the
//! probes `GET /health/ready` reports.
//!
//! | memory | Redis | sessions / users / verifications |
//! |---|---|---|
//! | on  | on  | `Tiered(memory, Tiered(Breaker(redis), sql))` |
//! | on  | off | `Tiered(memory, sql)` |
//! | off | on  | `Tiered(Breaker(redis), sql)` |
//! | off | off | `sql` |
//!
//! Accounts and credentials always come from SQL alone. With Redis, the SQL revocation
//! journal is replayed into Redis after every reconnect, and an invalidation listener
//! applies other instances' revocations to this instance's memory tier (the fast path).
//! With any cache tier, a [`RevocationFollower`] reads every new row of the SQL journal
//! (PostgreSQL `LISTEN/NOTIFY` plus a poll, SQLite a poll) and applies it to the memory
//! tier and to Redis: the path that holds whatever Redis does.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use auth::Stores;
use cache_core::{
    Breaker, BreakerConfig, BreakerHandle, BreakerState, RevocationJournal, RevocationSink,
    SessionLookup, SessionStore, SharedClock, Tiered, UserCache, VerificationStore,
};
use cache_memory::{MemoryConfig, MemoryStore};
use cache_redis::{InvalidationListener, RedisConfig, RedisStore};
use cache_sql::{FollowConfig, RevocationFollower, SqlConfig, SqlStore};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use secrecy::ExposeSecret as _;

use crate::health::{Probe, Readiness, TierReport};
use crate::settings::{Settings, redact_url};

/// Everything built from the settings' store section.
pub struct Backends {
    /// What the flows use.
    pub stores: Stores,
    /// Probes of the configured tiers.
    pub readiness: Readiness,
    /// The SQL store (also reachable for tooling).
    pub sql: SqlStore,
    /// The memory tier, when on.
    pub memory: Option<MemoryStore>,
    /// The Redis tier, when on.
    pub redis: Option<RedisStore>,
    /// The Redis tier's circuit breaker, when Redis is on.
    pub breaker: Option<BreakerHandle>,
    /// Applies other instances' revocations to the memory tier; stops when dropped.
    pub listener: Option<InvalidationListener>,
    /// Probes Redis through its open breaker; stops when dropped.
    pub prober: Option<BreakerProber>,
    /// Applies every revocation in the SQL journal to the cache tiers; stops when
    /// dropped (the last clone). Present when a cache tier is on.
    pub follower: Option<Arc<RevocationFollower>>,
}

impl Backends {
    /// The tiers, as the operations side takes them.
    pub fn tiers(&self) -> crate::ops::Tiers<'_> {
        crate::ops::Tiers {
            sql: &self.sql,
            memory: self.memory.as_ref(),
            redis: self.redis.as_ref(),
        }
    }
}

/// A background task that, while the Redis breaker is open, sends it one probe per
/// interval. Without it the breaker closes only when a request misses the memory tier,
/// so under an all-hits load the tier (and `/health/ready`) would stay "down" long after
/// Redis returned. Aborted on drop.
#[derive(Debug)]
pub struct BreakerProber(tokio::task::JoinHandle<()>);

impl BreakerProber {
    fn spawn(breaker: Breaker<RedisStore>, interval: Duration) -> Self {
        // A key no session has: a probe reads nothing and writes nothing.
        let probe = cache_core::SessionKey {
            user: cache_core::UserId::new(1).unwrap_or_else(|| unreachable!("1 is positive")),
            hash: cache_core::TokenHash::from_bytes([0; 32]),
        };
        Self(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if breaker.state() == BreakerState::Open {
                    // The breaker admits it only when a probe is due, and closes on success.
                    let _ = SessionStore::get(&breaker, &probe).await;
                }
            }
        }))
    }
}

impl Drop for BreakerProber {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("sql", &self.sql)
            .field("memory", &self.memory.is_some())
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

/// The SQL store from the settings: connected, and migrated when `database.migrate`.
pub async fn connect_sql(settings: &Settings, clock: SharedClock) -> anyhow::Result<SqlStore> {
    connect_sql_with(settings, clock, settings.database.migrate).await
}

/// The SQL store from the settings: connected, and migrated when `migrate`.
pub async fn connect_sql_with(
    settings: &Settings,
    clock: SharedClock,
    migrate: bool,
) -> anyhow::Result<SqlStore> {
    let db = &settings.database;
    let url = db.url.expose_secret();
    let config = SqlConfig {
        pool_size: db.pool_size,
        connect_timeout: Duration::from_millis(db.connect_timeout_ms),
        query_timeout: Duration::from_millis(db.query_timeout_ms),
    };
    let store = SqlStore::connect(url, config, clock)
        .await
        .with_context(|| format!("cannot connect to the database at {}", redact_url(url)))?;
    if migrate {
        store.migrate().await.context("database migrations failed")?;
    }
    Ok(store)
}

/// Builds every configured tier around `sql` and composes them.
pub async fn compose(
    settings: &Settings,
    clock: SharedClock,
    sql: SqlStore,
) -> anyhow::Result<Backends> {
    let memory = settings.memory.enabled.then(|| {
        let m = &settings.memory;
        MemoryStore::new(
            MemoryConfig {
                max_entries: m.max_entries,
                ttl: Duration::from_secs(m.ttl_secs),
                fence_ttl: Duration::from_secs(m.fence_ttl_secs),
            },
            clock.clone(),
        )
    });

    let mut redis = None;
    let mut listener = None;
    if let Some(url) = &settings.redis.url {
        let config = redis_config(settings, url.expose_secret());
        let store = RedisStore::connect(config.clone(), clock.clone())
            .await
            .with_context(|| format!("invalid Redis configuration for {}", redact_url(&config.url)))
            // An unreachable Redis does not stop the start-up; a client that cannot
            // be built from the settings does.
            .context(crate::app::failure::StartupFailure::Config)?;
        // SQL is the revocation authority: a Redis that lost deletes is not trusted until
        // the recent revocations have been replayed into it.
        store.set_journal(Arc::new(sql.clone()) as Arc<dyn RevocationJournal>);
        if let Some(memory) = &memory {
            listener = Some(
                InvalidationListener::spawn(&config, Arc::new(memory.clone()))
                    .await
                    .context("cannot start the Redis invalidation listener")?,
            );
        }
        if !store.is_trusted() {
            tracing::warn!(
                url = %redact_url(&config.url),
                "Redis is not reachable yet; serving from the other tiers until it is"
            );
        }
        redis = Some(store);
    }

    let breaker_config = BreakerConfig {
        failure_threshold: settings.redis.breaker_failure_threshold,
        probe_interval: Duration::from_millis(settings.redis.breaker_probe_interval_ms),
    };
    let accounts = Arc::new(sql.clone());
    let probe_every = breaker_config.probe_interval;
    let (stores, breaker, prober) = match (memory.clone(), redis.clone()) {
        (Some(memory), Some(redis)) => {
            let redis = Breaker::new(redis, cache_redis::TIER, breaker_config);
            let (handle, prober) =
                (redis.handle(), BreakerProber::spawn(redis.clone(), probe_every));
            let stores = all_of(Tiered::new(memory, Tiered::new(redis, sql.clone())), accounts);
            (stores, Some(handle), Some(prober))
        }
        (Some(memory), None) => (all_of(Tiered::new(memory, sql.clone()), accounts), None, None),
        (None, Some(redis)) => {
            let redis = Breaker::new(redis, cache_redis::TIER, breaker_config);
            let (handle, prober) =
                (redis.handle(), BreakerProber::spawn(redis.clone(), probe_every));
            (all_of(Tiered::new(redis, sql.clone()), accounts), Some(handle), Some(prober))
        }
        (None, None) => (all_of(sql.clone(), accounts), None, None),
    };

    // SQL is the authority: every journal row reaches this instance's caches whatever
    // Redis does (frozen, dead, or a revoking instance that died before writing to it).
    // Started before cache warming (`Ops::start`) reads SQL, so nothing revoked after
    // that read is missed. The raw Redis store, not the breaker: revocations always go
    // through, and a failure makes the store distrust Redis and replay the journal.
    let mut sinks: Vec<Arc<dyn RevocationSink>> = Vec::new();
    if let Some(memory) = &memory {
        sinks.push(Arc::new(memory.clone()));
    }
    if let Some(redis) = &redis {
        sinks.push(Arc::new(redis.clone()));
    }
    let follower = if sinks.is_empty() {
        None
    } else {
        let config = FollowConfig {
            poll_interval: Duration::from_millis(settings.database.journal_poll_ms),
            ..FollowConfig::default()
        };
        Some(Arc::new(RevocationFollower::spawn(sql.clone(), config, sinks).await))
    };

    let mut readiness = Readiness::new().with(Arc::new(SqlProbe(sql.clone())));
    if let (Some(store), Some(handle)) = (&redis, &breaker) {
        readiness = readiness.with(Arc::new(RedisProbe(store.clone(), handle.clone())));
    }
    if let Some(memory) = &memory {
        readiness = readiness.with(Arc::new(MemoryProbe(memory.clone())));
    }
    tracing::info!(
        sql = sql.backend(),
        memory = memory.is_some(),
        redis = redis.is_some(),
        "stores composed"
    );
    Ok(Backends { stores, readiness, sql, memory, redis, breaker, listener, prober, follower })
}

/// The Redis tier's configuration: the settings over the crate's defaults. Revocation
/// fences must outlive any session they could hide, and a reconnect must replay every
/// revocation that could still matter, so both cover at least the absolute session
/// lifetime.
fn redis_config(settings: &Settings, url: &str) -> RedisConfig {
    let r = &settings.redis;
    let defaults = RedisConfig::default();
    let absolute = Duration::from_secs(settings.auth.session_absolute_secs);
    RedisConfig {
        url: url.to_owned(),
        tls_ca_file: r.tls_ca_file.clone(),
        key_prefix: r.key_prefix.clone(),
        command_timeout: Duration::from_millis(r.command_timeout_ms),
        connect_timeout: Duration::from_millis(r.connect_timeout_ms),
        pool_size: r.pool_size,
        fence_ttl: defaults.fence_ttl.max(absolute),
        replay_window: defaults.replay_window.max(absolute),
        ..defaults
    }
}

/// One composed store serving sessions, users and verifications.
fn all_of<T>(store: T, accounts: Arc<SqlStore>) -> Stores
where
    T: SessionLookup + UserCache + VerificationStore + 'static,
{
    let store = Arc::new(store);
    Stores { sessions: store.clone(), users: store.clone(), verifications: store, accounts }
}

/// A short, safe reason for a failed probe: the error's kind, never its text (which can
/// name hosts or carry driver details).
fn reason(e: &cache_core::StoreError) -> &'static str {
    e.kind()
}

struct SqlProbe(SqlStore);

impl Probe for SqlProbe {
    fn name(&self) -> &'static str {
        "sql"
    }
    fn required(&self) -> bool {
        true
    }
    fn check(&self) -> BoxFuture<'_, TierReport> {
        async move {
            let mut report = match self.0.ping().await {
                Ok(rtt) => {
                    let mut r = TierReport::up();
                    r.latency_ms = Some(rtt.as_secs_f64() * 1000.0);
                    r
                }
                Err(e) => TierReport::down(reason(&e)),
            };
            let pool = self.0.pool_state();
            report
                .detail("backend", self.0.backend())
                .detail("pool_connections", pool.connections)
                .detail("pool_idle", pool.idle);
            report
        }
        .boxed()
    }
}

struct RedisProbe(RedisStore, BreakerHandle);

impl Probe for RedisProbe {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn required(&self) -> bool {
        false
    }
    fn check(&self) -> BoxFuture<'_, TierReport> {
        async move {
            let breaker = self.1.state();
            let mut report = match self.0.ping().await {
                Ok(rtt) => {
                    let mut r = TierReport::up();
                    r.latency_ms = Some(rtt.as_secs_f64() * 1000.0);
                    if let Ok(info) = self.0.info().await {
                        r.detail("used_memory", info.used_memory)
                            .detail("connected_clients", info.connected_clients);
                    }
                    r
                }
                Err(e) => TierReport::down(reason(&e)),
            };
            // Requests skip Redis while its breaker is open or before the journal replay,
            // whatever a PING says: report the tier as they see it.
            if breaker == BreakerState::Open || !self.0.is_trusted() {
                report.status = "down".to_owned();
            }
            report.detail("breaker", breaker.as_str()).detail("trusted", self.0.is_trusted());
            report
        }
        .boxed()
    }
}

struct MemoryProbe(MemoryStore);

impl Probe for MemoryProbe {
    fn name(&self) -> &'static str {
        "memory"
    }
    fn required(&self) -> bool {
        false
    }
    fn check(&self) -> BoxFuture<'_, TierReport> {
        async move {
            let mut report = TierReport::up();
            report
                .detail("entries", self.0.entry_count())
                .detail("approx_bytes", self.0.weighted_size());
            report.latency_ms = Some(0.0);
            report
        }
        .boxed()
    }
}
