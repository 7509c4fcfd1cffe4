//! [`guard`]: the middleware in front of every route, and [`Security`], what it needs.
//!
//! Every decision keys on the route actix-web will dispatch the request to
//! ([`crate::route::matched`]), never on the raw path, so that no spelling of a path
//! (percent-encoded letters and the like) reaches a handler without its checks.
//!
//! In order, before any other work:
//! 1. resolves the client address ([`crate::client`]) and makes it the request's
//!    `peer_addr`, so that logs, the flows (rate limits, the session's recorded address,
//!    fingerprints) and other middlewares all see the client, not a proxy;
//! 2. refuses a blocked address with 403 `ip_blocked` (a lookup in the local block
//!    snapshot, no store call); `/health/*` and `/v1/admin/*` are exempt, so probes keep
//!    working and an operator can always lift a block;
//! 3. refuses a cross-origin state-changing request carrying the session cookie with 403
//!    `csrf` ([`crate::csrf`]);
//! 4. counts the per-address attempts of the flows that do not see the client address
//!    (register, resend verification, forgot and reset password), refusing with 429 over
//!    the limit, and releases the attempt afterwards when it must not count. The form
//!    posts of authd's pages (`/register`, `/resend-verification`, `/forgot-password`,
//!    `/reset-password`) run the same flows and count in the same buckets as their
//!    `/v1/auth/*` routes, so a page is no way around a limit.

use std::future::{Future, Ready, ready};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, web};
use auth::{Abuse, Action};
use cache_core::Cidr;
use futures::future::LocalBoxFuture;

use crate::client::{ClientAddr, resolve};
use crate::cookies::CookiePolicy;
use crate::csrf::CsrfPolicy;
use crate::error::ApiError;

/// What the guard is told by its app: whether per-address limits are counted, which
/// proxies' `X-Forwarded-For` is believed, and which origins pass the CSRF check.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Count the per-address limits of the flows that do not see the client address
    /// (authd's `abuse.enabled`). Blocks and CSRF hold either way.
    pub limits: bool,
    /// Peers whose `X-Forwarded-For` names the client (see [`crate::client`]).
    pub trusted_proxies: Vec<Cidr>,
    /// The origins allowed to send state-changing requests with the session cookie.
    pub csrf: CsrfPolicy,
}

/// Everything the guard needs: the abuse policy (block snapshot, per-address limits),
/// trusted proxies, the CSRF policy and the cookie's name. Cheap to clone; put it in
/// the app data as `web::Data<Security>`.
#[derive(Clone)]
pub struct Security {
    inner: Arc<Inner>,
}

struct Inner {
    abuse: Abuse,
    limits: bool,
    proxies: Vec<Cidr>,
    csrf: CsrfPolicy,
    cookie: CookiePolicy,
    csrf_rejections: metrics::Counter,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("limits", &self.inner.limits)
            .field("trusted_proxies", &self.inner.proxies)
            .field("csrf", &self.inner.csrf)
            .finish_non_exhaustive()
    }
}

impl Security {
    /// The guard's state from `config`, over `abuse` (the same policy the flows use)
    /// and the app's session cookie.
    pub fn new(config: GuardConfig, abuse: Abuse, cookie: CookiePolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                abuse,
                limits: config.limits,
                proxies: config.trusted_proxies,
                csrf: config.csrf,
                cookie,
                csrf_rejections: metrics::counter!("csrf_rejections_total"),
            }),
        }
    }

    /// The abuse policy (blocks for the admin API).
    pub fn abuse(&self) -> &Abuse {
        &self.inner.abuse
    }

    /// Whether rate limits are on (`abuse.enabled`).
    pub fn limits_enabled(&self) -> bool {
        self.inner.limits
    }

    /// The client address of a request from `peer` with `headers`.
    fn client(&self, peer: std::net::IpAddr, headers: &header::HeaderMap) -> ClientAddr {
        let forwarded = headers.get_all("x-forwarded-for").filter_map(|v| v.to_str().ok());
        ClientAddr { ip: resolve(peer, forwarded, &self.inner.proxies), peer }
    }
}

/// The flow behind a route whose per-address limit the guard counts: the JSON API's
/// route or the page form that runs the same flow (one bucket for both).
fn limited_action(method: &Method, route: Option<&str>) -> Option<Action> {
    if *method != Method::POST {
        return None;
    }
    Some(match route? {
        "/v1/auth/register" | "/register" => Action::Register,
        "/v1/auth/resend-verification" | "/resend-verification" => Action::ResendVerification,
        "/v1/auth/forgot-password" | "/forgot-password" => Action::ForgotPassword,
        "/v1/auth/reset-password" | "/reset-password" => Action::ResetPassword,
        _ => return None,
    })
}

/// Whether an attempt answered `status` counts: a reset counts when it failed (a
/// guessed or stale token), the others when they did their work (hashed a password,
/// sent a mail): a 2xx from the API, a 303 to the next page from a form. Refusals of
/// malformed input, limits and outages do not count.
fn counts(action: Action, status: StatusCode) -> bool {
    match action {
        Action::ResetPassword => {
            status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS
        }
        _ => status.is_success() || status.is_redirection(),
    }
}

/// Routes a blocked address may still reach: health probes, and the admin API (guarded
/// by its own token) so that an operator can always lift a block. An unmatched path is
/// not exempt.
fn exempt_from_blocks(route: Option<&str>) -> bool {
    route.is_some_and(|r| r.starts_with("/health/") || r.starts_with("/v1/admin/"))
}

/// The middleware (`App::wrap(from_fn(guard))`), reading its [`Security`] from the app
/// data. Does nothing without a `web::Data<Security>` there. Other apps use
/// [`Security::guard`], which carries its own.
pub async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(security) = req.app_data::<web::Data<Security>>().map(|d| d.get_ref().clone()) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    run(&security, req, |req| next.call(req)).await
}

