//! [`Analytics`]: usage figures collected without scanning keys.
//!
//! - Active sessions: a count over SQL's `expires_at` index, reused for
//!   `analytics.active_sessions_cache_ms`.
//! - Per UTC day: distinct active users (users whose session authenticated a request),
//!   sessions created (successful logins), sessions expired (found by the janitor), and
//!   the durations of those expired sessions (login to expiry).
//!
//! The request path only touches memory: ids and counts are collected per instance and
//! flushed to Redis every `analytics.flush_interval_ms` in one pipeline per day
//! (`PFADD` into a HyperLogLog, `HINCRBY` on counters), so Redis sees one round trip per
//! instance per flush, not one per request. Every instance also keeps its own figures
//! (a local HyperLogLog and counters); they are served when Redis is off or unreachable,
//! marked `"source": "local"` since they cover this instance only.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cache_core::{SharedClock, StoreError, UserId};
use cache_redis::{DayDelta, DayFigures, RedisStore};
use cache_sql::{ExpiredSession, SqlStore};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ops::hll::HyperLogLog;
use crate::settings::ops::AnalyticsSettings;

/// Counters of one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    created: u64,
    expired: u64,
    ended: u64,
    ended_seconds: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.created += other.created;
        self.expired += other.expired;
        self.ended += other.ended;
        self.ended_seconds += other.ended_seconds;
    }

    fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

/// What waits for the next flush to Redis, per day.
#[derive(Debug, Default)]
struct PendingDay {
    users: HashSet<UserId>,
    counts: Counts,
}

/// This instance's own figures of one day.
#[derive(Debug, Default)]
struct LocalDay {
    users: HyperLogLog,
    counts: Counts,
}

#[derive(Debug, Default)]
struct State {
    pending: BTreeMap<NaiveDate, PendingDay>,
    pending_users: usize,
    local: BTreeMap<NaiveDate, LocalDay>,
}

/// A cached count of active sessions.
#[derive(Debug, Clone, Copy)]
struct ActiveSessions {
    count: u64,
    as_of: DateTime<Utc>,
    fetched: Instant,
}

struct Inner {
    settings: AnalyticsSettings,
    clock: SharedClock,
    sql: SqlStore,
    redis: Option<RedisStore>,
    state: Mutex<State>,
    active_sessions: tokio::sync::Mutex<Option<ActiveSessions>>,
    dropped: metrics::Counter,
    flushes_ok: metrics::Counter,
    flushes_failed: metrics::Counter,
    active_sessions_gauge: metrics::Gauge,
    active_users_gauge: metrics::Gauge,
}

/// Collects and serves usage figures. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Analytics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Analytics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analytics")
            .field("settings", &self.inner.settings)
            .field("redis", &self.inner.redis.is_some())
            .finish_non_exhaustive()
    }
}

/// The figures of one UTC day.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DayReport {
    /// The day (UTC), `YYYY-MM-DD`.
    #[schema(value_type = String, example = "2026-11-27")]
    pub day: NaiveDate,
    /// Distinct users whose session authenticated at least one request that day
    /// (HyperLogLog estimate, 0.81 % standard error).
    pub active_users: u64,
    /// Sessions created by a successful login that day.
    pub sessions_created: u64,
    /// Sessions that expired (idle timeout or absolute lifetime) that day, counted when
    /// the janitor deleted them.
    pub sessions_expired: u64,
    /// Mean time from login to expiry of the sessions expired that day, in seconds;
    /// `null` when none did. Sessions ended by logout or revocation are not in it.
    pub average_session_seconds: Option<f64>,
}

/// The body of `GET /v1/admin/analytics`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AnalyticsReport {
    /// When the report was made.
    pub generated_at: DateTime<Utc>,
    /// `redis` (every instance's figures) or `local` (this instance's only: Redis is off
    /// or did not answer).
    #[schema(example = "redis")]
    pub source: String,
    /// Sessions live (neither idle-expired nor past their absolute lifetime) at
    /// `active_sessions_as_of`, counted in SQL.
    pub active_sessions: u64,
    /// When `active_sessions` was counted (it is reused for a few seconds).
    pub active_sessions_as_of: DateTime<Utc>,
    /// One entry per day, today first.
    pub days: Vec<DayReport>,
}

