//! `[auth]`: session lifetimes, token TTLs, password policy and hashing cost.

use serde::{Deserialize, Serialize};

/// Lifetimes, TTLs, password policy and argon2 cost; defaults from `auth::AuthConfig`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Idle timeout: a session expires this long after its last renewal.
    pub session_idle_secs: u64,
    /// A session used this long after its last renewal is extended in place.
    pub session_update_age_secs: u64,
    /// Absolute lifetime of a session from login; never extended.
    pub session_absolute_secs: u64,
    /// Lifetime of an email verification link.
    pub email_verification_ttl_secs: u64,
    /// Lifetime of a password reset link.
    pub password_reset_ttl_secs: u64,
    /// How long an account may stay unverified before the janitor deletes it (freeing
    /// its address); default 24 hours.
    pub unverified_account_ttl_secs: u64,
    /// Shortest accepted password, in characters.
    pub password_min_chars: usize,
    /// Longest accepted password, in characters (at least 128).
    pub password_max_chars: usize,
    /// argon2id memory cost in KiB (at least 19456).
    pub argon2_memory_kib: u32,
    /// argon2id passes (at least 2).
    pub argon2_iterations: u32,
    /// argon2id lanes (at least 1).
    pub argon2_parallelism: u32,
    /// Most password hashes computed at once; 0 means one per CPU.
    pub hash_concurrency: usize,
    /// User agents stored with a session are cut to this many bytes.
    pub user_agent_max_len: usize,
}

impl Default for AuthSettings {
    fn default() -> Self {
        let d = ::auth::AuthConfig::default();
        let secs = |d: chrono::Duration| u64::try_from(d.num_seconds()).unwrap_or(0);
        Self {
            session_idle_secs: secs(d.session_idle),
            session_update_age_secs: secs(d.session_update_age),
            session_absolute_secs: secs(d.session_absolute),
            email_verification_ttl_secs: secs(d.email_verification_ttl),
            password_reset_ttl_secs: secs(d.password_reset_ttl),
            unverified_account_ttl_secs: secs(d.unverified_account_ttl),
            password_min_chars: d.password.min_chars,
            password_max_chars: d.password.max_chars,
            argon2_memory_kib: d.argon2.memory_kib,
            argon2_iterations: d.argon2.iterations,
            argon2_parallelism: d.argon2.parallelism,
            hash_concurrency: 0,
            user_agent_max_len: d.user_agent_max_len,
        }
    }
}
