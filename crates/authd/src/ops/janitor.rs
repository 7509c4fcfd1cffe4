//! [`Janitor`]: deletes expired data in bounded batches, in the background of every
//! instance (and once from `cargo xtask cleanup`).
//!
//! One pass:
//! 1. expired sessions are deleted from SQL, `batch_size` rows a statement; each batch's
//!    keys are dropped from Redis's per-user indexes in one pipeline
//!    ([`ExpiredCleanup::forget_sessions`]), and the batch is counted in the metrics and
//!    the analytics (with each session's lifetime);
//! 2. expired verifications are deleted from SQL the same way (Redis and the memory
//!    tier expire theirs by TTL);
//! 3. revocation journal rows older than the journal retention are pruned;
//! 4. accounts left unverified longer than `auth.unverified_account_ttl_secs` are
//!    deleted with their pending verifications, so that an address registered by
//!    someone who could not verify it (a typo, or an attacker pre-registering someone
//!    else's address) can be registered afresh. Such accounts never had a session
//!    (logins need a verified address), so no tier holds anything else of theirs.
//! 5. security events older than `events.retention_days` are deleted, `batch_size` rows
//!    a statement.
//!
//! Reads never depend on the janitor (every tier filters expired entries by the clock);
//! it only reclaims space and keeps indexes short. Passes on several instances at once
//! are safe: each row is deleted, and counted, by exactly one of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{EventLog, ExpiredCleanup, SharedClock, StoreError};
use cache_redis::RedisStore;
use cache_sql::SqlStore;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::ops::analytics::Analytics;
use crate::settings::ops::JanitorSettings;

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct JanitorReport {
    /// Expired sessions deleted from SQL.
    pub sessions: u64,
    /// Expired verifications deleted from SQL.
    pub verifications: u64,
    /// Revocation journal rows pruned.
    pub journal_rows: u64,
    /// Expired unverified accounts deleted.
    pub unverified_accounts: u64,
    /// Security events older than the retention deleted.
    pub events: u64,
    /// Delete statements run (sessions and verifications).
    pub batches: u64,
    /// Session keys whose Redis index entries were dropped.
    pub redis_forgotten: u64,
    /// Batches whose Redis index entries could not be dropped (Redis down); they expire
    /// with their user's index.
    pub redis_skipped: u64,
    /// Whether the pass reached the end of the backlog (`false`: it stopped at
    /// `max_batches_per_pass`, and the next pass continues).
    pub complete: bool,
}

/// Metric handles, created once.
struct Metrics {
    sessions: metrics::Counter,
    verifications: metrics::Counter,
    journal: metrics::Counter,
    unverified_accounts: metrics::Counter,
    events: metrics::Counter,
    expired: metrics::Counter,
    passes_ok: metrics::Counter,
    passes_failed: metrics::Counter,
    pass_seconds: metrics::Histogram,
    last_success: metrics::Gauge,
}

impl Metrics {
    fn new() -> Self {
        let deleted =
            |kind: &'static str| metrics::counter!("janitor_deleted_total", "kind" => kind);
        Self {
            sessions: deleted("session"),
            verifications: deleted("verification"),
            journal: deleted("revocation"),
            unverified_accounts: deleted("unverified_account"),
            events: deleted("security_event"),
            expired: metrics::counter!("auth_sessions_expired_total"),
            passes_ok: metrics::counter!("janitor_passes_total", "result" => "ok"),
            passes_failed: metrics::counter!("janitor_passes_total", "result" => "error"),
            pass_seconds: metrics::histogram!("janitor_pass_seconds"),
            last_success: metrics::gauge!("janitor_last_success_timestamp_seconds"),
        }
    }
}

/// Deletes expired sessions, verifications and old journal rows.
pub struct Janitor {
    settings: JanitorSettings,
    sql: SqlStore,
    redis: Option<RedisStore>,
    analytics: Option<Analytics>,
    clock: SharedClock,
    journal_retention: chrono::Duration,
    /// Unverified accounts older than this are deleted; `None`: kept.
    unverified_account_ttl: Option<chrono::Duration>,
    /// Security events older than this are deleted; `None`: kept.
    event_retention: Option<chrono::Duration>,
    metrics: Metrics,
}

impl std::fmt::Debug for Janitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Janitor")
            .field("settings", &self.settings)
            .field("redis", &self.redis.is_some())
            .field("journal_retention", &self.journal_retention)
            .field("unverified_account_ttl", &self.unverified_account_ttl)
            .finish_non_exhaustive()
    }
}

impl Janitor {
    /// A janitor over `sql`, dropping index entries from `redis` when given and counting
    /// into `analytics` when given.
    ///
    /// Journal rows are kept for `journal_retention`: it must cover both the Redis
    /// replay window (a Redis that lost writes is replayed that far back) and the
    /// absolute session lifetime (SQL's `put` consults the journal to refuse reviving a
    /// revoked session, which could otherwise be live that long).
    pub fn new(
        settings: JanitorSettings,
        sql: SqlStore,
        redis: Option<RedisStore>,
        analytics: Option<Analytics>,
        clock: SharedClock,
        journal_retention: Duration,
    ) -> Self {
        let journal_retention =
            chrono::Duration::from_std(journal_retention).unwrap_or(chrono::Duration::MAX);
        Self {
            settings,
            sql,
            redis,
            analytics,
            clock,
            journal_retention,
            unverified_account_ttl: None,
            event_retention: None,
            metrics: Metrics::new(),
        }
    }

