//! # session-actix
//!
//! An [actix-session] storage backend on the tiered stack of tiered-auth: swap
//! `RedisSessionStore` for [`TieredSessionStore`] and the session state lives in memory
//! -> Redis -> SQL ([`connect`] composes them from URLs), with:
//!
//! - keys stored only as SHA-256 of the session key (a store dump yields no cookie);
//! - Redis Cluster (through fred), a circuit breaker around Redis, and SQL as the
//!   authority, so that no acknowledged state is lost while Redis is down;
//! - the memory tier kept coherent across instances by Redis pub/sub;
//! - "log this user out everywhere" ([`TieredSessionStore::log_out_user`]) once states
//!   are bound to a user id ([`TieredSessionStore::with_user_field`]).
//!
//! Any [`cache_core::SessionStateStore`] works underneath ([`TieredSessionStore::new`]).
//!
//! [actix-session]: https://docs.rs/actix-session

mod key;
mod stack;
mod store;

pub use key::{KeyError, SESSION_KEY_LEN, generate_session_key};
pub use stack::{StackConfig, StackError, connect};
pub use store::TieredSessionStore;

/// The crates underneath, for callers that compose a stack themselves.
pub use {cache_core, cache_memory, cache_redis, cache_sql};

/// The README's example, compiled (not run) as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctest;
