//! # cache-redis
//!
//! The Redis tier of tiered-auth, on fred: [`RedisStore`] implements the cache-core
//! traits ([`SessionStore`](cache_core::SessionStore), [`UserCache`](cache_core::UserCache),
//! [`VerificationStore`](cache_core::VerificationStore),
//! [`RevocationSink`](cache_core::RevocationSink),
//! [`ExpiredCleanup`](cache_core::ExpiredCleanup)) against a single Redis, a Cluster or
//! a Sentinel-managed primary, chosen by the URL. [`InvalidationListener`] carries other
//! instances' revocations to this instance's memory tier.
//! [`RedisRateLimiter`] is the rate limiter shared by every instance (a sliding-window
//! log per key, one Lua script per decision). [`RedisStore`] also implements
//! [`cache_core::SessionStateStore`] (session states of web frameworks, one key per
//! state tagged by its own hash, a per-user index; `states.rs`).
//!
//! - Keys hold token hashes only, under one prefix; everything about a user shares the
//!   hash tag `{u:<id>}`, so each session write is one atomic Lua script and each read
//!   one pipeline to one node, also in a Cluster (layout, scripts and why reads need no
//!   script: `docs/redis.md`).
//! - A revoked session cannot come back: single revokes leave tombstones, revoke-all
//!   raises a per-user fence, and every write script checks both. After any connection
//!   loss the store distrusts Redis (reads answer `Unavailable`) until the revocation
//!   journal has been replayed into it.
//! - Every command has a deadline (default 50 ms) and a bounded number of attempts;
//!   wrap the store in [`cache_core::Breaker`] so a dead or paused Redis is skipped.
//!
//! Architecture invariant: time comes from the injected clock; Redis `TIME` is never
//! used, and no `KEYS` command is ever sent.

mod analytics;
mod bulk;
mod codec;
mod config;
mod error;
mod keys;
mod limiter;
mod listener;
mod scripts;
mod sessions;
mod states;
mod store;
mod users;
mod verifications;

pub use fred;

pub use analytics::{DayDelta, DayFigures};
pub use bulk::BULK_PIPELINE;
pub use config::{RedisConfig, TLS_COMPILED, url_uses_tls};
pub use keys::session_key;
pub use limiter::{LIMITER_TIER, RedisRateLimiter};
pub use listener::{InvalidationListener, InvalidationTarget};
pub use sessions::TIER;
pub use store::{RedisInfo, RedisStore};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