impl Analytics {
    /// Collects figures for this instance; with `redis`, shares them through it.
    pub fn new(
        settings: AnalyticsSettings,
        clock: SharedClock,
        sql: SqlStore,
        redis: Option<RedisStore>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                clock,
                sql,
                redis,
                state: Mutex::new(State::default()),
                active_sessions: tokio::sync::Mutex::new(None),
                dropped: metrics::counter!("analytics_dropped_total"),
                flushes_ok: metrics::counter!("analytics_flushes_total", "result" => "ok"),
                flushes_failed: metrics::counter!("analytics_flushes_total", "result" => "error"),
                active_sessions_gauge: metrics::gauge!("analytics_active_sessions"),
                active_users_gauge: metrics::gauge!("analytics_active_users_today"),
            }),
        }
    }

    /// The settings in use.
    pub fn settings(&self) -> &AnalyticsSettings {
        &self.inner.settings
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is plain counters: one a panic interrupted is still usable.
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn today(&self) -> NaiveDate {
        self.inner.clock.now().date_naive()
    }

    /// Records that `user`'s session authenticated a request now. Memory only: one lock,
    /// one hash-set insert and one register update.
    pub fn record_active_user(&self, user: UserId) {
        let day = self.today();
        let max_pending = self.inner.settings.max_pending_users;
        let with_redis = self.inner.redis.is_some();
        let mut state = self.state();
        state.local.entry(day).or_default().users.insert(user);
        if with_redis {
            let full = state.pending_users >= max_pending;
            let pending = state.pending.entry(day).or_default();
            if pending.users.contains(&user) {
                return;
            }
            if full {
                drop(state);
                self.inner.dropped.increment(1);
                return;
            }
            pending.users.insert(user);
            state.pending_users += 1;
        }
    }

    /// Records a session created now.
    pub fn record_session_created(&self) {
        let day = self.today();
        self.add_counts(day, Counts { created: 1, ..Counts::default() });
    }

    /// Records sessions the janitor found expired, each on the day it expired.
    pub fn record_expired(&self, sessions: &[ExpiredSession]) {
        let mut by_day: BTreeMap<NaiveDate, Counts> = BTreeMap::new();
        for session in sessions {
            let counts = by_day.entry(session.ended_at.date_naive()).or_default();
            counts.expired += 1;
            counts.ended += 1;
            counts.ended_seconds += u64::try_from(session.lifetime().num_seconds()).unwrap_or(0);
        }
        for (day, counts) in by_day {
            self.add_counts(day, counts);
        }
    }

    fn add_counts(&self, day: NaiveDate, counts: Counts) {
        let with_redis = self.inner.redis.is_some();
        let mut state = self.state();
        state.local.entry(day).or_default().counts.add(counts);
        if with_redis {
            state.pending.entry(day).or_default().counts.add(counts);
        }
    }

    /// Drops local days older than the retention.
    fn prune(&self) {
        let retention = i64::from(self.inner.settings.retention_days);
        let oldest = self.today() - chrono::Duration::days(retention);
        let mut state = self.state();
        state.local.retain(|day, _| *day >= oldest);
    }

    /// Sends what was collected since the last flush to Redis. What could not be sent is
    /// kept for the next flush: user ids always (adding one twice changes nothing), the
    /// counters only when the failure shows Redis never got them (unavailable), since a
    /// timed-out pipeline may have been applied. Does nothing without Redis.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.prune();
        let Some(redis) = &self.inner.redis else { return Ok(()) };
        let pending = {
            let mut state = self.state();
            state.pending_users = 0;
            std::mem::take(&mut state.pending)
        };
        let retention = Duration::from_secs(u64::from(self.inner.settings.retention_days) * 86_400);
        let mut failure = None;
        let mut unsent = BTreeMap::new();
        for (day, day_pending) in pending {
            let users: Vec<UserId> = day_pending.users.iter().copied().collect();
            let c = day_pending.counts;
            let delta = DayDelta {
                active_users: &users,
                sessions_created: c.created,
                sessions_expired: c.expired,
                ended_sessions: c.ended,
                ended_seconds: c.ended_seconds,
            };
            // After one failure the others would most likely fail too: keep them all.
            if failure.is_some() {
                unsent.insert(day, day_pending);
                continue;
            }
            if let Err(e) = redis.add_day_figures(day, &delta, retention).await {
                let counts = if matches!(e, StoreError::Unavailable(_)) {
                    day_pending.counts
                } else {
                    Counts::default()
                };
                unsent.insert(day, PendingDay { users: day_pending.users, counts });
                failure = Some(e);
            }
        }
        if !unsent.is_empty() {
            self.requeue(unsent);
        }
        match failure {
            None => {
                self.inner.flushes_ok.increment(1);
                Ok(())
            }
            Some(e) => {
                self.inner.flushes_failed.increment(1);
                Err(e)
            }
        }
    }

    /// Puts back what a flush could not send, within the pending bound.
    fn requeue(&self, unsent: BTreeMap<NaiveDate, PendingDay>) {
        let max_pending = self.inner.settings.max_pending_users;
        let mut dropped = 0u64;
        let mut state = self.state();
        for (day, day_unsent) in unsent {
            let mut pending_users = state.pending_users;
            let pending = state.pending.entry(day).or_default();
            pending.counts.add(day_unsent.counts);
            for user in day_unsent.users {
                if pending.users.contains(&user) {
                    continue;
                }
                if pending_users >= max_pending {
                    dropped += 1;
                } else {
                    pending.users.insert(user);
                    pending_users += 1;
                }
            }
            state.pending_users = pending_users;
        }
        drop(state);
        if dropped > 0 {
            self.inner.dropped.increment(dropped);
        }
    }

    /// Live sessions counted in SQL, reused for `active_sessions_cache_ms` (concurrent
    /// callers wait for one query).
    pub async fn active_sessions(&self) -> Result<(u64, DateTime<Utc>), StoreError> {
        let max_age = Duration::from_millis(self.inner.settings.active_sessions_cache_ms);
        let mut cached = self.inner.active_sessions.lock().await;
        if let Some(c) = *cached
            && c.fetched.elapsed() < max_age
        {
            return Ok((c.count, c.as_of));
        }
        let as_of = self.inner.clock.now();
        let count = self.inner.sql.count_live_sessions().await?;
        *cached = Some(ActiveSessions { count, as_of, fetched: Instant::now() });
        // Gauges are floats; counts stay far below 2^53.
        self.inner.active_sessions_gauge.set(count as f64);
        Ok((count, as_of))
    }

    /// This instance's own figures of `day`.
    fn local_day(&self, day: NaiveDate) -> DayFigures {
        let state = self.state();
        state.local.get(&day).map_or_else(DayFigures::default, |d| DayFigures {
            active_users: d.users.estimate(),
            sessions_created: d.counts.created,
            sessions_expired: d.counts.expired,
            ended_sessions: d.counts.ended,
            ended_seconds: d.counts.ended_seconds,
        })
    }

    /// The figures of the last `days` days (today first). With Redis, this instance's
    /// pending figures are flushed first so that they are included.
    pub async fn report(&self, days: u32) -> Result<AnalyticsReport, StoreError> {
        let (active_sessions, active_sessions_as_of) = self.active_sessions().await?;
        let today = self.today();
        let dates: Vec<NaiveDate> =
            (0..days.max(1)).map(|i| today - chrono::Duration::days(i64::from(i))).collect();
        let mut figures = None;
        if let Some(redis) = &self.inner.redis {
            let shared = async {
                self.flush().await?;
                let mut all = Vec::with_capacity(dates.len());
                for day in &dates {
                    all.push(redis.day_figures(*day).await?);
                }
                Ok::<_, StoreError>(all)
            };
            match shared.await {
                Ok(all) => figures = Some(("redis", all)),
                Err(e) => {
                    tracing::warn!(error = %e, "analytics: Redis did not answer; serving this instance's figures");
                }
            }
        }
        let (source, figures) = figures
            .unwrap_or_else(|| ("local", dates.iter().map(|day| self.local_day(*day)).collect()));
        if let Some(today) = figures.first() {
            self.inner.active_users_gauge.set(today.active_users as f64);
        }
        let days = dates
            .into_iter()
            .zip(figures)
            .map(|(day, f)| DayReport {
                day,
                active_users: f.active_users,
                sessions_created: f.sessions_created,
                sessions_expired: f.sessions_expired,
                average_session_seconds: (f.ended_sessions > 0)
                    .then(|| f.ended_seconds as f64 / f.ended_sessions as f64),
            })
            .collect();
        Ok(AnalyticsReport {
            generated_at: self.inner.clock.now(),
            source: source.to_owned(),
            active_sessions,
            active_sessions_as_of,
            days,
        })
    }

    /// Sets the `analytics_active_sessions` and `analytics_active_users_today` gauges:
    /// the (cached) SQL count, and today's users from Redis (every instance's, as of the
    /// last flushes) or, without Redis, from this instance's estimate.
    pub async fn refresh_gauges(&self) {
        if let Err(e) = self.active_sessions().await {
            tracing::debug!(error = %e, "active sessions not counted");
        }
        let today = self.today();
        let users = match &self.inner.redis {
            Some(redis) => match redis.day_figures(today).await {
                Ok(f) => f.active_users,
                Err(e) => {
                    tracing::debug!(error = %e, "active users not read from Redis");
                    return;
                }
            },
            None => self.local_day(today).active_users,
        };
        self.inner.active_users_gauge.set(users as f64);
    }

    /// Whether anything waits for a flush (for tests and shutdown).
    pub fn has_pending(&self) -> bool {
        let state = self.state();
        state.pending.values().any(|d| !d.users.is_empty() || !d.counts.is_zero())
    }
}
