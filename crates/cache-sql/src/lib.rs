//! # cache-sql
//!
//! The SQL tier of tiered-auth and the authority for everything it stores: accounts and
//! credentials, sessions, single-use verifications and the revocation journal. One type,
//! [`SqlStore`], serves PostgreSQL (diesel-async's `AsyncPgConnection`) and SQLite (its
//! sync connection wrapper over bundled SQLite, the embedded default), each behind a
//! cargo feature, through a bb8 pool.
//!
//! - Every read filters by the injected clock, so expiry is exact without a janitor.
//! - Every revocation (`delete`, `delete_user_sessions`) writes a journal row in the
//!   same transaction; `put` refuses snapshots a journal row covers, so a slow cache
//!   fill can never revive a revoked session, and caches replay the journal after they
//!   lost writes ([`cache_core::RevocationJournal`]).
//! - Every operation is bounded: the pool's connection timeout while the database is
//!   unreachable (reported as unavailable), the query timeout once connected.
//! - IP blocks (table `ip_blocks`) are the authority of every instance's block list
//!   ([`cache_core::BlockList`]).
//! - Session states of web frameworks (table `session_states`) implement
//!   [`cache_core::SessionStateStore`], keyed by the SHA-256 of the session key.
//! - Every instance follows the journal by id ([`RevocationFollower`]: PostgreSQL
//!   `LISTEN/NOTIFY` plus a poll, SQLite a poll) and applies each revocation to its
//!   caches, so a revocation reaches every cache whatever Redis does.
//! - The security event log (table `security_events`) is kept here only
//!   ([`cache_core::EventLog`]), appended in batches off the request path.
//! - Migrations (`migrations/postgres`, `migrations/sqlite`) are embedded and applied
//!   by [`SqlStore::migrate`] under a lock, so instances starting at once all come up.

#[cfg(not(any(feature = "postgres", feature = "sqlite")))]
compile_error!("cache-sql needs the `postgres` or the `sqlite` feature (or both)");

#[macro_use]
mod macros;

mod accounts;
mod analytics;
mod blocks;
mod bulk;
mod error;
mod events;
mod follow;
mod rows;
mod schema;
mod sessions;
mod states;
mod store;
#[cfg(feature = "test-util")]
pub mod testing;
mod verifications;

pub use analytics::ExpiredSession;
pub use bulk::BULK_ROWS_PER_STATEMENT;
pub use follow::{FollowConfig, RevocationFollower};
pub use store::{PoolState, SqlConfig, SqlStore};

/// The driver crates, for callers that need their types.
pub use {bb8, diesel, diesel_async};

/// The name every trait implementation of [`SqlStore`] reports as its tier.
pub const TIER: &str = "sql";

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
