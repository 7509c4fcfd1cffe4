//! The integration tests of `authd`: the HTTP API, the pages in a real browser,
//! operations, abuse protection, security events and alerts, revocation under faults,
//! the bench routes and the command line, against the app on real stores.
//!
//! `request_id.rs` stays a binary of its own: it installs a global subscriber and checks
//! that every log line of a window carries one request id, which the other tests' lines
//! would break in a shared process.
//!
//! One test binary for the crate (one link, one process); each module is a former test
//! file, and the helpers they share are modules of this binary.

mod abuse;
mod api;
mod bench_routes;
mod browser;
mod cli;
mod events;
mod ops;
mod revocation;
mod support;
