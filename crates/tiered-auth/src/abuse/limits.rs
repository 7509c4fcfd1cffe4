//! Rate limits: counting attempts of an action per address, account, pair and session,
//! and the [`Permits`] a request keeps (failure) or releases (success).

use std::net::IpAddr;

use cache_core::{Decision, EventId, RateKey, TokenHash};

use super::{Abuse, Action, Scope};
use crate::error::{AuthError, Chain};

/// An admitted attempt, counted until it leaves the window unless released.
#[derive(Debug)]
#[must_use = "an attempt that succeeded must be released, one that failed kept"]
pub struct Permit {
    key: RateKey,
    event: EventId,
}

/// The admitted attempts of one request (a login counts in three scopes).
#[derive(Debug, Default)]
#[must_use = "an attempt that succeeded must be released, one that failed kept"]
pub struct Permits(Vec<Permit>);

impl Permits {
    /// Keeps the attempts counted (the request failed).
    pub fn keep(self) {}
}

/// The refusal for a decision that did not admit.
fn limited(decision: &Decision) -> AuthError {
    let retry_after = decision.retry_after.unwrap_or(decision.reset_after);
    AuthError::RateLimited {
        retry_after,
        limit: decision.limit,
        remaining: decision.remaining,
        reset: decision.reset_after,
    }
}

impl Abuse {
    /// Counts one attempt of `action` in `scope` for `subject` (already normalized);
    /// `RateLimited` when the limit is reached. Actions without a limit in that scope are
    /// admitted without being counted.
    async fn acquire(
        &self,
        action: Action,
        scope: Scope,
        subject: &str,
        event: &EventId,
    ) -> Result<Option<Permit>, AuthError> {
        let Some(limit) = self.inner.config.limit(action, scope) else { return Ok(None) };
        let key = RateKey::new(action.as_str(), scope.as_str(), subject);
        let decision = self.inner.limiter.acquire(&key, &limit, event, self.now()).await?;
        let result = if decision.allowed { "allowed" } else { "limited" };
        metrics::counter!(
            "ratelimit_decisions_total",
            "action" => action.as_str(),
            "scope" => scope.as_str(),
            "result" => result
        )
        .increment(1);
        if decision.allowed {
            Ok(Some(Permit { key, event: event.clone() }))
        } else {
            tracing::debug!(action = action.as_str(), scope = scope.as_str(), "rate limited");
            Err(limited(&decision))
        }
    }

    /// Counts attempts in several scopes as one: all admitted, or none counted.
    async fn acquire_all(
        &self,
        action: Action,
        checks: &[(Scope, &str)],
    ) -> Result<Permits, AuthError> {
        let event = EventId::random().map_err(AuthError::internal)?;
        let mut permits = Permits::default();
        for (scope, subject) in checks {
            match self.acquire(action, *scope, subject, &event).await {
                Ok(permit) => permits.0.extend(permit),
                Err(e) => {
                    self.release(permits).await;
                    return Err(e);
                }
            }
        }
        Ok(permits)
    }

    /// Counts an attempt of `action` from `ip` in the per-address limit (for the HTTP
    /// layer, which knows the address of flows that do not take it). Release the permit
    /// when the attempt must not count.
    pub async fn check_address(&self, action: Action, ip: IpAddr) -> Result<Permits, AuthError> {
        let subject = self.address_subject(ip).to_string();
        match self.network_subject(ip) {
            Some(network) => {
                let network = network.to_string();
                self.acquire_all(action, &[(Scope::Address, &subject), (Scope::Network, &network)])
                    .await
            }
            None => self.acquire_all(action, &[(Scope::Address, &subject)]).await,
        }
    }

    /// Counts an attempt of `action` for the account `email` (normalized).
    pub async fn check_account(&self, action: Action, email: &str) -> Result<Permits, AuthError> {
        self.acquire_all(action, &[(Scope::Account, email)]).await
    }

    /// Counts a login attempt for `account` (normalized email) from `ip` in all three
    /// scopes. Release the permits when the login succeeds.
    pub async fn check_login(
        &self,
        ip: Option<IpAddr>,
        account: &str,
    ) -> Result<Permits, AuthError> {
        match ip {
            Some(ip) => {
                let address = self.address_subject(ip).to_string();
                let pair = format!("{address} {account}");
                let network = self.network_subject(ip).map(|n| n.to_string());
                let mut checks = vec![
                    (Scope::Account, account),
                    (Scope::AddressAccount, pair.as_str()),
                    (Scope::Address, address.as_str()),
                ];
                if let Some(network) = &network {
                    checks.push((Scope::Network, network));
                }
                self.acquire_all(Action::Login, &checks).await
            }
            None => self.acquire_all(Action::Login, &[(Scope::Account, account)]).await,
        }
    }

    /// Counts a check of the current password by a password change, made with the
    /// session `session` for `account` (normalized email) from `ip`: in the three login
    /// scopes (the same buckets as logins, so that failures of either lock out both)
    /// and per session. Keep the permits when the password was wrong, release them
    /// otherwise.
    pub async fn check_password_change(
        &self,
        ip: Option<IpAddr>,
        account: &str,
        session: &TokenHash,
    ) -> Result<Permits, AuthError> {
        let session = session.to_hex();
        let mut checks: Vec<(Scope, &str)> = vec![(Scope::Session, &session)];
        let (address, pair);
        checks.push((Scope::Account, account));
        if let Some(ip) = ip {
            address = self.address_subject(ip).to_string();
            pair = format!("{address} {account}");
            checks.push((Scope::AddressAccount, &pair));
            checks.push((Scope::Address, &address));
        }
        self.acquire_all(Action::Login, &checks).await
    }

    /// Forgets the attempts of a request that must not count (a success).
    pub async fn release(&self, permits: Permits) {
        for permit in permits.0 {
            if let Err(e) = self.inner.limiter.release(&permit.key, &permit.event).await {
                // The attempt then counts until it leaves the window: failing closed.
                tracing::warn!(error = %Chain(&e), "could not release a rate-limit event");
            }
        }
    }
}
