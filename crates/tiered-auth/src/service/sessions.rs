//! Session flows: login, validate (with sliding renewal and the fingerprint check),
//! logout, logout everywhere, and listing and revoking sessions.

use std::net::IpAddr;
use std::sync::PoisonError;

use cache_core::{
    Conflict, EventKind, Session, SessionKey, SessionToken, SessionWithUser, StoreError, TokenHash,
    UserId,
};
use chrono::{DateTime, Utc};

use super::{
    AuthService, Authenticated, ClientInfo, LoginInput, LoginOutcome, RENEW_ATTEMPTS,
    SEEN_ADDRESSES_MAX, SessionInfo,
};
use crate::config::FingerprintPolicy;
use crate::error::{AuthError, Chain};
use crate::validate::normalize_email;

impl AuthService {
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
        let permits = match abuse.check_login(client.ip, &account).await {
            Ok(permits) => permits,
            Err(e) => {
                if matches!(e, AuthError::RateLimited { .. }) {
                    self.record_by_email(&account, EventKind::BlockedByLimits, client);
                }
                return Err(e);
            }
        };
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
            self.record(credentials.user.id, EventKind::SignInFailed, client);
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
        self.record(user.id, EventKind::SignIn, client);
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
            self.record(key.user, EventKind::SignOut, client);
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
        self.record_by_session(EventKind::SignOutEverywhere, &auth.session);
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
        self.record_by_session(EventKind::SessionEnded, &auth.session);
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
        self.record(user, EventKind::SessionEndedByAdmin, &ClientInfo::default());
        Ok(revoked)
    }

    /// Drops cached copies of a profile after its authoritative row changed. The change
    /// is already durable; a cache that cannot be reached serves the old profile until its
    /// TTL, which is logged rather than turned into a failure of the flow.
    pub(super) async fn invalidate_user(&self, user: UserId) {
        if let Err(e) = self.stores().users.invalidate_user(user).await {
            tracing::warn!(user = %user, error = %Chain(&e), "could not invalidate the cached profile");
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a char boundary.
pub(super) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
}
