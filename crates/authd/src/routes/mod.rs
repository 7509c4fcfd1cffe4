//! The HTTP routes, one module per area, and the one table that mounts them.
//!
//! [`public_endpoints`] lists every resource of the public listener with its methods;
//! [`configure`] mounts exactly that table, and the OpenAPI tests read the same table, so
//! a route cannot be mounted without the tests seeing it (and asking for its
//! documentation). The browser pages ([`pages`]) are in the table as pages: mounted and
//! guarded like the rest, but not part of the JSON API's document ([`api_routes`]). Every resource has a default service answering 405 in the JSON error
//! shape with an `Allow` header naming the resource's methods (RFC 9110 §15.5.6), and
//! the `/v1` scope adds `Cache-Control: no-store` to every response, errors included.

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::DefaultHeaders;
use actix_web::{FromRequest, Handler, Resource, Responder, Route, web};

use crate::error::{self, ApiError};

pub mod admin;
pub mod analytics;
pub mod auth;
#[cfg(feature = "bench-routes")]
pub mod bench_routes;
pub mod events;
pub mod me;
pub mod ops;
pub mod pages;

/// One mounted resource: where it is, and the handler of each of its methods.
pub struct Endpoint {
    /// The scope it is mounted in: `"/v1"` or `""` (the root); only [`v1`] and [`root`]
    /// make endpoints, so no other scope can appear.
    scope: &'static str,
    /// Its pattern inside the scope.
    path: &'static str,
    /// Its methods, each with the route that serves it.
    methods: Vec<(Method, Route)>,
    /// A browser page (HTML, form posts) rather than a JSON API route: not in the
    /// OpenAPI document.
    page: bool,
}

impl Endpoint {
    /// The full pattern (`/v1/sessions/{id}`): the resource's name, what
    /// [`crate::route::matched`] answers, and its key in the OpenAPI document.
    pub fn pattern(&self) -> String {
        format!("{}{}", self.scope, self.path)
    }

    /// Whether it is a browser page, left out of the OpenAPI document.
    pub fn is_page(&self) -> bool {
        self.page
    }

    /// Its methods, in table order.
    pub fn methods(&self) -> Vec<Method> {
        self.methods.iter().map(|(m, _)| m.clone()).collect()
    }

    /// The `Allow` value of its 405 answers: its methods, in table order.
    fn allow(&self) -> String {
        let names: Vec<&str> = self.methods.iter().map(|(m, _)| m.as_str()).collect();
        names.join(", ")
    }

    /// The actix-web resource: named by its full pattern, its routes, and a default
    /// service that answers 405 with `Allow`.
    fn into_resource(self) -> Resource {
        // Method names are tokens, so the value is always a valid header value.
        let allow = HeaderValue::from_str(&self.allow()).unwrap_or(HeaderValue::from_static(""));
        let resource =
            web::resource(self.path).name(&self.pattern()).default_service(web::to(move || {
                let allow = allow.clone();
                async move { Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed(allow)) }
            }));
        self.methods.into_iter().fold(resource, |r, (_, route)| r.route(route))
    }
}

/// `(GET, handler)`: one method of an [`Endpoint`], with the guard that matches it.
fn get<F, Args>(handler: F) -> (Method, Route)
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    (Method::GET, web::get().to(handler))
}

/// `(POST, handler)`.
fn post<F, Args>(handler: F) -> (Method, Route)
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    (Method::POST, web::post().to(handler))
}

/// `(DELETE, handler)`.
fn delete<F, Args>(handler: F) -> (Method, Route)
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    (Method::DELETE, web::delete().to(handler))
}

fn v1(path: &'static str, methods: Vec<(Method, Route)>) -> Endpoint {
    Endpoint { scope: "/v1", path, methods, page: false }
}

fn root(path: &'static str, methods: Vec<(Method, Route)>) -> Endpoint {
    Endpoint { scope: "", path, methods, page: false }
}

/// A browser page or one of its assets, at the root.
fn page(path: &'static str, methods: Vec<(Method, Route)>) -> Endpoint {
    Endpoint { scope: "", path, methods, page: true }
}

/// Every resource of the public listener, with its methods: the one list that
/// [`configure`] mounts and the OpenAPI tests check against the document.
pub fn public_endpoints() -> Vec<Endpoint> {
    vec![
        v1("/auth/register", vec![post(auth::register)]),
        v1("/auth/verify-email", vec![post(auth::verify_email)]),
        v1("/auth/resend-verification", vec![post(auth::resend_verification)]),
        v1("/auth/login", vec![post(auth::login)]),
        v1("/auth/logout", vec![post(auth::logout)]),
        v1("/auth/logout-everywhere", vec![post(auth::logout_everywhere)]),
        v1("/auth/change-password", vec![post(auth::change_password)]),
        v1("/auth/forgot-password", vec![post(auth::forgot_password)]),
        v1("/auth/reset-password", vec![post(auth::reset_password)]),
        v1("/me", vec![get(me::me)]),
        v1("/me/events", vec![get(events::my_events)]),
        v1("/sessions", vec![get(me::list_sessions)]),
        v1("/sessions/{id}", vec![delete(me::revoke_session)]),
        v1("/admin/analytics", vec![get(analytics::analytics)]),
        v1(
            "/admin/users/{id}/sessions",
            vec![get(admin::user_sessions), delete(admin::revoke_user_sessions)],
        ),
        v1("/admin/users/{id}/events", vec![get(events::user_events)]),
        v1(
            "/admin/ip-blocks",
            vec![get(admin::list_blocks), post(admin::block), delete(admin::unblock)],
        ),
        root("/health/live", vec![get(ops::live)]),
        root("/health/ready", vec![get(ops::ready_status)]),
        root("/openapi.json", vec![get(ops::openapi_json)]),
        page("/", vec![get(pages::home)]),
        page("/register", vec![get(pages::register_page), post(pages::register)]),
        page("/login", vec![get(pages::login_page), post(pages::login)]),
        page("/verify-email", vec![get(pages::verify_email_page), post(pages::verify_email)]),
        page(
            "/resend-verification",
            vec![get(pages::resend_verification_page), post(pages::resend_verification)],
        ),
        page(
            "/forgot-password",
            vec![get(pages::forgot_password_page), post(pages::forgot_password)],
        ),
        page("/reset-password", vec![get(pages::reset_password_page), post(pages::reset_password)]),
        page("/account", vec![get(pages::account)]),
        page("/account/sessions/end", vec![post(pages::end_session)]),
        page("/account/sign-out-others", vec![post(pages::sign_out_others)]),
        page("/account/password", vec![post(pages::change_password)]),
        page("/logout", vec![post(pages::logout)]),
        page("/assets/auth-pages.js", vec![get(pages::script)]),
        page("/assets/pages.css", vec![get(pages::stylesheet)]),
    ]
}

