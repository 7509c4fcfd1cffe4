//! Abuse protection: rate limits and IP block lists.
// tidy: long-file limits, the fallback limiter, CIDR and block lists, the admin token digest; the split along those seams is pending (issue 18)
//!
//! - [`RateLimitStore`]: a true sliding-window log per [`RateKey`]. One call to
//!   [`RateLimitStore::acquire`] is one atomic decision, so that of any number of
//!   parallel attempts exactly [`Limit::limit`] are admitted in a window. A key that hits
//!   its limit is locked out, for longer after each further lockout (escalating back-off).
//!   [`SlidingLog`] is the reference algorithm (the memory tier runs it; the Redis tier
//!   runs the same steps in one Lua script). [`FallbackLimiter`] puts a shared limiter
//!   (Redis) in front of a per-instance one, which decides while the shared one is down.
//! - [`BlockList`]: blocked addresses and [`Cidr`] ranges, with an expiry. The authority
//!   (SQL) is read into a [`BlockSet`] snapshot, whose lookups are local and cost one hash
//!   probe per distinct prefix length: the per-request check never calls a store.
//!
//! Keys and event ids never carry an address or an email in clear: [`RateKey::new`] and
//! [`EventId::of`] hash the subject, so a dump of the limiter's store holds no personal
//! data, and the keys are safe in Redis (no `{`/`}` that would change a Cluster slot).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

// tokio's clock, which is std's outside tests: tests pause and advance it instead of
// sleeping through probe intervals.
use tokio::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::breaker::BreakerConfig;
use crate::error::{StoreError, StoreResult};
use crate::token::{RandomError, fill_random};

// ---------------------------------------------------------------------------------------
// Rate limits
// ---------------------------------------------------------------------------------------

/// At most `limit` events in any sliding `window`. A key that reaches the limit is locked
/// out: for `window` the first time, then twice as long after each further lockout while
/// the previous one is remembered, never longer than `max_lockout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Events admitted per window (0 admits nothing).
    pub limit: u32,
    /// Length of the sliding window.
    pub window: Duration,
    /// Cap of the escalating lockout; at most `window` disables the escalation.
    pub max_lockout: Duration,
}

impl Limit {
    /// `limit` events per `window`, locked out for one window when exceeded (no
    /// escalation).
    pub const fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window, max_lockout: window }
    }

    /// The same limit with lockouts doubling up to `max_lockout`.
    pub const fn with_max_lockout(self, max_lockout: Duration) -> Self {
        Self { max_lockout, ..self }
    }

    /// The lockout after the `strikes`-th lockout in a row (1-based): `window * 2^(n-1)`,
    /// capped by `max_lockout` (and never shorter than `window`).
    pub fn lockout(&self, strikes: u32) -> Duration {
        let doubled = 2u32
            .checked_pow(strikes.saturating_sub(1))
            .and_then(|factor| self.window.checked_mul(factor))
            .unwrap_or(Duration::MAX);
        doubled.min(self.max_lockout.max(self.window))
    }

    /// How long the lockouts of a key are remembered after the last one ends: long
    /// enough that an attacker who waits out a lockout and tries again meets a longer one.
    pub fn strike_memory(&self) -> Duration {
        self.max_lockout.max(self.window)
    }
}

/// The outcome of one [`RateLimitStore::acquire`]; what the `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the event was admitted (and recorded).
    pub allowed: bool,
    /// The limit that applied.
    pub limit: u32,
    /// Events still admitted in the current window after this one.
    pub remaining: u32,
    /// Time until a slot frees up: the oldest counted event leaves the window (or the
    /// lockout ends).
    pub reset_after: Duration,
    /// When refused: how long to wait before trying again.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// An admitted event.
    pub fn allowed(limit: u32, remaining: u32, reset_after: Duration) -> Self {
        Self { allowed: true, limit, remaining, reset_after, retry_after: None }
    }

    /// A refused event, with the time until the next attempt can succeed.
    pub fn limited(limit: u32, retry_after: Duration) -> Self {
        Self {
            allowed: false,
            limit,
            remaining: 0,
            reset_after: retry_after,
            retry_after: Some(retry_after),
        }
    }
}

/// Lower-case hex of the first 16 bytes of SHA-256(`subject`).
fn digest_hex(subject: &str) -> String {
    hex::encode(&Sha256::digest(subject.as_bytes())[..16])
}

/// The name of one rate-limit counter: `{action}:{scope}:{digest of the subject}`, e.g.
/// `login:account:9f86d081884c7d65...`. The subject (an address, an email) is hashed, so
/// no store holds it in clear; action and scope stay readable for operators.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RateKey(String);

