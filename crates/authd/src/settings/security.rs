//! The `[security]` and `[abuse]` settings (see `docs/configuration.md` and
//! `docs/security.md`): client address resolution, CSRF, session fingerprints, rate
//! limits and automatic IP blocks.

use std::time::Duration;

use anyhow::ensure;
use auth::{AbuseConfig, Detector, FingerprintPolicy};
use auth_actix::csrf::origin_of;
use cache_core::{Cidr, Limit};
use serde::{Deserialize, Deserializer};

/// `[security]`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecuritySettings {
    /// Proxies (addresses or CIDR ranges) whose `X-Forwarded-For` is believed. From
    /// anyone else the header is ignored and the TCP peer is the client. A list, or one
    /// comma-separated string (for the environment).
    #[serde(deserialize_with = "list")]
    pub trusted_proxies: Vec<Cidr>,
    /// Session fingerprint policy: `off` (default), `lenient` (the user agent must match
    /// the login's; an address change is logged) or `strict` (both must match).
    pub fingerprint: FingerprintPolicy,
    /// Origins besides `public_base_url`'s whose pages may send state-changing requests
    /// with the session cookie (e.g. `https://app.example.com`).
    #[serde(deserialize_with = "list")]
    pub csrf_trusted_origins: Vec<String>,
    /// Also refuse state-changing requests with the session cookie that carry neither
    /// `Origin` nor `Sec-Fetch-Site` (every current browser sends one of them, so such a
    /// request is not a browser's, hence no CSRF; on for browser-only deployments).
    pub csrf_require_origin: bool,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            trusted_proxies: Vec::new(),
            fingerprint: FingerprintPolicy::Off,
            csrf_trusted_origins: Vec::new(),
            csrf_require_origin: false,
        }
    }
}

impl SecuritySettings {
    /// Checks the origins' shape.
    pub fn validate(&self) -> anyhow::Result<()> {
        for origin in &self.csrf_trusted_origins {
            ensure!(
                origin_of(origin).is_some_and(|o| o == origin.to_ascii_lowercase()),
                "security.csrf_trusted_origins: {origin:?} is not an origin like \
                 https://app.example.com (scheme, host and optional port, no path)"
            );
        }
        Ok(())
    }
}

/// A list from a TOML array, or from one comma-separated string (environment variables).
fn list<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    let items = match Raw::deserialize(d)? {
        Raw::One(s) => {
            s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
        }
        Raw::Many(v) => v,
    };
    items
        .iter()
        .map(|s| s.trim().parse::<T>().map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}"))))
        .collect()
}

/// `[abuse]`: rate limits and automatic IP blocks. Every limit counts attempts in a
/// sliding window; see `docs/security.md` for what counts as an attempt.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AbuseSettings {
    /// Rate limits and automatic blocks on (manual blocks always apply).
    pub enabled: bool,
    /// The window of every limit but registration's.
    pub window_secs: u64,
    /// Login lockouts double on each repeat while remembered, up to this.
    pub max_lockout_secs: u64,
    /// Failed logins per client address per window.
    pub login_per_address: u32,
    /// Failed logins per account (from anywhere) per window.
    pub login_per_account: u32,
    /// Failed logins per account from one address per window.
    pub login_per_address_account: u32,
    /// Registrations per address per `register_window_secs`.
    pub register_per_address: u32,
    /// The window of the registration limit.
    pub register_window_secs: u64,
    /// Verification resends per address per window.
    pub resend_per_address: u32,
    /// Verification resends per account per window.
    pub resend_per_account: u32,
    /// Password reset requests per address per window.
    pub forgot_per_address: u32,
    /// Password reset requests per account per window.
    pub forgot_per_account: u32,
    /// Failed password resets per address per window.
    pub reset_per_address: u32,
    /// Admin API requests with a wrong bearer token per address per window (lockouts
    /// escalate like logins').
    pub admin_per_address: u32,
    /// Failed logins for this many distinct accounts from one address...
    pub stuffing_accounts: u32,
    /// ...within this window block the address.
    pub stuffing_window_secs: u64,
    /// This many distinct unknown session tokens from one address...
    pub guessing_tokens: u32,
    /// ...within this window block the address.
    pub guessing_window_secs: u64,
    /// How long an automatic block lasts.
    pub block_secs: u64,
    /// IPv6 clients are counted and blocked per network of this prefix length.
    pub ipv6_prefix: u8,
    /// IPv6 per-address limits also count per network of this shorter prefix length (a
    /// site); equal to `ipv6_prefix` turns that off.
    pub ipv6_network_prefix: u8,
    /// Such a network admits this many times the per-address limit.
    pub ipv6_network_multiplier: u32,
    /// Keys the per-instance limiter (the fallback when Redis is down) holds at most.
    pub memory_max_keys: usize,
    /// How often each instance reloads the block list from SQL.
    pub block_refresh_ms: u64,
}

impl Default for AbuseSettings {
    fn default() -> Self {
        let d = AbuseConfig::default();
        Self {
            enabled: true,
            window_secs: d.login_per_address.window.as_secs(),
            max_lockout_secs: d.login_per_address.max_lockout.as_secs(),
            login_per_address: d.login_per_address.limit,
            login_per_account: d.login_per_account.limit,
            login_per_address_account: d.login_per_address_account.limit,
            register_per_address: d.register_per_address.limit,
            register_window_secs: d.register_per_address.window.as_secs(),
            resend_per_address: d.resend_per_address.limit,
            resend_per_account: d.resend_per_account.limit,
            forgot_per_address: d.forgot_per_address.limit,
            forgot_per_account: d.forgot_per_account.limit,
            reset_per_address: d.reset_per_address.limit,
            admin_per_address: d.admin_per_address.limit,
            stuffing_accounts: d.stuffing.threshold,
            stuffing_window_secs: d.stuffing.window.as_secs(),
            guessing_tokens: d.guessing.threshold,
            guessing_window_secs: d.guessing.window.as_secs(),
            block_secs: d.stuffing.block_for.as_secs(),
            ipv6_prefix: d.ipv6_prefix,
            ipv6_network_prefix: d.ipv6_network_prefix,
            ipv6_network_multiplier: d.ipv6_network_multiplier,
            memory_max_keys: 1_000_000,
            block_refresh_ms: 1000,
        }
    }
}

