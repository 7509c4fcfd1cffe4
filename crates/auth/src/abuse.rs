//! [`Abuse`]: the abuse protection policy of the flows: which attempts are rate limited
// tidy: long-file the abuse policy (limits, detectors, blocks) with its tests; the split along those seams is pending (issue 18)
//! per what, and when an address gets blocked.
//!
//! Rate limits ([`AbuseConfig`], every one configurable) are sliding windows in a
//! [`RateLimitStore`] (in production Redis shared by the instances, with a per-instance
//! fallback), keyed by a digest of their subject:
//!
//! | action | per address | per account | per (address, account) | per session |
//! |---|---|---|---|---|
//! | login | yes | yes | yes | |
//! | change password (counted as login) | yes | yes | yes | yes |
//! | register | yes | | | |
//! | resend verification | yes | yes | | |
//! | forgot password | yes | yes | | |
//! | reset password | yes | | | |
//! | admin API (wrong bearer token) | yes | | | |
//!
//! A login attempt is counted while it runs and kept when it fails; a success releases
//! it, so only failures count and parallel attempts cannot outrun the limit. A password
//! change checks the current password like a login does, so it takes the login permits
//! of its account and address ([`Abuse::check_password_change`]): wrong current
//! passwords lock out logins and password changes alike, and a stolen cookie cannot be
//! used as an unlimited password oracle. An address
//! is an IPv4 address or the IPv6 /64 around it (one subscriber's allocation). An IPv6
//! address is also counted in its /48 (one site), which admits a multiple of the
//! per-address limit: without it, whoever holds a /48 would have 65,536 /64 quotas. The
//! per-account and per-pair limits are checked here; the per-address limits of the
//! flows that do not see the client's address (register, resend, forgot, reset) are
//! checked by the HTTP layer through [`Abuse::check_address`].
//!
//! Automatic blocks: failed logins for `stuffing.threshold` distinct accounts, or
//! `guessing.threshold` distinct well-formed but unknown session tokens, from one
//! address within their window block that address for `block_for`. Blocks live in a
//! [`BlockList`] (SQL, shared and durable); each instance answers [`Abuse::blocked`]
//! from a local snapshot refreshed every second, so the per-request check calls no store.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use cache_core::{
    BlockList, BlockReason, BlockSet, Cidr, Decision, EventId, IpBlock, Limit, RateKey,
    RateLimitStore, SharedClock, TokenHash,
};
use chrono::{DateTime, Utc};

use crate::error::{AuthError, Chain};

/// A flow whose attempts are limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `login`.
    Login,
    /// `register`.
    Register,
    /// `resend_verification`.
    ResendVerification,
    /// `forgot_password`.
    ForgotPassword,
    /// `reset_password`.
    ResetPassword,
    /// A request to the admin API with a wrong bearer token.
    Admin,
}

impl Action {
    /// Stable name, in rate-limit keys and the `action` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::Register => "register",
            Action::ResendVerification => "resend",
            Action::ForgotPassword => "forgot",
            Action::ResetPassword => "reset",
            Action::Admin => "admin",
        }
    }
}

/// What a limit counts attempts of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One client address (IPv4, or IPv6 /64).
    Address,
    /// One account (normalized email), from anywhere.
    Account,
    /// One account from one address.
    AddressAccount,
    /// The IPv6 network (default /48) around an address: a multiple of the address's
    /// limit, so that the many /64s of one site do not each get a full quota.
    Network,
    /// One session (its token hash): password checks made with one cookie.
    Session,
}

impl Scope {
    /// Stable name, in rate-limit keys and the `scope` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Address => "address",
            Scope::Account => "account",
            Scope::AddressAccount => "address_account",
            Scope::Network => "network",
            Scope::Session => "session",
        }
    }
}

/// An automatic block: `threshold` distinct subjects (accounts, tokens) from one address
/// within `window` block the address for `block_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detector {
    /// Distinct subjects that trigger the block (at least 1).
    pub threshold: u32,
    /// The sliding window they are counted in.
    pub window: Duration,
    /// How long the address stays blocked.
    pub block_for: Duration,
}

