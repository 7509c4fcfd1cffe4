//! The integration tests of `cache-redis`: conformance, faults, the limiter, Sentinel, Cluster, TLS and the tiered composition against real redis-server processes.
//!
//! One test binary for the crate (one link, one process); each module is a former test
//! file, and the helpers they share are modules of this binary.

mod conformance;
mod faults;
mod limiter;
mod sentinel;
mod states;
mod store;
mod support;
mod tiered;
mod tls;
