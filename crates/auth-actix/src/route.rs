//! [`matched`]: the route actix-web dispatches a request to, known before it does.
//!
//! Every decision the HTTP edge takes about a request (rate limits, IP-block exemptions,
//! metrics and log labels) keys on the route, never on the raw path: `req.path()` is the
//! path as the client spelled it, while actix-web routes on the path with percent-encoded
//! unreserved characters decoded (`/v1/auth/regist%65r` reaches the register handler). A
//! middleware that compared `req.path()` with `"/v1/auth/register"` would let that
//! spelling skip its checks.
//!
//! [`matched`] asks actix-web's own resource map, with the path actix-web routes on
//! (`match_info()`, already requoted), so it finds exactly the resource the router will
//! call, or none when no resource matches (a 404 from a default service). Each resource
//! is named by its full pattern (authd's `routes::configure` does it, and a test checks
//! it), so the answer is that pattern, borrowed, with no allocation per request.

use actix_web::HttpRequest;

/// The route label of requests no resource matched (metrics, logs).
pub const UNMATCHED: &str = "(unmatched)";

/// The full pattern of the resource `req` is routed to (`/v1/sessions/{id}`), or `None`
/// when no resource matches its path.
pub fn matched(req: &HttpRequest) -> Option<&str> {
    req.resource_map().match_name(req.match_info().as_str())
}