    /// Also deletes accounts still unverified `ttl` after their creation (the service's
    /// janitor does, with `auth.unverified_account_ttl_secs`).
    pub fn with_unverified_account_ttl(mut self, ttl: Duration) -> Self {
        self.unverified_account_ttl =
            Some(chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX));
        self
    }

    /// Also deletes security events older than `retention` (the service's janitor does,
    /// with `events.retention_days`).
    pub fn with_event_retention(mut self, retention: Duration) -> Self {
        self.event_retention =
            Some(chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX));
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &JanitorSettings {
        &self.settings
    }

    /// Runs one pass (see the module docs). Stops at the first SQL error, which is
    /// returned; what was deleted before it stays deleted and counted.
    pub async fn run_once(&self) -> Result<JanitorReport, StoreError> {
        let start = Instant::now();
        let mut report = JanitorReport::default();
        let result = self.pass(&mut report).await;
        self.metrics.pass_seconds.record(start.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                self.metrics.passes_ok.increment(1);
                let now = self.clock.now();
                self.metrics.last_success.set(now.timestamp_micros() as f64 / 1e6);
                Ok(report)
            }
            Err(e) => {
                self.metrics.passes_failed.increment(1);
                Err(e)
            }
        }
    }

    async fn pass(&self, report: &mut JanitorReport) -> Result<(), StoreError> {
        let batch_size = self.settings.batch_size;
        let max_batches = u64::try_from(self.settings.max_batches_per_pass).unwrap_or(u64::MAX);
        let mut complete = true;

        let mut redis_up = self.redis.is_some();
        let mut session_batches = 0;
        loop {
            if session_batches >= max_batches {
                complete = false;
                break;
            }
            let expired = self.sql.delete_expired_sessions_with_lifetimes(batch_size).await?;
            session_batches += 1;
            let n = expired.len() as u64;
            report.sessions += n;
            self.metrics.sessions.increment(n);
            self.metrics.expired.increment(n);
            if let Some(analytics) = &self.analytics {
                analytics.record_expired(&expired);
            }
            if let Some(redis) = self.redis.as_ref().filter(|_| redis_up && n > 0) {
                let keys: Vec<_> = expired.iter().map(|e| e.key).collect();
                match redis.forget_sessions(&keys).await {
                    Ok(()) => report.redis_forgotten += n,
                    Err(e) => {
                        // Redis is down: the index entries expire with their user's index
                        // anyway. Do not wait for Redis again in this pass.
                        tracing::debug!(error = %e, "janitor: could not drop Redis index entries");
                        redis_up = false;
                        report.redis_skipped += 1;
                    }
                }
            } else if self.redis.is_some() && n > 0 {
                report.redis_skipped += 1;
            }
            if expired.len() < batch_size {
                break;
            }
            // Give other tasks of this worker a turn between statements.
            tokio::task::yield_now().await;
        }

        let mut verification_batches = 0;
        loop {
            if verification_batches >= max_batches {
                complete = false;
                break;
            }
            let n = self.sql.delete_expired_verifications(batch_size).await?;
            verification_batches += 1;
            report.verifications += n;
            self.metrics.verifications.increment(n);
            if n < batch_size as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        report.batches = session_batches + verification_batches;

        let cutoff = self.clock.now() - self.journal_retention;
        report.journal_rows = self.sql.prune_journal(cutoff).await?;
        self.metrics.journal.increment(report.journal_rows);

        if let Some(ttl) = self.unverified_account_ttl {
            let created_before = self.clock.now() - ttl;
            let mut account_batches = 0;
            loop {
                if account_batches >= max_batches {
                    complete = false;
                    break;
                }
                let deleted =
                    self.sql.delete_unverified_accounts(created_before, batch_size).await?;
                account_batches += 1;
                let n = deleted.len() as u64;
                report.unverified_accounts += n;
                self.metrics.unverified_accounts.increment(n);
                if deleted.len() < batch_size {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        if let Some(retention) = self.event_retention {
            let before = self.clock.now() - retention;
            let mut event_batches = 0;
            loop {
                if event_batches >= max_batches {
                    complete = false;
                    break;
                }
                let n = self.sql.trim_events(before, batch_size).await?;
                event_batches += 1;
                report.events += n;
                self.metrics.events.increment(n);
                if n < batch_size as u64 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        report.complete = complete;
        Ok(())
    }

    /// Runs a pass every `interval_secs` (after the pause, so that start-up is not slowed)
    /// until the returned handle is dropped. Errors are logged and retried next time.
    pub fn spawn(self: Arc<Self>) -> JanitorTask {
        let interval = self.settings.interval();
        let handle = tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                match self.run_once().await {
                    Ok(report)
                        if report.sessions
                            + report.verifications
                            + report.journal_rows
                            + report.unverified_accounts
                            + report.events
                            > 0 =>
                    {
                        tracing::info!(
                            sessions = report.sessions,
                            verifications = report.verifications,
                            journal_rows = report.journal_rows,
                            unverified_accounts = report.unverified_accounts,
                            events = report.events,
                            batches = report.batches,
                            complete = report.complete,
                            "janitor pass"
                        );
                    }
                    Ok(_) => tracing::debug!("janitor pass: nothing expired"),
                    Err(e) => {
                        tracing::warn!(error = %e, "janitor pass failed; retrying next interval")
                    }
                }
            }
        });
        JanitorTask(handle)
    }
}

/// The background janitor; stops when dropped.
#[derive(Debug)]
pub struct JanitorTask(JoinHandle<()>);

impl Drop for JanitorTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}
