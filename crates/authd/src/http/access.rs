//! Request ids and the access log: [`request_context`], the middleware around every
//! request of the public listener.
//!
//! - **Request id.** An `X-Request-Id` sent by a trusted proxy (`security.trusted_proxies`,
//!   judged on the TCP peer like `X-Forwarded-For`) is kept, so that the proxy's log and
//!   ours can be joined; from anyone else, or when it is not a plain token
//!   ([`is_acceptable_id`]), a fresh one is made (32 hex digits: 64 random bits drawn
//!   once per process, then a counter; [`generate_id`]). A
//!   client cannot choose the id its lines are logged under, nor inject text into logs
//!   through it. The id is echoed in the response's `X-Request-Id`, next to
//!   `X-Content-Type-Options: nosniff`, which every answer carries.
//! - **Span.** The request runs inside a `request` span carrying `request_id`, so every
//!   log line of the request (guard, handlers, flows, stores, and the background work a
//!   flow spawns for it) carries the id, in text and JSON alike. The span is at `ERROR`
//!   level on purpose: a span is only recorded when its level passes the filter, and the
//!   id must be on every line that does, whatever `RUST_LOG` says.
//! - **Access log.** One line per request at `log.access_level` (`off`, `debug`,
//!   `info`; target `authd::access`): method, route pattern, status, latency, request id.
//!   Never the raw path, the query, a cookie or a token. Server errors (5xx) are logged
//!   at `warn` whatever the level: they need an operator.
//!
//! Cost on the hot path: reading the peer and one header, a counter increment and a
//! 32-byte header value for a generated id, a span. With the access log off (or its level
//! filtered out) nothing is formatted and nothing allocated for it: the route is borrowed
//! from the router, the fields are only formatted by an enabled subscriber.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use cache_core::Cidr;
use tracing::Instrument as _;

use crate::route::UNMATCHED;
pub use crate::settings::AccessLevel;

/// The request id header, in and out.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest accepted incoming request id. Proxies use 32 hex digits (nginx
/// `$request_id`), UUIDs (36) or trace ids (AWS `Root=1-...`, about 40).
pub const MAX_ID_LEN: usize = 128;

/// What [`request_context`] needs; in the app data as `web::Data<AccessLog>`.
#[derive(Debug, Clone)]
pub struct AccessLog {
    level: AccessLevel,
    trusted_proxies: Arc<[Cidr]>,
}

impl AccessLog {
    /// Access lines at `level`; `X-Request-Id` believed from `trusted_proxies` only.
    pub fn new(level: AccessLevel, trusted_proxies: &[Cidr]) -> Self {
        Self { level, trusted_proxies: trusted_proxies.into() }
    }

    fn trusts(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|peer| {
            let peer = peer.to_canonical();
            self.trusted_proxies.iter().any(|net| net.contains(peer))
        })
    }
}

/// Whether an incoming id may be kept: 1 to [`MAX_ID_LEN`] characters, letters, digits
/// and `-_.:=+/@` only. No spaces, quotes or control characters, so it cannot forge a
/// log field or line.
pub fn is_acceptable_id(id: &[u8]) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id.iter().all(|&b| b.is_ascii_alphanumeric() || b"-_.:=+/@".contains(&b))
}

/// A fresh request id, 32 lower-case hex digits: this process's 64 random bits (drawn
/// once) and then a process-wide counter. Unique per process and, with overwhelming
/// probability, across processes and restarts; ids need to be unique, not secret, so no
/// system call is made per request.
pub fn generate_id() -> HeaderValue {
    static PREFIX: std::sync::OnceLock<[u8; 8]> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        if cache_core::token::fill_random(&mut bytes).is_err() {
            // The OS generator failing is all but impossible: the process id then tells
            // processes apart.
            bytes[4..].copy_from_slice(&std::process::id().to_be_bytes());
        }
        bytes
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(prefix);
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    let mut digits = [0u8; 32];
    // 16 bytes always take exactly 32 digits: the length error cannot happen.
    let encoded = hex::encode_to_slice(bytes, &mut digits);
    debug_assert!(encoded.is_ok());
    HeaderValue::from_bytes(&digits).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The id of a request from `peer` carrying `incoming`.
pub fn request_id(
    log: &AccessLog,
    peer: Option<IpAddr>,
    incoming: Option<&HeaderValue>,
) -> HeaderValue {
    match incoming {
        Some(id) if log.trusts(peer) && is_acceptable_id(id.as_bytes()) => id.clone(),
        _ => generate_id(),
    }
}

/// Displays a header value known to be printable ASCII without allocating.
struct Id<'a>(&'a HeaderValue);

