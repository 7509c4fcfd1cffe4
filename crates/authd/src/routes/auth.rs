//! `/v1/auth/*`: registration, email verification, login and logout, password change and
//! reset. Thin: each handler turns JSON into a flow call and the result into JSON and
//! cookies; the flows live in the `auth` crate.

use actix_web::cookie::Cookie;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use auth::{AuthService, LoginInput, RegisterInput};

use crate::api::{
    AcceptedResponse, ChangePasswordRequest, EmailRequest, LoginRequest, LogoutEverywhereRequest,
    RegisterRequest, ResetPasswordRequest, RevokedResponse, SessionBody, TokenRequest, UserBody,
    UserSessionResponse,
};
use crate::cookies::CookiePolicy;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{CurrentUser, JsonObject, client_info};

/// The answer to a registration, whether or not the address was already registered.
pub(crate) const REGISTER_ACCEPTED: &str =
    "If the address can be registered, a verification link has been sent to it.";
/// The answer to a resend request, whether or not the address is known and unverified.
pub(crate) const RESEND_ACCEPTED: &str =
    "If the address belongs to an unverified account, a new verification link has been sent.";
/// The answer to a forgotten password, whether or not the address is known.
pub(crate) const FORGOT_ACCEPTED: &str =
    "If the address belongs to an account, a password reset link has been sent.";

fn accepted(message: &str) -> HttpResponse {
    HttpResponse::Accepted().json(AcceptedResponse { message: message.to_owned() })
}

/// Create an account and mail a verification link.
///
/// Answers the same 202 body whether or not the address is already registered, so that
/// the endpoint cannot be used to find out who has an account.
#[utoipa::path(
    post, path = "/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 202, description = "Accepted (also for an address already registered)", body = AcceptedResponse),
        (status = 400, description = "Invalid input or weak password", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn register(
    service: web::Data<AuthService>,
    body: JsonObject<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    let RegisterRequest { name, email, password } = body.into_inner();
    service.register(RegisterInput { name, email, password }).await?;
    Ok(accepted(REGISTER_ACCEPTED))
}

/// Confirm an email address with the token from the verification link.
#[utoipa::path(
    post, path = "/v1/auth/verify-email", tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "The address is verified", body = UserBody),
        (status = 400, description = "Unknown, used or expired token", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn verify_email(
    service: web::Data<AuthService>,
    body: JsonObject<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let user = service.verify_email(&body.token).await?;
    Ok(HttpResponse::Ok().json(UserBody::from(user)))
}

/// Send a new verification link (older links stop working).
#[utoipa::path(
    post, path = "/v1/auth/resend-verification", tag = "auth",
    request_body = EmailRequest,
    responses(
        (status = 202, description = "Accepted (whether or not the address is known)", body = AcceptedResponse),
        (status = 400, description = "Invalid email address", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn resend_verification(
    service: web::Data<AuthService>,
    body: JsonObject<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    service.resend_verification(&body.email).await?;
    Ok(accepted(RESEND_ACCEPTED))
}

/// Log in: opens a new session and sets the session cookie.
///
/// A session cookie sent with this request is ended once the new session exists: every
/// login gets a fresh token and the old one is dead (no session fixation). An unknown
/// address and a wrong password get the same 401.
#[utoipa::path(
    post, path = "/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; `Set-Cookie` carries the session", body = UserSessionResponse,
            headers(("Set-Cookie" = String, description = "The session cookie"))),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "Unknown email or wrong password", body = ErrorBody),
        (status = 403, description = "The email address is not verified yet", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn login(
    req: HttpRequest,
    service: web::Data<AuthService>,
    policy: web::Data<CookiePolicy>,
    body: JsonObject<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { email, password } = body.into_inner();
    let (outcome, cookie) =
        open_session(&req, &service, &policy, LoginInput { email, password }).await?;
    Ok(HttpResponse::Ok().cookie(cookie).json(UserSessionResponse {
        user: outcome.user.into(),
        session: SessionBody::current(&outcome.session),
    }))
}

/// The work of a login, for the API and the sign-in page alike: checks the credentials
/// (the flow counts the limits), ends the session of a cookie sent with the request, and
/// returns the outcome with the new session cookie.
pub(crate) async fn open_session(
    req: &HttpRequest,
    service: &AuthService,
    policy: &CookiePolicy,
    input: LoginInput,
) -> Result<(auth::LoginOutcome, Cookie<'static>), ApiError> {
    let outcome = service.login(input, &client_info(req)).await?;
    if let Some(old) = policy.read(req)
        && let Err(e) = service.logout(&old).await
    {
        // The old session must not outlive this login. Undo the new one (best effort:
        // nobody holds its token yet) and report the failure instead of a success.
        if let Err(undo) = service.logout(&outcome.token.encode()).await {
            tracing::warn!(error = %undo, "could not remove the session of a failed login");
        }
        return Err(e.into());
    }
    let cookie = policy.session_cookie(
        &outcome.token,
        outcome.session.absolute_expires_at,
        outcome.session.created_at,
    );
    Ok((outcome, cookie))
}

/// The response that clears the session cookie (`Max-Age=0`, `Clear-Site-Data`).
pub(crate) fn cleared(
    policy: &CookiePolicy,
    mut response: actix_web::HttpResponseBuilder,
) -> HttpResponse {
    response
        .cookie(policy.removal_cookie())
        .insert_header((
            header::HeaderName::from_static("clear-site-data"),
            HeaderValue::from_static("\"cookies\""),
        ))
        .finish()
}

/// Log out: ends the session of the cookie and clears the cookie. Idempotent: answers
/// 204 without a session too.
#[utoipa::path(
    post, path = "/v1/auth/logout", tag = "auth",
    responses(
        (status = 204, description = "Logged out; the cookie is cleared"),
        (status = 503, description = "A store is unavailable; the session may still be valid", body = ErrorBody),
    )
)]
pub async fn logout(
    req: HttpRequest,
    service: web::Data<AuthService>,
    policy: web::Data<CookiePolicy>,
) -> Result<HttpResponse, ApiError> {
    end_session(&req, &service, &policy).await?;
    Ok(cleared(&policy, HttpResponse::NoContent()))
}

