//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` annotations and
//! the wire types' `ToSchema` derives, then completed for the running server by
//! [`document`] and served at `GET /openapi.json`.
//!
//! What a client generator reads here must be what the server does: the session
//! cookie's name is the one this server sets (`session` or `__Host-session`), password
//! lengths are this server's policy, and every status the HTTP edge can answer on a route
//! (a blocked address, CSRF, limits, bad JSON, a body too large, an outage) is listed on
//! it, added here in one place rather than repeated on every handler. A test checks the
//! document against the mounted routes ([`crate::routes::public_endpoints`]), less the
//! browser pages, which are for people and not part of the API.

use actix_web::http::Method;
use utoipa::openapi::RefOr;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{Object, Ref, Schema, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::cookies::CookiePolicy;
use crate::error::{ErrorBody, ErrorDetail};
use crate::routes;
use crate::settings::Settings;

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "tiered-auth",
        description = "Session authentication: registration with email verification, login \
                       with an HttpOnly session cookie, sessions, password change and reset. \
                       Every error is `{\"error\": {\"code\", \"message\"}}`.",
    ),
    paths(
        routes::auth::register,
        routes::auth::verify_email,
        routes::auth::resend_verification,
        routes::auth::login,
        routes::auth::logout,
        routes::auth::logout_everywhere,
        routes::auth::change_password,
        routes::auth::forgot_password,
        routes::auth::reset_password,
        routes::me::me,
        routes::me::list_sessions,
        routes::me::revoke_session,
        routes::events::my_events,
        routes::events::user_events,
        routes::ops::live,
        routes::ops::ready_status,
        routes::analytics::analytics,
        routes::admin::user_sessions,
        routes::admin::revoke_user_sessions,
        routes::admin::list_blocks,
        routes::admin::block,
        routes::admin::unblock,
        routes::ops::openapi_json,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        api::RegisterRequest,
        api::LoginRequest,
        api::TokenRequest,
        api::EmailRequest,
        api::LogoutEverywhereRequest,
        api::ChangePasswordRequest,
        api::ResetPasswordRequest,
        api::AcceptedResponse,
        api::UserBody,
        api::SessionBody,
        api::UserSessionResponse,
        api::SessionListResponse,
        api::RevokedResponse,
        crate::ops::AnalyticsReport,
        crate::ops::DayReport,
        routes::admin::IpBlockBody,
        routes::admin::IpBlockListResponse,
        routes::admin::BlockRequest,
        routes::events::EventBody,
        routes::events::EventListResponse,
    )),
    modifiers(&AdminToken),
    tags(
        (name = "auth", description = "Registration, login, logout, passwords"),
        (name = "sessions", description = "The current user and their sessions"),
        (name = "operations", description = "Health and this document"),
        (name = "admin", description = "Administration, behind the admin bearer token"),
    )
)]
pub struct ApiDoc;

/// Declares the `admin_token` security scheme of the `/v1/admin/*` paths: the bearer
/// token of `admin.token`.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The admin API token (`admin.token`)"))
                    .build(),
            ),
        );
    }
}

/// The document of a server running with `settings`: [`ApiDoc`] with this server's
/// cookie name, password policy and analytics retention, and on every operation the
/// statuses the HTTP edge answers before or around its handler.
pub fn document(settings: &Settings) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    session_cookie(&mut doc, CookiePolicy::new(settings.cookie.secure));
    password_policy(&mut doc, settings.auth.password_min_chars, settings.auth.password_max_chars);
    analytics_days(&mut doc, settings.analytics.retention_days);
    patterns(&mut doc);
    unblock_net(&mut doc);
    if settings.admin.token.is_none() {
        admin_disabled(&mut doc);
    }
    edge_responses(&mut doc);
    doc
}

/// On a server without `admin.token` no credential opens the admin API: its operations
/// need none and answer 404 `admin_disabled` to everything, which is what the document
/// of such a server says.
fn admin_disabled(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        if !path.starts_with("/v1/admin/") {
            continue;
        }
        for op in
            [item.get.as_mut(), item.post.as_mut(), item.delete.as_mut()].into_iter().flatten()
        {
            op.security = Some(Vec::new());
            let summary = op.summary.get_or_insert_with(String::new);
            summary.insert_str(0, "(disabled on this server: no admin token) ");
        }
    }
}

