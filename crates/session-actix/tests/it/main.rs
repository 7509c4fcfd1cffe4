//! The integration tests of `session-actix`: actix-session's documented behaviours
//! through a real actix-web app on each configuration, and Redis killed mid-run.
//!
//! One test binary for the crate; each module is a former test file, and `common` holds
//! the app and stack helpers they share.

mod behaviour;
mod common;
mod redis_outage;
