//! `[events]`: the security event log and its alerts (documented in
//! `docs/configuration.md` and `docs/security.md`).

use anyhow::ensure;
use serde::{Deserialize, Serialize};

/// The security event log (`[events]`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsSettings {
    /// Events older than this are deleted by the janitor.
    pub retention_days: u32,
    /// A sign-in from a device (browser family, OS family, address network) with no
    /// sign-in of that user within this many days records a new-device event and mails
    /// the owner.
    pub new_device_window_days: u32,
    /// This many failed sign-ins of one account within `failure_alert_window_mins`
    /// record an alert event and mail the owner (once per window).
    pub failure_alert_threshold: u32,
    /// The window of `failure_alert_threshold`.
    pub failure_alert_window_mins: u32,
    /// Events waiting to be written at most; more are dropped and counted
    /// (`auth_security_events_dropped_total`) rather than delaying a request.
    pub queue_capacity: usize,
}

impl Default for EventsSettings {
    fn default() -> Self {
        Self {
            retention_days: 90,
            new_device_window_days: 30,
            failure_alert_threshold: 10,
            failure_alert_window_mins: 60,
            queue_capacity: 4096,
        }
    }
}

impl EventsSettings {
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            (1..=3650).contains(&self.retention_days),
            "events.retention_days must be between 1 and 3650"
        );
        ensure!(
            (1..=self.retention_days).contains(&self.new_device_window_days),
            "events.new_device_window_days must be between 1 and events.retention_days \
             (older sign-ins are trimmed)"
        );
        ensure!(self.failure_alert_threshold >= 1, "events.failure_alert_threshold must be >= 1");
        ensure!(
            (1..=7 * 24 * 60).contains(&self.failure_alert_window_mins),
            "events.failure_alert_window_mins must be between 1 and 10080 (a week)"
        );
        ensure!(
            (1..=1_000_000).contains(&self.queue_capacity),
            "events.queue_capacity must be between 1 and 1000000"
        );
        Ok(())
    }

    /// The flows' configuration of the event writer.
    pub fn events_config(&self) -> auth::EventsConfig {
        auth::EventsConfig {
            new_device_window: chrono::Duration::days(self.new_device_window_days.into()),
            failure_alert_threshold: self.failure_alert_threshold,
            failure_alert_window: chrono::Duration::minutes(self.failure_alert_window_mins.into()),
            queue_capacity: self.queue_capacity,
        }
    }

    /// How long events are kept.
    pub fn retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.retention_days) * 24 * 3600)
    }
}
