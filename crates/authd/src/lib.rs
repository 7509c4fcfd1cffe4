//! # authd
//!
//! The tiered-auth HTTP service (actix-web) as a library, so that integration tests and
//! other binaries can build it: [`Settings`] (figment: defaults, TOML file, env),
//! [`Application`] (stores composed from the settings, the actix-web server bound to its
//! listener), the JSON API under `/v1`, health, metrics and the OpenAPI document.
//!
//! Other actix-web apps that share the stores can require a session with the
//! [`extract::CurrentUser`] extractor or the [`middleware::RequireSession`] middleware
//! (see `examples/protected_app.rs` and `docs/api.md`).
//!
//! Architecture invariant: this is the only crate that knows HTTP, configuration files and
//! environment variables; the flows live in `auth`, the stores in the `cache-*` crates.

pub mod access;
pub mod api;
#[cfg(feature = "bench-routes")]
pub mod bench_routes;
pub mod cli;
pub mod cookies;
pub mod error;
pub mod extract;
pub mod failure;
pub mod health;
pub mod middleware;
pub mod openapi;
pub mod ops;
pub mod route;
pub mod routes;
pub mod security;
pub mod settings;
pub mod startup;
pub mod stores;
pub mod telemetry;

pub use cookies::CookiePolicy;
pub use error::ApiError;
pub use extract::CurrentUser;
pub use middleware::RequireSession;
pub use settings::Settings;
pub use startup::{Application, ApplicationBuilder, Parts, StartupFailure};
