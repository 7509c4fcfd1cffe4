//! `GET /v1/admin/analytics`: usage figures for operators, behind the admin bearer token.
//! What each number means is documented on [`AnalyticsReport`] and in
//! `docs/operations.md`.

use actix_web::{HttpResponse, web};
use auth::AuthError;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiError, ErrorBody};
use crate::ops::{AnalyticsReport, Ops};
use crate::security::AdminAuth;

/// Query of `GET /v1/admin/analytics`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AnalyticsQuery {
    /// How many days to report, today first (1 to `analytics.retention_days`; default 7).
    #[param(minimum = 1, example = 7)]
    pub days: Option<u32>,
}

/// Days reported when the query does not say.
const DEFAULT_DAYS: u32 = 7;

/// Usage analytics: active sessions now, and per UTC day the distinct active users,
/// sessions created and expired, and the average duration of expired sessions. Read
/// without scanning keys (a SQL count over the expiry index; Redis HyperLogLog and
/// counters shared by every instance, or this instance's own figures without Redis).
#[utoipa::path(
    get, path = "/v1/admin/analytics", tag = "admin",
    params(AnalyticsQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The figures", body = AnalyticsReport),
        (status = 400, description = "`days` out of range", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "The admin API is disabled (no admin token configured)", body = ErrorBody),
        (status = 503, description = "SQL is unavailable", body = ErrorBody),
    )
)]
pub async fn analytics(
    _admin: AdminAuth,
    ops: web::Data<Ops>,
    query: web::Query<AnalyticsQuery>,
) -> Result<HttpResponse, ApiError> {
    let retention = ops.analytics().settings().retention_days;
    let days = query.days.unwrap_or(DEFAULT_DAYS.min(retention));
    if !(1..=retention).contains(&days) {
        return Err(ApiError::InvalidInput(format!("days must be between 1 and {retention}")));
    }
    let report = ops.analytics().report(days).await.map_err(AuthError::from)?;
    Ok(HttpResponse::Ok().json(report))
}
