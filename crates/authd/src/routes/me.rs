//! `/v1/me` and `/v1/sessions`: the current user and their sessions.

use actix_web::{HttpResponse, web};
use auth::AuthService;

use crate::api::{SessionBody, SessionListResponse, UserSessionResponse};
use crate::cookies::CookiePolicy;
use crate::error::{ApiError, ErrorBody};
use crate::extract::CurrentUser;

/// The current user and session.
#[utoipa::path(
    get, path = "/v1/me", tag = "sessions",
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "The current user and session", body = UserSessionResponse),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn me(current: CurrentUser) -> HttpResponse {
    let CurrentUser(auth::Authenticated { user, session }) = current;
    UserSessionResponse { user: user.into(), session: SessionBody::current(&session) }.ok()
}

/// The user's live sessions, most recently used first.
#[utoipa::path(
    get, path = "/v1/sessions", tag = "sessions",
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "Live sessions", body = SessionListResponse),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn list_sessions(
    current: CurrentUser,
    service: web::Data<AuthService>,
) -> Result<HttpResponse, ApiError> {
    let sessions = service.list_sessions(current.authenticated()).await?;
    Ok(HttpResponse::Ok()
        .json(SessionListResponse { sessions: sessions.into_iter().map(Into::into).collect() }))
}

/// End one of the user's sessions. Ending the current one also clears the cookie.
#[utoipa::path(
    delete, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Session id from `GET /v1/sessions`; any other value is `404`", pattern = "^[0-9a-fA-F]{64}$")),
    security(("session_cookie" = [])),
    responses(
        (status = 204, description = "Session ended"),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 404, description = "Not a live session of this user (or not a session id)", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn revoke_session(
    current: CurrentUser,
    service: web::Data<AuthService>,
    policy: web::Data<CookiePolicy>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    service.revoke_session(current.authenticated(), &id).await?;
    let mut response = HttpResponse::NoContent();
    if is_current(&current, &id) {
        response.cookie(policy.removal_cookie());
    }
    Ok(response.finish())
}

/// Whether `id` (from the sessions list) names the session of the request.
pub(crate) fn is_current(current: &CurrentUser, id: &str) -> bool {
    current.session().key.hash.to_hex().eq_ignore_ascii_case(id)
}
