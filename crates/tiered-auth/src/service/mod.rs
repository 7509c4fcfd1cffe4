//! [`AuthService`]: every flow, over the store traits, a mailer and the clock.
//!
//! The flows are split by subject: `sessions.rs` (login, validate with renewal, logout,
//! session lists and revocation), `accounts.rs` (register, verify, resend, change,
//! forgot and reset password, and the verification links they issue), `events.rs`
//! (recording security events off the request path, and reading them), `mails.rs` (the
//! texts of the mails); `types.rs` holds the inputs and answers of the flows. This file
//! builds the service and runs its background work.

mod accounts;
mod events;
mod mails;
mod sessions;
mod types;

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use cache_core::{SharedClock, TokenHash};
use chrono::{DateTime, Utc};

pub use types::{
    Authenticated, ClientInfo, LoginInput, LoginOutcome, RegisterInput, SessionInfo, Stores,
};

use crate::abuse::Abuse;
use crate::config::{Argon2Params, AuthConfig};
use crate::error::AuthError;
use crate::mail::{Mailer, OutgoingMail};
use crate::password::Hasher;
use mails::send_mail;

/// The password behind the dummy hash that unknown emails are verified against, so that a
/// login for a missing account costs one argon2 verification like a wrong password does.
/// Its value is irrelevant: that path answers `InvalidCredentials` whatever the outcome.
const DUMMY_PASSWORD: &str = "tiered-auth dummy password, never a real one";

/// How often a conflicting renewal is retried before the session is served as read.
const RENEW_ATTEMPTS: usize = 3;

/// The authentication flows. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct AuthService {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    config: AuthConfig,
    stores: Stores,
    mailer: Arc<dyn Mailer>,
    clock: SharedClock,
    hasher: Hasher,
    dummy_hash: String,
    base_url: String,
    /// Rate limits and automatic blocks, when attached ([`AuthService::with_abuse`]).
    abuse: Option<Abuse>,
    /// The security event log, when attached ([`AuthService::with_events`]).
    events: Option<crate::events::SecurityEvents>,
    /// Where background work (link writes, mail) runs: the runtime the service was
    /// built on, when there was one. An HTTP server's request threads (actix-web runs a
    /// single-threaded runtime per worker) then do not run it between requests, so it
    /// delays neither the answer that caused it nor the next request on that thread.
    background: Option<tokio::runtime::Handle>,
    /// The last address each session was seen from under the lenient fingerprint
    /// policy, so that an address change is logged once rather than on every request.
    seen_addresses: Arc<Mutex<HashMap<TokenHash, IpAddr>>>,
}

/// Sessions remembered by `seen_addresses` before it is emptied (a log dedup, not state).
const SEEN_ADDRESSES_MAX: usize = 10_000;

impl fmt::Debug for AuthService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthService")
            .field("config", &self.inner.config)
            .field("stores", &self.inner.stores)
            .finish_non_exhaustive()
    }
}

impl AuthService {
    /// Validates `config` (argon2 parameters at or above [`Argon2Params::MINIMUM`],
    /// consistent lifetimes, an http(s) base URL) and builds the service.
    ///
    /// Computes one argon2 hash (the dummy for unknown emails) synchronously, which takes
    /// tens of milliseconds: call it at start-up, not per request. Background work (link
    /// writes and mail after register, resend and forgot) runs on the Tokio runtime this
    /// is called in, if any, else on the runtime of the request that causes it.
    pub fn new(
        config: AuthConfig,
        stores: Stores,
        mailer: Arc<dyn Mailer>,
        clock: SharedClock,
    ) -> Result<Self, AuthError> {
        if !config.argon2.meets_minimum() {
            let min = Argon2Params::MINIMUM;
            return Err(AuthError::Config(format!(
                "argon2 parameters must be at least m={} KiB, t={}, p={}",
                min.memory_kib, min.iterations, min.parallelism
            )));
        }
        Self::build(config, stores, mailer, clock)
    }

    /// Like [`AuthService::new`] but accepts argon2 parameters below the production
    /// minimum, such as [`Argon2Params::INSECURE_FOR_TESTS`]. For tests only: hashes made
    /// with weak parameters are cheap to crack.
    pub fn new_insecure_for_tests(
        config: AuthConfig,
        stores: Stores,
        mailer: Arc<dyn Mailer>,
        clock: SharedClock,
    ) -> Result<Self, AuthError> {
        if !config.argon2.meets_minimum() {
            tracing::warn!("argon2 parameters below the production minimum (tests only)");
        }
        Self::build(config, stores, mailer, clock)
    }

