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

/// A resource at `path` inside the scope mounted at `scope` (`""` at the root), whose
/// unknown methods get a JSON 405. It is named by its full pattern, which is what
/// [`crate::route::matched`] answers for a request routed to it.
fn resource(scope: &str, path: &str) -> Resource {
    web::resource(path)
        .name(&format!("{scope}{path}"))
        .default_service(web::to(error::method_not_allowed))
}

/// A resource inside the `/v1` scope.
fn v1(path: &str) -> Resource {
    resource("/v1", path)
}

/// A resource at the root.
fn root(path: &str) -> Resource {
    resource("", path)
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
        .service(v1("/auth/register").route(web::post().to(auth::register)))
        .service(v1("/auth/verify-email").route(web::post().to(auth::verify_email)))
        .service(v1("/auth/resend-verification").route(web::post().to(auth::resend_verification)))
        .service(v1("/auth/login").route(web::post().to(auth::login)))
        .service(v1("/auth/logout").route(web::post().to(auth::logout)))
        .service(v1("/auth/logout-everywhere").route(web::post().to(auth::logout_everywhere)))
        .service(v1("/auth/change-password").route(web::post().to(auth::change_password)))
        .service(v1("/auth/forgot-password").route(web::post().to(auth::forgot_password)))
        .service(v1("/auth/reset-password").route(web::post().to(auth::reset_password)))
        .service(v1("/me").route(web::get().to(me::me)))
        .service(v1("/sessions").route(web::get().to(me::list_sessions)))
        .service(v1("/sessions/{id}").route(web::delete().to(me::revoke_session)))
        .service(v1("/admin/analytics").route(web::get().to(analytics::analytics)))
        .service(
            v1("/admin/users/{id}/sessions")
                .route(web::get().to(admin::user_sessions))
                .route(web::delete().to(admin::revoke_user_sessions)),
        )
        .service(
            v1("/admin/ip-blocks")
                .route(web::get().to(admin::list_blocks))
                .route(web::post().to(admin::block))
                .route(web::delete().to(admin::unblock)),
        )
        .default_service(web::to(error::not_found));

    cfg.service(v1)
        .service(root("/health/live").route(web::get().to(ops::live)))
        .service(root("/health/ready").route(web::get().to(ops::ready_status)))
        .service(root("/openapi.json").route(web::get().to(ops::openapi_json)))
        .service(root("/verify-email").route(web::get().to(pages::verify_email_page)))
        .service(root("/reset-password").route(web::get().to(pages::reset_password_page)))
        .service(root("/assets/auth-pages.js").route(web::get().to(pages::script)));
    #[cfg(feature = "bench-routes")]
    cfg.configure(crate::bench_routes::configure);
}

/// Mounts the operations listener's routes (`server.ops_listen`, loopback by default):
/// Prometheus metrics and the detailed readiness report, which tell more about the
/// deployment (and, through counters, about accounts) than the public may know.
pub fn configure_ops(cfg: &mut web::ServiceConfig) {
    cfg.service(root("/health/live").route(web::get().to(ops::live)))
        .service(root("/health/ready").route(web::get().to(ops::ready)))
        .service(root("/metrics").route(web::get().to(ops::metrics)));
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderName;
    use actix_web::middleware::{Next, from_fn};
    use actix_web::{App, test};
    use utoipa::OpenApi as _;

    use super::*;

    /// Answers every request with the route [`crate::route::matched`] found for it, in a
    /// header, without calling any handler.
    async fn echo_route(
        req: actix_web::dev::ServiceRequest,
        _: Next<impl actix_web::body::MessageBody>,
    ) -> Result<actix_web::dev::ServiceResponse, actix_web::Error> {
        let route = crate::route::matched(req.request()).unwrap_or("-").to_owned();
        let response = actix_web::HttpResponse::Ok()
            .insert_header((HeaderName::from_static("x-route"), route))
            .finish();
        Ok(req.into_response(response))
    }

    #[actix_web::test]
    async fn every_route_is_matched_by_its_own_pattern() {
        let app =
            test::init_service(App::new().wrap(from_fn(echo_route)).configure(configure)).await;
        let doc = crate::openapi::ApiDoc::openapi();
        let pages = ["/verify-email", "/reset-password", "/assets/auth-pages.js", "/openapi.json"];
        let patterns = doc.paths.paths.keys().map(String::as_str).chain(pages);
        for pattern in patterns {
            let path = pattern.replace("{id}", "123");
            let response =
                test::call_service(&app, test::TestRequest::get().uri(&path).to_request()).await;
            let route = response.headers().get("x-route").and_then(|v| v.to_str().ok());
            assert_eq!(route, Some(pattern), "GET {path}");
        }
        for unmatched in ["/", "/v1", "/v1/nope", "/v1/auth/login/", "/v1/auth%2Flogin"] {
            let response =
                test::call_service(&app, test::TestRequest::get().uri(unmatched).to_request())
                    .await;
            assert_eq!(response.headers().get("x-route").unwrap(), "-", "GET {unmatched}");
        }
    }
}
