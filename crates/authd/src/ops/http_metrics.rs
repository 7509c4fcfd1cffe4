//! [`HttpMetrics`]: the middleware that counts every HTTP request by method, route
//! pattern and status, times it, and feeds the analytics.
//!
//! - `http_requests_total{method,route,status}` and
//!   `http_request_duration_seconds{method,route}`. `route` is the matched pattern
//!   (`/v1/sessions/{id}`), never the raw path, and `(unmatched)` for anything no route
//!   matched, so that neither ids nor scanners' URLs create new series; `method` is one
//!   of the standard methods or `OTHER`.
//! - Metric handles are created on a route's first request and reused: after warm-up a
//!   request costs the route lookup actix-web does for the pattern, one read lock, one
//!   counter increment and one histogram sample.
//! - Analytics: a request whose session was validated (a [`CurrentUser`] in its
//!   extensions) marks its user active today; a successful `POST /v1/auth/login` counts
//!   a session created.
//!
//! Wrap it outermost, so that the latency covers every other middleware and the status
//! is the one the client gets (rate-limit and CSRF refusals included).

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::{Method, StatusCode};
use actix_web::{Error, HttpMessage as _};
use futures::future::{LocalBoxFuture, Ready, ready};

use crate::extract::CurrentUser;
use crate::ops::analytics::Analytics;

/// The `route` label of requests no route matched.
pub const UNMATCHED: &str = "(unmatched)";

/// The login route: a 200 there is a new session.
const LOGIN_ROUTE: &str = "/v1/auth/login";

const METHODS: [(Method, &str); 9] = [
    (Method::GET, "GET"),
    (Method::POST, "POST"),
    (Method::PUT, "PUT"),
    (Method::DELETE, "DELETE"),
    (Method::PATCH, "PATCH"),
    (Method::HEAD, "HEAD"),
    (Method::OPTIONS, "OPTIONS"),
    (Method::CONNECT, "CONNECT"),
    (Method::TRACE, "TRACE"),
];

/// A bounded label for a method.
fn method_label(method: &Method) -> &'static str {
    METHODS.iter().find(|(m, _)| m == method).map_or("OTHER", |(_, label)| label)
}

/// The handles of one route pattern.
#[derive(Default)]
struct RouteHandles {
    requests: HashMap<(&'static str, u16), metrics::Counter>,
    durations: HashMap<&'static str, metrics::Histogram>,
}

/// Handles by route pattern, shared by every worker.
#[derive(Default)]
struct Registry {
    routes: RwLock<HashMap<String, RouteHandles>>,
}

impl Registry {
    fn record(&self, route: &str, method: &'static str, status: u16, seconds: f64) {
        {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(handles) = routes.get(route) {
                if let (Some(count), Some(duration)) =
                    (handles.requests.get(&(method, status)), handles.durations.get(method))
                {
                    count.increment(1);
                    duration.record(seconds);
                    return;
                }
            }
        }
        // First request of this (route, method, status): create its handles once.
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let handles = routes.entry(route.to_owned()).or_default();
        let count = handles.requests.entry((method, status)).or_insert_with(|| {
            metrics::counter!(
                "http_requests_total",
                "method" => method,
                "route" => route.to_owned(),
                "status" => status.to_string()
            )
        });
        count.increment(1);
        let duration = handles.durations.entry(method).or_insert_with(|| {
            metrics::histogram!(
                "http_request_duration_seconds",
                "method" => method,
                "route" => route.to_owned()
            )
        });
        duration.record(seconds);
    }
}

/// Middleware factory: `App::new().wrap(http_metrics)` (outermost).
#[derive(Clone)]
pub struct HttpMetrics {
    registry: Arc<Registry>,
    analytics: Option<Analytics>,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics").field("analytics", &self.analytics.is_some()).finish()
    }
}

impl HttpMetrics {
    /// Counts requests, and feeds `analytics` when given.
    pub fn new(analytics: Option<Analytics>) -> Self {
        Self { registry: Arc::new(Registry::default()), analytics }
    }
}

impl<S, B> Transform<S, ServiceRequest> for HttpMetrics
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = HttpMetricsMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HttpMetricsMiddleware { service: Rc::new(service), metrics: self.clone() }))
    }
}

/// The service [`HttpMetrics`] wraps around the inner one.
pub struct HttpMetricsMiddleware<S> {
    service: Rc<S>,
    metrics: HttpMetrics,
}

impl<S, B> Service<ServiceRequest> for HttpMetricsMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let start = Instant::now();
        let method = method_label(req.method());
        // Taken before the call: an inner error leaves no request to ask afterwards.
        let route = req.match_pattern();
        let fut = self.service.call(req);
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let result = fut.await;
            let status = match &result {
                Ok(response) => response.status(),
                Err(e) => e.as_response_error().status_code(),
            };
            let route = route.as_deref().unwrap_or(UNMATCHED);
            metrics.registry.record(route, method, status.as_u16(), start.elapsed().as_secs_f64());
            if let (Some(analytics), Ok(response)) = (&metrics.analytics, &result) {
                if let Some(current) = response.request().extensions().get::<CurrentUser>() {
                    analytics.record_active_user(current.user().id);
                }
                if status == StatusCode::OK && method == "POST" && route == LOGIN_ROUTE {
                    analytics.record_session_created();
                }
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_are_bounded() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "OTHER");
    }
}