impl fmt::Display for Id<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.to_str().unwrap_or("(invalid)"))
    }
}

/// The middleware: request id, span, echo, access line (see the module docs). Wrap it
/// outside the guard, so that the guard's own lines carry the id.
pub async fn request_context(
    log: web::Data<AccessLog>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let start = Instant::now();
    // The TCP peer: this runs before the guard makes `peer_addr` the client's address.
    let peer = req.peer_addr().map(|addr| addr.ip());
    let id = request_id(&log, peer, req.headers().get(X_REQUEST_ID));
    let span = tracing::error_span!("request", request_id = %Id(&id));
    let method = req.method().clone();
    // The span is moved into the future and read back from it: no clone to count.
    let mut call = std::pin::pin!(next.call(req).instrument(span));
    let result = call.as_mut().await;
    let span = call.span();
    let status = match &result {
        Ok(response) => response.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    // The access line names its span as parent instead of entering it: nothing is paid
    // when the line is filtered out. Closures: the event macros evaluate their fields
    // only when the line is enabled. The route is asked of the request after the call,
    // borrowed (the request cannot be kept across it: the router needs it unshared). An
    // inner error, which only a failing middleware produces (handlers' and extractors'
    // errors are responses by now), leaves no request to ask.
    let route = || match &result {
        Ok(response) => crate::route::matched(response.request()).unwrap_or(UNMATCHED),
        Err(_) => "(error)",
    };
    let elapsed_ms = || start.elapsed().as_secs_f64() * 1000.0;
    let code = status.as_u16();
    match log.level {
        _ if status.is_server_error() => tracing::warn!(
            target: "authd::access", parent: span,
            %method, route = route(), status = code, elapsed_ms = elapsed_ms(), "request"
        ),
        AccessLevel::Off => {}
        AccessLevel::Debug => tracing::debug!(
            target: "authd::access", parent: span,
            %method, route = route(), status = code, elapsed_ms = elapsed_ms(), "request"
        ),
        AccessLevel::Info => tracing::info!(
            target: "authd::access", parent: span,
            %method, route = route(), status = code, elapsed_ms = elapsed_ms(), "request"
        ),
    }
    let mut response = result?;
    let headers = response.headers_mut();
    headers.insert(X_REQUEST_ID, id);
    // Every answer: browsers must not guess a content type (here rather than in one more
    // middleware layer).
    if !headers.contains_key(header::X_CONTENT_TYPE_OPTIONS) {
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_tokens_are_kept() {
        for ok in
            ["abc", "3f9c2a7be1d04c58a6e2b71f0c9d8e45", "1b4e28ba-2fa1-41d2-883f-0016d3cca427"]
        {
            assert!(is_acceptable_id(ok.as_bytes()), "{ok}");
        }
        assert!(!is_acceptable_id(b"Root=1-5759e988-bd862e3fe1be46a994272793;Parent=x"));
        assert!(is_acceptable_id(b"Root=1-5759e988-bd862e3fe1be46a994272793"));
        for bad in ["", "a b", "a\"b", "a\nb", "id\" admin=true", "é"] {
            assert!(!is_acceptable_id(bad.as_bytes()), "{bad:?}");
        }
        assert!(is_acceptable_id(&[b'a'; MAX_ID_LEN]));
        assert!(!is_acceptable_id(&[b'a'; MAX_ID_LEN + 1]));
    }

    #[test]
    fn generated_ids_are_32_hex_digits_and_differ() {
        let a = generate_id();
        let b = generate_id();
        assert_eq!(a.len(), 32);
        assert!(a.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_ne!(a, b);
    }

    #[test]
    fn ids_are_kept_from_trusted_proxies_only() {
        let log = AccessLog::new(AccessLevel::Info, &["10.0.0.0/8".parse().unwrap()]);
        let incoming = HeaderValue::from_static("proxy-id-1");
        let proxy = Some("10.1.2.3".parse().unwrap());
        let mapped = Some("::ffff:10.1.2.3".parse().unwrap());
        let client = Some("203.0.113.9".parse().unwrap());
        assert_eq!(request_id(&log, proxy, Some(&incoming)), incoming);
        assert_eq!(request_id(&log, mapped, Some(&incoming)), incoming);
        assert_ne!(request_id(&log, client, Some(&incoming)), incoming);
        assert_ne!(request_id(&log, None, Some(&incoming)), incoming);
        let forged = HeaderValue::from_static("x\" level=error");
        assert_eq!(request_id(&log, proxy, Some(&forged)).len(), 32);
        assert_eq!(request_id(&log, proxy, None).len(), 32);
    }
}
