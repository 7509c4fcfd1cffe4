//! The HTTP edge of the service: request ids and the access log ([`access`]), the
//! metrics middleware ([`http_metrics`]), and, from `auth-actix` (shared with other
//! apps), the cookie policy, the error type, the extractor, the middleware, the guard and
//! route matching.

pub mod access;
pub mod http_metrics;

pub use auth_actix::{cookies, error, extract, guard, middleware, route};
