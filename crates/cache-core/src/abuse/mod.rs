//! Abuse protection: rate limits and IP block lists.
//!
//! - [`RateLimitStore`] (`limit.rs`): a true sliding-window log per [`RateKey`]. One call
//!   to [`RateLimitStore::acquire`] is one atomic decision, so that of any number of
//!   parallel attempts exactly [`Limit::limit`] are admitted in a window. A key that hits
//!   its limit is locked out, for longer after each further lockout (escalating back-off).
//!   [`SlidingLog`] (`sliding.rs`) is the reference algorithm (the memory tier runs it;
//!   the Redis tier runs the same steps in one Lua script). [`FallbackLimiter`]
//!   (`fallback.rs`) puts a shared limiter (Redis) in front of a per-instance one, which
//!   decides while the shared one is down.
//! - [`BlockList`] (`blocks.rs`): blocked addresses and [`Cidr`] ranges (`cidr.rs`), with
//!   an expiry. The authority (SQL) is read into a [`BlockSet`] snapshot, whose lookups
//!   are local and cost one hash probe per distinct prefix length: the per-request check
//!   never calls a store.
//! - [`SecretDigest`] (`secret.rs`): the admin token, kept as a digest.
//!
//! Keys and event ids never carry an address or an email in clear: [`RateKey::new`] and
//! [`EventId::of`] hash the subject, so a dump of the limiter's store holds no personal
//! data, and the keys are safe in Redis (no `{`/`}` that would change a Cluster slot).

mod blocks;
mod cidr;
mod fallback;
mod limit;
mod secret;
mod sliding;

#[cfg(any(test, feature = "mock"))]
pub use blocks::MockBlockList;
pub use blocks::{BlockList, BlockReason, BlockSet, IpBlock};
pub use cidr::{Cidr, InvalidCidr};
pub use fallback::FallbackLimiter;
#[cfg(any(test, feature = "mock"))]
pub use limit::MockRateLimitStore;
pub use limit::{Decision, EventId, Limit, RateKey, RateLimitStore};
pub use secret::SecretDigest;
pub use sliding::SlidingLog;

/// What the tests of several of these files share.
#[cfg(test)]
mod testing {
    use chrono::{DateTime, TimeZone, Utc};

    /// A fixed instant the tests count from.
    pub(super) fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    /// `s` seconds.
    pub(super) fn secs(s: i64) -> chrono::Duration {
        chrono::Duration::seconds(s)
    }
}
