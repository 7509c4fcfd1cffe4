//! The security event log of the flows, written off the request path.
//!
//! A flow hands its event to [`SecurityEvents::record`], which never waits: the event
//! goes into a bounded channel, and when the channel is full it is dropped and counted
//! (`auth_security_events_dropped_total`), so that a slow database never delays a
//! login. A writer task (`writer.rs`) drains the channel in batches, resolves accounts
//! named by address (lockouts), derives the alerts (a sign-in from a new device, a spike
//! of failed sign-ins), appends everything to the [`EventLog`] in one transaction, and
//! mails the alerts (`mails.rs`). A device is browser family + OS family + address
//! network (`device.rs`). The session check (`validate`) records nothing.

pub mod device;
mod mails;
mod writer;

use std::net::IpAddr;
use std::sync::Arc;

use cache_core::{AccountStore, EventKind, EventLog, UserId};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

pub use device::{Device, browser_family, network, os_family};

use crate::error::AuthError;
use crate::mail::Mailer;

/// When alerts are raised, and how many events may wait for the writer.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// A sign-in from a device with no sign-in within this window is a new device.
    pub new_device_window: chrono::Duration,
    /// This many failed sign-ins of one account within `failure_alert_window` raise an
    /// alert (once per window).
    pub failure_alert_threshold: u32,
    /// The window of `failure_alert_threshold`, and of the lockout event's dedup.
    pub failure_alert_window: chrono::Duration,
    /// Events waiting for the writer at most; more are dropped and counted.
    pub queue_capacity: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            new_device_window: chrono::Duration::days(30),
            failure_alert_threshold: 10,
            failure_alert_window: chrono::Duration::minutes(60),
            queue_capacity: 4096,
        }
    }
}

/// Whose account an event is about: known by id, or by address (a lockout, which is
/// decided before the account is looked up; the writer looks it up).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Subject {
    User(UserId),
    Email(String),
}

/// An event on its way to the writer.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) subject: Subject,
    pub(crate) kind: EventKind,
    pub(crate) at: DateTime<Utc>,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) user_agent: Option<String>,
}

/// The handle the flows record events through. Cheap to clone; the writer task stops
/// once every clone is dropped (after writing what it holds).
#[derive(Clone)]
pub struct SecurityEvents {
    tx: mpsc::Sender<Pending>,
    log: Arc<dyn EventLog>,
}

impl std::fmt::Debug for SecurityEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityEvents").field("queued", &self.queued()).finish_non_exhaustive()
    }
}

impl SecurityEvents {
    /// Starts the writer on the current Tokio runtime; `Config` error outside of one.
    pub(crate) fn start(
        config: EventsConfig,
        log: Arc<dyn EventLog>,
        accounts: Arc<dyn AccountStore>,
        mailer: Arc<dyn Mailer>,
        base_url: String,
    ) -> Result<Self, AuthError> {
        if config.failure_alert_threshold == 0 || config.queue_capacity == 0 {
            return Err(AuthError::Config(
                "events: failure_alert_threshold and queue_capacity must be at least 1".into(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            AuthError::Config("the security event writer needs a Tokio runtime".into())
        })?;
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let writer = writer::Writer::new(config, Arc::clone(&log), accounts, mailer, base_url);
        drop(runtime.spawn(writer.run(rx)));
        Ok(Self { tx, log })
    }

    /// Queues `event` without waiting; drops and counts it when the queue is full.
    pub(crate) fn record(&self, event: Pending) {
        if let Err(e) = self.tx.try_send(event) {
            let reason = match e {
                mpsc::error::TrySendError::Full(_) => "full",
                mpsc::error::TrySendError::Closed(_) => "closed",
            };
            metrics::counter!("auth_security_events_dropped_total", "reason" => reason)
                .increment(1);
        }
    }

    /// Events waiting for the writer.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// The log the writer appends to.
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }
}
