//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` annotations and
//! the wire types' `ToSchema` derives, served at `GET /openapi.json`.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::cookies::SECURE_COOKIE_NAME;
use crate::error::{ErrorBody, ErrorDetail};
use crate::routes;

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
        routes::ops::live,
        routes::ops::ready_status,
        routes::analytics::analytics,
        routes::admin::user_sessions,
        routes::admin::revoke_user_sessions,
        routes::admin::list_blocks,
        routes::admin::block,
        routes::admin::unblock,
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
    )),
    modifiers(&SessionCookie, &AdminToken),
    tags(
        (name = "auth", description = "Registration, login, logout, passwords"),
        (name = "sessions", description = "The current user and their sessions"),
        (name = "operations", description = "Health and metrics"),
        (name = "admin", description = "Administration, behind the admin bearer token"),
    )
)]
pub struct ApiDoc;

/// Declares the `session_cookie` security scheme the authenticated paths refer to.
struct SessionCookie;

impl Modify for SessionCookie {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SECURE_COOKIE_NAME,
                "The session cookie set by login (`session` on plain-http deployments)",
            ))),
        );
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented() {
        let doc = ApiDoc::openapi();
        let paths: Vec<&str> = doc.paths.paths.keys().map(String::as_str).collect();
        for path in [
            "/v1/auth/register",
            "/v1/auth/verify-email",
            "/v1/auth/resend-verification",
            "/v1/auth/login",
            "/v1/auth/logout",
            "/v1/auth/logout-everywhere",
            "/v1/auth/change-password",
            "/v1/auth/forgot-password",
            "/v1/auth/reset-password",
            "/v1/me",
            "/v1/sessions",
            "/v1/sessions/{id}",
            "/health/live",
            "/health/ready",
        ] {
            assert!(paths.contains(&path), "{path} missing from {paths:?}");
        }
        let json = serde_json::to_value(&doc).unwrap();
        assert!(json["openapi"].as_str().unwrap().starts_with("3."));
        assert!(json["components"]["securitySchemes"]["session_cookie"].is_object());
        assert_eq!(json["components"]["securitySchemes"]["admin_token"]["scheme"], "bearer");
        assert!(paths.contains(&"/v1/admin/analytics"), "{paths:?}");
        for path in ["/v1/admin/users/{id}/sessions", "/v1/admin/ip-blocks"] {
            assert!(paths.contains(&path), "{path} missing from {paths:?}");
        }
    }
}
