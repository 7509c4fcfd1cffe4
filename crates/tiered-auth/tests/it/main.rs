//! The integration tests of `auth`: its flows over real tiers and in-test stores.
//!
//! One test binary for the crate (one link, one process); each module is a former test
//! file, and the helpers they share are modules of this binary.

mod abuse;
mod common;
mod config;
mod failures;
mod flows;
mod logs;
mod mail;
