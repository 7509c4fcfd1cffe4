//! The writer task: drains the queue in batches and, for each batch, resolves accounts
//! named by address, derives the alerts, appends every event in one transaction and
//! mails the alerts. It runs beside the flows and never delays them.
//!
//! - A sign-in whose device (see `device.rs`) has no sign-in of that user within
//!   `new_device_window`, while the user has signed in before, adds a
//!   `new_device_sign_in` event and mails the owner. The first sign-in of an account
//!   mails nothing.
//! - A failed sign-in that brings the account's failures within `failure_alert_window`
//!   to `failure_alert_threshold` adds a `failed_sign_in_alert` event and mails the
//!   owner, unless an alert was raised within the window already.
//! - A lockout (`blocked_by_limits`) is recorded once per account per
//!   `failure_alert_window`: an attacker hammering a locked account does not fill the log.
//!
//! "Seen" and "counted" are read from the log plus the events earlier in the same batch
//! (not stored yet). A store failure loses the batch (logged and counted); the flows
//! were answered long before.

use std::collections::HashMap;
use std::sync::Arc;

use cache_core::{AccountStore, EventKind, EventLog, NewEvent, StoreError, UserId};
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::device::Device;
use super::mails::{failed_sign_ins_mail, new_sign_in_mail};
use super::{EventsConfig, Pending, Subject};
use crate::error::Chain;
use crate::mail::{Mailer, OutgoingMail, send_mail};

/// Events appended per transaction at most.
const BATCH_MAX: usize = 256;

/// Accounts remembered by the writer's dedup maps before they are emptied (a cache of
/// what the log says, not state).
const REMEMBERED_MAX: usize = 10_000;

pub(super) struct Writer {
    config: EventsConfig,
    log: Arc<dyn EventLog>,
    accounts: Arc<dyn AccountStore>,
    mailer: Arc<dyn Mailer>,
    base_url: String,
    /// The last lockout event recorded per account (address), for the dedup.
    last_lockout: HashMap<String, DateTime<Utc>>,
    /// The last failure alert raised per user.
    last_alert: HashMap<UserId, DateTime<Utc>>,
}

/// An alert event and the mail that tells the owner (none when the account is gone).
type Alert = (NewEvent, Option<OutgoingMail>);

/// A batch being prepared: the events to append and the mails to send after.
#[derive(Default)]
struct Batch {
    events: Vec<NewEvent>,
    mails: Vec<OutgoingMail>,
}

impl Batch {
    /// Events of `user` of `kind` earlier in this batch, with `device_key` when given,
    /// at or after `since`.
    fn count(&self, user: UserId, kind: EventKind, key: Option<&str>, since: DateTime<Utc>) -> u64 {
        let matches = |e: &&NewEvent| {
            e.user == user
                && e.kind == kind
                && e.at >= since
                && key.is_none_or(|k| e.device_key.as_deref() == Some(k))
        };
        self.events.iter().filter(matches).count() as u64
    }
}

impl Writer {
    pub(super) fn new(
        config: EventsConfig,
        log: Arc<dyn EventLog>,
        accounts: Arc<dyn AccountStore>,
        mailer: Arc<dyn Mailer>,
        base_url: String,
    ) -> Self {
        Self {
            config,
            log,
            accounts,
            mailer,
            base_url,
            last_lockout: HashMap::new(),
            last_alert: HashMap::new(),
        }
    }