/// Declares the `session_cookie` security scheme with the name `policy` gives the cookie.
fn session_cookie(doc: &mut utoipa::openapi::OpenApi, policy: CookiePolicy) {
    let description = if policy.is_secure() {
        "The session cookie set by login (`__Host-session`, `Secure`, `HttpOnly`, \
         `SameSite=Lax`): its value is `{user_id}.{43 base64url characters}`"
    } else {
        "The session cookie set by login (`session`, `HttpOnly`, `SameSite=Lax`; this \
         server runs with `cookie.secure` off, for plain-http local use): its value is \
         `{user_id}.{43 base64url characters}`"
    };
    doc.components.get_or_insert_with(Default::default).add_security_scheme(
        "session_cookie",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            policy.name(),
            description,
        ))),
    );
}

/// The properties holding a new password, whose length the policy bounds. A current
/// password (login, change-password) is only compared, never refused for its length.
const NEW_PASSWORDS: [(&str, &str); 3] = [
    ("RegisterRequest", "password"),
    ("ChangePasswordRequest", "new_password"),
    ("ResetPasswordRequest", "new_password"),
];

/// Sets the policy's lengths (Unicode scalar values, as the policy counts them and as
/// JSON Schema counts `minLength`) on every new-password property.
fn password_policy(doc: &mut utoipa::openapi::OpenApi, min: usize, max: usize) {
    for (schema, property) in NEW_PASSWORDS {
        if let Some(object) = property_mut(doc, schema, property) {
            object.min_length = Some(min);
            object.max_length = Some(max);
        }
    }
}

/// The inline object schema of `schema.property` in the components, if it is one.
fn property_mut<'a>(
    doc: &'a mut utoipa::openapi::OpenApi,
    schema: &str,
    property: &str,
) -> Option<&'a mut Object> {
    let components = doc.components.as_mut()?;
    let RefOr::T(Schema::Object(object)) = components.schemas.get_mut(schema)? else {
        return None;
    };
    match object.properties.get_mut(property)? {
        RefOr::T(Schema::Object(property)) => Some(property),
        _ => None,
    }
}

/// The patterns of the validated strings (utoipa's attributes take literals only, and
/// the constants next to the wire types are the ones their tests check).
fn patterns(doc: &mut utoipa::openapi::OpenApi) {
    for (schema, property, pattern) in [
        ("RegisterRequest", "name", api::NAME_PATTERN),
        ("TokenRequest", "token", api::TOKEN_PATTERN),
        ("ResetPasswordRequest", "token", api::TOKEN_PATTERN),
    ] {
        if let Some(object) = property_mut(doc, schema, property) {
            object.pattern = Some(pattern.to_owned());
        }
    }
}

/// The `net` query parameter of `DELETE /v1/admin/ip-blocks`: what the body's `net`
/// of the POST is (utoipa's tuple parameters take no `schema_with`).
fn unblock_net(doc: &mut utoipa::openapi::OpenApi) {
    let Some(op) = doc.paths.paths.get_mut("/v1/admin/ip-blocks").and_then(|p| p.delete.as_mut())
    else {
        return;
    };
    for param in op.parameters.iter_mut().flatten() {
        if param.name == "net" {
            param.schema = Some(RefOr::T(routes::admin::net_schema()));
        }
    }
}

/// Bounds `days` of `GET /v1/admin/analytics` by this server's retention.
fn analytics_days(doc: &mut utoipa::openapi::OpenApi, retention: u32) {
    let Some(op) = doc.paths.paths.get_mut("/v1/admin/analytics").and_then(|p| p.get.as_mut())
    else {
        return;
    };
    for param in op.parameters.iter_mut().flatten() {
        if param.name == "days"
            && let Some(RefOr::T(Schema::Object(days))) = param.schema.as_mut()
        {
            days.maximum = Some(retention.into());
        }
    }
}

/// Routes whose per-address or per-account limits answer 429 (`Retry-After`,
/// `RateLimit-*`): the guard's (register, resend, forgot, reset), the flows' (login,
/// change-password, resend and forgot per account), and the admin bearer's.
fn rate_limited(method: &Method, path: &str) -> bool {
    *method == Method::POST
        && matches!(
            path,
            "/v1/auth/register"
                | "/v1/auth/resend-verification"
                | "/v1/auth/forgot-password"
                | "/v1/auth/reset-password"
                | "/v1/auth/login"
                | "/v1/auth/change-password"
        )
        || path.starts_with("/v1/admin/")
}

