//! Abuse protection at the HTTP edge (see `docs/security.md`):
//!
//! - [`admin`]: the admin API's own bearer credential ([`AdminAuth`]).

pub mod admin;

pub use admin::{AdminAuth, AdminGuard};
