//! The integration tests of `cache-memory`: the conformance suite and the memory tier over SQL.
//!
//! One test binary for the crate (one link, one process); each module is a former test
//! file, and the helpers they share are modules of this binary.

mod conformance;
mod states;
mod tiered_sql;
