//! The policy's settings: the [`Action`]s limited, the [`Scope`]s they are counted in,
//! the automatic-block [`Detector`]s, and [`AbuseConfig`], which holds them all.

use std::time::Duration;

use cache_core::Limit;

use crate::error::AuthError;

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

pub(super) const MINUTE: Duration = Duration::from_secs(60);

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
