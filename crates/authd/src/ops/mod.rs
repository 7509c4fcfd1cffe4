//! Operations around the request path: the HTTP metrics middleware, usage analytics,
//! the janitor and start-up cache warming (see `docs/operations.md`).
//!
//! [`Ops`] bundles them as the application runs them: built once from the settings and
//! the composed tiers, it warms the caches, starts the background tasks (janitor,
//! analytics flush) and stops them when its last clone is dropped.

pub mod analytics;
pub mod hll;
pub mod janitor;
pub mod warm;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cache_core::SharedClock;
use cache_memory::MemoryStore;
use cache_redis::RedisStore;
use cache_sql::SqlStore;
use tokio::task::JoinHandle;

pub use crate::settings::ops::{AnalyticsSettings, JanitorSettings, WarmUpSettings};
pub use analytics::{Analytics, AnalyticsReport, DayReport};
pub use janitor::{Janitor, JanitorReport, JanitorTask};
pub use warm::{WarmReport, warm_up};

use crate::settings::Settings;

/// The composed tiers the operations work on (the start-up composes them).
#[derive(Clone, Copy)]
pub struct Tiers<'a> {
    /// The SQL store, the authority.
    pub sql: &'a SqlStore,
    /// The memory tier, when on.
    pub memory: Option<&'a MemoryStore>,
    /// The Redis tier, when on.
    pub redis: Option<&'a RedisStore>,
}

/// How long a `/metrics` scrape waits for the figures it refreshes (active sessions from
/// SQL, today's active users from Redis) before it renders the previous values.
const SCRAPE_REFRESH_TIMEOUT: Duration = Duration::from_millis(500);

struct Inner {
    analytics: Analytics,
    janitor: Arc<Janitor>,
    memory: Option<MemoryStore>,
    memory_entries: metrics::Gauge,
    memory_weighted_size: metrics::Gauge,
    warmed: Option<WarmReport>,
    _janitor_task: Option<JanitorTask>,
    flush_task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.flush_task.get_mut().unwrap_or_else(PoisonError::into_inner).take()
        {
            task.abort();
        }
    }
}

/// The operations side of a running service. Cheap to clone; the background tasks stop
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Ops {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("analytics", &self.inner.analytics)
            .field("janitor", &self.inner.janitor)
            .field("warmed", &self.inner.warmed)
            .finish_non_exhaustive()
    }
}

impl Ops {
    /// Warms the caches (when `warm_up.sessions > 0`), then starts the janitor (when
    /// `janitor.enabled`) and, with Redis, the analytics flush.
    pub async fn start(settings: &Settings, clock: SharedClock, tiers: Tiers<'_>) -> Self {
        let analytics = Analytics::new(
            settings.analytics.clone(),
            clock.clone(),
            tiers.sql.clone(),
            tiers.redis.cloned(),
        );

        let warmed = if settings.warm_up.sessions > 0 {
            let limit = settings.warm_up.sessions;
            let timeout = Duration::from_millis(settings.warm_up.timeout_ms);
            let warming = warm_up(tiers.sql, tiers.memory, tiers.redis, limit);
            match tokio::time::timeout(timeout, warming).await {
                Ok(Ok(report)) => {
                    tracing::info!(
                        sessions = report.sessions,
                        memory = report.memory,
                        redis = report.redis,
                        "caches warmed"
                    );
                    Some(report)
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cache warm-up failed; starting cold");
                    None
                }
                Err(_) => {
                    tracing::warn!(?timeout, "cache warm-up timed out; starting cold");
                    None
                }
            }
        } else {
            None
        };

        let janitor = Arc::new(janitor_for(settings, tiers, Some(analytics.clone()), clock));
        let janitor_task = settings.janitor.enabled.then(|| janitor.clone().spawn());

        let flush_task = tiers.redis.is_some().then(|| {
            let analytics = analytics.clone();
            let every = Duration::from_millis(settings.analytics.flush_interval_ms);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = analytics.flush().await {
                        tracing::debug!(error = %e, "analytics flush failed; kept for the next one");
                    }
                }
            })
        });

        Self {
            inner: Arc::new(Inner {
                analytics,
                janitor,
                memory: tiers.memory.cloned(),
                memory_entries: metrics::gauge!("memory_tier_entries"),
                memory_weighted_size: metrics::gauge!("memory_tier_weighted_size"),
                warmed,
                _janitor_task: janitor_task,
                flush_task: Mutex::new(flush_task),
            }),
        }
    }

    /// The usage analytics.
    pub fn analytics(&self) -> &Analytics {
        &self.inner.analytics
    }

    /// The janitor (also running in the background when `janitor.enabled`).
    pub fn janitor(&self) -> &Janitor {
        &self.inner.janitor
    }

    /// What the start-up warm-up loaded, if it ran and succeeded.
    pub fn warmed(&self) -> Option<WarmReport> {
        self.inner.warmed
    }

    /// Updates the gauges that are read rather than counted, right before `/metrics`
    /// renders: memory-tier entries and weighted size, active sessions and today's
    /// active users. Each source gets [`SCRAPE_REFRESH_TIMEOUT`]; a slow one leaves its
    /// gauge at the previous value.
    pub async fn before_scrape(&self) {
        if let Some(memory) = &self.inner.memory {
            // Gauges are floats; entry counts stay far below 2^53.
            self.inner.memory_entries.set(memory.entry_count() as f64);
            self.inner.memory_weighted_size.set(memory.weighted_size() as f64);
        }
        let refresh = self.inner.analytics.refresh_gauges();
        if tokio::time::timeout(SCRAPE_REFRESH_TIMEOUT, refresh).await.is_err() {
            tracing::debug!("analytics gauges not refreshed in time for this scrape");
        }
    }

    /// Sends the analytics collected since the last flush (at shutdown, so that the
    /// last seconds are not lost).
    pub async fn shutdown(&self) {
        if let Some(task) =
            self.inner.flush_task.lock().unwrap_or_else(PoisonError::into_inner).take()
        {
            task.abort();
        }
        if let Err(e) = self.inner.analytics.flush().await {
            tracing::warn!(error = %e, "the last analytics flush failed");
        }
    }
}

/// The janitor of `settings` over the composed tiers. Revocations are remembered as
/// long as a revoked session could otherwise be live (the absolute session lifetime)
/// and as far back as Redis is replayed, whichever is longer; unverified accounts
/// `auth.unverified_account_ttl_secs`.
pub fn janitor_for(
    settings: &Settings,
    tiers: Tiers<'_>,
    analytics: Option<Analytics>,
    clock: SharedClock,
) -> Janitor {
    let absolute = Duration::from_secs(settings.auth.session_absolute_secs);
    let replay = tiers.redis.map_or(Duration::ZERO, |r| r.config().replay_window);
    Janitor::new(
        settings.janitor.clone(),
        tiers.sql.clone(),
        tiers.redis.cloned(),
        analytics,
        clock,
        absolute.max(replay),
    )
    .with_unverified_account_ttl(Duration::from_secs(settings.auth.unverified_account_ttl_secs))
    .with_event_retention(settings.events.retention())
}