impl RateKey {
    /// The key of `subject` for `action` (e.g. `login`) in `scope` (e.g. `address`).
    /// `action` and `scope` are short ASCII identifiers chosen by the caller, lower-cased;
    /// anything other than `[a-z0-9_]` in them is replaced by `_`.
    pub fn new(action: &str, scope: &str, subject: &str) -> Self {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| c.to_ascii_lowercase())
                .map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '_' })
                .collect()
        };
        Self(format!("{}:{}:{}", clean(action), clean(scope), digest_hex(subject)))
    }

    /// The key as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one event in a window. A random id counts every attempt; an id derived
/// from a subject ([`EventId::of`]) counts distinct subjects, because recording an id
/// already in the window only refreshes its time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventId(String);

impl EventId {
    /// A fresh random id (64 bits from the OS CSPRNG).
    pub fn random() -> Result<Self, RandomError> {
        let mut bytes = [0u8; 8];
        fill_random(&mut bytes)?;
        Ok(Self(format!("r{:016x}", u64::from_le_bytes(bytes))))
    }

    /// The id of a subject (hashed), for counting distinct subjects.
    pub fn of(subject: &str) -> Self {
        Self(format!("d{}", digest_hex(subject)))
    }

    /// The id as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A sliding-window rate limiter's storage. Implementations: memory (per instance),
/// Redis (shared by instances), and [`FallbackLimiter`] combining the two.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Short tier name for logs and metrics.
    fn tier(&self) -> &'static str;

    /// One atomic decision at `now` for `key`: when the key is locked out, refuses;
    /// otherwise drops the events that left the window, and admits and records `event`
    /// when fewer than `limit.limit` are left (or when `event` is already in the window:
    /// its time is refreshed). When the limit is reached, refuses and starts a lockout
    /// ([`Limit::lockout`], escalating while earlier lockouts are remembered).
    async fn acquire(
        &self,
        key: &RateKey,
        limit: &Limit,
        event: &EventId,
        now: DateTime<Utc>,
    ) -> StoreResult<Decision>;

    /// Forgets `event` (an attempt that succeeded and must not count). Idempotent.
    async fn release(&self, key: &RateKey, event: &EventId) -> StoreResult<()>;

    /// Forgets everything about `key`: its events, lockout and strikes.
    async fn reset(&self, key: &RateKey) -> StoreResult<()>;
}

#[async_trait]
impl<T: RateLimitStore + ?Sized> RateLimitStore for Arc<T> {
    fn tier(&self) -> &'static str {
        (**self).tier()
    }
    async fn acquire(
        &self,
        key: &RateKey,
        limit: &Limit,
        event: &EventId,
        now: DateTime<Utc>,
    ) -> StoreResult<Decision> {
        (**self).acquire(key, limit, event, now).await
    }
    async fn release(&self, key: &RateKey, event: &EventId) -> StoreResult<()> {
        (**self).release(key, event).await
    }
    async fn reset(&self, key: &RateKey) -> StoreResult<()> {
        (**self).reset(key).await
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn duration_from_micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

/// The reference sliding-window log of one key, all times in microseconds since the
/// epoch. The memory tier keeps one per key; the Redis script performs the same steps.
#[derive(Debug, Clone, Default)]
pub struct SlidingLog {
    /// Recorded events: (time, id).
    events: VecDeque<(i64, EventId)>,
    /// Refuse everything before this instant.
    locked_until: i64,
    /// Lockouts so far, remembered until `strikes_until`.
    strikes: u32,
    strikes_until: i64,
}

impl SlidingLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`RateLimitStore::acquire`] on this log.
    pub fn acquire(&mut self, limit: &Limit, event: &EventId, now: DateTime<Utc>) -> Decision {
        let now = now.timestamp_micros();
        let window = micros(limit.window);
        if now < self.locked_until {
            return Decision::limited(limit.limit, duration_from_micros(self.locked_until - now));
        }
        if now >= self.strikes_until {
            self.strikes = 0;
        }
        // The window is (now - window, now]: an event exactly one window old is out.
        let horizon = now.saturating_sub(window);
        self.events.retain(|(at, _)| *at > horizon);
        let known = self.events.iter().position(|(_, id)| id == event);
        let count = u32::try_from(self.events.len()).unwrap_or(u32::MAX);
        if known.is_some() || count < limit.limit {
            if let Some(i) = known {
                self.events.remove(i);
            }
            self.events.push_back((now, event.clone()));
            let used = u32::try_from(self.events.len()).unwrap_or(u32::MAX);
            let oldest = self.events.iter().map(|(at, _)| *at).min().unwrap_or(now);
            return Decision::allowed(
                limit.limit,
                limit.limit.saturating_sub(used),
                duration_from_micros(oldest.saturating_add(window) - now),
            );
        }
        self.strikes = self.strikes.saturating_add(1);
        let oldest = self.events.iter().map(|(at, _)| *at).min().unwrap_or(now);
        self.locked_until = now
            .saturating_add(micros(limit.lockout(self.strikes)))
            .max(oldest.saturating_add(window));
        self.strikes_until = self.locked_until.saturating_add(micros(limit.strike_memory()));
        Decision::limited(limit.limit, duration_from_micros(self.locked_until - now))
    }

    /// [`RateLimitStore::release`] on this log.
    pub fn release(&mut self, event: &EventId) {
        self.events.retain(|(_, id)| id != event);
    }

    /// Whether the log holds nothing that matters at `now` (no event in a window of
    /// `max_window`, no lockout, no remembered strike), so that it can be dropped.
    pub fn is_idle(&self, now: DateTime<Utc>, max_window: Duration) -> bool {
        let now = now.timestamp_micros();
        let horizon = now.saturating_sub(micros(max_window));
        now >= self.locked_until
            && now >= self.strikes_until
            && self.events.iter().all(|(at, _)| *at <= horizon)
    }
}

