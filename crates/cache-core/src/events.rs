//! The per-user security event log: what happened to an account (sign-ins, failures,
//! sign-outs, password changes, resets, new devices, lockouts), when, from which address
//! and device. [`EventLog`] is implemented by the authority (SQL) only; no cache tier
//! is involved.
//!
//! An event never holds a token, a password or a hash: only its kind, its time (from the
//! injected clock), the client address and a device summary ("Firefox on Linux").

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::StoreResult;
use crate::model::UserId;

/// What happened. Stored by its [`EventKind::as_str`] name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A successful sign-in.
    SignIn,
    /// A wrong password for this account.
    SignInFailed,
    /// The user signed out (one session).
    SignOut,
    /// The user ended all their sessions (or all but the current one).
    SignOutEverywhere,
    /// The user ended one of their sessions from the session list.
    SessionEnded,
    /// An administrator ended the user's sessions.
    SessionEndedByAdmin,
    /// The user changed their password.
    PasswordChanged,
    /// A password reset link was requested for this account.
    PasswordResetRequested,
    /// The password was reset through a link.
    PasswordReset,
    /// The email address was confirmed.
    EmailVerified,
    /// A sign-in from a device not seen for this user within the window (mailed).
    NewDeviceSignIn,
    /// A sign-in was refused by the rate limits (the account is locked out for a while).
    BlockedByLimits,
    /// Failed sign-ins crossed the alert threshold within the window (mailed).
    FailedSignInAlert,
}

impl EventKind {
    /// Every kind, in declaration order.
    pub const ALL: [EventKind; 13] = [
        EventKind::SignIn,
        EventKind::SignInFailed,
        EventKind::SignOut,
        EventKind::SignOutEverywhere,
        EventKind::SessionEnded,
        EventKind::SessionEndedByAdmin,
        EventKind::PasswordChanged,
        EventKind::PasswordResetRequested,
        EventKind::PasswordReset,
        EventKind::EmailVerified,
        EventKind::NewDeviceSignIn,
        EventKind::BlockedByLimits,
        EventKind::FailedSignInAlert,
    ];

    /// The stored and displayed name (`sign_in`, `sign_in_failed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SignIn => "sign_in",
            EventKind::SignInFailed => "sign_in_failed",
            EventKind::SignOut => "sign_out",
            EventKind::SignOutEverywhere => "sign_out_everywhere",
            EventKind::SessionEnded => "session_ended",
            EventKind::SessionEndedByAdmin => "session_ended_by_admin",
            EventKind::PasswordChanged => "password_changed",
            EventKind::PasswordResetRequested => "password_reset_requested",
            EventKind::PasswordReset => "password_reset",
            EventKind::EmailVerified => "email_verified",
            EventKind::NewDeviceSignIn => "new_device_sign_in",
            EventKind::BlockedByLimits => "blocked_by_limits",
            EventKind::FailedSignInAlert => "failed_sign_in_alert",
        }
    }

    /// The kind named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Whose account.
    pub user: UserId,
    /// What happened.
    pub kind: EventKind,
    /// When (the injected clock at the time of the flow).
    pub at: DateTime<Utc>,
    /// The client's address, if known.
    pub ip: Option<IpAddr>,
    /// A device summary for people ("Firefox on Linux").
    pub device: Option<String>,
    /// What "the same device" compares: browser family, OS family and address network.
    pub device_key: Option<String>,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    /// Increasing id: the paging cursor (newer events have larger ids).
    pub id: i64,
    /// Whose account.
    pub user: UserId,
    /// What happened.
    pub kind: EventKind,
    /// When.
    pub at: DateTime<Utc>,
    /// The client's address, if known.
    pub ip: Option<IpAddr>,
    /// The device summary, if known.
    pub device: Option<String>,
}

/// The security event log (the SQL authority).
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Appends `events` (in order, in one transaction where the store can).
    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()>;

    /// At most `limit` events of `user`, newest first (by id), only those with an id
    /// below `before` when given.
    async fn list_events(
        &self,
        user: UserId,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<SecurityEvent>>;

    /// How many events of `user` of `kind` there are at or after `since` (all of them
    /// when `None`), only those with this `device_key` when given.
    async fn count_events(
        &self,
        user: UserId,
        kind: EventKind,
        device_key: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> StoreResult<u64>;

    /// Deletes at most `limit` events recorded before `before`; returns how many.
    async fn trim_events(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64>;
}

#[async_trait]
impl<T: EventLog + ?Sized> EventLog for Arc<T> {
    async fn append_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        (**self).append_events(events).await
    }
    async fn list_events(
        &self,
        user: UserId,
        before: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<SecurityEvent>> {
        (**self).list_events(user, before, limit).await
    }
    async fn count_events(
        &self,
        user: UserId,
        kind: EventKind,
        device_key: Option<&str>,
        since: Option<DateTime<Utc>>,
    ) -> StoreResult<u64> {
        (**self).count_events(user, kind, device_key, since).await
    }
    async fn trim_events(&self, before: DateTime<Utc>, limit: usize) -> StoreResult<u64> {
        (**self).trim_events(before, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_by_name() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
        assert_eq!(EventKind::parse("nope"), None);
    }
}
