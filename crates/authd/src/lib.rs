//! # authd
//!
//! The tiered-auth HTTP service (actix-web) as a library, so that integration tests and
//! other binaries can build it: [`Settings`] (figment: defaults, TOML file, env),
//! [`Application`] (stores composed from the settings, the actix-web server bound to its
//! listener), the JSON API under `/v1`, health, metrics and the OpenAPI document.
//!
//! Other actix-web apps that share the stores require a session with `auth-actix`'s
//! [`CurrentUser`] extractor or [`RequireSession`] middleware (re-exported here; see
//! `docs/api.md`), building the stores and flows with [`ApplicationBuilder::build_parts`].
//!
//! Architecture invariant: this is the only crate that knows configuration files and
//! environment variables; the flows live in `auth`, the stores in the `cache-*` crates,
//! the HTTP edge shared with other apps in `auth-actix`.

pub mod api;
pub mod app;
pub mod cli;
pub mod health;
pub mod http;
pub mod openapi;
pub mod ops;
pub mod routes;
pub mod security;
pub mod settings;
pub mod telemetry;

// The HTTP edge shared with other apps lives in `auth-actix`; the same paths here.
pub use auth_actix::{cookies, error, extract, middleware, route};
// The modules' paths before they moved into `app/`, `http/` and `routes/`.
pub use app::{failure, startup, stores};
pub use http::access;
#[cfg(feature = "bench-routes")]
pub use routes::bench_routes;

pub use cookies::CookiePolicy;
pub use error::ApiError;
pub use extract::CurrentUser;
pub use middleware::RequireSession;
pub use settings::Settings;
pub use startup::{Application, ApplicationBuilder, Parts, StartupFailure};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