/// A shared limiter (`primary`, Redis) backed by a per-instance one (`fallback`,
/// memory) that decides whenever the primary fails, so a limit still holds per instance
/// while Redis is down. Like [`crate::Breaker`], consecutive unavailability errors stop
/// the primary from being asked, except for one probe per `probe_interval`, so refused
/// logins do not each wait for a dead Redis's timeout.
pub struct FallbackLimiter<P, F> {
    primary: P,
    fallback: F,
    health: Health,
}

struct Health {
    config: BreakerConfig,
    epoch: Instant,
    failures: AtomicU32,
    open: AtomicBool,
    next_probe_us: AtomicU64,
    fallbacks: metrics::Counter,
}

impl<P: RateLimitStore, F: RateLimitStore> FallbackLimiter<P, F> {
    /// `primary` in front of `fallback`, skipping a failing primary as `config` says.
    pub fn new(primary: P, fallback: F, config: BreakerConfig) -> Self {
        Self {
            health: Health {
                config,
                epoch: Instant::now(),
                failures: AtomicU32::new(0),
                open: AtomicBool::new(false),
                next_probe_us: AtomicU64::new(0),
                fallbacks: metrics::counter!("ratelimit_fallbacks_total", "tier" => primary.tier()),
            },
            primary,
            fallback,
        }
    }

    /// Whether the primary is being skipped.
    pub fn is_degraded(&self) -> bool {
        self.health.open.load(Ordering::Acquire)
    }

    /// The shared limiter.
    pub fn primary(&self) -> &P {
        &self.primary
    }

    /// The per-instance limiter.
    pub fn fallback(&self) -> &F {
        &self.fallback
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.health.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn interval_us(&self) -> u64 {
        u64::try_from(self.health.config.probe_interval.as_micros()).unwrap_or(u64::MAX)
    }

    fn admit_primary(&self) -> bool {
        if !self.health.open.load(Ordering::Acquire) {
            return true;
        }
        let now = self.now_us();
        let next = self.health.next_probe_us.load(Ordering::Acquire);
        now >= next
            && self
                .health
                .next_probe_us
                .compare_exchange(
                    next,
                    now.saturating_add(self.interval_us()),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn on_success(&self) {
        self.health.failures.store(0, Ordering::Release);
        if self.health.open.swap(false, Ordering::AcqRel) {
            tracing::info!(
                tier = self.primary.tier(),
                "shared rate limiter recovered: decisions are shared again"
            );
        }
    }

    fn on_failure(&self, e: &StoreError) {
        self.health.fallbacks.increment(1);
        if !e.is_unavailable() {
            tracing::warn!(tier = self.primary.tier(), error = %e, "shared rate limiter failed; this instance decides");
            return;
        }
        let failures = self.health.failures.fetch_add(1, Ordering::AcqRel).saturating_add(1);
        if failures >= self.health.config.failure_threshold {
            self.health
                .next_probe_us
                .store(self.now_us().saturating_add(self.interval_us()), Ordering::Release);
            if !self.health.open.swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    tier = self.primary.tier(),
                    error = %e,
                    "shared rate limiter unavailable: limits are enforced per instance until it returns"
                );
            }
        }
    }
}

#[async_trait]
impl<P: RateLimitStore, F: RateLimitStore> RateLimitStore for FallbackLimiter<P, F> {
    fn tier(&self) -> &'static str {
        self.primary.tier()
    }

    async fn acquire(
        &self,
        key: &RateKey,
        limit: &Limit,
        event: &EventId,
        now: DateTime<Utc>,
    ) -> StoreResult<Decision> {
        if self.admit_primary() {
            match self.primary.acquire(key, limit, event, now).await {
                Ok(decision) => {
                    self.on_success();
                    return Ok(decision);
                }
                // Never fail open, never fail the request: this instance decides.
                Err(e) => self.on_failure(&e),
            }
        } else {
            self.health.fallbacks.increment(1);
        }
        self.fallback.acquire(key, limit, event, now).await
    }