impl AbuseSettings {
    /// The flows' policy.
    pub fn config(&self) -> AbuseConfig {
        let secs = Duration::from_secs;
        let window = secs(self.window_secs);
        let lockout = secs(self.max_lockout_secs);
        let limit = |n| Limit::new(n, window);
        let login = |n| Limit::new(n, window).with_max_lockout(lockout);
        let block_for = secs(self.block_secs);
        AbuseConfig {
            login_per_address: login(self.login_per_address),
            login_per_account: login(self.login_per_account),
            login_per_address_account: login(self.login_per_address_account),
            register_per_address: Limit::new(
                self.register_per_address,
                secs(self.register_window_secs),
            ),
            resend_per_address: limit(self.resend_per_address),
            resend_per_account: limit(self.resend_per_account),
            forgot_per_address: limit(self.forgot_per_address),
            forgot_per_account: limit(self.forgot_per_account),
            reset_per_address: limit(self.reset_per_address),
            admin_per_address: login(self.admin_per_address),
            stuffing: Detector {
                threshold: self.stuffing_accounts,
                window: secs(self.stuffing_window_secs),
                block_for,
            },
            guessing: Detector {
                threshold: self.guessing_tokens,
                window: secs(self.guessing_window_secs),
                block_for,
            },
            ipv6_prefix: self.ipv6_prefix,
            ipv6_network_prefix: self.ipv6_network_prefix,
            ipv6_network_multiplier: self.ipv6_network_multiplier,
        }
    }

    /// Checks what the policy cannot work with; the message names the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(self.block_refresh_ms >= 10, "abuse.block_refresh_ms must be >= 10");
        ensure!(self.memory_max_keys >= 1000, "abuse.memory_max_keys must be >= 1000");
        if let Err(e) = self.config().validate() {
            anyhow::bail!("abuse: {e} (every limit, window and threshold must be >= 1)");
        }
        Ok(())
    }

    /// The block list refresh period.
    pub fn block_refresh(&self) -> Duration {
        Duration::from_millis(self.block_refresh_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_policy_defaults() {
        let s = AbuseSettings::default();
        assert_eq!(s.config(), AbuseConfig::default());
        s.validate().unwrap();
        SecuritySettings::default().validate().unwrap();
    }

    #[test]
    fn lists_come_from_arrays_or_comma_separated_strings() {
        let s: SecuritySettings =
            serde_json::from_str(r#"{"trusted_proxies": "10.0.0.0/8, 192.0.2.1"}"#).unwrap();
        let nets: Vec<String> = s.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["10.0.0.0/8", "192.0.2.1/32"]);
        let s: SecuritySettings = serde_json::from_str(
            r#"{"trusted_proxies": ["::1", "fd00::/8"], "fingerprint": "strict"}"#,
        )
        .unwrap();
        assert_eq!(s.trusted_proxies.len(), 2);
        assert_eq!(s.fingerprint, FingerprintPolicy::Strict);
        assert!(
            serde_json::from_str::<SecuritySettings>(r#"{"trusted_proxies": "nope"}"#).is_err()
        );
        let bad = SecuritySettings {
            csrf_trusted_origins: vec!["https://app.example.com/path".into()],
            ..SecuritySettings::default()
        };
        assert!(bad.validate().is_err());
        let good = SecuritySettings {
            csrf_trusted_origins: vec!["https://app.example.com:8443".into()],
            ..SecuritySettings::default()
        };
        good.validate().unwrap();
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail closures return its own error type.
    fn the_environment_sets_lists_policies_and_limits() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.set_env("AUTHD_SECURITY__TRUSTED_PROXIES", "10.0.0.0/8,192.0.2.1");
            jail.set_env("AUTHD_SECURITY__FINGERPRINT", "lenient");
            jail.set_env("AUTHD_SECURITY__CSRF_TRUSTED_ORIGINS", "https://app.example.com");
            jail.set_env("AUTHD_ABUSE__LOGIN_PER_ACCOUNT", "7");
            jail.set_env("AUTHD_ABUSE__ENABLED", "false");
            let s = crate::Settings::load().unwrap();
            assert_eq!(s.security.trusted_proxies.len(), 2);
            assert_eq!(s.security.fingerprint, FingerprintPolicy::Lenient);
            assert_eq!(s.security.csrf_trusted_origins, ["https://app.example.com"]);
            assert_eq!(s.abuse.config().login_per_account.limit, 7);
            assert!(!s.abuse.enabled);
            assert_eq!(s.auth_config().fingerprint, FingerprintPolicy::Lenient);
            jail.set_env("AUTHD_ABUSE__LOGIN_PER_ACCOUNT", "0");
            let err = format!("{:#}", crate::Settings::load().unwrap_err());
            assert!(err.contains("login_per_account"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn zero_limits_are_refused() {
        let s = AbuseSettings { login_per_account: 0, ..AbuseSettings::default() };
        assert!(s.validate().is_err());
        let s = AbuseSettings { stuffing_accounts: 0, ..AbuseSettings::default() };
        assert!(s.validate().is_err());
    }
}
