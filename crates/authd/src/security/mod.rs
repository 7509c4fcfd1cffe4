//! Abuse protection at the HTTP edge (see `docs/security.md`):
//!
//! - [`guard`] (from `auth-actix`): the middleware in front of every route: client
//!   address (trusted proxies), IP blocks, CSRF, per-address rate limits; its
//!   [`GuardConfig`] from the settings by [`guard_config`];
//! - [`admin`]: the admin API's own bearer credential ([`AdminAuth`]).
//!
//! The policy's limiter and block list are composed from the stores at start-up
//! (`crate::app::abuse::build_abuse`).
//!
//! Its settings (`[security]`, `[abuse]`) live in [`crate::settings::security`], below
//! this module: features import the settings, never the other way round.

pub mod admin;
pub use auth_actix::{client, csrf};

pub use crate::settings::security::{AbuseSettings, SecuritySettings};
pub use admin::{AdminAuth, AdminGuard};
pub use auth_actix::guard::{Guard, GuardConfig, Security, guard};
pub use client::ClientAddr;

use crate::settings::Settings;

/// The guard's configuration from `[security]` and `[abuse]`.
pub fn guard_config(settings: &Settings) -> GuardConfig {
    let s = &settings.security;
    GuardConfig {
        limits: settings.abuse.enabled,
        trusted_proxies: s.trusted_proxies.clone(),
        csrf: csrf::CsrfPolicy::new(
            settings.public_base_url(),
            &s.csrf_trusted_origins,
            s.csrf_require_origin,
        ),
    }
}