    async fn release(&self, key: &RateKey, event: &EventId) -> StoreResult<()> {
        // The event was recorded by one of the two; forgetting it in both is harmless.
        self.fallback.release(key, event).await?;
        if self.admit_primary() {
            match self.primary.release(key, event).await {
                Ok(()) => self.on_success(),
                // The event then counts until it leaves the window: failing closed.
                Err(e) => self.on_failure(&e),
            }
        }
        Ok(())
    }

    async fn reset(&self, key: &RateKey) -> StoreResult<()> {
        self.fallback.reset(key).await?;
        let result = self.primary.reset(key).await;
        match &result {
            Ok(()) => self.on_success(),
            Err(e) => self.on_failure(e),
        }
        result
    }
}

/// The SHA-256 of a configured secret (an admin token), kept instead of the secret, and
/// compared in constant time. Hashing both sides first also makes the comparison's time
/// independent of the presented value's length.
#[derive(Clone)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// The digest of `secret`.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Whether `presented` is the secret, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(self.0.ct_eq(&presented))
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDigest(<redacted>)")
    }
}

// ---------------------------------------------------------------------------------------
// IP blocks
// ---------------------------------------------------------------------------------------

/// An address range: a network address (host bits zero) and a prefix length. IPv4
/// addresses mapped into IPv6 (`::ffff:a.b.c.d`) are treated as the IPv4 address they
/// carry, so one rule covers both forms a dual-stack listener may report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// Error for a string that is not an address or a CIDR range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an IP address or CIDR range (like 192.0.2.0/24 or 2001:db8::/32)")]
pub struct InvalidCidr;

impl Cidr {
    /// The range of `prefix` bits around `addr` (host bits cleared); `None` when the
    /// prefix is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let (addr, prefix) = match addr {
            // A mapped address with a prefix inside the IPv4 part is that IPv4 range.
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => {
                (addr.to_canonical(), prefix - 96)
            }
            _ => (addr, prefix),
        };
        let network = match addr {
            IpAddr::V4(v4) if prefix <= 32 => IpAddr::V4(Ipv4Addr::from(mask_v4(v4, prefix))),
            IpAddr::V6(v6) if prefix <= 128 => IpAddr::V6(Ipv6Addr::from(mask_v6(v6, prefix))),
            _ => return None,
        };
        Some(Self { network, prefix })
    }

    /// The range holding exactly `addr`.
    pub fn host(addr: IpAddr) -> Self {
        let addr = addr.to_canonical();
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        Self { network: addr, prefix }
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr` is in the range.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.network, addr.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => mask_v4(a, self.prefix) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(a)) => mask_v6(a, self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

fn mask_v4(addr: Ipv4Addr, prefix: u8) -> u32 {
    let bits = u32::from(addr);
    match prefix {
        0 => 0,
        p if p >= 32 => bits,
        p => bits & (u32::MAX << (32 - u32::from(p))),
    }
}

fn mask_v6(addr: Ipv6Addr, prefix: u8) -> u128 {
    let bits = u128::from(addr);
    match prefix {
        0 => 0,
        p if p >= 128 => bits,
        p => bits & (u128::MAX << (128 - u32::from(p))),
    }
}

impl fmt::Display for Cidr {
    /// Always `network/prefix`, the canonical form stored and compared.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = InvalidCidr;

    /// `addr` (one host) or `addr/prefix`; host bits of a range are cleared.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s.split_once('/') {
            None => s.parse::<IpAddr>().map(Cidr::host).map_err(|_| InvalidCidr),
            Some((addr, prefix)) => {
                let addr = addr.parse::<IpAddr>().map_err(|_| InvalidCidr)?;
                if prefix.is_empty()
                    || prefix.len() > 3
                    || !prefix.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(InvalidCidr);
                }
                let prefix = prefix.parse::<u8>().map_err(|_| InvalidCidr)?;
                Cidr::new(addr, prefix).ok_or(InvalidCidr)
            }
        }
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why an address is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockReason {
    /// Failed logins across many accounts from one address.
    CredentialStuffing,
    /// Many unknown session tokens from one address.
    TokenGuessing,
    /// An operator's decision (admin API).
    Manual,
}

impl BlockReason {
    /// Stable name, stored and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::CredentialStuffing => "credential_stuffing",
            BlockReason::TokenGuessing => "token_guessing",
            BlockReason::Manual => "manual",
        }
    }

    /// Inverse of [`BlockReason::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "credential_stuffing" => Some(BlockReason::CredentialStuffing),
            "token_guessing" => Some(BlockReason::TokenGuessing),
            "manual" => Some(BlockReason::Manual),
            _ => None,
        }
    }
}

/// One blocked address or range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBlock {
    /// What is blocked.
    pub net: Cidr,
    /// When the block ends; `None` blocks until it is lifted.
    pub expires_at: Option<DateTime<Utc>>,
    /// Why.
    pub reason: BlockReason,
    /// When it was put in place.
    pub created_at: DateTime<Utc>,
}