/// Ends the session of the request's cookie, if any (the API's logout and the page's).
pub(crate) async fn end_session(
    req: &HttpRequest,
    service: &AuthService,
    policy: &CookiePolicy,
) -> Result<(), ApiError> {
    if let Some(token) = policy.read(req) {
        service.logout_from(&token, &client_info(req)).await?;
    }
    Ok(())
}

/// End every session of the user, optionally keeping the current one.
#[utoipa::path(
    post, path = "/v1/auth/logout-everywhere", tag = "auth",
    request_body = LogoutEverywhereRequest,
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "Sessions ended (the cookie is cleared unless kept)", body = RevokedResponse),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn logout_everywhere(
    current: CurrentUser,
    service: web::Data<AuthService>,
    policy: web::Data<CookiePolicy>,
    body: JsonObject<LogoutEverywhereRequest>,
) -> Result<HttpResponse, ApiError> {
    let revoked = service.logout_everywhere(current.authenticated(), body.keep_current).await?;
    let mut response = HttpResponse::Ok();
    if !body.keep_current {
        response.cookie(policy.removal_cookie());
    }
    Ok(response.json(RevokedResponse { revoked }))
}

/// Change the password (the current one is required); ends every other session.
///
/// Wrong current passwords are limited like failed logins, in the same buckets (per
/// account, address and pair) and per session: over a limit the answer is 429 with
/// `Retry-After`, before the password is checked.
#[utoipa::path(
    post, path = "/v1/auth/change-password", tag = "auth",
    request_body = ChangePasswordRequest,
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "Password changed; other sessions ended", body = RevokedResponse),
        (status = 400, description = "Weak new password", body = ErrorBody),
        (status = 401, description = "No valid session, or wrong current password", body = ErrorBody),
        (status = 429, description = "Too many wrong current passwords (or failed logins) for this account, address or session",
            body = ErrorBody,
            headers(("Retry-After" = String, description = "Seconds until an attempt can succeed"))),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn change_password(
    req: HttpRequest,
    current: CurrentUser,
    service: web::Data<AuthService>,
    body: JsonObject<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    let auth = current.authenticated();
    let client = client_info(&req);
    let revoked =
        service.change_password(auth, &body.current_password, &body.new_password, &client).await?;
    Ok(HttpResponse::Ok().json(RevokedResponse { revoked }))
}

/// Mail a password reset link to an account, verified or not (a reset verifies it).
///
/// Answers the same 202 body whether or not the address is known.
#[utoipa::path(
    post, path = "/v1/auth/forgot-password", tag = "auth",
    request_body = EmailRequest,
    responses(
        (status = 202, description = "Accepted (whether or not the address is known)", body = AcceptedResponse),
        (status = 400, description = "Invalid email address", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn forgot_password(
    service: web::Data<AuthService>,
    body: JsonObject<EmailRequest>,
) -> Result<HttpResponse, ApiError> {
    service.forgot_password(&body.email).await?;
    Ok(accepted(FORGOT_ACCEPTED))
}

/// Set a new password with the token from the reset link; marks the address verified
/// and ends every session.
#[utoipa::path(
    post, path = "/v1/auth/reset-password", tag = "auth",
    request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "Password set; every session ended"),
        (status = 400, description = "Unknown, used or expired token, or weak password", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn reset_password(
    service: web::Data<AuthService>,
    body: JsonObject<ResetPasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    service.reset_password(&body.token, &body.new_password).await?;
    Ok(HttpResponse::NoContent().finish())
}