/// The guard's work around `call`, the rest of the chain.
async fn run<B, F, Fut>(
    security: &Security,
    mut req: ServiceRequest,
    call: F,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error>
where
    F: FnOnce(ServiceRequest) -> Fut,
    Fut: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    // Without a peer address (a Unix socket listener, a test request) there is no
    // client to block or count; the CSRF check needs none and still holds.
    let client = req.peer_addr().map(|peer| (peer, security.client(peer.ip(), req.headers())));
    // Decided on the route the request will reach, asked of the router only when a
    // decision needs it (a limited flow is a POST; an exemption matters to a blocked
    // address): a GET from an address in good standing costs no lookup here.
    let state_changing = CsrfPolicy::is_state_changing(req.method());
    let action = (security.inner.limits && req.method() == Method::POST)
        .then(|| limited_action(req.method(), crate::route::matched(req.request())))
        .flatten();
    if let Some((peer, client)) = client {
        if client.ip != peer.ip() {
            req.head_mut().peer_addr = Some(SocketAddr::new(client.ip, peer.port()));
        }
        req.extensions_mut().insert(client);
        if security.abuse().blocked(client.ip).is_some() {
            let route = crate::route::matched(req.request());
            if !exempt_from_blocks(route) {
                tracing::debug!(route, "request from a blocked address refused");
                return Ok(req.error_response(ApiError::IpBlocked).map_into_right_body());
            }
        }
    }

    if state_changing
        && security.inner.cookie.read(req.request()).is_some()
        && !security.inner.csrf.allows(req.headers())
    {
        security.inner.csrf_rejections.increment(1);
        let route = crate::route::matched(req.request());
        tracing::info!(
            method = %req.method(),
            route,
            "cross-origin request with the session cookie refused"
        );
        return Ok(req.error_response(ApiError::Csrf).map_into_right_body());
    }

    let (Some(action), Some((_, client))) = (action, client) else {
        return Ok(call(req).await?.map_into_left_body());
    };
    let permits = match security.abuse().check_address(action, client.ip).await {
        Ok(permits) => permits,
        Err(e) => return Ok(req.error_response(ApiError::Auth(e)).map_into_right_body()),
    };
    let response = call(req).await;
    match &response {
        Ok(r) if counts(action, r.status()) => permits.keep(),
        _ => security.abuse().release(permits).await,
    }
    Ok(response?.map_into_left_body())
}

impl Security {
    /// The guard as a middleware that carries this state: what another actix-web app
    /// that shares the stores (authd's `ApplicationBuilder::build_parts`) wraps around
    /// its routes for the same client-address, IP-block, CSRF and per-address-limit
    /// protection as `authd`, in one line: `App::new().wrap(parts.security.guard())`.
    pub fn guard(&self) -> Guard {
        Guard { security: self.clone() }
    }
}

/// The middleware factory [`Security::guard`] returns.
#[derive(Clone, Debug)]
pub struct Guard {
    security: Security,
}

impl<S, B> Transform<S, ServiceRequest> for Guard
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = GuardService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(GuardService { service: Rc::new(service), security: self.security.clone() }))
    }
}

/// The service [`Guard`] wraps around the inner one.
pub struct GuardService<S> {
    service: Rc<S>,
    security: Security,
}

impl<S, B> Service<ServiceRequest> for GuardService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let (service, security) = (self.service.clone(), self.security.clone());
        Box::pin(async move { run(&security, req, |req| service.call(req)).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_flows_without_an_address_are_counted_here() {
        let post = Method::POST;
        assert_eq!(limited_action(&post, Some("/v1/auth/register")), Some(Action::Register));
        assert_eq!(
            limited_action(&post, Some("/v1/auth/reset-password")),
            Some(Action::ResetPassword)
        );
        assert_eq!(limited_action(&post, Some("/v1/auth/login")), None, "the flow counts logins");
        assert_eq!(limited_action(&Method::GET, Some("/v1/auth/register")), None);
        assert_eq!(limited_action(&post, None), None);
        // The page forms count in their API route's bucket.
        for (page, api) in [
            ("/register", "/v1/auth/register"),
            ("/resend-verification", "/v1/auth/resend-verification"),
            ("/forgot-password", "/v1/auth/forgot-password"),
            ("/reset-password", "/v1/auth/reset-password"),
        ] {
            assert!(limited_action(&post, Some(page)).is_some(), "{page}");
            assert_eq!(limited_action(&post, Some(page)), limited_action(&post, Some(api)));
            assert_eq!(limited_action(&Method::GET, Some(page)), None, "{page}");
        }
        assert_eq!(limited_action(&post, Some("/login")), None, "the flow counts logins");
        assert!(counts(Action::Register, StatusCode::ACCEPTED));
        assert!(counts(Action::Register, StatusCode::SEE_OTHER));
        assert!(!counts(Action::Register, StatusCode::BAD_REQUEST));
        assert!(!counts(Action::ForgotPassword, StatusCode::TOO_MANY_REQUESTS));
        assert!(counts(Action::ResetPassword, StatusCode::BAD_REQUEST));
        assert!(!counts(Action::ResetPassword, StatusCode::NO_CONTENT));
        assert!(!counts(Action::ResetPassword, StatusCode::SERVICE_UNAVAILABLE));
        assert!(exempt_from_blocks(Some("/health/ready")));
        assert!(exempt_from_blocks(Some("/v1/admin/ip-blocks")));
        assert!(!exempt_from_blocks(Some("/v1/auth/login")));
        assert!(!exempt_from_blocks(None));
    }
}
