//! # cache-core
//!
//! The domain types (tokens, sessions, users, verifications), the store traits every tier
//! implements, the one error type they share, the injected clock, and the generic
//! combinators that compose tiers: [`Tiered`] (cache-aside reads with backfill and
//! request coalescing, write-through, delete-through) and [`Breaker`] (a circuit breaker
//! that lets a tiered store degrade when a cache tier is down); and the session *state*
//! store of web frameworks ([`SessionStateStore`], composed by [`TieredStates`]).
//!
//! Architecture invariant: this crate does no I/O and depends on no driver or framework.
//! The only system call it makes is reading the OS CSPRNG for new tokens.

pub mod abuse;
pub mod breaker;
pub mod clock;
mod coalesce;
pub mod error;
pub mod events;
mod id;
pub mod invalidation;
pub mod model;
mod random;
pub mod state;
mod state_tiered;
pub mod store;
pub mod tiered;
pub mod token;

pub use abuse::{
    BlockList, BlockReason, BlockSet, Cidr, Decision, EventId, FallbackLimiter, IpBlock, Limit,
    RateKey, RateLimitStore, SecretDigest, SlidingLog,
};
#[cfg(feature = "mock")]
pub use abuse::{MockBlockList, MockRateLimitStore};
pub use breaker::{Breaker, BreakerConfig, BreakerHandle, BreakerState};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use error::{BoxError, Conflict, StoreError, StoreResult};
pub use events::{EventKind, EventLog, NewEvent, SecurityEvent};
pub use model::{
    Credentials, JournalEntry, NewUser, Purpose, Revocation, Session, SessionWithUser, User,
    UserId, Verification,
};
pub use state::{SessionState, SessionStateStore, StateInvalidation, StateKey, StateRecord};
pub use state_tiered::TieredStates;
pub use store::{
    AccountStore, ExpiredCleanup, RevocationJournal, RevocationSink, SessionLookup, SessionStore,
    UserCache, VerificationStore,
};
#[cfg(feature = "mock")]
pub use store::{MockAccountStore, MockSessionStore, MockUserCache, MockVerificationStore};
pub use tiered::Tiered;
pub use token::{SessionKey, SessionToken, TokenHash, TokenParseError, VerificationToken};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
