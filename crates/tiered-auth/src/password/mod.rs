//! Passwords: hashing on a dedicated low-priority argon2id pool (`hasher.rs`), the policy
//! a new password must meet (`policy.rs`), and the bundled breach list it is checked
//! against (`common.rs`).

mod common;
mod hasher;
mod policy;

pub use common::common_password_count;
pub(crate) use hasher::Hasher;
pub(crate) use policy::check_policy;