impl IpBlock {
    /// Whether the block holds at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|end| now < end)
    }
}

/// The authoritative list of blocked addresses and ranges (SQL, shared by instances).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait BlockList: Send + Sync {
    /// Blocks `block.net`, replacing any block of exactly that range.
    async fn block(&self, block: &IpBlock) -> StoreResult<()>;

    /// Lifts the block of exactly `net` (not of ranges containing or inside it);
    /// whether there was one.
    async fn unblock(&self, net: &Cidr) -> StoreResult<bool>;

    /// The blocks active at `now`, most recent first. May purge expired ones.
    async fn active_blocks(&self, now: DateTime<Utc>) -> StoreResult<Vec<IpBlock>>;
}

#[async_trait]
impl<T: BlockList + ?Sized> BlockList for Arc<T> {
    async fn block(&self, block: &IpBlock) -> StoreResult<()> {
        (**self).block(block).await
    }
    async fn unblock(&self, net: &Cidr) -> StoreResult<bool> {
        (**self).unblock(net).await
    }
    async fn active_blocks(&self, now: DateTime<Utc>) -> StoreResult<Vec<IpBlock>> {
        (**self).active_blocks(now).await
    }
}

/// An immutable snapshot of a block list for local lookups: one hash table per prefix
/// length present, so [`BlockSet::find`] costs one probe per distinct prefix length (a
/// handful in practice), whatever the number of blocks.
#[derive(Debug, Clone, Default)]
pub struct BlockSet {
    v4: Vec<(u8, HashMap<u32, IpBlock>)>,
    v6: Vec<(u8, HashMap<u128, IpBlock>)>,
    len: usize,
}

impl BlockSet {
    /// The snapshot of `blocks` (a later block of the same range replaces an earlier).
    pub fn new(blocks: impl IntoIterator<Item = IpBlock>) -> Self {
        let mut set = Self::default();
        for block in blocks {
            set.insert(block);
        }
        set
    }

    fn insert(&mut self, block: IpBlock) {
        let prefix = block.net.prefix;
        let replaced = match block.net.network {
            IpAddr::V4(net) => table(&mut self.v4, prefix).insert(u32::from(net), block),
            IpAddr::V6(net) => table(&mut self.v6, prefix).insert(u128::from(net), block),
        };
        if replaced.is_none() {
            self.len += 1;
        }
    }

    /// A copy with `block` added (or replacing the block of the same range).
    pub fn with(&self, block: IpBlock) -> Self {
        let mut set = self.clone();
        set.insert(block);
        set
    }

    /// A copy without the block of exactly `net`.
    pub fn without(&self, net: &Cidr) -> Self {
        let mut set = self.clone();
        let removed = match net.network {
            IpAddr::V4(n) => set
                .v4
                .iter_mut()
                .find(|(p, _)| *p == net.prefix)
                .and_then(|(_, t)| t.remove(&u32::from(n))),
            IpAddr::V6(n) => set
                .v6
                .iter_mut()
                .find(|(p, _)| *p == net.prefix)
                .and_then(|(_, t)| t.remove(&u128::from(n))),
        };
        if removed.is_some() {
            set.len -= 1;
        }
        set
    }

    /// The block active at `now` that covers `addr`, if any (the most specific first).
    pub fn find(&self, addr: IpAddr, now: DateTime<Utc>) -> Option<&IpBlock> {
        match addr.to_canonical() {
            IpAddr::V4(a) => self.v4.iter().find_map(|(prefix, table)| {
                table.get(&mask_v4(a, *prefix)).filter(|b| b.is_active(now))
            }),
            IpAddr::V6(a) => self.v6.iter().find_map(|(prefix, table)| {
                table.get(&mask_v6(a, *prefix)).filter(|b| b.is_active(now))
            }),
        }
    }

    /// Number of blocks in the snapshot (active or not).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the snapshot holds no block.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every block in the snapshot.
    pub fn iter(&self) -> impl Iterator<Item = &IpBlock> {
        self.v4
            .iter()
            .flat_map(|(_, t)| t.values())
            .chain(self.v6.iter().flat_map(|(_, t)| t.values()))
    }
}

