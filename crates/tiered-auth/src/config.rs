//! Configuration of the flows: session lifetimes, token TTLs, password policy and argon2
//! cost. `authd` builds it from its settings; library users construct it directly.

use chrono::Duration;
use serde::{Deserialize, Serialize};

/// Everything the flows need to know that is not a store, a mailer or the clock.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Sliding expiry: how long a session lives after its last renewal (default 7 days).
    pub session_idle: Duration,
    /// A session used this long after its last renewal is extended in place (default 1 day).
    pub session_update_age: Duration,
    /// Absolute lifetime cap from login, never extended (default 30 days).
    pub session_absolute: Duration,
    /// Lifetime of an email verification link (default 10 minutes).
    pub email_verification_ttl: Duration,
    /// Lifetime of a password reset link (default 30 minutes).
    pub password_reset_ttl: Duration,
    /// How long an account may stay unverified (default 24 hours). After that the
    /// janitor deletes it, so that an address someone else registered without owning it
    /// becomes free again; the verification mail tells the recipient so.
    pub unverified_account_ttl: Duration,
    /// Password length limits.
    pub password: PasswordPolicy,
    /// argon2id cost; validated to be at or above [`Argon2Params::MINIMUM`].
    pub argon2: Argon2Params,
    /// Maximum number of argon2 computations running at once (default: the number of CPUs
    /// minus one, at least 1).
    pub hash_concurrency: usize,
    /// Base of every link put in a mail, e.g. `https://auth.example.com`. Links are built
    /// from it only, never from a request's `Host` header.
    pub public_base_url: String,
    /// User agents longer than this (in bytes, cut at a char boundary) are truncated.
    pub user_agent_max_len: usize,
    /// What a session's user agent and address, captured at login, must still match on
    /// every use (default [`FingerprintPolicy::Off`]).
    pub fingerprint: FingerprintPolicy,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_idle: Duration::days(7),
            session_update_age: Duration::days(1),
            session_absolute: Duration::days(30),
            email_verification_ttl: Duration::minutes(10),
            password_reset_ttl: Duration::minutes(30),
            unverified_account_ttl: Duration::hours(24),
            password: PasswordPolicy::default(),
            argon2: Argon2Params::default(),
            // One CPU is left to everything else: a login storm must not starve the
            // session checks (docs/benchmarks.md goal B9; on 2 CPUs, 2 argon2 jobs made /v1/me's p99 7x).
            hash_concurrency: std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1).max(1)),
            public_base_url: "http://127.0.0.1:8080".to_owned(),
            user_agent_max_len: 512,
            fingerprint: FingerprintPolicy::default(),
        }
    }
}

/// How strictly a session is bound to the client that logged in. A violation revokes
/// the session (in every tier), is logged with the user id and the policy, and answers
/// `Unauthenticated`.
///
/// The user agent changes when a browser updates itself, and the address whenever a
/// phone changes networks: `lenient` logs such users out after each browser update,
/// `strict` on every network change. Both make a stolen cookie harder to replay from
/// another client, which is why they exist; neither is on by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FingerprintPolicy {
    /// No check (the default).
    #[default]
    Off,
    /// The user agent must be the one of the login; an address change is only logged.
    Lenient,
    /// The user agent and the client address must both be those of the login.
    Strict,
}

impl FingerprintPolicy {
    /// Stable name, as configured and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FingerprintPolicy::Off => "off",
            FingerprintPolicy::Lenient => "lenient",
            FingerprintPolicy::Strict => "strict",
        }
    }
}

/// Password rules (NIST SP 800-63B): length only, counted in Unicode scalar values; no
/// composition rules, no truncation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PasswordPolicy {
    /// Shortest accepted password (default 8).
    pub min_chars: usize,
    /// Longest accepted password (default 1024; must be at least 128).
    pub max_chars: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { min_chars: 8, max_chars: 1024 }
    }
}

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Argon2Params {
    /// Memory in KiB (OWASP minimum 19456 = 19 MiB).
    pub memory_kib: u32,
    /// Number of passes (minimum 2).
    pub iterations: u32,
    /// Lanes (minimum 1).
    pub parallelism: u32,
}

impl Argon2Params {
    /// The weakest parameters production accepts (OWASP's argon2id recommendation).
    pub const MINIMUM: Argon2Params =
        Argon2Params { memory_kib: 19456, iterations: 2, parallelism: 1 };

    /// Deliberately weak parameters that make tests fast. Only
    /// [`crate::AuthService::new_insecure_for_tests`] accepts them.
    pub const INSECURE_FOR_TESTS: Argon2Params =
        Argon2Params { memory_kib: 64, iterations: 1, parallelism: 1 };

    /// Whether every parameter is at or above [`Argon2Params::MINIMUM`].
    pub fn meets_minimum(&self) -> bool {
        self.memory_kib >= Self::MINIMUM.memory_kib
            && self.iterations >= Self::MINIMUM.iterations
            && self.parallelism >= Self::MINIMUM.parallelism
    }
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self::MINIMUM
    }
}
