//! # auth
//!
//! The authentication flows of tiered-auth as a library: register, verify email, resend
//! verification, login, validate (with sliding renewal), logout, logout everywhere, list
//! and revoke sessions, change password, forgot and reset password.
//!
//! Architecture invariant: this crate knows no HTTP. It works over the `cache-core` store
//! traits and an injected clock; `authd` maps [`AuthError`] to status codes and sets the
//! cookies. Mail goes out through a [`Mailer`] (SMTP or one `.eml` file per message).

pub mod abuse;
pub mod config;
pub mod error;
pub mod events;
pub mod mail;
pub mod password;
mod service;
mod validate;

/// The bundled breach list, by its former path (now [`password::common_password_count`]).
pub mod passwords {
    pub use crate::password::common_password_count;
}

pub use abuse::{Abuse, AbuseConfig, Action, Detector, Scope};
pub use config::{Argon2Params, AuthConfig, FingerprintPolicy, PasswordPolicy};
pub use error::AuthError;
pub use events::{EventsConfig, SecurityEvents};
pub use mail::{
    FileMailer, MailError, MailKind, Mailer, OutgoingMail, SmtpConfig, SmtpMailer, SmtpTls,
};
pub use service::{
    AuthService, Authenticated, ClientInfo, LoginInput, LoginOutcome, RegisterInput, SessionInfo,
    Stores,
};

// What callers need from cache-core, so that `authd` can name them through this crate.
pub use cache_core::{
    AccountStore, BoxError, Clock, EventKind, EventLog, ManualClock, Purpose, SecurityEvent,
    Session, SessionKey, SessionStore, SessionToken, SharedClock, StoreError, SystemClock,
    TokenHash, User, UserCache, UserId, VerificationStore, VerificationToken,
};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
