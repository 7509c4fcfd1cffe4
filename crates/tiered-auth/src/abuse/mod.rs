//! [`Abuse`]: the abuse protection policy of the flows: which attempts are rate limited
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
//!
//! The files: `config.rs` (what is limited and detected, [`AbuseConfig`]), `limits.rs`
//! (counting attempts, [`Permits`]), `detect.rs` (the automatic blocks), `blocks.rs`
//! (the block list and this instance's snapshot of it).

mod blocks;
mod config;
mod detect;
mod limits;
#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use cache_core::{BlockList, BlockSet, Cidr, RateLimitStore, SharedClock};
use chrono::{DateTime, Utc};

pub use config::{AbuseConfig, Action, Detector, Scope};
pub use limits::{Permit, Permits};

use crate::error::AuthError;

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
}