/// Adds to every operation the statuses the HTTP edge answers whatever the handler
/// does (see `security::guard`, the JSON extractor and the stores):
/// - 403 `ip_blocked` on every route but `/health/*` and `/v1/admin/*`;
/// - 403 `csrf` on every state-changing route (a cross-origin request with the cookie);
/// - 400 `invalid_json`/`invalid_input` and 413 on every route with a JSON body;
/// - 429 on the rate-limited routes;
/// - 503 on every `/v1` route (a store is down).
fn edge_responses(doc: &mut utoipa::openapi::OpenApi) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let operations = [
            (Method::GET, item.get.as_mut()),
            (Method::POST, item.post.as_mut()),
            (Method::DELETE, item.delete.as_mut()),
            (Method::PUT, item.put.as_mut()),
            (Method::PATCH, item.patch.as_mut()),
        ];
        for (method, op) in operations {
            let Some(op) = op else { continue };
            if !(path.starts_with("/health/") || path.starts_with("/v1/admin/")) {
                add_error(op, 403, "The client's address is blocked (`ip_blocked`)");
            }
            if method != Method::GET {
                add_error(op, 403, "A cross-origin request carrying the session cookie (`csrf`)");
            }
            if op.request_body.is_some() {
                add_error(
                    op,
                    400,
                    "The body is not JSON (`invalid_json`), or a field is missing, unknown, \
                     of the wrong type or malformed (`invalid_input`)",
                );
                add_error(op, 413, "The body is larger than `server.json_limit_bytes`");
            }
            if rate_limited(&method, path) {
                add_rate_limited(op);
            }
            if path.starts_with("/v1/") {
                add_error(op, 503, "A store is unavailable; nothing was done (`Retry-After: 1`)");
            }
        }
    }
}

/// Documents an error `status` on `op`, or adds `description` to the one it has.
fn add_error(op: &mut Operation, status: u16, description: &str) {
    let key = status.to_string();
    match op.responses.responses.get_mut(&key) {
        Some(RefOr::T(response)) => {
            if !response.description.contains(description) {
                response.description = format!("{}; or: {description}", response.description);
            }
        }
        Some(RefOr::Ref(_)) => {}
        None => {
            let mut response = ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
            );
            if status == 503 {
                response = response.header("Retry-After", seconds_header("Always `1`"));
            }
            op.responses.responses.insert(key, RefOr::T(response.build()));
        }
    }
}

/// 429 with the headers that say when to retry.
fn add_rate_limited(op: &mut Operation) {
    add_error(op, 429, "Too many attempts (`rate_limited`); wait `Retry-After` seconds");
    if let Some(RefOr::T(response)) = op.responses.responses.get_mut("429") {
        for (name, description) in [
            ("Retry-After", "Seconds until an attempt can succeed"),
            ("RateLimit-Limit", "Attempts allowed in the window"),
            ("RateLimit-Remaining", "Attempts left in the window (0)"),
            ("RateLimit-Reset", "Seconds until the window frees an attempt"),
        ] {
            response.headers.insert(name.to_owned(), seconds_header(description));
        }
    }
}

/// A header whose value is a non-negative integer.
fn seconds_header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Object::builder().schema_type(Type::Integer).minimum(Some(0)))
        .description(Some(description))
        .build()
}

/// The operations of the document as `METHOD pattern` (upper-case method).
pub fn operations(doc: &utoipa::openapi::OpenApi) -> Vec<String> {
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        for (method, op) in [
            ("GET", &item.get),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("PUT", &item.put),
            ("PATCH", &item.patch),
            ("HEAD", &item.head),
            ("OPTIONS", &item.options),
            ("TRACE", &item.trace),
        ] {
            if op.is_some() {
                out.push(format!("{method} {path}"));
            }
        }
    }
    out
}