    fn build(
        config: AuthConfig,
        stores: Stores,
        mailer: Arc<dyn Mailer>,
        clock: SharedClock,
    ) -> Result<Self, AuthError> {
        check_config(&config)?;
        let hasher = Hasher::new(config.argon2, config.hash_concurrency)?;
        let dummy_hash = hasher.hash_blocking(DUMMY_PASSWORD)?;
        let base_url = config.public_base_url.trim_end_matches('/').to_owned();
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                stores,
                mailer,
                clock,
                hasher,
                dummy_hash,
                base_url,
                abuse: None,
                events: None,
                background: tokio::runtime::Handle::try_current().ok(),
                seen_addresses: Arc::default(),
            }),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &AuthConfig {
        &self.inner.config
    }

    /// Attaches the abuse protection policy: logins are then limited per account, per
    /// address and per pair (failures count, successes are released) and feed the
    /// credential-stuffing detector; resends and reset requests are limited per account;
    /// unknown session tokens feed the token-guessing detector.
    pub fn with_abuse(mut self, abuse: Abuse) -> Self {
        Arc::make_mut(&mut self.inner).abuse = Some(abuse);
        self
    }

    /// The attached abuse protection, if any.
    pub fn abuse(&self) -> Option<&Abuse> {
        self.inner.abuse.as_ref()
    }

    /// One argon2 verification run exactly as a login runs its own (on the hash pool,
    /// with the pool thread's reused memory), of a fixed password against the dummy hash
    /// made in [`AuthService::new`] at the configured parameters, and nothing else:
    /// `Ok(true)` unless the pool failed. The bare cost of a login's verify, for
    /// benchmarks (`authd`'s bench-only `/bench/baseline/argon2`).
    pub async fn verify_dummy_password(&self) -> Result<bool, AuthError> {
        self.inner.hasher.verify(DUMMY_PASSWORD.to_owned(), self.inner.dummy_hash.clone()).await
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    fn stores(&self) -> &Stores {
        &self.inner.stores
    }

    /// Sends in the background, so that the answer neither waits for the mail server nor
    /// tells by its timing whether a mail was sent.
    fn spawn_mail(&self, mail: OutgoingMail) {
        let mailer = Arc::clone(&self.inner.mailer);
        self.spawn_background(async move { send_mail(mailer.as_ref(), mail).await });
    }

    /// Spawns `work` on the background runtime (see `Inner::background`), else on the
    /// caller's.
    /// The work keeps the caller's span (the HTTP request's, with its request id), so
    /// that its log lines can be joined with the request's.
    fn spawn_background(&self, work: impl Future<Output = ()> + Send + 'static) {
        let work = tracing::Instrument::in_current_span(work);
        match &self.inner.background {
            Some(runtime) => drop(runtime.spawn(work)),
            None => drop(tokio::spawn(work)),
        }
    }
}

fn check_config(config: &AuthConfig) -> Result<(), AuthError> {
    let fail = |msg: &str| Err(AuthError::Config(msg.to_owned()));
    let zero = chrono::Duration::zero();
    if config.session_idle <= zero || config.session_absolute <= zero {
        return fail("session_idle and session_absolute must be positive");
    }
    if config.session_update_age < zero || config.session_update_age >= config.session_idle {
        return fail("session_update_age must be at least zero and less than session_idle");
    }
    if config.email_verification_ttl <= zero || config.password_reset_ttl <= zero {
        return fail("token lifetimes must be positive");
    }
    if config.unverified_account_ttl <= zero {
        return fail("unverified_account_ttl must be positive");
    }
    if config.password.min_chars == 0 || config.password.min_chars > config.password.max_chars {
        return fail("password.min_chars must be between 1 and password.max_chars");
    }
    if config.password.max_chars < 128 {
        return fail("password.max_chars must be at least 128");
    }
    let url = config.public_base_url.as_str();
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    if rest.is_none_or(|host| host.is_empty() || host.contains(['#', '?', ' '])) {
        return fail("public_base_url must be an http(s) URL without query or fragment");
    }
    Ok(())
}
