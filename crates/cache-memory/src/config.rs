//! [`MemoryConfig`]: how big the memory tier may grow and how long it trusts an entry.

use std::time::Duration;

/// Sizing and lifetimes of a [`crate::MemoryStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Most cached sessions, users and verifications held at once (all kinds together).
    /// Tombstones, fences and the per-user index are bounded by the same number each.
    pub max_entries: u64,
    /// Longest time an entry is trusted after it was written, whatever the session's own
    /// expiry: it bounds how stale the memory tier can be relative to the tiers below.
    pub ttl: Duration,
    /// How long a revocation (tombstone or per-user fence) is remembered, so that a late
    /// cache fill of an older snapshot cannot revive a revoked session. Raised to `ttl`
    /// when shorter, so a fence always outlives the entries it hides.
    pub fence_ttl: Duration,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            ttl: Duration::from_secs(30),
            fence_ttl: Duration::from_secs(10 * 60),
        }
    }
}

/// moka refuses expirations longer than 1000 years; nothing sensible needs more than 100.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
