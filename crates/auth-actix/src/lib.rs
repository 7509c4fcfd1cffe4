//! # auth-actix
//!
//! actix-web glue for tiered-auth sessions, built on the flows (`auth`) and the store
//! traits (`cache-core`) only: an app links just the store crates it composes.
//!
//! - [`CurrentUser`]: the extractor that validates the session cookie (with sliding
//!   renewal) and gives the handler the user and the session; `Option<CurrentUser>`
//!   for routes that work either way;
//! - [`RequireSession`]: the middleware that answers 401 for a whole scope without a
//!   valid session;
//! - [`guard`] / [`Security`]: client address behind trusted proxies, IP blocks, CSRF
//!   and per-address limits, keyed on the matched route ([`route::matched`]);
//! - [`CookiePolicy`]: the session cookie's name and flags;
//! - [`ApiError`]: the JSON error body `{"error": {"code", "message"}}` every refusal
//!   carries.
//!
//! The app puts a `web::Data<auth::AuthService>` and a `web::Data<CookiePolicy>` in its
//! data; see `tests/protected_app.rs` for a whole app.

pub mod client;
pub mod cookies;
pub mod csrf;
pub mod error;
pub mod extract;
pub mod guard;
pub mod middleware;
pub mod route;

pub use client::ClientAddr;
pub use cookies::CookiePolicy;
pub use csrf::CsrfPolicy;
pub use error::ApiError;
pub use extract::CurrentUser;
pub use guard::{Guard, GuardConfig, Security, guard};
pub use middleware::RequireSession;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
