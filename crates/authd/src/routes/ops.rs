//! Operations endpoints: liveness, readiness, Prometheus metrics, the OpenAPI document.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::health::Readiness;
use crate::ops::Ops;

/// The body of `GET /health/live`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LiveReport {
    /// Always `ok`: the process answers.
    pub status: String,
}

/// Liveness: the process is up and serving (no tier is asked).
#[utoipa::path(
    get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "The process answers", body = LiveReport))
)]
pub async fn live() -> HttpResponse {
    no_store(&mut HttpResponse::Ok()).json(LiveReport { status: "ok".to_owned() })
}

/// The body of the public `GET /health/ready`: the status alone.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReadyStatus {
    /// `ok`, `degraded` (a cache tier is down) or `unavailable` (SQL is down).
    pub status: String,
}

/// Readiness: 200 when SQL answers (`ok`, or `degraded` when a cache tier is down), 503
/// when SQL does not. The public listener answers the status alone; each tier's state
/// (pool sizes, Redis memory, backend names) is on the operations listener.
#[utoipa::path(
    get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready (`ok` or `degraded`)", body = ReadyStatus),
        (status = 503, description = "SQL is unavailable", body = ReadyStatus),
    )
)]
pub async fn ready_status(readiness: web::Data<Readiness>) -> HttpResponse {
    let report = readiness.report().await;
    ready_response(&report.status).json(ReadyStatus { status: report.status })
}

/// Readiness with each tier's state, on the operations listener.
pub async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let report = readiness.report().await;
    ready_response(&report.status).json(report)
}

fn ready_response(status: &str) -> actix_web::HttpResponseBuilder {
    let mut response = if status == "unavailable" {
        HttpResponse::ServiceUnavailable()
    } else {
        HttpResponse::Ok()
    };
    no_store(&mut response);
    response
}

/// Prometheus metrics in the text exposition format, on the operations listener.
pub async fn metrics(
    handle: web::Data<PrometheusHandle>,
    ops: Option<web::Data<Ops>>,
) -> HttpResponse {
    // Gauges that are read rather than counted (memory entries, active sessions).
    if let Some(ops) = ops {
        ops.before_scrape().await;
    }
    // Upkeep drains the histograms' buckets; doing it on scrape keeps them bounded without
    // a background task.
    handle.run_upkeep();
    no_store(&mut HttpResponse::Ok())
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}

/// The document of this server, serialized once at start-up from
/// `crate::openapi::document` (the start-up builds it: the document lists these routes,
/// so the routes do not import it back).
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub actix_web::web::Bytes);

impl OpenApiJson {
    /// `document`, serialized.
    pub fn new(document: &utoipa::openapi::OpenApi) -> Self {
        // Serializing utoipa's types cannot fail (string keys, no non-finite floats);
        // an empty document would still be answered rather than a panic.
        Self(serde_json::to_vec(document).unwrap_or_default().into())
    }
}

/// The OpenAPI 3.1 document of this API, as this server runs it (cookie name, password
/// policy).
#[utoipa::path(
    get, path = "/openapi.json", tag = "operations",
    responses(
        (status = 200, description = "This document", content_type = "application/json", body = Object),
    )
)]
pub async fn openapi_json(doc: Option<web::Data<OpenApiJson>>) -> Result<HttpResponse, ApiError> {
    // An app that mounts the routes without the start-up's data has no document to serve.
    let doc = doc.ok_or_else(|| {
        ApiError::internal("/openapi.json needs web::Data<OpenApiJson> in the app data")
    })?;
    Ok(HttpResponse::Ok().content_type("application/json").body(doc.0.clone()))
}

fn no_store(response: &mut actix_web::HttpResponseBuilder) -> &mut actix_web::HttpResponseBuilder {
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
}