/// The table of `prefix`, created when missing; tables are kept longest prefix first.
fn table<K>(tables: &mut Vec<(u8, HashMap<K, IpBlock>)>, prefix: u8) -> &mut HashMap<K, IpBlock> {
    let i = match tables.iter().position(|(p, _)| *p <= prefix) {
        Some(i) if tables[i].0 == prefix => i,
        Some(i) => {
            tables.insert(i, (prefix, HashMap::new()));
            i
        }
        None => {
            tables.push((prefix, HashMap::new()));
            tables.len() - 1
        }
    };
    &mut tables[i].1
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use chrono::TimeZone;

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
    }

    fn secs(s: i64) -> chrono::Duration {
        chrono::Duration::seconds(s)
    }

    #[test]
    fn lockouts_double_up_to_the_cap() {
        let limit =
            Limit::new(3, Duration::from_secs(60)).with_max_lockout(Duration::from_secs(60 * 5));
        let got: Vec<u64> = (1..=6).map(|n| limit.lockout(n).as_secs()).collect();
        assert_eq!(got, [60, 120, 240, 300, 300, 300]);
        assert_eq!(limit.lockout(u32::MAX).as_secs(), 300);
        assert_eq!(Limit::new(3, Duration::from_secs(60)).lockout(5).as_secs(), 60);
    }

    #[test]
    fn the_log_admits_exactly_the_limit_then_locks_out() {
        let limit = Limit::new(3, Duration::from_secs(60));
        let mut log = SlidingLog::new();
        let now = t0();
        for remaining in [2, 1, 0] {
            let d = log.acquire(&limit, &EventId::random().unwrap(), now);
            assert!(d.allowed);
            assert_eq!(d.remaining, remaining);
            assert_eq!(d.reset_after, Duration::from_secs(60));
        }
        let d = log.acquire(&limit, &EventId::random().unwrap(), now + secs(10));
        assert!(!d.allowed);
        // Locked for one window from the refusal (longer than the oldest event's exit).
        assert_eq!(d.retry_after, Some(Duration::from_secs(60)));
        assert!(!log.acquire(&limit, &EventId::random().unwrap(), now + secs(69)).allowed);
        let d = log.acquire(&limit, &EventId::random().unwrap(), now + secs(70));
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.remaining, 2);
    }

    #[test]
    fn the_window_slides_and_released_events_do_not_count() {
        let limit = Limit::new(2, Duration::from_secs(60));
        let mut log = SlidingLog::new();
        let (a, b, c) = (EventId::of("a"), EventId::of("b"), EventId::of("c"));
        assert!(log.acquire(&limit, &a, t0()).allowed);
        assert!(log.acquire(&limit, &b, t0() + secs(30)).allowed);
        log.release(&b);
        assert!(log.acquire(&limit, &c, t0() + secs(31)).allowed);
        // `a` leaves the window at exactly t0 + 60.
        let d = log.acquire(&limit, &b, t0() + secs(60));
        assert!(d.allowed, "{d:?}");
        assert_eq!(d.remaining, 0);
        assert_eq!(d.reset_after, Duration::from_secs(31));
    }

    #[test]
    fn known_events_refresh_instead_of_counting() {
        let limit = Limit::new(2, Duration::from_secs(60));
        let mut log = SlidingLog::new();
        for _ in 0..10 {
            assert!(log.acquire(&limit, &EventId::of("same"), t0()).allowed);
        }
        assert!(log.acquire(&limit, &EventId::of("other"), t0()).allowed);
        // Still admitted: both are already in the window.
        assert!(log.acquire(&limit, &EventId::of("same"), t0()).allowed);
        assert!(!log.acquire(&limit, &EventId::of("third"), t0()).allowed);
    }

    #[test]
    fn repeated_lockouts_escalate_and_are_forgotten() {
        let limit =
            Limit::new(1, Duration::from_secs(10)).with_max_lockout(Duration::from_secs(40));
        let mut log = SlidingLog::new();
        let mut now = t0();
        let mut lockouts = Vec::new();
        for _ in 0..4 {
            assert!(log.acquire(&limit, &EventId::random().unwrap(), now).allowed);
            let d = log.acquire(&limit, &EventId::random().unwrap(), now);
            let wait = d.retry_after.unwrap();
            lockouts.push(wait.as_secs());
            now += chrono::Duration::from_std(wait).unwrap();
        }
        assert_eq!(lockouts, [10, 20, 40, 40]);
        assert!(!log.is_idle(now, limit.window));
        // Remembered for `max_lockout` after the last lockout ends.
        now += secs(41);
        assert!(log.is_idle(now, limit.window));
        assert!(log.acquire(&limit, &EventId::random().unwrap(), now).allowed);
        let d = log.acquire(&limit, &EventId::random().unwrap(), now);
        assert_eq!(d.retry_after, Some(Duration::from_secs(10)));
    }

    #[test]
    fn zero_limit_admits_nothing() {
        let mut log = SlidingLog::new();
        assert!(
            !log.acquire(&Limit::new(0, Duration::from_secs(1)), &EventId::of("x"), t0()).allowed
        );
    }

    #[test]
    fn keys_and_ids_hide_their_subject() {
        let key = RateKey::new("login", "account", "alice@example.com");
        assert!(key.as_str().starts_with("login:account:"), "{key}");
        assert_eq!(key.as_str().len(), "login:account:".len() + 32);
        assert!(!key.as_str().contains("alice"));
        assert_eq!(key, RateKey::new("login", "account", "alice@example.com"));
        assert_ne!(key, RateKey::new("login", "address", "alice@example.com"));
        assert_eq!(RateKey::new("Lo{g}", "x", "s").as_str()[..6], *"lo_g_:");
        assert_eq!(EventId::of("a"), EventId::of("a"));
        assert_ne!(EventId::random().unwrap(), EventId::random().unwrap());
    }

    #[test]
    fn secret_digests_match_only_their_secret() {
        let digest = SecretDigest::of("s3cret-admin-token");
        assert!(digest.matches("s3cret-admin-token"));
        assert!(!digest.matches("s3cret-admin-token "));
        assert!(!digest.matches(""));
        assert_eq!(format!("{digest:?}"), "SecretDigest(<redacted>)");
    }

    #[test]
    fn cidrs_parse_normalize_and_contain() {
        let net: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains("10.255.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.9.9.9".parse().unwrap()));
        let host: Cidr = "192.0.2.7".parse().unwrap();
        assert_eq!(host.to_string(), "192.0.2.7/32");
        assert_eq!("::ffff:192.0.2.7".parse::<Cidr>().unwrap(), host);
        assert_eq!("::ffff:192.0.2.0/120".parse::<Cidr>().unwrap().to_string(), "192.0.2.0/24");
        let v6: Cidr = "2001:db8:1:2::99/64".parse().unwrap();
        assert_eq!(v6.to_string(), "2001:db8:1:2::/64");
        assert!(v6.contains("2001:db8:1:2:ffff::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix(), 0);
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains("8.8.8.8".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0/8",
            "x",
            "10.0.0.0/+8",
            "1.2.3.4/08x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&net).unwrap();
        assert_eq!(json, "\"10.0.0.0/8\"");
        assert_eq!(serde_json::from_str::<Cidr>(&json).unwrap(), net);
    }

    fn block(net: &str, expires_at: Option<DateTime<Utc>>) -> IpBlock {
        IpBlock {
            net: net.parse().unwrap(),
            expires_at,
            reason: BlockReason::Manual,
            created_at: t0(),
        }
    }

    #[test]
    fn block_sets_find_covering_active_blocks() {
        let set = BlockSet::new([
            block("192.0.2.7", None),
            block("198.51.100.0/24", Some(t0() + secs(60))),
            block("10.0.0.0/8", Some(t0() - secs(1))),
            block("10.1.0.0/16", None),
            block("2001:db8::/32", None),
        ]);
        assert_eq!(set.len(), 5);
        let find = |ip: &str, at| set.find(ip.parse().unwrap(), at).map(|b| b.net.to_string());
        assert_eq!(find("192.0.2.7", t0()), Some("192.0.2.7/32".into()));
        assert_eq!(find("::ffff:192.0.2.7", t0()), Some("192.0.2.7/32".into()));
        assert_eq!(find("192.0.2.8", t0()), None);
        assert_eq!(find("198.51.100.200", t0()), Some("198.51.100.0/24".into()));
        assert_eq!(find("198.51.100.200", t0() + secs(60)), None);
        // The /8 has expired; the /16 inside it still holds.
        assert_eq!(find("10.2.0.1", t0()), None);
        assert_eq!(find("10.1.0.1", t0()), Some("10.1.0.0/16".into()));
        assert_eq!(find("2001:db8:ffff::1", t0()), Some("2001:db8::/32".into()));
        let smaller = set.without(&"10.1.0.0/16".parse().unwrap());
        assert_eq!(smaller.len(), 4);
        assert!(smaller.find("10.1.0.1".parse().unwrap(), t0()).is_none());
        let bigger = smaller.with(block("10.1.0.0/16", None));
        assert_eq!(bigger.len(), 5);
        assert_eq!(bigger.with(block("10.1.0.0/16", None)).len(), 5);
        assert_eq!(bigger.iter().count(), 5);
        assert!(BlockSet::default().is_empty());
    }

    #[test]
    fn block_reasons_round_trip() {
        for r in [BlockReason::CredentialStuffing, BlockReason::TokenGuessing, BlockReason::Manual]
        {
            assert_eq!(BlockReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(BlockReason::parse("other"), None);
    }

    /// A limiter that fails while `down` and counts the calls it gets.
    struct Flaky {
        down: AtomicBool,
        calls: AtomicUsize,
        log: parking_lot::Mutex<SlidingLog>,
    }

    #[async_trait]
    impl RateLimitStore for Flaky {
        fn tier(&self) -> &'static str {
            "flaky"
        }
        async fn acquire(
            &self,
            _key: &RateKey,
            limit: &Limit,
            event: &EventId,
            now: DateTime<Utc>,
        ) -> StoreResult<Decision> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::unavailable("connection refused"));
            }
            Ok(self.log.lock().acquire(limit, event, now))
        }
        async fn release(&self, _key: &RateKey, event: &EventId) -> StoreResult<()> {
            self.log.lock().release(event);
            Ok(())
        }
        async fn reset(&self, _key: &RateKey) -> StoreResult<()> {
            *self.log.lock() = SlidingLog::new();
            Ok(())
        }
    }

    fn flaky(down: bool) -> Flaky {
        Flaky {
            down: AtomicBool::new(down),
            calls: AtomicUsize::new(0),
            log: parking_lot::Mutex::new(SlidingLog::new()),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_fallback_decides_while_the_primary_is_down_and_probes_it() {
        let config =
            BreakerConfig { failure_threshold: 2, probe_interval: Duration::from_millis(50) };
        let limiter = FallbackLimiter::new(flaky(true), flaky(false), config);
        let key = RateKey::new("login", "account", "a");
        let limit = Limit::new(3, Duration::from_secs(60));
        let mut allowed = 0;
        for _ in 0..10 {
            let d = limiter.acquire(&key, &limit, &EventId::random().unwrap(), t0()).await.unwrap();
            allowed += usize::from(d.allowed);
        }
        // The per-instance limiter held the limit, and after two failures the primary
        // was no longer asked.
        assert_eq!(allowed, 3);
        assert!(limiter.is_degraded());
        assert_eq!(limiter.primary().calls.load(Ordering::SeqCst), 2);
        // It comes back: the next probe goes to it and closes the breaker.
        limiter.primary().down.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_millis(60)).await;
        let d = limiter.acquire(&key, &limit, &EventId::random().unwrap(), t0()).await.unwrap();
        assert!(d.allowed);
        assert!(!limiter.is_degraded());
        assert_eq!(limiter.primary().calls.load(Ordering::SeqCst), 3);
        // Releases reach both.
        let event = EventId::of("e");
        limiter.acquire(&key, &limit, &event, t0()).await.unwrap();
        limiter.release(&key, &event).await.unwrap();
        assert_eq!(limiter.primary().log.lock().events.len(), 1);
    }

    /// The hand-written [`Cidr`] parser against the `ipnet` crate.
    mod cidr_properties {
        use std::net::IpAddr;

        use ipnet::IpNet;
        use proptest::prelude::*;

        use super::*;

        /// Whether `addr` is an IPv4-mapped IPv6 address, which [`Cidr`] treats as the
        /// IPv4 address it carries (and `ipnet` as IPv6).
        fn mapped(addr: IpAddr) -> bool {
            matches!(addr, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
        }

        proptest! {
            /// `addr/prefix` parses exactly when `ipnet` parses it, to the same network
            /// (host bits cleared) and prefix, and covers the same addresses.
            #[test]
            fn ranges_agree_with_ipnet(addr in any::<IpAddr>(), prefix in 0u8..=140, probe in any::<IpAddr>()) {
                // Mapped addresses have their own property below.
                let (addr, probe) = (addr.to_canonical(), probe.to_canonical());
                let text = format!("{addr}/{prefix}");
                let ours = text.parse::<Cidr>();
                let theirs = text.parse::<IpNet>();
                prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{}", text);
                if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
                    prop_assert_eq!(ours.network(), theirs.trunc().network());
                    prop_assert_eq!(ours.prefix(), theirs.prefix_len());
                    prop_assert_eq!(ours.contains(probe), theirs.contains(&probe), "{} {}", text, probe);
                    prop_assert_eq!(ours.to_string(), theirs.trunc().to_string());
                    prop_assert_eq!(ours.to_string().parse::<Cidr>(), Ok(ours));
                }
            }

            /// A mapped address with a prefix inside its IPv4 part is that IPv4 range.
            #[test]
            fn mapped_ranges_are_their_ipv4_ranges(v4 in any::<std::net::Ipv4Addr>(), prefix in 96u8..=128) {
                let mapped: Cidr = format!("{}/{prefix}", v4.to_ipv6_mapped()).parse().unwrap();
                let plain: Cidr = format!("{v4}/{}", prefix - 96).parse().unwrap();
                prop_assert_eq!(mapped, plain);
                prop_assert!(mapped.contains(IpAddr::V4(v4)));
                prop_assert!(mapped.contains(IpAddr::V6(v4.to_ipv6_mapped())));
            }

            /// Anything else parses or fails without a panic; whatever `ipnet` accepts
            /// (it wants a prefix), ours accepts as the same range.
            #[test]
            fn any_text_parses_or_fails(s in "[0-9a-fA-F:./ ]{0,45}|\\PC{0,20}") {
                let ours = s.parse::<Cidr>();
                if let Ok(theirs) = s.trim().parse::<IpNet>()
                    && !mapped(theirs.addr()) {
                        prop_assert_eq!(ours.map(|c| c.to_string()), Ok(theirs.trunc().to_string()), "{:?}", s);
                    }
            }
        }
    }
}
