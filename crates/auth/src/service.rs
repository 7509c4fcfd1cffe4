//! [`AuthService`]: every flow, over the store traits, a mailer and the clock.
// tidy: long-file session flows, account flows and the mail texts; the split along those seams is pending (issue 18)

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use cache_core::{
    AccountStore, Conflict, NewUser, Purpose, Session, SessionKey, SessionLookup, SessionToken,
    SessionWithUser, SharedClock, StoreError, TokenHash, User, UserCache, UserId, Verification,
    VerificationStore, VerificationToken,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::abuse::Abuse;
use crate::config::{Argon2Params, AuthConfig, FingerprintPolicy};
use crate::error::{AuthError, Chain};
use crate::mail::{MailKind, Mailer, OutgoingMail};
use crate::password::{Hasher, check_policy};
use crate::validate::{normalize_email, normalize_name};

/// The stores the flows run on. Usually each is a [`cache_core::Tiered`] composition and
/// `accounts` is the SQL store.
#[derive(Clone)]
pub struct Stores {
    /// Sessions (read together with their user where the tiers can).
    pub sessions: Arc<dyn SessionLookup>,
    /// User profiles.
    pub users: Arc<dyn UserCache>,
    /// Email verification and password reset tokens.
    pub verifications: Arc<dyn VerificationStore>,
    /// Accounts and credentials (the authority, never cached).
    pub accounts: Arc<dyn AccountStore>,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stores")
            .field("sessions", &self.sessions.tier())
            .field("users", &self.users.tier())
            .field("verifications", &self.verifications.tier())
            .finish_non_exhaustive()
    }
}

/// What is known about the client of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    /// The `User-Agent` header, if any (truncated when stored).
    pub user_agent: Option<String>,
    /// The client's address (after trusted-proxy resolution).
    pub ip: Option<IpAddr>,
}

/// A registration request. `Debug` leaves the password out.
#[derive(Clone, Deserialize)]
pub struct RegisterInput {
    /// Display name.
    pub name: String,
    /// Email address (normalized by the flow).
    pub email: String,
    /// The chosen password.
    pub password: String,
}

impl fmt::Debug for RegisterInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterInput")
            .field("name", &self.name)
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A login request. `Debug` leaves the password out.
#[derive(Clone, Deserialize)]
pub struct LoginInput {
    /// Email address (normalized by the flow).
    pub email: String,
    /// The password.
    pub password: String,
}

impl fmt::Debug for LoginInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginInput")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A successful login: the new token (for the cookie), its session and the user.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    /// The new session token; `encode()` it into the cookie.
    pub token: SessionToken,
    /// The session as stored.
    pub session: Session,
    /// The user's profile.
    pub user: User,
}

/// The result of a successful [`AuthService::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// The session's user.
    pub user: User,
    /// The session (after renewal, if it was renewed); `session.key` identifies it.
    pub session: Session,
}

