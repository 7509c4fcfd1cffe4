//! `GET /v1/me/events` and `GET /v1/admin/users/{id}/events`: a user's security events
//! (sign-ins, failures, sign-outs, password changes, resets, new devices, lockouts),
//! newest first, paged by event id. What is recorded: `docs/security.md`.

use std::net::IpAddr;

use actix_web::{HttpResponse, web};
use auth::{AuthService, SecurityEvent, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody};
use crate::extract::CurrentUser;
use crate::security::AdminAuth;

/// Events per page unless `limit` says otherwise.
const DEFAULT_LIMIT: u32 = 20;
/// The largest page.
const MAX_LIMIT: u32 = 100;

/// Query of the event lists.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events per page (1 to 100; default 20).
    #[param(minimum = 1, maximum = 100, example = 20)]
    pub limit: Option<u32>,
    /// Only events older than this one: the `next_before` of the previous page.
    #[param(minimum = 1)]
    pub before: Option<i64>,
}

impl EventsQuery {
    /// The checked page: `(before, limit)`.
    fn page(&self) -> Result<(Option<i64>, usize), ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::InvalidInput(format!("limit must be between 1 and {MAX_LIMIT}")));
        }
        if self.before.is_some_and(|b| b < 1) {
            return Err(ApiError::InvalidInput("before must be an event id (>= 1)".to_owned()));
        }
        Ok((self.before, limit as usize))
    }
}

/// One security event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventBody {
    /// The event's id (increasing; the paging cursor).
    #[schema(example = 42)]
    pub id: i64,
    /// What happened: `sign_in`, `sign_in_failed`, `sign_out`, `sign_out_everywhere`,
    /// `session_ended`, `session_ended_by_admin`, `password_changed`,
    /// `password_reset_requested`, `password_reset`, `email_verified`,
    /// `new_device_sign_in`, `blocked_by_limits` or `failed_sign_in_alert`.
    #[schema(example = "sign_in")]
    pub kind: String,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The client's address, when known.
    #[schema(value_type = Option<String>, example = "192.0.2.7")]
    pub ip: Option<IpAddr>,
    /// The client's browser and system, when known.
    #[schema(example = "Firefox on Linux")]
    pub device: Option<String>,
}

impl From<SecurityEvent> for EventBody {
    fn from(e: SecurityEvent) -> Self {
        Self { id: e.id, kind: e.kind.as_str().to_owned(), at: e.at, ip: e.ip, device: e.device }
    }
}

/// A page of events.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventListResponse {
    /// Newest first.
    pub events: Vec<EventBody>,
    /// Pass as `before` for the next page; `null` when this page is the last.
    pub next_before: Option<i64>,
}

async fn page(
    service: &AuthService,
    user: UserId,
    query: &EventsQuery,
) -> Result<HttpResponse, ApiError> {
    let (before, limit) = query.page()?;
    let events = service.user_events(user, before, limit).await?;
    let next_before = if events.len() == limit { events.last().map(|e| e.id) } else { None };
    let events = events.into_iter().map(EventBody::from).collect();
    Ok(HttpResponse::Ok().json(EventListResponse { events, next_before }))
}

/// The current user's security events, newest first.
#[utoipa::path(
    get, path = "/v1/me/events", tag = "sessions",
    params(EventsQuery),
    security(("session_cookie" = [])),
    responses(
        (status = 200, description = "A page of events", body = EventListResponse),
        (status = 400, description = "`limit` or `before` out of range or malformed", body = ErrorBody),
        (status = 401, description = "No valid session", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn my_events(
    current: CurrentUser,
    service: web::Data<AuthService>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    page(&service, current.authenticated().user.id, &query).await
}

/// A user's security events, newest first.
#[utoipa::path(
    get, path = "/v1/admin/users/{id}/events", tag = "admin",
    params(("id" = i64, Path, description = "User id (decimal)", minimum = 1), EventsQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of events", body = EventListResponse),
        (status = 400, description = "Not a user id, or `limit` or `before` out of range or malformed", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "Admin API disabled (no admin token configured)", body = ErrorBody),
        (status = 503, description = "A store is unavailable", body = ErrorBody),
    )
)]
pub async fn user_events(
    _admin: AdminAuth,
    service: web::Data<AuthService>,
    id: web::Path<String>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let user: UserId =
        id.parse().map_err(|_| ApiError::InvalidInput("invalid user id".to_owned()))?;
    page(&service, user, &query).await
}
