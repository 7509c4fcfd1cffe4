//! The operations sections of [`crate::Settings`]: `[janitor]`, `[analytics]` and
//! `[warm_up]` (documented in `docs/configuration.md` and `docs/operations.md`).

use std::time::Duration;

use anyhow::ensure;
use serde::Deserialize;

/// The background janitor (`[janitor]`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JanitorSettings {
    /// Whether this instance runs the janitor (every instance may: passes are safe to
    /// run concurrently, each row is deleted once).
    pub enabled: bool,
    /// Time between the end of one pass and the start of the next.
    pub interval_secs: u64,
    /// Rows deleted per statement (sessions, then verifications): bounds how long one
    /// statement holds its locks.
    pub batch_size: usize,
    /// Most batches of each kind per pass; the rest waits for the next pass, so that a
    /// huge backlog is worked off steadily rather than in one long burst.
    pub max_batches_per_pass: usize,
}

impl Default for JanitorSettings {
    fn default() -> Self {
        Self { enabled: true, interval_secs: 60, batch_size: 1_000, max_batches_per_pass: 1_000 }
    }
}

impl JanitorSettings {
    /// The pause between passes.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs)
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.interval_secs >= 1, "janitor.interval_secs must be >= 1");
        ensure!(
            (1..=100_000).contains(&self.batch_size),
            "janitor.batch_size must be between 1 and 100000"
        );
        ensure!(self.max_batches_per_pass >= 1, "janitor.max_batches_per_pass must be >= 1");
        Ok(())
    }
}

/// Usage analytics (`[analytics]`, served at `GET /v1/admin/analytics`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnalyticsSettings {
    /// How often this instance sends the active user ids and counters it collected to
    /// Redis (one pipeline per day touched). Without Redis nothing is sent.
    pub flush_interval_ms: u64,
    /// How many days of figures Redis keeps (and this instance keeps in memory).
    pub retention_days: u32,
    /// How long a count of active sessions (one SQL query) is reused.
    pub active_sessions_cache_ms: u64,
    /// Most distinct user ids waiting for the next flush; more are dropped (and counted
    /// in `analytics_dropped_total`) while Redis cannot be reached.
    pub max_pending_users: usize,
}

impl Default for AnalyticsSettings {
    fn default() -> Self {
        Self {
            flush_interval_ms: 5_000,
            retention_days: 35,
            active_sessions_cache_ms: 5_000,
            max_pending_users: 100_000,
        }
    }
}

impl AnalyticsSettings {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.flush_interval_ms >= 100, "analytics.flush_interval_ms must be >= 100");
        ensure!(
            (1..=366).contains(&self.retention_days),
            "analytics.retention_days must be between 1 and 366"
        );
        ensure!(self.max_pending_users >= 1, "analytics.max_pending_users must be >= 1");
        Ok(())
    }
}

/// Cache warming at start-up (`[warm_up]`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmUpSettings {
    /// How many of the most recently renewed live sessions to load into the memory tier
    /// (and into Redis when it lost our keys); 0 turns warming off.
    pub sessions: usize,
    /// Longest the warm-up may delay start-up; past it the service starts cold.
    pub timeout_ms: u64,
}

impl Default for WarmUpSettings {
    fn default() -> Self {
        Self { sessions: 0, timeout_ms: 10_000 }
    }
}

impl WarmUpSettings {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.sessions <= 1_000_000, "warm_up.sessions must be at most 1000000");
        ensure!(self.timeout_ms >= 1, "warm_up.timeout_ms must be >= 1");
        Ok(())
    }
}
