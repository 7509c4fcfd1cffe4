//! `[memory]`: the in-process memory tier.

use serde::{Deserialize, Serialize};

/// The in-process memory tier (moka).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemorySettings {
    /// Whether the memory tier is used at all.
    pub enabled: bool,
    /// Most entries kept (per kind: sessions, users, verifications).
    pub max_entries: u64,
    /// How long an entry may be served from memory before asking the tier below again.
    /// This bounds how stale a revocation can be when an invalidation message is lost.
    pub ttl_secs: u64,
    /// How long a revocation is remembered, so that a late cache fill cannot revive the
    /// session (must be at least `ttl_secs`).
    pub fence_ttl_secs: u64,
}

impl Default for MemorySettings {
    fn default() -> Self {
        let memory = cache_memory::MemoryConfig::default();
        Self {
            enabled: true,
            max_entries: memory.max_entries,
            ttl_secs: memory.ttl.as_secs(),
            fence_ttl_secs: memory.fence_ttl.as_secs(),
        }
    }
}
