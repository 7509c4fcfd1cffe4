//! Cross-site request forgery: a state-changing request (any method but GET, HEAD,
//! OPTIONS, TRACE) that carries the session cookie must come from a page of our own.
//!
//! The browser says where a request comes from, and a page cannot forge it:
//! - `Sec-Fetch-Site: same-origin` (or `none`, a user-typed navigation) passes; any other
//!   value (`same-site`, `cross-site`) needs an allowed `Origin`;
//! - `Origin` passes when it is the origin of `public_base_url`, one of
//!   `security.csrf_trusted_origins`, or the request's own `Host` (a page served by this
//!   very host, whatever name it was reached by);
//! - a request with neither header is not from a current browser (they all send `Origin`
//!   on cross-origin POSTs), so it passes unless `security.csrf_require_origin` is set.
//!
//! The cookie is also `SameSite=Lax`, which keeps it off cross-site POSTs in browsers
//! that honour it; this check covers same-site origins (a sibling subdomain) and
//! browsers that do not. Requests without the session cookie cannot be forged on a
//! user's behalf and are not checked; the admin API uses a bearer token, never a cookie.

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderMap};

/// Which origins may send state-changing requests with the session cookie.
#[derive(Debug, Clone)]
pub struct CsrfPolicy {
    origins: Vec<String>,
    require_origin: bool,
}

impl CsrfPolicy {
    /// The origin of `public_base_url`, plus `trusted` origins.
    pub fn new(public_base_url: &str, trusted: &[String], require_origin: bool) -> Self {
        let origins = std::iter::once(public_base_url)
            .chain(trusted.iter().map(String::as_str))
            .filter_map(origin_of)
            .collect();
        Self { origins, require_origin }
    }

    /// Whether a request of `method` needs the check at all.
    pub fn is_state_changing(method: &Method) -> bool {
        !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
    }

    /// Whether a state-changing request with these headers may use the session cookie.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        let fetch_site = text("sec-fetch-site");
        if matches!(fetch_site, Some("same-origin" | "none")) {
            return true;
        }
        match text(header::ORIGIN.as_str()) {
            Some(origin) => {
                let Some(origin) = origin_of(origin) else { return false };
                self.origins.contains(&origin) || same_host(&origin, text(header::HOST.as_str()))
            }
            None => fetch_site.is_none() && !self.require_origin,
        }
    }
}

/// Whether `origin` (normalized) names the `Host` the request was sent to.
fn same_host(origin: &str, host: Option<&str>) -> bool {
    let (Some(host), Some((scheme, _))) = (host, origin.split_once("://")) else { return false };
    origin_of(&format!("{scheme}://{host}")).is_some_and(|h| h == origin)
}

/// The origin of an http(s) URL (what `Origin` headers carry, and what
/// `csrf_trusted_origins` lists): `scheme://host[:port]`, lower case, without the
/// scheme's default port. `None` for anything else (including the `null` origin).
pub fn origin_of(url: &str) -> Option<String> {
    let url = url.trim().to_ascii_lowercase();
    let (scheme, rest) = url.split_once("://")?;
    let default_port = match scheme {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains(['@', ' ']) {
        return None;
    }
    let authority = authority.strip_suffix(default_port).unwrap_or(authority);
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn origins_are_normalized() {
        assert_eq!(
            origin_of("https://Auth.Example.com:443/x?y").as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(origin_of("http://127.0.0.1:8080").as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(origin_of("http://h:80").as_deref(), Some("http://h"));
        for bad in ["null", "", "ftp://h", "https://", "https://u@h", "h"] {
            assert_eq!(origin_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_our_own_pages_pass() {
        let policy = CsrfPolicy::new(
            "https://auth.example.com/",
            &["https://app.example.com".into()],
            false,
        );
        let allows = |pairs: &[(&'static str, &'static str)]| policy.allows(&headers(pairs));
        assert!(allows(&[("origin", "https://auth.example.com")]));
        assert!(allows(&[("origin", "https://app.example.com")]));
        assert!(allows(&[("sec-fetch-site", "same-origin")]));
        assert!(allows(&[("sec-fetch-site", "same-origin"), ("origin", "https://evil.example")]));
        assert!(allows(&[("sec-fetch-site", "same-site"), ("origin", "https://app.example.com")]));
        assert!(allows(&[("origin", "http://10.0.0.5:8080"), ("host", "10.0.0.5:8080")]));
        assert!(!allows(&[("origin", "https://evil.example")]));
        assert!(!allows(&[("origin", "https://evil.example"), ("host", "auth.example.com")]));
        assert!(!allows(&[("origin", "null")]));
        assert!(
            !allows(&[("origin", "http://auth.example.com")]),
            "another scheme is another origin"
        );
        assert!(!allows(&[("sec-fetch-site", "cross-site")]));
        assert!(!allows(&[("sec-fetch-site", "same-site")]));
        assert!(!allows(&[("sec-fetch-site", "cross-site"), ("origin", "https://evil.example")]));
        // Neither header: not a browser, so not a forgery (unless required).
        assert!(allows(&[]));
        let strict = CsrfPolicy::new("https://auth.example.com", &[], true);
        assert!(!strict.allows(&headers(&[])));
        assert!(strict.allows(&headers(&[("origin", "https://auth.example.com")])));
    }

    #[test]
    fn safe_methods_are_not_checked() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE] {
            assert!(!CsrfPolicy::is_state_changing(&m));
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(CsrfPolicy::is_state_changing(&m));
        }
    }
}