/// Every limit and detector of the policy. The defaults suit a public login page; see
/// `docs/security.md` for the reasoning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbuseConfig {
    /// Failed logins per address (default 30 per 15 min, lockout up to 1 h).
    pub login_per_address: Limit,
    /// Failed logins per account, from anywhere (default 10 per 15 min, up to 1 h).
    pub login_per_account: Limit,
    /// Failed logins per account from one address (default 5 per 15 min, up to 1 h).
    pub login_per_address_account: Limit,
    /// Registrations per address (default 10 per hour).
    pub register_per_address: Limit,
    /// Verification resends per address (default 10 per 15 min).
    pub resend_per_address: Limit,
    /// Verification resends per account (default 3 per 15 min).
    pub resend_per_account: Limit,
    /// Reset requests per address (default 10 per 15 min).
    pub forgot_per_address: Limit,
    /// Reset requests per account (default 3 per 15 min).
    pub forgot_per_account: Limit,
    /// Failed password resets per address (default 10 per 15 min).
    pub reset_per_address: Limit,
    /// Admin API requests with a wrong bearer token per address (default 10 per 15 min,
    /// lockout up to 1 h).
    pub admin_per_address: Limit,
    /// Credential stuffing: failed logins for distinct accounts from one address
    /// (default 10 in 10 min block it for 1 h).
    pub stuffing: Detector,
    /// Token guessing: distinct unknown session tokens from one address (default 20 in
    /// 10 min block it for 1 h).
    pub guessing: Detector,
    /// IPv6 addresses are counted and blocked per network of this prefix (default 64).
    pub ipv6_prefix: u8,
    /// IPv6 per-address limits also count per network of this shorter prefix (default
    /// 48: one site's allocation). Equal to `ipv6_prefix`: no such second count.
    pub ipv6_network_prefix: u8,
    /// A `/ipv6_network_prefix` network admits this many times the per-address limit
    /// (default 4).
    pub ipv6_network_multiplier: u32,
}

const MINUTE: Duration = Duration::from_secs(60);

impl Default for AbuseConfig {
    fn default() -> Self {
        let hour = 60 * MINUTE;
        let per_15_min = |n| Limit::new(n, 15 * MINUTE);
        Self {
            login_per_address: per_15_min(30).with_max_lockout(hour),
            login_per_account: per_15_min(10).with_max_lockout(hour),
            login_per_address_account: per_15_min(5).with_max_lockout(hour),
            register_per_address: Limit::new(10, hour),
            resend_per_address: per_15_min(10),
            resend_per_account: per_15_min(3),
            forgot_per_address: per_15_min(10),
            forgot_per_account: per_15_min(3),
            reset_per_address: per_15_min(10),
            admin_per_address: per_15_min(10).with_max_lockout(hour),
            stuffing: Detector { threshold: 10, window: 10 * MINUTE, block_for: hour },
            guessing: Detector { threshold: 20, window: 10 * MINUTE, block_for: hour },
            ipv6_prefix: 64,
            ipv6_network_prefix: 48,
            ipv6_network_multiplier: 4,
        }
    }
}

impl AbuseConfig {
    /// The limit of `action` in `scope`; `None` for a pair the policy does not limit.
    pub fn limit(&self, action: Action, scope: Scope) -> Option<Limit> {
        Some(match (action, scope) {
            (Action::Login, Scope::Address) => self.login_per_address,
            (Action::Login, Scope::Account) => self.login_per_account,
            (Action::Login, Scope::AddressAccount) => self.login_per_address_account,
            // Password checks through one session (a password change): as strict as one
            // account from one address, the narrowest login limit.
            (Action::Login, Scope::Session) => self.login_per_address_account,
            (Action::Register, Scope::Address) => self.register_per_address,
            (Action::ResendVerification, Scope::Address) => self.resend_per_address,
            (Action::ResendVerification, Scope::Account) => self.resend_per_account,
            (Action::ForgotPassword, Scope::Address) => self.forgot_per_address,
            (Action::ForgotPassword, Scope::Account) => self.forgot_per_account,
            (Action::ResetPassword, Scope::Address) => self.reset_per_address,
            (Action::Admin, Scope::Address) => self.admin_per_address,
            (action, Scope::Network) => {
                let address = self.limit(action, Scope::Address)?;
                Limit {
                    limit: address.limit.saturating_mul(self.ipv6_network_multiplier),
                    ..address
                }
            }
            _ => return None,
        })
    }