    /// Runs until every sender is dropped and the queue is empty.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        let mut pending = Vec::with_capacity(BATCH_MAX);
        while rx.recv_many(&mut pending, BATCH_MAX).await > 0 {
            let n = pending.len();
            if let Err(e) = self.write(std::mem::take(&mut pending)).await {
                metrics::counter!("auth_security_events_dropped_total", "reason" => "store")
                    .increment(n as u64);
                tracing::warn!(events = n, error = %Chain(&e), "security events not written");
            }
        }
    }

    async fn write(&mut self, pending: Vec<Pending>) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        for event in pending {
            self.prepare(event, &mut batch).await?;
        }
        self.log.append_events(&batch.events).await?;
        for event in &batch.events {
            metrics::counter!("auth_security_events_total", "kind" => event.kind.as_str())
                .increment(1);
        }
        for mail in batch.mails {
            send_mail(self.mailer.as_ref(), mail).await;
        }
        Ok(())
    }

    /// Adds `event`, and the alert it raises if any, to `batch`.
    async fn prepare(&mut self, event: Pending, batch: &mut Batch) -> Result<(), StoreError> {
        let Pending { subject, kind, at, ip, user_agent } = event;
        let user = match subject {
            Subject::User(user) => user,
            Subject::Email(email) => {
                if !self.lockout_due(&email, at) {
                    return Ok(());
                }
                match self.accounts.credentials_by_email(&email).await? {
                    Some(credentials) => credentials.user.id,
                    // No such account: nothing to tell anybody.
                    None => return Ok(()),
                }
            }
        };
        if kind == EventKind::BlockedByLimits {
            let since = at - self.config.failure_alert_window;
            let earlier = self.log.count_events(user, kind, None, Some(since)).await?
                + batch.count(user, kind, None, since);
            if earlier > 0 {
                return Ok(());
            }
        }
        let device = Device::of(user_agent.as_deref(), ip);
        let event = NewEvent {
            user,
            kind,
            at,
            ip,
            device: Some(device.summary.clone()),
            device_key: Some(device.key.clone()),
        };
        // Decided before the event joins the batch (it must not count itself); stored
        // after it, so that the alert reads as its consequence.
        let alert = match kind {
            EventKind::SignIn => self.check_new_device(&event, &device, batch).await?,
            EventKind::SignInFailed => self.check_failures(&event, batch).await?,
            _ => None,
        };
        batch.events.push(event);
        if let Some((alert, mail)) = alert {
            batch.events.push(alert);
            batch.mails.extend(mail);
        }
        Ok(())
    }

    /// Whether a lockout of `account` at `at` is worth a look (not one recorded by this
    /// writer within the window); remembers it.
    fn lockout_due(&mut self, account: &str, at: DateTime<Utc>) -> bool {
        let window = self.config.failure_alert_window;
        if self.last_lockout.get(account).is_some_and(|last| at - *last < window) {
            return false;
        }
        if self.last_lockout.len() >= REMEMBERED_MAX {
            self.last_lockout.clear();
        }
        self.last_lockout.insert(account.to_owned(), at);
        true
    }

    /// The new-device alert `event` raises, and its mail, if any.
    async fn check_new_device(
        &mut self,
        event: &NewEvent,
        device: &Device,
        batch: &Batch,
    ) -> Result<Option<Alert>, StoreError> {
        let (user, kind, key) = (event.user, EventKind::SignIn, Some(device.key.as_str()));
        let since = event.at - self.config.new_device_window;
        let seen = batch.count(user, kind, key, since) > 0
            || self.log.count_events(user, kind, key, Some(since)).await? > 0;
        if seen {
            return Ok(None);
        }
        let signed_in_before = batch.count(user, kind, None, DateTime::UNIX_EPOCH) > 0
            || self.log.count_events(user, kind, None, None).await? > 0;
        if !signed_in_before {
            return Ok(None);
        }
        let alert = NewEvent { kind: EventKind::NewDeviceSignIn, ..event.clone() };
        let mail = self
            .email_of(user)
            .await?
            .map(|to| new_sign_in_mail(&self.base_url, &to, event.at, &device.summary, event.ip));
        Ok(Some((alert, mail)))
    }

    /// The failure alert `event` raises, and its mail, if any.
    async fn check_failures(
        &mut self,
        event: &NewEvent,
        batch: &Batch,
    ) -> Result<Option<Alert>, StoreError> {
        let (user, window) = (event.user, self.config.failure_alert_window);
        let since = event.at - window;
        if self.last_alert.get(&user).is_some_and(|last| *last >= since) {
            return Ok(None);
        }
        let kind = EventKind::SignInFailed;
        // This failure, the earlier ones of the batch, and the stored ones.
        let failures = 1
            + batch.count(user, kind, None, since)
            + self.log.count_events(user, kind, None, Some(since)).await?;
        if failures < u64::from(self.config.failure_alert_threshold) {
            return Ok(None);
        }
        let alert = EventKind::FailedSignInAlert;
        let raised = batch.count(user, alert, None, since) > 0
            || self.log.count_events(user, alert, None, Some(since)).await? > 0;
        if self.last_alert.len() >= REMEMBERED_MAX {
            self.last_alert.clear();
        }
        self.last_alert.insert(user, event.at);
        if raised {
            return Ok(None);
        }
        metrics::counter!("auth_failed_sign_in_alerts_total").increment(1);
        let mail = self.email_of(user).await?.map(|to| {
            let minutes = window.num_minutes();
            failed_sign_ins_mail(&self.base_url, &to, event.at, failures, minutes)
        });
        Ok(Some((NewEvent { kind: alert, ..event.clone() }, mail)))
    }

    async fn email_of(&self, user: UserId) -> Result<Option<String>, StoreError> {
        Ok(self.accounts.credentials_by_id(user).await?.map(|c| c.user.email))
    }
}
