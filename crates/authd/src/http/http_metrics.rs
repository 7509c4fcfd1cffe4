//! [`HttpMetrics`]: the middleware that counts every HTTP request by method, route
//! pattern and status, times it, and feeds the analytics.
//!
//! - `http_requests_total{method,route,status}` and
//!   `http_request_duration_seconds{method,route}`. `route` is the matched pattern
//!   (`/v1/sessions/{id}`), never the raw path, and `(unmatched)` for anything no route
//!   matched, so that neither ids nor scanners' URLs create new series; `method` is one
//!   of the standard methods or `OTHER`.
//! - Metric handles are created on a route's first request on each worker and reused:
//!   after warm-up a request costs a walk of actix-web's resource map for its route (the
//!   same lookup the guard makes), one hash lookup of the pattern, one counter increment
//!   and one histogram sample, without a lock.
//! - Analytics: a request whose session was validated (a [`SessionUser`] in its
//!   extensions, put there by [`crate::extract::CurrentUser`]) marks its user active
//!   today; a successful `POST /v1/auth/login` counts a session created.
//!
//! Wrap it outermost, so that the latency covers every other middleware and the status
//! is the one the client gets (rate-limit and CSRF refusals included).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::{Method, StatusCode};
use actix_web::{Error, HttpMessage as _};
use futures::future::{LocalBoxFuture, Ready, ready};

use crate::extract::SessionUser;
use crate::ops::analytics::Analytics;

/// The `route` label of requests no route matched.
pub use crate::route::UNMATCHED;

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

/// The handles of one route label, per worker: a few (method, status) pairs each.
struct RouteSlot {
    label: Rc<str>,
    handles: RefCell<Vec<Handles>>,
}

/// The handles of one (route, method, status).
struct Handles {
    method: &'static str,
    status: u16,
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

impl RouteSlot {
    fn new(label: Rc<str>) -> Rc<Self> {
        Rc::new(Self { label, handles: RefCell::new(Vec::new()) })
    }

    fn record(&self, method: &'static str, status: u16, seconds: f64) {
        let mut handles = self.handles.borrow_mut();
        if let Some(h) = handles.iter().find(|h| h.status == status && h.method == method) {
            h.requests.increment(1);
            h.duration.record(seconds);
            return;
        }
        // First request of this (route, method, status) on this worker. The recorder
        // hands every worker the same series.
        let route = self.label.to_string();
        let h = Handles {
            method,
            status,
            requests: metrics::counter!(
                "http_requests_total",
                "method" => method,
                "route" => route.clone(),
                "status" => status.to_string()
            ),
            duration: metrics::histogram!(
                "http_request_duration_seconds",
                "method" => method,
                "route" => route
            ),
        };
        h.requests.increment(1);
        h.duration.record(seconds);
        handles.push(h);
    }
}

/// One worker's route slots, by the pattern of the matched route
/// ([`crate::route::matched`]: a borrowed name, no allocation); unmatched paths share one
/// slot, so the map holds at most one slot per route.
#[derive(Default)]
struct Routes {
    by_pattern: HashMap<Rc<str>, Rc<RouteSlot>>,
    unmatched: Option<Rc<RouteSlot>>,
}

impl Routes {
    fn slot(&mut self, req: &ServiceRequest) -> Rc<RouteSlot> {
        let Some(pattern) = crate::route::matched(req.request()) else {
            return self.unmatched.get_or_insert_with(|| RouteSlot::new(UNMATCHED.into())).clone();
        };
        if let Some(slot) = self.by_pattern.get(pattern) {
            return slot.clone();
        }
        let slot = RouteSlot::new(pattern.into());
        self.by_pattern.insert(slot.label.clone(), slot.clone());
        slot
    }
}

/// Middleware factory: `App::new().wrap(http_metrics)` (outermost).
#[derive(Clone)]
pub struct HttpMetrics {
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
        Self { analytics }
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
        ready(Ok(HttpMetricsMiddleware {
            service: Rc::new(service),
            analytics: self.analytics.clone(),
            routes: RefCell::new(Routes::default()),
        }))
    }
}

/// The service [`HttpMetrics`] wraps around the inner one.
pub struct HttpMetricsMiddleware<S> {
    service: Rc<S>,
    analytics: Option<Analytics>,
    routes: RefCell<Routes>,
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
        let route = self.routes.borrow_mut().slot(&req);
        let fut = self.service.call(req);
        let analytics = self.analytics.clone();
        Box::pin(async move {
            let result = fut.await;
            let status = match &result {
                Ok(response) => response.status(),
                Err(e) => e.as_response_error().status_code(),
            };
            route.record(method, status.as_u16(), start.elapsed().as_secs_f64());
            if let (Some(analytics), Ok(response)) = (&analytics, &result) {
                if let Some(user) = response.request().extensions().get::<SessionUser>() {
                    analytics.record_active_user(user.0);
                }
                if status == StatusCode::OK && method == "POST" && *route.label == *LOGIN_ROUTE {
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