/// Every resource of the operations listener (`server.ops_listen`, loopback by
/// default): Prometheus metrics and the detailed readiness report, which tell more about
/// the deployment (and, through counters, about accounts) than the public may know.
pub fn ops_endpoints() -> Vec<Endpoint> {
    vec![
        root("/health/live", vec![get(ops::live)]),
        root("/health/ready", vec![get(ops::ready)]),
        root("/metrics", vec![get(ops::metrics)]),
    ]
}

/// The full patterns and methods of the public listener's resources, for tests and
/// tools that compare them with the OpenAPI document.
pub fn public_routes() -> Vec<(String, Vec<Method>)> {
    public_endpoints().into_iter().map(|e| (e.pattern(), e.methods())).collect()
}

/// [`public_routes`] without the browser pages: what the OpenAPI document describes.
pub fn api_routes() -> Vec<(String, Vec<Method>)> {
    public_endpoints()
        .into_iter()
        .filter(|e| !e.is_page())
        .map(|e| (e.pattern(), e.methods()))
        .collect()
}

/// [`public_routes`] of the operations listener.
pub fn ops_routes() -> Vec<(String, Vec<Method>)> {
    ops_endpoints().into_iter().map(|e| (e.pattern(), e.methods())).collect()
}

/// Mounts every route of [`public_endpoints`]. The app data (`AuthService`,
/// `CookiePolicy`, `Readiness`, the OpenAPI document, extractor configs) is added by
/// [`crate::app::startup`].
pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut v1 = web::scope("/v1").wrap(
        DefaultHeaders::new()
            .add((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .add((header::PRAGMA, HeaderValue::from_static("no-cache"))),
    );
    let mut roots = Vec::new();
    for endpoint in public_endpoints() {
        if endpoint.scope == "/v1" {
            v1 = v1.service(endpoint.into_resource());
        } else {
            roots.push(endpoint.into_resource());
        }
    }
    cfg.service(v1.default_service(web::to(error::not_found)));
    for resource in roots {
        cfg.service(resource);
    }
    #[cfg(feature = "bench-routes")]
    cfg.configure(bench_routes::configure);
}

/// Mounts the operations listener's routes ([`ops_endpoints`]).
pub fn configure_ops(cfg: &mut web::ServiceConfig) {
    for endpoint in ops_endpoints() {
        cfg.service(endpoint.into_resource());
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderName;
    use actix_web::middleware::{Next, from_fn};
    use actix_web::{App, test};

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
        for (pattern, _) in public_routes() {
            let path = pattern.replace("{id}", "123");
            let response =
                test::call_service(&app, test::TestRequest::get().uri(&path).to_request()).await;
            let route = response.headers().get("x-route").and_then(|v| v.to_str().ok());
            assert_eq!(route, Some(pattern.as_str()), "GET {path}");
        }
        for unmatched in ["/nope", "/v1", "/v1/nope", "/v1/auth/login/", "/v1/auth%2Flogin"] {
            let response =
                test::call_service(&app, test::TestRequest::get().uri(unmatched).to_request())
                    .await;
            assert_eq!(response.headers().get("x-route").unwrap(), "-", "GET {unmatched}");
        }
    }

    /// A method a resource does not serve gets 405 with `Allow` naming exactly the
    /// methods it does serve, on both listeners.
    #[actix_web::test]
    async fn a_wrong_method_gets_405_with_allow() {
        let public = test::init_service(App::new().configure(configure)).await;
        let ops = test::init_service(App::new().configure(configure_ops)).await;
        let tables = [(public_routes(), true), (ops_routes(), false)];
        for (routes, is_public) in tables {
            for (pattern, methods) in routes {
                let allow: Vec<&str> = methods.iter().map(Method::as_str).collect();
                let path = pattern.replace("{id}", "123");
                for method in
                    [Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH]
                {
                    if methods.contains(&method) {
                        continue;
                    }
                    let req = test::TestRequest::default().method(method.clone()).uri(&path);
                    let response = if is_public {
                        test::call_service(&public, req.to_request()).await
                    } else {
                        test::call_service(&ops, req.to_request()).await
                    };
                    assert_eq!(response.status(), 405, "{method} {path}");
                    let header = response.headers().get(header::ALLOW).map(|v| v.to_str().unwrap());
                    assert_eq!(header, Some(allow.join(", ").as_str()), "{method} {path}");
                    let body: serde_json::Value = test::read_body_json(response).await;
                    assert_eq!(body["error"]["code"], "method_not_allowed");
                }
            }
        }
    }
}
