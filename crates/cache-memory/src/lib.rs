//! # cache-memory
//!
//! The in-process memory tier of tiered-auth: a bounded [moka] cache of sessions, user
//! profiles and verifications implementing the `cache-core` store traits, meant to sit
//! in front of Redis and SQL in a [`cache_core::Tiered`] store.
//!
//! - Bounded by entry count ([`MemoryConfig::max_entries`], all kinds together), each
//!   entry living the session's remaining life capped by [`MemoryConfig::ttl`].
//! - Every read also checks the injected clock, so tests move a `ManualClock` instead of
//!   sleeping, and a hit costs two lock-free moka reads and one clone.
//! - Revocations are remembered for [`MemoryConfig::fence_ttl`]: a deleted session
//!   leaves a tombstone, a "revoke all" leaves a per-user fence, and neither a late cache
//!   fill nor a racing write can bring such a session back. Revocations made on another
//!   instance arrive through [`cache_core::RevocationSink`].
//! - [`MemoryRateLimiter`] is the per-instance rate limiter (exact sliding-window logs under
//!   a striped lock); [`MemoryBlockList`] an in-process IP block list for tests and
//!   single-instance embeddings.
//! - [`MemoryStateStore`] holds session *states* (actix-session style,
//!   [`cache_core::SessionStateStore`]) in a cache of its own.
//!
//! Architecture invariant: this crate does no I/O and reads no wall clock.

mod blocks;
mod config;
mod entry;
mod fence;
mod index;
mod limiter;
mod sessions;
mod states;
mod store;
#[cfg(test)]
mod tests;
mod users;
mod verifications;

pub use blocks::MemoryBlockList;
pub use config::MemoryConfig;
pub use limiter::MemoryRateLimiter;
pub use moka;
pub use states::{MemoryStateConfig, MemoryStateStore};
pub use store::MemoryStore;

/// The tier name this store reports in logs and metrics.
pub const TIER: &str = "memory";

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