/// What differs between mounted `routes` (pattern and methods) and the document's
/// operations: `+ METHOD pattern` for a mounted route the document lacks, `- METHOD
/// pattern` for a documented one that is not mounted. Empty when they agree.
pub fn differences(
    routes: &[(String, Vec<Method>)],
    doc: &utoipa::openapi::OpenApi,
) -> Vec<String> {
    let documented = operations(doc);
    let mounted: Vec<String> = routes
        .iter()
        .flat_map(|(pattern, methods)| methods.iter().map(move |m| format!("{m} {pattern}")))
        .collect();
    let mut out: Vec<String> =
        mounted.iter().filter(|op| !documented.contains(op)).map(|op| format!("+ {op}")).collect();
    out.extend(documented.iter().filter(|op| !mounted.contains(op)).map(|op| format!("- {op}")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The routes come from the table that mounts them: a route added to
    /// `routes::public_endpoints` without a `#[utoipa::path]` in `ApiDoc` fails here;
    /// the browser pages are in the table, and none of them is in the document.
    #[test]
    fn every_mounted_route_is_documented_and_nothing_else() {
        let doc = document(&Settings::default());
        let routes = routes::api_routes();
        assert!(routes.len() >= 18, "{routes:?}");
        assert_eq!(differences(&routes, &doc), Vec::<String>::new());
        let documented = operations(&doc);
        let pages: Vec<_> =
            routes::public_endpoints().into_iter().filter(|e| e.is_page()).collect();
        assert!(pages.len() >= 10);
        for page in pages {
            let pattern = page.pattern();
            assert!(!documented.iter().any(|op| op.ends_with(&format!(" {pattern}"))), "{pattern}");
        }
    }

    #[test]
    fn an_undocumented_route_is_reported() {
        let doc = document(&Settings::default());
        let mut routes = routes::api_routes();
        routes.push(("/v1/new-thing".to_owned(), vec![Method::POST]));
        routes[0].1.push(Method::PUT);
        let pattern = routes[0].0.clone();
        assert_eq!(
            differences(&routes, &doc),
            [format!("+ PUT {pattern}"), "+ POST /v1/new-thing".to_owned()]
        );
        routes.retain(|(p, _)| p != "/v1/me");
        assert!(differences(&routes, &doc).contains(&"- GET /v1/me".to_owned()));
    }

    #[test]
    fn the_cookie_and_password_policy_are_this_servers() {
        let mut settings = Settings::default();
        settings.cookie.secure = false;
        settings.auth.password_min_chars = 12;
        settings.auth.password_max_chars = 200;
        let json = serde_json::to_value(document(&settings)).unwrap();
        let cookie = &json["components"]["securitySchemes"]["session_cookie"];
        assert_eq!(cookie["in"], "cookie");
        assert_eq!(cookie["name"], "session");
        for (schema, property) in NEW_PASSWORDS {
            let p = &json["components"]["schemas"][schema]["properties"][property];
            assert_eq!(p["minLength"], 12, "{schema}.{property}");
            assert_eq!(p["maxLength"], 200, "{schema}.{property}");
        }
        settings.cookie.secure = true;
        let json = serde_json::to_value(document(&settings)).unwrap();
        assert_eq!(
            json["components"]["securitySchemes"]["session_cookie"]["name"],
            "__Host-session"
        );
        assert_eq!(json["components"]["securitySchemes"]["admin_token"]["scheme"], "bearer");
        // Without an admin token the admin operations need no credential: all are 404.
        let blocks = &json["paths"]["/v1/admin/ip-blocks"]["get"];
        assert_eq!(blocks["security"], serde_json::json!([]), "{blocks}");
        settings.admin.token = Some("an-admin-token-of-at-least-32-chars!".to_owned().into());
        let json = serde_json::to_value(document(&settings)).unwrap();
        let blocks = &json["paths"]["/v1/admin/ip-blocks"]["get"];
        assert_eq!(blocks["security"][0]["admin_token"], serde_json::json!([]), "{blocks}");
        assert!(json["openapi"].as_str().unwrap().starts_with("3."));
    }

    #[test]
    fn edge_statuses_are_on_every_route_they_apply_to() {
        let json = serde_json::to_value(document(&Settings::default())).unwrap();
        let op = |path: &str, method: &str| json["paths"][path][method]["responses"].clone();
        let login = op("/v1/auth/login", "post");
        for status in ["400", "401", "403", "413", "429", "503"] {
            assert!(login[status].is_object(), "login {status}: {login}");
        }
        assert!(login["403"]["description"].as_str().unwrap().contains("csrf"));
        assert!(login["403"]["description"].as_str().unwrap().contains("not verified"));
        assert!(login["429"]["headers"]["Retry-After"].is_object());
        let me = op("/v1/me", "get");
        assert!(me["403"]["description"].as_str().unwrap().contains("ip_blocked"));
        assert!(me["413"].is_null() && me["429"].is_null(), "{me}");
        let live = op("/health/live", "get");
        assert!(live["403"].is_null() && live["503"].is_null(), "{live}");
        for (path, method) in [
            ("/v1/admin/ip-blocks", "post"),
            ("/v1/admin/analytics", "get"),
            ("/v1/admin/users/{id}/sessions", "delete"),
        ] {
            let admin = op(path, method);
            assert!(admin["404"]["description"].as_str().unwrap().contains("disabled"), "{path}");
            assert!(admin["429"].is_object(), "{path}");
        }
    }
}
