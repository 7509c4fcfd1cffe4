//! Security events of the flows: attaching the log ([`AuthService::with_events`]),
//! recording an event (never waiting: see [`crate::events`]), and reading a user's
//! events back, newest first.

use std::net::IpAddr;
use std::sync::Arc;

use cache_core::{EventKind, EventLog, SecurityEvent, Session, UserId};

use super::{AuthService, ClientInfo};
use crate::error::AuthError;
use crate::events::{EventsConfig, Pending, SecurityEvents, Subject};

impl AuthService {
    /// Attaches the security event log: the flows then record sign-ins, failures,
    /// sign-outs, password changes, resets, verifications and lockouts into `log`
    /// through a bounded queue and a writer task started here (on the current Tokio
    /// runtime), which also mails new-device and failed-sign-in alerts. The session
    /// check records nothing.
    pub fn with_events(
        mut self,
        config: EventsConfig,
        log: Arc<dyn EventLog>,
    ) -> Result<Self, AuthError> {
        let inner = &self.inner;
        let events = SecurityEvents::start(
            config,
            log,
            Arc::clone(&inner.stores.accounts),
            Arc::clone(&inner.mailer),
            inner.base_url.clone(),
        )?;
        Arc::make_mut(&mut self.inner).events = Some(events);
        Ok(self)
    }

    /// The attached security event log, if any.
    pub fn security_events(&self) -> Option<&SecurityEvents> {
        self.inner.events.as_ref()
    }

    /// At most `limit` security events of `user`, newest first, only those older than
    /// the event `before` when given (the paging cursor: the last id of a page). Empty
    /// when no log is attached.
    pub async fn user_events(
        &self,
        user: UserId,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<SecurityEvent>, AuthError> {
        match &self.inner.events {
            Some(events) => Ok(events.log().list_events(user, before, limit).await?),
            None => Ok(Vec::new()),
        }
    }

    /// Queues an event of `user` by a request from `client` (never waits).
    pub(super) fn record(&self, user: UserId, kind: EventKind, client: &ClientInfo) {
        self.record_subject(Subject::User(user), kind, client.ip, client.user_agent.as_deref());
    }

    /// Queues an event of `user` by the client that opened `session`.
    pub(super) fn record_by_session(&self, kind: EventKind, session: &Session) {
        let subject = Subject::User(session.key.user);
        self.record_subject(subject, kind, session.ip, session.user_agent.as_deref());
    }

    /// Queues an event of the account with the (normalized) address `email`, if there
    /// is one: the writer looks it up.
    pub(super) fn record_by_email(&self, email: &str, kind: EventKind, client: &ClientInfo) {
        let subject = Subject::Email(email.to_owned());
        self.record_subject(subject, kind, client.ip, client.user_agent.as_deref());
    }

    fn record_subject(
        &self,
        subject: Subject,
        kind: EventKind,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
    ) {
        let Some(events) = &self.inner.events else { return };
        let max = self.inner.config.user_agent_max_len;
        let user_agent = user_agent.map(|ua| super::sessions::truncate(ua, max).to_owned());
        events.record(Pending { subject, kind, at: self.now(), ip, user_agent });
    }
}