/// One session as shown to its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// Opaque id: the hex SHA-256 of the token secret (useless as a credential).
    pub id: String,
    /// Login time.
    pub created_at: DateTime<Utc>,
    /// Last renewal (or login): the session was used at or after this.
    pub last_seen_at: DateTime<Utc>,
    /// When the session ends unless used (never after the absolute lifetime).
    pub expires_at: DateTime<Utc>,
    /// User agent at login.
    pub user_agent: Option<String>,
    /// Client address at login.
    pub ip: Option<IpAddr>,
    /// Whether this is the session making the request.
    pub current: bool,
}

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

    /// Creates an unverified account and mails a verification link. Answers the same
    /// `Ok(())` when the email is taken (after the same hashing work), and then mails the
    /// owner a notice instead of a link.
    ///
    /// The account insert is the last thing awaited, on both paths (a `StoreError` from
    /// it is the answer: never a false success). The verification link is stored and
    /// mailed by a background task, and the notice mailed by one, so that a taken
    /// address answers as fast as a free one; a failure there is logged and counted
    /// (`auth_background_failures_total`), and `resend_verification` recovers from it.
    pub async fn register(&self, input: RegisterInput) -> Result<(), AuthError> {
        let name = normalize_name(&input.name)?;
        let email = normalize_email(&input.email)?;
        check_policy(&self.inner.config.password, "password", &input.password)?;
        let password_hash = self.inner.hasher.hash(input.password).await?;
        let id = UserId::random().map_err(AuthError::internal)?;
        let user = User { id, name, email, email_verified: false, created_at: self.now() };
        let new_user = NewUser { user, password_hash };
        match self.stores().accounts.create_account(&new_user).await {
            Ok(()) => {
                let email = new_user.user.email;
                self.spawn_verification(Flow::Register, id, email, Purpose::EmailVerification);
                metrics::counter!("auth_registrations_total", "result" => "created").increment(1);
            }
            Err(StoreError::Conflict(Conflict::Exists)) => {
                // The email is taken (an id collision is a 2^-63 event). The answer does
                // not say so; the owner learns about the attempt by mail, spawned like the
                // other path's work so that both answer after the same awaits.
                let mail = already_registered_mail(&self.inner.base_url, new_user.user.email);
                self.spawn_mail(mail);
                metrics::counter!("auth_registrations_total", "result" => "taken").increment(1);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Consumes an email verification token and marks the address verified. Nothing
    /// else: it opens no session and sets no password, so clicking a link of an account
    /// someone else registered with this address does not hand that account over (the
    /// mail says so; `forgot_password` is the owner's way in).
    pub async fn verify_email(&self, token: &str) -> Result<User, AuthError> {
        let token = VerificationToken::parse(token).map_err(|_| AuthError::InvalidToken)?;
        let stores = self.stores();
        let verification = stores
            .verifications
            .consume(&token.hash(), Purpose::EmailVerification)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let user = stores
            .accounts
            .mark_email_verified(verification.user, &verification.identifier)
            .await?
            // The account is gone or its address changed since the link was sent.
            .ok_or(AuthError::InvalidToken)?;
        self.invalidate_user(user.id).await;
        Ok(user)
    }

    /// Sends a new verification link to a known, unverified address (older links stop
    /// working). Does nothing otherwise; answers `Ok(())` in every case, after the same
    /// awaits (the lookup): the link is stored and mailed by a background task.
    pub async fn resend_verification(&self, email: &str) -> Result<(), AuthError> {
        let email = normalize_email(email)?;
        if let Some(abuse) = &self.inner.abuse {
            // Every request counts, known address or not: the answer must not differ.
            abuse.check_account(crate::abuse::Action::ResendVerification, &email).await?.keep();
        }
        if let Some(credentials) = self.stores().accounts.credentials_by_email(&email).await? {
            let user = credentials.user;
            if !user.email_verified {
                let purpose = Purpose::EmailVerification;
                self.spawn_verification(Flow::Resend, user.id, user.email, purpose);
            }
        }
        Ok(())
    }

    /// Checks the credentials and opens a new session (a new token every time).
    ///
    /// An unknown email and a wrong password both give `InvalidCredentials` after one
    /// argon2 verification each; `EmailNotVerified` only follows a correct password.
    /// With [`AuthService::with_abuse`], an attempt over a limit is `RateLimited` before
    /// any work, and a wrong password counts towards the limits and the stuffing detector.
    pub async fn login(
        &self,
        input: LoginInput,
        client: &ClientInfo,
    ) -> Result<LoginOutcome, AuthError> {
        let Some(abuse) = &self.inner.abuse else {
            return self.login_unguarded(input, client).await;
        };
        // Keyed by what the flow would look up, so that case and spaces do not make
        // new accounts out of one.
        let account =
            normalize_email(&input.email).unwrap_or_else(|_| input.email.trim().to_lowercase());
        let permits = abuse.check_login(client.ip, &account).await?;
        let result = self.login_unguarded(input, client).await;
        match &result {
            Err(AuthError::InvalidCredentials) => {
                permits.keep();
                abuse.login_failed(client.ip, &account).await;
            }
            // A success, a right password for an unverified address, or a failure of
            // ours: not a guess, so it does not count.
            _ => abuse.release(permits).await,
        }
        result
    }

    async fn login_unguarded(
        &self,
        input: LoginInput,
        client: &ClientInfo,
    ) -> Result<LoginOutcome, AuthError> {
        let LoginInput { email, password } = input;
        // No account can have a password outside the policy's length limits, so there is
        // nothing to hide: refuse before spending an argon2 computation on it.
        if password.chars().count() > self.inner.config.password.max_chars {
            return Err(AuthError::InvalidCredentials);
        }
        let credentials = match normalize_email(&email) {
            Ok(email) => self.stores().accounts.credentials_by_email(&email).await?,
            Err(_) => None,
        };
        let Some(credentials) = credentials else {
            self.inner.hasher.verify(password, self.inner.dummy_hash.clone()).await?;
            metrics::counter!("auth_logins_total", "result" => "invalid").increment(1);
            return Err(AuthError::InvalidCredentials);
        };
        if !self.inner.hasher.verify(password, credentials.password_hash).await? {
            metrics::counter!("auth_logins_total", "result" => "invalid").increment(1);
            return Err(AuthError::InvalidCredentials);
        }
        let user = credentials.user;
        if !user.email_verified {
            metrics::counter!("auth_logins_total", "result" => "unverified").increment(1);
            return Err(AuthError::EmailNotVerified);
        }

        let token = SessionToken::generate(user.id).map_err(AuthError::internal)?;
        let now = self.now();
        let config = &self.inner.config;
        let absolute_expires_at = now + config.session_absolute;
        let session = Session {
            key: token.key(),
            created_at: now,
            renewed_at: now,
            expires_at: (now + config.session_idle).min(absolute_expires_at),
            absolute_expires_at,
            user_agent: client
                .user_agent
                .as_deref()
                .map(|ua| truncate(ua, config.user_agent_max_len).to_owned()),
            ip: client.ip,
            version: 0,
        };
        self.stores().sessions.create(&session).await?;
        // Warm the caches for the requests that follow. The session is already stored, so
        // a failure here costs only a cache miss later.
        if let Err(e) = self.stores().users.put_user(&user).await {
            tracing::warn!(user = %user.id, error = %Chain(&e), "could not warm the user cache at login");
        }
        metrics::counter!("auth_logins_total", "result" => "success").increment(1);
        metrics::counter!("auth_sessions_created_total").increment(1);
        Ok(LoginOutcome { token, session, user })
    }

    /// Resolves a session token to its user and session, renewing the session in place
    /// (same token) when it is used `session_update_age` or more after its last renewal.
    ///
    /// Without renewal this is one combined session-and-user lookup (one round trip to the
    /// tier that answers), plus a user lookup when that tier did not have the profile.
    pub async fn validate(
        &self,
        token: &str,
        client: &ClientInfo,
    ) -> Result<Authenticated, AuthError> {
        let key = SessionToken::parse(token).map_err(|_| AuthError::Unauthenticated)?.key();
        let stores = self.stores();
        let Some(SessionWithUser { mut session, user }) =
            stores.sessions.get_with_user(&key).await?
        else {
            self.no_such_session(&key, client).await;
            return Err(AuthError::Unauthenticated);
        };
        let now = self.now();
        if !session.is_live(now) {
            return Err(AuthError::Unauthenticated);
        }
        self.check_fingerprint(&session, client).await?;
        if now - session.renewed_at >= self.inner.config.session_update_age {
            session = self.renew(&key, session, now).await?;
        }
        let user = match user {
            Some(user) => user,
            None => stores.users.get_user(key.user).await?.ok_or(AuthError::Unauthenticated)?,
        };
        Ok(Authenticated { user, session })
    }

    /// Applies the fingerprint policy to a live session used by `client`: a violation
    /// revokes the session and answers `Unauthenticated`.
    async fn check_fingerprint(
        &self,
        session: &Session,
        client: &ClientInfo,
    ) -> Result<(), AuthError> {
        let policy = self.inner.config.fingerprint;
        if policy == FingerprintPolicy::Off {
            return Ok(());
        }
        // Compared as stored: cut to the same length as at login.
        let max = self.inner.config.user_agent_max_len;
        let agent = client.user_agent.as_deref().map(|ua| truncate(ua, max));
        let agent_matches = agent == session.user_agent.as_deref();
        let canonical = |ip: Option<IpAddr>| ip.map(|ip| ip.to_canonical());
        let address_matches = canonical(client.ip) == canonical(session.ip);
        let violated = match policy {
            FingerprintPolicy::Off => false,
            FingerprintPolicy::Lenient => !agent_matches,
            FingerprintPolicy::Strict => !agent_matches || !address_matches,
        };
        if !violated {
            if !address_matches {
                self.log_address_change(session, client.ip);
            }
            return Ok(());
        }
        let user = session.key.user;
        metrics::counter!("fingerprint_violations_total", "policy" => policy.as_str()).increment(1);
        tracing::warn!(
            user = %user,
            policy = policy.as_str(),
            user_agent_changed = !agent_matches,
            address_changed = !address_matches,
            "session used by another client than the one that logged in: revoked"
        );
        match self.stores().sessions.delete(&session.key).await {
            Ok(_) => {
                metrics::counter!("auth_sessions_revoked_total", "reason" => "fingerprint")
                    .increment(1);
            }
            // Refused either way; the session stays refused on its next use too.
            Err(e) => {
                tracing::error!(user = %user, error = %Chain(&e), "could not revoke a session after a fingerprint violation")
            }
        }
        Err(AuthError::Unauthenticated)
    }

    /// Logs a session's move to a new address once per address (lenient policy).
    fn log_address_change(&self, session: &Session, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let mut seen = self.inner.seen_addresses.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.get(&session.key.hash) == Some(&ip) {
            return;
        }
        if seen.len() >= SEEN_ADDRESSES_MAX {
            seen.clear();
        }
        seen.insert(session.key.hash, ip);
        drop(seen);
        tracing::info!(
            user = %session.key.user,
            login_address = ?session.ip,
            address = %ip,
            "session used from a new address"
        );
    }

    /// Extends `session` with a compare-and-set on its version. A lost race re-reads the
    /// session: somebody else renewed it (use theirs) or revoked it (unauthenticated).
    async fn renew(
        &self,
        key: &SessionKey,
        mut session: Session,
        now: DateTime<Utc>,
    ) -> Result<Session, AuthError> {
        let config = &self.inner.config;
        let sessions = &self.stores().sessions;
        for _ in 0..RENEW_ATTEMPTS {
            let new_expires_at = (now + config.session_idle).min(session.absolute_expires_at);
            match sessions.extend(key, session.version, new_expires_at).await {
                Ok(Some(renewed)) => {
                    metrics::counter!("auth_sessions_renewed_total").increment(1);
                    return Ok(renewed);
                }
                Ok(None) => return Err(AuthError::Unauthenticated),
                Err(StoreError::Conflict(Conflict::Version)) => {
                    session = sessions.get(key).await?.ok_or(AuthError::Unauthenticated)?;
                    if now - session.renewed_at < config.session_update_age {
                        return Ok(session);
                    }
                }
                Err(e) => {
                    // The session is valid for days yet (idle minus update age); a failed
                    // renewal is retried by the next request rather than failing this one.
                    tracing::warn!(user = %key.user, error = %Chain(&e), "session renewal failed");
                    return Ok(session);
                }
            }
        }
        Ok(session)
    }

    /// A well-formed token named no session. Evidence for the token-guessing detector
    /// only when its user id names no account either: every token of a session that
    /// really existed (expired, logged out, revoked) names its account, and coming back
    /// with one must never get an address blocked (a NAT shares it with many users). A
    /// 256-bit secret cannot be guessed, so what is left to catch is noise with made-up
    /// user ids. One profile read, on this failure path only.
    async fn no_such_session(&self, key: &SessionKey, client: &ClientInfo) {
        let Some(abuse) = &self.inner.abuse else { return };
        match self.stores().users.get_user(key.user).await {
            Ok(Some(_)) => {}
            Ok(None) => abuse.unknown_token(client.ip, &key.hash).await,
            // Not evidence either way; the request is refused regardless.
            Err(e) => tracing::debug!(error = %Chain(&e), "token-guessing check skipped"),
        }
    }

    /// Ends the session of `token`. Idempotent: an unknown or malformed token is `Ok` and
    /// writes nothing anywhere.
    pub async fn logout(&self, token: &str) -> Result<(), AuthError> {
        self.logout_from(token, &ClientInfo::default()).await
    }

    /// [`AuthService::logout`] of a request from `client`: an unknown token also counts
    /// for the token-guessing detector, as on any other route.
    pub async fn logout_from(&self, token: &str, client: &ClientInfo) -> Result<(), AuthError> {
        let Ok(token) = SessionToken::parse(token) else {
            return Ok(());
        };
        let key = token.key();
        if self.stores().sessions.delete(&key).await? {
            metrics::counter!("auth_sessions_revoked_total", "reason" => "logout").increment(1);
        } else {
            self.no_such_session(&key, client).await;
        }
        Ok(())
    }

    /// Ends every session of the caller, or every other one with `keep_current`; returns
    /// how many were ended.
    pub async fn logout_everywhere(
        &self,
        auth: &Authenticated,
        keep_current: bool,
    ) -> Result<u64, AuthError> {
        let keep = keep_current.then_some(auth.session.key.hash);
        let revoked = self.stores().sessions.delete_user_sessions(auth.user.id, keep).await?;
        metrics::counter!("auth_sessions_revoked_total", "reason" => "logout_everywhere")
            .increment(revoked);
        Ok(revoked)
    }

    /// The caller's live sessions, most recently renewed first.
    pub async fn list_sessions(&self, auth: &Authenticated) -> Result<Vec<SessionInfo>, AuthError> {
        let sessions = self.stores().sessions.list_user_sessions(auth.user.id).await?;
        let current = auth.session.key.hash;
        Ok(sessions
            .into_iter()
            .map(|s| SessionInfo {
                id: s.key.hash.to_hex(),
                created_at: s.created_at,
                last_seen_at: s.renewed_at,
                expires_at: s.expires_at.min(s.absolute_expires_at),
                current: s.key.hash == current,
                user_agent: s.user_agent,
                ip: s.ip,
            })
            .collect())
    }

    /// Ends one of the caller's sessions by its [`SessionInfo::id`]. `NotFound` for any
    /// id that is not a live session of the caller.
    pub async fn revoke_session(&self, auth: &Authenticated, id: &str) -> Result<(), AuthError> {
        let hash = TokenHash::from_hex(id).ok_or(AuthError::NotFound)?;
        let key = SessionKey { user: auth.user.id, hash };
        if !self.stores().sessions.delete(&key).await? {
            return Err(AuthError::NotFound);
        }
        metrics::counter!("auth_sessions_revoked_total", "reason" => "revoke").increment(1);
        Ok(())
    }

    /// Changes the caller's password after checking the current one, then ends every
    /// other session and voids pending reset links; returns how many sessions were ended.
    ///
    /// With [`AuthService::with_abuse`], the check of the current password is limited
    /// like a login ([`Abuse::check_password_change`]): per account, address and pair in
    /// the login buckets, and per session. Over a limit it is `RateLimited` before any
    /// work; a wrong current password counts (and feeds the stuffing detector), anything
    /// else is released.
    pub async fn change_password(
        &self,
        auth: &Authenticated,
        current: &str,
        new: &str,
        client: &ClientInfo,
    ) -> Result<u64, AuthError> {
        let Some(abuse) = &self.inner.abuse else {
            return self.change_password_unguarded(auth, current, new).await;
        };
        // The profile's address is stored normalized: the same key a login uses.
        let account = auth.user.email.as_str();
        let permits =
            abuse.check_password_change(client.ip, account, &auth.session.key.hash).await?;
        let result = self.change_password_unguarded(auth, current, new).await;
        match &result {
            Err(AuthError::InvalidCredentials) => {
                permits.keep();
                abuse.login_failed(client.ip, account).await;
            }
            // A success, a weak new password after a right current one, or a failure of
            // ours: not a guess.
            _ => abuse.release(permits).await,
        }
        result
    }

    async fn change_password_unguarded(
        &self,
        auth: &Authenticated,
        current: &str,
        new: &str,
    ) -> Result<u64, AuthError> {
        let stores = self.stores();
        let user = auth.user.id;
        let credentials =
            stores.accounts.credentials_by_id(user).await?.ok_or(AuthError::Unauthenticated)?;
        if !self.inner.hasher.verify(current.to_owned(), credentials.password_hash).await? {
            return Err(AuthError::InvalidCredentials);
        }
        check_policy(&self.inner.config.password, "new_password", new)?;
        let hash = self.inner.hasher.hash(new.to_owned()).await?;
        if !stores.accounts.set_password_hash(user, &hash).await? {
            return Err(AuthError::Unauthenticated);
        }
        let revoked =
            stores.sessions.delete_user_sessions(user, Some(auth.session.key.hash)).await?;
        metrics::counter!("auth_sessions_revoked_total", "reason" => "password_change")
            .increment(revoked);
        // A reset link mailed before the change would otherwise undo it.
        stores.verifications.delete_verifications(user, Purpose::PasswordReset).await?;
        Ok(revoked)
    }

    /// Mails a password reset link to a known address (older links stop working), also
    /// when it is not verified yet: the reset then verifies it, which is how the owner
    /// of an address takes back an account someone else registered with it. Answers
    /// `Ok(())` in every case, after the same awaits (the lookup): the link is stored and
    /// mailed by a background task.
    pub async fn forgot_password(&self, email: &str) -> Result<(), AuthError> {
        let email = normalize_email(email)?;
        if let Some(abuse) = &self.inner.abuse {
            // Every request counts, known address or not: the answer must not differ.
            abuse.check_account(crate::abuse::Action::ForgotPassword, &email).await?.keep();
        }
        if let Some(credentials) = self.stores().accounts.credentials_by_email(&email).await? {
            let user = credentials.user;
            self.spawn_verification(Flow::Forgot, user.id, user.email, Purpose::PasswordReset);
        }
        Ok(())
    }

    /// Consumes a reset token, sets the new password, marks the address verified (the
    /// link proved control of the mailbox) and ends every session of the user. The
    /// password is checked first, so a weak one does not burn the token.
    pub async fn reset_password(&self, token: &str, new_password: &str) -> Result<(), AuthError> {
        let token = VerificationToken::parse(token).map_err(|_| AuthError::InvalidToken)?;
        check_policy(&self.inner.config.password, "new_password", new_password)?;
        let stores = self.stores();
        let verification = stores
            .verifications
            .consume(&token.hash(), Purpose::PasswordReset)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let user = verification.user;
        let hash = self.inner.hasher.hash(new_password.to_owned()).await?;
        // The link proves control of the address it was sent to, not of a later one: the
        // store writes only while the account's address is still that one.
        stores
            .accounts
            .reset_credentials(user, &verification.identifier, &hash)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        let revoked = stores.sessions.delete_user_sessions(user, None).await?;
        metrics::counter!("auth_sessions_revoked_total", "reason" => "password_reset")
            .increment(revoked);
        stores.verifications.delete_verifications(user, Purpose::PasswordReset).await?;
        // The address is verified now: pending verification links have nothing left to do.
        stores.verifications.delete_verifications(user, Purpose::EmailVerification).await?;
        self.invalidate_user(user).await;
        Ok(())
    }

    /// The live sessions of `user` (administration), most recently renewed first.
    pub async fn user_sessions(&self, user: UserId) -> Result<Vec<SessionInfo>, AuthError> {
        let sessions = self.stores().sessions.list_user_sessions(user).await?;
        Ok(sessions
            .into_iter()
            .map(|s| SessionInfo {
                id: s.key.hash.to_hex(),
                created_at: s.created_at,
                last_seen_at: s.renewed_at,
                expires_at: s.expires_at.min(s.absolute_expires_at),
                current: false,
                user_agent: s.user_agent,
                ip: s.ip,
            })
            .collect())
    }

    /// Ends every session of `user` (administration); returns how many were ended.
    pub async fn revoke_user_sessions(&self, user: UserId) -> Result<u64, AuthError> {
        let revoked = self.stores().sessions.delete_user_sessions(user, None).await?;
        metrics::counter!("auth_sessions_revoked_total", "reason" => "admin").increment(revoked);
        Ok(revoked)
    }

    /// Drops cached copies of a profile after its authoritative row changed. The change
    /// is already durable; a cache that cannot be reached serves the old profile until its
    /// TTL, which is logged rather than turned into a failure of the flow.
    async fn invalidate_user(&self, user: UserId) {
        if let Err(e) = self.stores().users.invalidate_user(user).await {
            tracing::warn!(user = %user, error = %Chain(&e), "could not invalidate the cached profile");
        }
    }

    /// Issues a verification link in a background task: the request that asked for it
    /// answers without waiting for the store writes and the mail, so that an address
    /// with an account costs the same on the request's path as one without. Older links
    /// of the same purpose stop working first. A failure is logged and counted, never
    /// shown: the answer was the same either way.
    fn spawn_verification(&self, flow: Flow, user: UserId, email: String, purpose: Purpose) {
        let this = self.clone();
        self.spawn_background(async move {
            if let Err(e) = this.issue_verification(user, &email, purpose).await {
                metrics::counter!("auth_background_failures_total", "flow" => flow.as_str())
                    .increment(1);
                tracing::error!(
                    flow = flow.as_str(),
                    user = %user,
                    error = %Chain(&e),
                    "verification link not issued"
                );
            }
        });
    }

    /// Supersedes the pending links of `purpose`, draws a token, stores its hash and
    /// mails the link (in this order: a link is only mailed once it works).
    async fn issue_verification(
        &self,
        user: UserId,
        email: &str,
        purpose: Purpose,
    ) -> Result<(), AuthError> {
        let verifications = &self.stores().verifications;
        verifications.delete_verifications(user, purpose).await?;
        let token = VerificationToken::generate().map_err(AuthError::internal)?;
        let now = self.now();
        let ttl = match purpose {
            Purpose::EmailVerification => self.inner.config.email_verification_ttl,
            Purpose::PasswordReset => self.inner.config.password_reset_ttl,
        };
        let verification = Verification {
            hash: token.hash(),
            purpose,
            user,
            identifier: email.to_owned(),
            created_at: now,
            expires_at: now + ttl,
        };
        verifications.put_verification(&verification).await?;
        let base_url = &self.inner.base_url;
        let mail = match purpose {
            Purpose::EmailVerification => {
                let expires = self.inner.config.unverified_account_ttl;
                verification_mail(base_url, email, &token, expires)
            }
            Purpose::PasswordReset => reset_mail(base_url, email, &token),
        };
        send_mail(self.inner.mailer.as_ref(), mail).await;
        Ok(())
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

/// The flows whose work finishes in a background task; the `flow` label of
/// `auth_background_failures_total`.
#[derive(Debug, Clone, Copy)]
enum Flow {
    Register,
    Resend,
    Forgot,
}

impl Flow {
    fn as_str(self) -> &'static str {
        match self {
            Flow::Register => "register",
            Flow::Resend => "resend_verification",
            Flow::Forgot => "forgot_password",
        }
    }
}

/// Sends `mail`; a failure is logged (without the body, which holds a token) and counted.
async fn send_mail(mailer: &dyn Mailer, mail: OutgoingMail) {
    let kind = mail.kind;
    if let Err(e) = mailer.send(mail).await {
        metrics::counter!("auth_mail_failures_total", "kind" => kind.as_str()).increment(1);
        tracing::error!(kind = kind.as_str(), error = %Chain(&e), "mail not sent");
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

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `d` in words, for mails: whole hours or days when it is a multiple of them.
fn in_words(d: chrono::Duration) -> String {
    let plural =
        |n: i64, unit: &str| if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") };
    let minutes = d.num_minutes().max(1);
    if minutes % (24 * 60) == 0 {
        plural(minutes / (24 * 60), "day")
    } else if minutes % 60 == 0 {
        plural(minutes / 60, "hour")
    } else {
        plural(minutes, "minute")
    }
}

/// The link only confirms the address, and the mail says so: whoever registered chose
/// the password, and it may not be the recipient (an attacker pre-registering their
/// address). Such an account is left to expire, or taken over with a password reset.
fn verification_mail(
    base_url: &str,
    to: &str,
    token: &VerificationToken,
    unverified_ttl: chrono::Duration,
) -> OutgoingMail {
    let link = format!("{base_url}/verify-email#token={}", token.encode());
    let expiry = in_words(unverified_ttl);
    OutgoingMail {
        to: to.to_owned(),
        subject: "Confirm your email address".to_owned(),
        text: format!(
            "Someone created an account at {base_url} with this email address.\n\n\
             If it was you, open this link to confirm your address:\n\n{link}\n\n\
             This link only confirms your address: it does not sign you in and does not \
             set a password. It works once and expires soon.\n\n\
             If you did not create this account, do not open the link; ignore this mail. \
             The unconfirmed account is deleted after {expiry}. To take it over with a \
             password of your own instead, use \"Forgot password\" at {base_url}.\n"
        ),
        kind: MailKind::EmailVerification,
    }
}

fn reset_mail(base_url: &str, to: &str, token: &VerificationToken) -> OutgoingMail {
    let link = format!("{base_url}/reset-password#token={}", token.encode());
    OutgoingMail {
        to: to.to_owned(),
        subject: "Reset your password".to_owned(),
        text: format!(
            "Someone asked to reset the password of your account.\n\nOpen this link to \
             choose a new password:\n\n{link}\n\nThe link works once and expires soon. \
             If you did not ask for it, you can ignore this message; your password is \
             unchanged.\n"
        ),
        kind: MailKind::PasswordReset,
    }
}

fn already_registered_mail(base_url: &str, to: String) -> OutgoingMail {
    OutgoingMail {
        to,
        subject: "Someone tried to register with your address".to_owned(),
        text: format!(
            "Someone (perhaps you) tried to create an account with this email address, \
             which already has one.\n\nIf it was you, sign in at {base_url} instead. If \
             you do not know the account's password (you forgot it, or you never \
             confirmed this address and someone else may have chosen it), use \
             \"Forgot password\" at {base_url}: the reset link mailed to this address \
             lets you choose a new password, confirms the address and signs out every \
             session of the account. If it was not you, you can ignore this message.\n"
        ),
        kind: MailKind::AlreadyRegistered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(truncate("ééé", 0), "");
    }

    #[test]
    fn links_carry_the_token_in_the_fragment() {
        let token = VerificationToken::generate().unwrap();
        let ttl = chrono::Duration::hours(24);
        let mail = verification_mail("https://a.example", "x@example.com", &token, ttl);
        let link = format!("https://a.example/verify-email#token={}", token.encode());
        assert!(mail.text.contains(&link));
        assert!(!format!("{mail:?}").contains(&token.encode()));
        let mail = reset_mail("https://a.example", "x@example.com", &token);
        assert!(mail.text.contains(&format!("/reset-password#token={}", token.encode())));
    }

    #[test]
    fn the_verification_mail_says_what_the_link_does_not_do() {
        let token = VerificationToken::generate().unwrap();
        let ttl = chrono::Duration::hours(24);
        let text = verification_mail("https://a.example", "x@example.com", &token, ttl).text;
        assert!(text.contains("does not sign you in"), "{text}");
        assert!(text.contains("does not set a password"), "{text}");
        assert!(text.contains("deleted after 1 day"), "{text}");
        assert_eq!(in_words(chrono::Duration::hours(36)), "36 hours");
        assert_eq!(in_words(chrono::Duration::minutes(90)), "90 minutes");
        assert_eq!(in_words(chrono::Duration::days(2)), "2 days");
        let notice = already_registered_mail("https://a.example", "x@example.com".into()).text;
        assert!(notice.contains("Forgot password"), "{notice}");
    }
}
