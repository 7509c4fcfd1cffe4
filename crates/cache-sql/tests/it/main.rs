//! The integration tests of `cache-sql`: the conformance suite on SQLite and PostgreSQL, block lists, the security event log, the journal follower and SQL specifics.
//!
//! One test binary for the crate (one link, one process); each module is a former test
//! file, and the helpers they share are modules of this binary.

mod blocks;
mod conformance;
mod events;
mod follow;
mod sql;
mod states;
