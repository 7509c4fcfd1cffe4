//! The HTTP routes, one module per area, and the table that mounts them.
//!
//! Every resource has a default service answering 405 in the JSON error shape, and the
//! `/v1` scope adds `Cache-Control: no-store` to every response, errors included.

use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{Resource, web};

use crate::error;

pub mod admin;
pub mod analytics;
pub mod auth;
pub mod me;
pub mod ops;
pub mod pages;

/// A resource whose unknown methods get a JSON 405.
fn resource(path: &str) -> Resource {
    web::resource(path).default_service(web::to(error::method_not_allowed))
}

/// Mounts every route. The app data (`AuthService`, `CookiePolicy`, `Readiness`,
/// `PrometheusHandle`, extractor configs) is added by [`crate::startup`].
pub fn configure(cfg: &mut web::ServiceConfig) {
    let v1 = web::scope("/v1")
        .wrap(
            DefaultHeaders::new()
                .add((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
                .add((header::PRAGMA, HeaderValue::from_static("no-cache"))),
        )
        .service(
            web::scope("/auth")
                .service(resource("/register").route(web::post().to(auth::register)))
                .service(resource("/verify-email").route(web::post().to(auth::verify_email)))
                .service(
                    resource("/resend-verification")
                        .route(web::post().to(auth::resend_verification)),
                )
                .service(resource("/login").route(web::post().to(auth::login)))
                .service(resource("/logout").route(web::post().to(auth::logout)))
                .service(
                    resource("/logout-everywhere").route(web::post().to(auth::logout_everywhere)),
                )
                .service(resource("/change-password").route(web::post().to(auth::change_password)))
                .service(resource("/forgot-password").route(web::post().to(auth::forgot_password)))
                .service(resource("/reset-password").route(web::post().to(auth::reset_password))),
        )
        .service(resource("/me").route(web::get().to(me::me)))
        .service(resource("/sessions").route(web::get().to(me::list_sessions)))
        .service(resource("/sessions/{id}").route(web::delete().to(me::revoke_session)))
        .service(resource("/admin/analytics").route(web::get().to(analytics::analytics)))
        .service(
            resource("/admin/users/{id}/sessions")
                .route(web::get().to(admin::user_sessions))
                .route(web::delete().to(admin::revoke_user_sessions)),
        )
        .service(
            resource("/admin/ip-blocks")
                .route(web::get().to(admin::list_blocks))
                .route(web::post().to(admin::block))
                .route(web::delete().to(admin::unblock)),
        )
        .default_service(web::to(error::not_found));

    cfg.service(v1)
        .service(resource("/health/live").route(web::get().to(ops::live)))
        .service(resource("/health/ready").route(web::get().to(ops::ready)))
        .service(resource("/metrics").route(web::get().to(ops::metrics)))
        .service(resource("/openapi.json").route(web::get().to(ops::openapi_json)))
        .service(resource("/verify-email").route(web::get().to(pages::verify_email_page)))
        .service(resource("/reset-password").route(web::get().to(pages::reset_password_page)))
        .service(resource("/assets/auth-pages.js").route(web::get().to(pages::script)));
    #[cfg(feature = "bench-routes")]
    cfg.configure(crate::bench_routes::configure);
}