    fn limits(&self) -> [(&'static str, Limit); 10] {
        [
            ("login_per_address", self.login_per_address),
            ("login_per_account", self.login_per_account),
            ("login_per_address_account", self.login_per_address_account),
            ("register_per_address", self.register_per_address),
            ("resend_per_address", self.resend_per_address),
            ("resend_per_account", self.resend_per_account),
            ("forgot_per_address", self.forgot_per_address),
            ("forgot_per_account", self.forgot_per_account),
            ("reset_per_address", self.reset_per_address),
            ("admin_per_address", self.admin_per_address),
        ]
    }

    /// Checks that every limit admits something in a positive window and that the
    /// detectors can fire.
    pub fn validate(&self) -> Result<(), AuthError> {
        for (name, limit) in self.limits() {
            if limit.limit == 0 || limit.window.is_zero() {
                return Err(AuthError::Config(format!(
                    "{name}: the limit and its window must be positive"
                )));
            }
        }
        for (name, d) in [("stuffing", self.stuffing), ("guessing", self.guessing)] {
            if d.threshold == 0 || d.window.is_zero() || d.block_for.is_zero() {
                return Err(AuthError::Config(format!(
                    "{name}: threshold, window and block duration must be positive"
                )));
            }
        }
        if !(1..=128).contains(&self.ipv6_prefix) {
            return Err(AuthError::Config("ipv6_prefix must be between 1 and 128".to_owned()));
        }
        if !(1..=self.ipv6_prefix).contains(&self.ipv6_network_prefix) {
            return Err(AuthError::Config(
                "ipv6_network_prefix must be between 1 and ipv6_prefix".to_owned(),
            ));
        }
        if self.ipv6_network_multiplier == 0 {
            return Err(AuthError::Config("ipv6_network_multiplier must be at least 1".to_owned()));
        }
        Ok(())
    }
}

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

/// The abuse protection policy over a rate limiter and a block list. Cheap to clone.
#[derive(Clone)]
pub struct Abuse {
    inner: Arc<Inner>,
}

struct Inner {
    config: AbuseConfig,
    limiter: Arc<dyn RateLimitStore>,
    blocks: Arc<dyn BlockList>,
    clock: SharedClock,
    snapshot: RwLock<Arc<BlockSet>>,
    /// Incremented by every local change of the snapshot, so that a refresh that read
    /// the store before the change does not undo it.
    changes: AtomicU64,
}

impl std::fmt::Debug for Abuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Abuse")
            .field("config", &self.inner.config)
            .field("limiter", &self.inner.limiter.tier())
            .field("blocks", &self.snapshot().len())
            .finish_non_exhaustive()
    }
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
    /// The policy `config` over `limiter` (wrap a shared limiter in a
    /// [`cache_core::FallbackLimiter`]) and `blocks`, with time from `clock`. Starts with
    /// an empty block snapshot: call [`Abuse::refresh`] before serving, then
    /// [`Abuse::spawn_refresher`].
    pub fn new(
        config: AbuseConfig,
        limiter: Arc<dyn RateLimitStore>,
        blocks: Arc<dyn BlockList>,
        clock: SharedClock,
    ) -> Result<Self, AuthError> {
        config.validate()?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                limiter,
                blocks,
                clock,
                snapshot: RwLock::new(Arc::new(BlockSet::default())),
                changes: AtomicU64::new(0),
            }),
        })
    }

    /// The policy in force.
    pub fn config(&self) -> &AbuseConfig {
        &self.inner.config
    }

    fn now(&self) -> DateTime<Utc> {
        self.inner.clock.now()
    }

    /// The subject of per-address limits and blocks: the address itself for IPv4 (and
    /// IPv4-mapped IPv6), its `/ipv6_prefix` network for IPv6.
    pub fn address_subject(&self, ip: IpAddr) -> Cidr {
        match ip.to_canonical() {
            ip @ IpAddr::V4(_) => Cidr::host(ip),
            ip @ IpAddr::V6(_) => {
                Cidr::new(ip, self.inner.config.ipv6_prefix).unwrap_or_else(|| Cidr::host(ip))
            }
        }
    }

    /// The wider network an IPv6 client's per-address limits also count in (its
    /// `/ipv6_network_prefix`); `None` for IPv4 or when that prefix is not shorter.
    pub fn network_subject(&self, ip: IpAddr) -> Option<Cidr> {
        let config = &self.inner.config;
        match ip.to_canonical() {
            IpAddr::V4(_) => None,
            ip @ IpAddr::V6(_) if config.ipv6_network_prefix < config.ipv6_prefix => {
                Cidr::new(ip, config.ipv6_network_prefix)
            }
            IpAddr::V6(_) => None,
        }
    }

    // -----------------------------------------------------------------------------------
    // Rate limits
    // -----------------------------------------------------------------------------------

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

    // -----------------------------------------------------------------------------------
    // Automatic blocks
    // -----------------------------------------------------------------------------------

    /// Records a failed login for `account` from `ip`; blocks the address when it has
    /// now failed for `stuffing.threshold` distinct accounts within the window.
    pub async fn login_failed(&self, ip: Option<IpAddr>, account: &str) {
        if let Some(ip) = ip {
            let detector = self.inner.config.stuffing;
            self.detect(ip, "stuffing", detector, account, BlockReason::CredentialStuffing).await;
        }
    }

    /// Records a well-formed session token from `ip` that matches no session; blocks
    /// the address when it has now sent `guessing.threshold` distinct ones within the
    /// window. A client repeating one stale cookie counts once.
    pub async fn unknown_token(&self, ip: Option<IpAddr>, token: &TokenHash) {
        if let Some(ip) = ip {
            let detector = self.inner.config.guessing;
            let subject = token.to_hex();
            self.detect(ip, "guessing", detector, &subject, BlockReason::TokenGuessing).await;
        }
    }

    async fn detect(
        &self,
        ip: IpAddr,
        name: &str,
        detector: Detector,
        subject: &str,
        reason: BlockReason,
    ) {
        let address = self.address_subject(ip);
        let key = RateKey::new(name, Scope::Address.as_str(), &address.to_string());
        // Admits threshold - 1 distinct subjects: the next distinct one is the trigger.
        let limit = Limit::new(detector.threshold - 1, detector.window);
        let event = EventId::of(subject);
        match self.inner.limiter.acquire(&key, &limit, &event, self.now()).await {
            Ok(decision) if decision.allowed => {}
            Ok(_) => {
                if self.blocked(ip).is_none() {
                    tracing::warn!(
                        net = %address,
                        reason = reason.as_str(),
                        threshold = detector.threshold,
                        "blocking an address"
                    );
                    if let Err(e) = self.block(address, Some(detector.block_for), reason).await {
                        tracing::error!(net = %address, error = %e, "could not block an address");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %Chain(&e), "abuse detector unavailable"),
        }
    }

    // -----------------------------------------------------------------------------------
    // Blocks
    // -----------------------------------------------------------------------------------

    fn snapshot(&self) -> Arc<BlockSet> {
        self.inner.snapshot.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_snapshot(&self, set: BlockSet) {
        *self.inner.snapshot.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
    }

    /// The active block covering `ip`, from the local snapshot: no store is called.
    pub fn blocked(&self, ip: IpAddr) -> Option<IpBlock> {
        let now = self.now();
        self.inner.snapshot.read().unwrap_or_else(PoisonError::into_inner).find(ip, now).cloned()
    }

    /// Blocks `net` for `ttl` (`None`: until lifted), in the shared list and at once in
    /// this instance's snapshot (other instances see it within a refresh).
    pub async fn block(
        &self,
        net: Cidr,
        ttl: Option<Duration>,
        reason: BlockReason,
    ) -> Result<IpBlock, AuthError> {
        let now = self.now();
        let expires_at = match ttl {
            Some(ttl) => Some(now + chrono::Duration::from_std(ttl).map_err(AuthError::internal)?),
            None => None,
        };
        let block = IpBlock { net, expires_at, reason, created_at: now };
        self.inner.blocks.block(&block).await?;
        self.inner.changes.fetch_add(1, Ordering::SeqCst);
        let set = self.snapshot().with(block.clone());
        self.set_snapshot(set);
        metrics::counter!("ip_blocks_total", "reason" => reason.as_str()).increment(1);
        Ok(block)
    }

    /// Lifts the block of exactly `net`; whether there was one. When `net` is one
    /// address subject (an IPv4 address, an IPv6 /64), its per-address counters and
    /// detectors are reset too, so that the address starts afresh; when it is one IPv6
    /// network subject (a /48), that network's counters are.
    pub async fn unblock(&self, net: &Cidr) -> Result<bool, AuthError> {
        let existed = self.inner.blocks.unblock(net).await?;
        self.inner.changes.fetch_add(1, Ordering::SeqCst);
        let set = self.snapshot().without(net);
        self.set_snapshot(set);
        const ACTIONS: [Action; 6] = [
            Action::Login,
            Action::Register,
            Action::ResendVerification,
            Action::ForgotPassword,
            Action::ResetPassword,
            Action::Admin,
        ];
        let subject = net.to_string();
        let mut keys: Vec<RateKey> = Vec::new();
        if self.address_subject(net.network()) == *net {
            keys.extend(
                ACTIONS.iter().map(|a| RateKey::new(a.as_str(), Scope::Address.as_str(), &subject)),
            );
            for detector in ["stuffing", "guessing"] {
                keys.push(RateKey::new(detector, Scope::Address.as_str(), &subject));
            }
        } else if self.network_subject(net.network()) == Some(*net) {
            keys.extend(
                ACTIONS.iter().map(|a| RateKey::new(a.as_str(), Scope::Network.as_str(), &subject)),
            );
        }
        for key in keys {
            if let Err(e) = self.inner.limiter.reset(&key).await {
                tracing::warn!(error = %Chain(&e), "could not reset a rate-limit key");
            }
        }
        Ok(existed)
    }

    /// The blocks active now, from the shared list.
    pub async fn active_blocks(&self) -> Result<Vec<IpBlock>, AuthError> {
        Ok(self.inner.blocks.active_blocks(self.now()).await?)
    }

    /// Reloads the snapshot from the shared list; returns how many blocks it holds.
    pub async fn refresh(&self) -> Result<usize, AuthError> {
        let before = self.inner.changes.load(Ordering::SeqCst);
        let blocks = self.inner.blocks.active_blocks(self.now()).await?;
        let set = BlockSet::new(blocks);
        let len = set.len();
        // A local change since the read started is newer than what was read; the next
        // refresh picks both up.
        if self.inner.changes.load(Ordering::SeqCst) == before {
            self.set_snapshot(set);
        }
        Ok(len)
    }

    /// Refreshes the snapshot every `every` in a background task, which ends when the
    /// last clone of this `Abuse` is dropped. Failures are logged; the last snapshot
    /// stays in force meanwhile.
    pub fn spawn_refresher(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                let abuse = Abuse { inner };
                match abuse.refresh().await {
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!("IP block list readable again");
                    }
                    Ok(_) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %Chain(&e), "cannot refresh the IP block list; keeping the last one");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use cache_core::{Clock as _, ManualClock, SlidingLog, StoreResult};
    use std::collections::HashMap;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;

    /// An exact in-test limiter and block list (the real ones live in other crates).
    #[derive(Default)]
    struct Fake {
        logs: Mutex<HashMap<RateKey, SlidingLog>>,
        blocks: Mutex<HashMap<Cidr, IpBlock>>,
    }

    #[async_trait]
    impl RateLimitStore for Fake {
        fn tier(&self) -> &'static str {
            "fake"
        }
        async fn acquire(
            &self,
            key: &RateKey,
            limit: &Limit,
            event: &EventId,
            now: DateTime<Utc>,
        ) -> StoreResult<Decision> {
            Ok(self.logs.lock().unwrap().entry(key.clone()).or_default().acquire(limit, event, now))
        }
        async fn release(&self, key: &RateKey, event: &EventId) -> StoreResult<()> {
            if let Some(log) = self.logs.lock().unwrap().get_mut(key) {
                log.release(event);
            }
            Ok(())
        }
        async fn reset(&self, key: &RateKey) -> StoreResult<()> {
            self.logs.lock().unwrap().remove(key);
            Ok(())
        }
    }

    #[async_trait]
    impl BlockList for Fake {
        async fn block(&self, block: &IpBlock) -> StoreResult<()> {
            self.blocks.lock().unwrap().insert(block.net, block.clone());
            Ok(())
        }
        async fn unblock(&self, net: &Cidr) -> StoreResult<bool> {
            Ok(self.blocks.lock().unwrap().remove(net).is_some())
        }
        async fn active_blocks(&self, now: DateTime<Utc>) -> StoreResult<Vec<IpBlock>> {
            Ok(self.blocks.lock().unwrap().values().filter(|b| b.is_active(now)).cloned().collect())
        }
    }

    fn abuse(config: AbuseConfig) -> (Abuse, Arc<Fake>, Arc<ManualClock>) {
        let fake = Arc::new(Fake::default());
        let clock = ManualClock::starting_now();
        let abuse = Abuse::new(config, fake.clone(), fake.clone(), clock.clone()).unwrap();
        (abuse, fake, clock)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn logins_count_failures_and_release_successes() {
        let config = AbuseConfig {
            login_per_address_account: Limit::new(3, Duration::from_secs(60)),
            ..AbuseConfig::default()
        };
        let (abuse, _, _) = abuse(config);
        let from = Some(ip("192.0.2.1"));
        // Successes never add up.
        for _ in 0..10 {
            let permits = abuse.check_login(from, "a@example.com").await.unwrap();
            abuse.release(permits).await;
        }
        for _ in 0..3 {
            abuse.check_login(from, "a@example.com").await.unwrap().keep();
        }
        match abuse.check_login(from, "a@example.com").await {
            Err(AuthError::RateLimited { limit: 3, remaining: 0, retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(60));
            }
            other => panic!("{other:?}"),
        }
        // Another address, or another account, is not the pair that failed.
        abuse.check_login(Some(ip("192.0.2.2")), "a@example.com").await.unwrap().keep();
        abuse.check_login(from, "b@example.com").await.unwrap().keep();
    }

    #[tokio::test]
    async fn a_refusal_in_one_scope_counts_in_none() {
        let config = AbuseConfig {
            login_per_account: Limit::new(100, Duration::from_secs(60)),
            login_per_address: Limit::new(2, Duration::from_secs(60)),
            ..AbuseConfig::default()
        };
        let (abuse, fake, clock) = abuse(config);
        for n in 0..5 {
            let result = abuse.check_login(Some(ip("192.0.2.1")), &format!("{n}@x.org")).await;
            assert_eq!(result.is_ok(), n < 2, "{n}");
            if let Ok(p) = result {
                p.keep();
            }
        }
        // The three refused attempts left no event in the account scope.
        let key = RateKey::new("login", "account", "4@x.org");
        assert!(fake.logs.lock().unwrap().get(&key).is_some_and(|log| {
            log.clone()
                .acquire(
                    &Limit::new(1, Duration::from_secs(60)),
                    &EventId::of("probe"),
                    clock.now(),
                )
                .allowed
        }));
    }

    #[tokio::test]
    async fn ipv6_clients_are_counted_per_64() {
        let (abuse, _, _) = abuse(AbuseConfig::default());
        assert_eq!(
            abuse.address_subject(ip("2001:db8:1:2:aaaa::1")).to_string(),
            "2001:db8:1:2::/64"
        );
        assert_eq!(abuse.address_subject(ip("::ffff:192.0.2.9")).to_string(), "192.0.2.9/32");
        let config = AbuseConfig {
            register_per_address: Limit::new(2, Duration::from_secs(60)),
            ..AbuseConfig::default()
        };
        let (abuse, _, _) = self::abuse(config);
        for host in ["2001:db8::1", "2001:db8::2"] {
            abuse.check_address(Action::Register, ip(host)).await.unwrap().keep();
        }
        assert!(abuse.check_address(Action::Register, ip("2001:db8::ffff")).await.is_err());
        abuse.check_address(Action::Register, ip("2001:db8:0:1::1")).await.unwrap().keep();
    }

    fn limited_by(result: Result<Permits, AuthError>) -> u32 {
        match result {
            Err(AuthError::RateLimited { limit, .. }) => limit,
            other => panic!("not rate limited: {other:?}"),
        }
    }

    #[tokio::test]
    async fn ipv6_networks_share_a_multiple_of_the_address_limit() {
        let config = AbuseConfig {
            register_per_address: Limit::new(2, Duration::from_secs(60)),
            ..AbuseConfig::default()
        };
        let (abuse, _, clock) = abuse(config);
        let network = |s: &str| abuse.network_subject(ip(s)).map(|n| n.to_string());
        assert_eq!(network("2001:db8:1:2:aaaa::1").as_deref(), Some("2001:db8:1::/48"));
        assert_eq!(network("192.0.2.1"), None);
        assert_eq!(network("::ffff:192.0.2.1"), None, "IPv4-mapped is IPv4");
        // A /48 admits 4 x 2: four of its /64s use it up with their own quotas...
        for subnet in 0..4 {
            for host in 1..=2 {
                let from = ip(&format!("2001:db8:1:{subnet}::{host}"));
                abuse.check_address(Action::Register, from).await.unwrap().keep();
            }
        }
        // ...so a fifth /64, its own quota untouched, is refused by the /48 (old code:
        // each of the 65,536 /64s had a full quota),
        let fifth = ip("2001:db8:1:4::1");
        assert_eq!(limited_by(abuse.check_address(Action::Register, fifth).await), 8);
        // another /48 is not affected,
        abuse.check_address(Action::Register, ip("2001:db8:2::1")).await.unwrap().keep();
        // and the window frees the /48 again (the refusal counted nowhere).
        clock.advance(chrono::Duration::seconds(60));
        abuse.check_address(Action::Register, fifth).await.unwrap().keep();
        abuse.check_address(Action::Register, fifth).await.unwrap().keep();
        assert_eq!(limited_by(abuse.check_address(Action::Register, fifth).await), 2);
    }

    #[tokio::test]
    async fn ipv6_logins_count_per_network_too() {
        let config = AbuseConfig {
            login_per_address: Limit::new(1, Duration::from_secs(60)),
            ipv6_network_multiplier: 2,
            ..AbuseConfig::default()
        };
        let (abuse, fake, clock) = abuse(config);
        abuse.check_login(Some(ip("2001:db8:5:1::1")), "a@x.org").await.unwrap().keep();
        abuse.check_login(Some(ip("2001:db8:5:2::1")), "b@x.org").await.unwrap().keep();
        let third = abuse.check_login(Some(ip("2001:db8:5:3::1")), "c@x.org").await;
        assert_eq!(limited_by(third), 2);
        // Refused by the network, the attempt counted in no other scope.
        let key = RateKey::new("login", "account", "c@x.org");
        let probe = Limit::new(1, Duration::from_secs(60));
        assert!(fake.logs.lock().unwrap().get(&key).is_none_or(|log| {
            log.clone().acquire(&probe, &EventId::of("probe"), clock.now()).allowed
        }));
        // Lifting a block of the /48 resets its counters.
        let net: Cidr = "2001:db8:5::/48".parse().unwrap();
        abuse.unblock(&net).await.unwrap();
        abuse.check_login(Some(ip("2001:db8:5:3::1")), "c@x.org").await.unwrap().keep();
    }

    #[tokio::test]
    async fn the_network_count_is_off_when_its_prefix_is_the_address_prefix() {
        let config = AbuseConfig {
            register_per_address: Limit::new(1, Duration::from_secs(60)),
            ipv6_network_prefix: 64,
            ..AbuseConfig::default()
        };
        let (abuse, _, _) = abuse(config);
        assert_eq!(abuse.network_subject(ip("2001:db8::1")), None);
        for subnet in 0..10 {
            let from = ip(&format!("2001:db8:0:{subnet}::1"));
            abuse.check_address(Action::Register, from).await.unwrap().keep();
        }
    }

    #[tokio::test]
    async fn wrong_admin_tokens_are_limited_per_address_with_escalating_lockouts() {
        let (abuse, _, clock) = abuse(AbuseConfig::default());
        let from = ip("192.0.2.77");
        for _ in 0..10 {
            abuse.check_address(Action::Admin, from).await.unwrap().keep();
        }
        match abuse.check_address(Action::Admin, from).await {
            Err(AuthError::RateLimited { limit: 10, retry_after, .. }) => {
                assert_eq!(retry_after, 15 * MINUTE);
            }
            other => panic!("{other:?}"),
        }
        // Another address is not affected; a right token (released) never adds up.
        for _ in 0..20 {
            let permits = abuse.check_address(Action::Admin, ip("192.0.2.78")).await.unwrap();
            abuse.release(permits).await;
        }
        // After the lockout, ten more failures earn a longer one.
        clock.advance(chrono::Duration::minutes(15));
        for _ in 0..10 {
            abuse.check_address(Action::Admin, from).await.unwrap().keep();
        }
        match abuse.check_address(Action::Admin, from).await {
            Err(AuthError::RateLimited { retry_after, .. }) => {
                assert_eq!(retry_after, 30 * MINUTE);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn stuffing_across_accounts_blocks_the_address_until_lifted() {
        let (abuse, fake, clock) = abuse(AbuseConfig::default());
        let attacker = ip("198.51.100.7");
        // One account many times is not stuffing.
        for _ in 0..30 {
            abuse.login_failed(Some(attacker), "victim@example.com").await;
        }
        assert!(abuse.blocked(attacker).is_none());
        for n in 0..9 {
            abuse.login_failed(Some(attacker), &format!("user{n}@example.com")).await;
        }
        // Ten distinct accounts now.
        let block = abuse.blocked(attacker).expect("blocked");
        assert_eq!(block.reason, BlockReason::CredentialStuffing);
        assert_eq!(block.net.to_string(), "198.51.100.7/32");
        assert_eq!(block.expires_at, Some(clock.now() + chrono::Duration::hours(1)));
        assert!(abuse.blocked(ip("198.51.100.8")).is_none());
        assert_eq!(fake.blocks.lock().unwrap().len(), 1);
        // Lifting it also resets the detector: the next failure does not re-block.
        assert!(abuse.unblock(&block.net).await.unwrap());
        abuse.login_failed(Some(attacker), "another@example.com").await;
        assert!(abuse.blocked(attacker).is_none());
        // Blocks expire with the clock.
        abuse.block(block.net, Some(Duration::from_secs(10)), BlockReason::Manual).await.unwrap();
        assert!(abuse.blocked(attacker).is_some());
        clock.advance(chrono::Duration::seconds(10));
        assert!(abuse.blocked(attacker).is_none());
    }

    #[tokio::test]
    async fn guessing_counts_distinct_tokens() {
        let (abuse, _, _) = abuse(AbuseConfig::default());
        let guesser = ip("203.0.113.5");
        let stale = TokenHash::from_bytes([7; 32]);
        for _ in 0..100 {
            abuse.unknown_token(Some(guesser), &stale).await;
        }
        assert!(abuse.blocked(guesser).is_none(), "one stale cookie repeated is no attack");
        for n in 0..19u8 {
            abuse.unknown_token(Some(guesser), &TokenHash::from_bytes([n + 100; 32])).await;
        }
        assert_eq!(abuse.blocked(guesser).map(|b| b.reason), Some(BlockReason::TokenGuessing));
    }

    #[tokio::test]
    async fn the_snapshot_follows_the_shared_list() {
        let (abuse, fake, clock) = abuse(AbuseConfig::default());
        let range: Cidr = "10.0.0.0/8".parse().unwrap();
        // Another instance blocks a range: seen after a refresh.
        fake.blocks.lock().unwrap().insert(
            range,
            IpBlock {
                net: range,
                expires_at: None,
                reason: BlockReason::Manual,
                created_at: clock.now(),
            },
        );
        assert!(abuse.blocked(ip("10.1.2.3")).is_none());
        assert_eq!(abuse.refresh().await.unwrap(), 1);
        assert!(abuse.blocked(ip("10.1.2.3")).is_some());
        assert_eq!(abuse.active_blocks().await.unwrap().len(), 1);
        // The refresher stops with the last clone.
        let task = abuse.spawn_refresher(Duration::from_millis(5));
        fake.blocks.lock().unwrap().clear();
        tokio::time::timeout(Duration::from_secs(5), async {
            while abuse.blocked(ip("10.1.2.3")).is_some() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        drop(abuse);
        tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
    }

    #[test]
    fn configs_are_validated() {
        assert!(AbuseConfig::default().validate().is_ok());
        for bad in [
            AbuseConfig { login_per_account: Limit::new(0, MINUTE), ..AbuseConfig::default() },
            AbuseConfig {
                reset_per_address: Limit::new(1, Duration::ZERO),
                ..AbuseConfig::default()
            },
            AbuseConfig {
                stuffing: Detector { threshold: 0, window: MINUTE, block_for: MINUTE },
                ..AbuseConfig::default()
            },
            AbuseConfig { ipv6_prefix: 0, ..AbuseConfig::default() },
            AbuseConfig { ipv6_network_prefix: 0, ..AbuseConfig::default() },
            AbuseConfig { ipv6_network_prefix: 65, ..AbuseConfig::default() },
            AbuseConfig { ipv6_network_multiplier: 0, ..AbuseConfig::default() },
            AbuseConfig { admin_per_address: Limit::new(0, MINUTE), ..AbuseConfig::default() },
        ] {
            assert!(matches!(bad.validate(), Err(AuthError::Config(_))), "{bad:?}");
        }
        assert_eq!(AbuseConfig::default().limit(Action::Register, Scope::Account), None);
        assert_eq!(
            AbuseConfig::default().limit(Action::Register, Scope::Network).unwrap().limit,
            40
        );
        assert_eq!(AbuseConfig::default().limit(Action::Admin, Scope::Network).unwrap().limit, 40);
    }
}
