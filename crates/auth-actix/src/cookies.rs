//! The session cookie: its name and attributes, how it is set at login and cleared at
//! logout, and how it is read back.
//!
//! Attributes follow OWASP ASVS 5.0 §7: `HttpOnly`, `SameSite=Lax`, `Path=/`, no `Domain`,
//! and, when secure, the `__Host-` prefix with `Secure`. The value is the encoded
//! [`auth::SessionToken`] and nothing else.

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::http::header;
use chrono::{DateTime, Utc};

/// Cookie name when `secure` is on: the `__Host-` prefix makes browsers refuse it unless it
/// is `Secure`, has `Path=/` and no `Domain`, so no sibling subdomain can plant or shadow it.
pub const SECURE_COOKIE_NAME: &str = "__Host-session";
/// Cookie name for plain-http local use (browsers reject `__Host-` without `Secure`).
pub const PLAIN_COOKIE_NAME: &str = "session";

/// How this deployment names and flags its session cookie. Put it in the app data
/// (`web::Data<CookiePolicy>`) of any app using [`crate::extract::CurrentUser`]; without
/// it the secure policy is assumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookiePolicy {
    secure: bool,
}

impl Default for CookiePolicy {
    fn default() -> Self {
        Self::secure()
    }
}

impl CookiePolicy {
    /// `__Host-session`, `Secure`: for HTTPS deployments.
    pub const fn secure() -> Self {
        Self { secure: true }
    }

    /// `session` without `Secure`: for plain-http local use only.
    pub const fn insecure_plain_http() -> Self {
        Self { secure: false }
    }

    /// The policy for `secure`.
    pub const fn new(secure: bool) -> Self {
        Self { secure }
    }

    /// Whether cookies carry `Secure` and the `__Host-` prefix.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The cookie's name.
    pub fn name(&self) -> &'static str {
        if self.secure { SECURE_COOKIE_NAME } else { PLAIN_COOKIE_NAME }
    }

    fn base(&self, value: String) -> Cookie<'static> {
        let mut cookie = Cookie::new(self.name(), value);
        cookie.set_http_only(true);
        cookie.set_same_site(SameSite::Lax);
        cookie.set_path("/");
        cookie.set_secure(self.secure);
        cookie
    }

    /// The cookie set at login. It lives until the session's absolute expiry: the server
    /// enforces the idle timeout itself, so sliding renewal never needs a new cookie.
    pub fn session_cookie(
        &self,
        token: &auth::SessionToken,
        absolute_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Cookie<'static> {
        let mut cookie = self.base(token.encode());
        let secs = (absolute_expires_at - now).num_seconds().max(0);
        cookie.set_max_age(time::Duration::seconds(secs));
        cookie
    }

    /// The cookie sent at logout: empty and `Max-Age=0`, so the browser drops it.
    pub fn removal_cookie(&self) -> Cookie<'static> {
        let mut cookie = self.base(String::new());
        cookie.set_max_age(time::Duration::ZERO);
        cookie
    }

    /// The raw session cookie value of a request, if any. Parsing is left to the flows,
    /// which answer `unauthenticated` for anything malformed.
    ///
    /// Several cookies of the same name can arrive (a parent-domain cookie next to ours):
    /// the first one is returned, which is what browsers send most specific first. The
    /// answer is the one actix-web's `HttpRequest::cookie` gives (see [`find_cookie`]),
    /// without parsing every cookie of the request into an allocated jar.
    pub fn read(&self, req: &HttpRequest) -> Option<String> {
        let mut headers = req.headers().get_all(header::COOKIE).map(|v| v.as_bytes());
        match find_cookie(&mut headers, self.name()) {
            Scan::Found(value) => Some(value.to_owned()),
            Scan::Missing => None,
            // Percent-encoded: actix-web decodes names and values; let it.
            Scan::Encoded => req.cookie(self.name()).map(|c| c.value().to_owned()),
        }
    }
}

/// What [`find_cookie`] found.
#[derive(Debug, PartialEq, Eq)]
enum Scan<'a> {
    /// The value of the first cookie of that name.
    Found(&'a str),
    /// No such cookie, or a header actix-web refuses as a whole.
    Missing,
    /// A `%` somewhere: percent-decoding applies, the caller must use the full parser.
    Encoded,
}

/// Finds the first cookie named `name` in the `Cookie` header values, with the semantics
/// of actix-web 4's `HttpRequest::cookie` (cookie 0.16 `Cookie::parse_encoded` on each
/// `;`-separated, trimmed, non-empty piece of every header):
/// - a header that is not UTF-8, or any piece without `=` or with an empty name, makes
///   the whole parse fail: no cookie at all;
/// - names and values are trimmed, and a value in double quotes loses them (and is
///   trimmed again);
/// - names and values are percent-decoded: when any header holds a `%`, this answers
///   [`Scan::Encoded`] and leaves it to actix-web.
fn find_cookie<'a>(headers: &mut dyn Iterator<Item = &'a [u8]>, name: &str) -> Scan<'a> {
    let mut found = None;
    for header in headers {
        let Ok(header) = std::str::from_utf8(header) else { return Scan::Missing };
        if header.contains('%') {
            return Scan::Encoded;
        }
        for piece in header.split(';').map(str::trim) {
            if piece.is_empty() {
                continue;
            }
            let Some((key, value)) = piece.split_once('=') else { return Scan::Missing };
            let key = key.trim();
            if key.is_empty() {
                return Scan::Missing;
            }
            if found.is_none() && key == name {
                found = Some(trim_quotes(value.trim()).trim());
            }
        }
    }
    found.map_or(Scan::Missing, Scan::Found)
}

/// `"value"` -> `value`, as cookie 0.16 does.
fn trim_quotes(s: &str) -> &str {
    match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        Some(inner) => inner,
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_cookie_has_every_attribute() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let token = auth::SessionToken::generate(auth::UserId::new(7).unwrap()).unwrap();
        let policy = CookiePolicy::secure();
        let header =
            policy.session_cookie(&token, now + chrono::Duration::days(30), now).to_string();
        assert!(header.starts_with(&format!("__Host-session={}", token.encode())), "{header}");
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Secure", "Max-Age=2592000"] {
            assert!(header.contains(attr), "{attr} missing in {header}");
        }
        assert!(!header.contains("Domain"), "{header}");
    }

    /// What actix-web's own parser answers.
    fn actix(req: &HttpRequest, name: &str) -> Option<String> {
        req.cookie(name).map(|c| c.value().to_owned())
    }

    fn request(headers: &[&[u8]]) -> HttpRequest {
        let mut req = actix_web::test::TestRequest::default();
        for h in headers {
            let value = actix_web::http::header::HeaderValue::from_bytes(h).unwrap();
            req = req.append_header((header::COOKIE, value));
        }
        req.to_http_request()
    }

    #[test]
    fn read_agrees_with_actix_cookie_parsing() {
        let pieces: &[&str] = &[
            "session=abc.def",
            "session=second",
            " session = spaced ",
            "session=\"quoted\"",
            "session=\" quoted-spaces \"",
            "session=\"",
            "session=\"\"",
            "session=",
            "session=a=b",
            "other=1",
            "__Host-session=host",
            "__Host-session=%41%42",
            "%73ession=encoded-name",
            "session=%ZZ",
            "session=%C3%A9",
            "session=%FF",
            "Session=case",
            "sessionx=prefix",
            "noequals",
            "=empty-name",
            " =blank-name",
            "",
            "  ",
            "x=\u{e9}t\u{e9}",
        ];
        let names = [PLAIN_COOKIE_NAME, SECURE_COOKIE_NAME];
        let mut cases: Vec<Vec<Vec<u8>>> = Vec::new();
        // One header of one, two and three pieces, every order.
        for a in pieces {
            cases.push(vec![a.as_bytes().to_vec()]);
            for b in pieces {
                cases.push(vec![format!("{a}; {b}").into_bytes()]);
                cases.push(vec![format!("{a};{b}").into_bytes()]);
                // Two headers.
                cases.push(vec![a.as_bytes().to_vec(), b.as_bytes().to_vec()]);
                for c in ["session=third", "noequals", "other=2"] {
                    cases.push(vec![format!("{a}; {b}; {c}").into_bytes()]);
                }
            }
        }
        // Headers that are not UTF-8.
        cases.push(vec![b"session=a\xff".to_vec()]);
        cases.push(vec![b"session=a".to_vec(), b"x=\xff".to_vec()]);
        cases.push(vec![b"x=\xff".to_vec(), b"session=a".to_vec()]);
        cases.push(vec![]);
        let mut found = 0;
        for case in &cases {
            let headers: Vec<&[u8]> = case.iter().map(Vec::as_slice).collect();
            let req = request(&headers);
            for name in names {
                let policy = CookiePolicy::new(name == SECURE_COOKIE_NAME);
                let expected = actix(&req, name);
                found += usize::from(expected.is_some());
                assert_eq!(policy.read(&req), expected, "{name} in {case:?}");
            }
        }
        // The cases do exercise both answers.
        assert!(found > 1000, "{found}");
    }

    #[test]
    fn read_takes_the_first_cookie_of_the_name() {
        let req = request(&[b"other=1; session=first; session=second"]);
        assert_eq!(CookiePolicy::insecure_plain_http().read(&req).as_deref(), Some("first"));
        let req = request(&[b"session=first", b"session=second"]);
        assert_eq!(CookiePolicy::insecure_plain_http().read(&req).as_deref(), Some("first"));
        let req = request(&[b"session=first; broken"]);
        assert_eq!(CookiePolicy::insecure_plain_http().read(&req), None);
        let req = request(&[b"__Host-session=%41b"]);
        assert_eq!(CookiePolicy::secure().read(&req).as_deref(), Some("Ab"));
    }

    #[test]
    fn plain_cookie_and_removal() {
        let policy = CookiePolicy::insecure_plain_http();
        let header = policy.removal_cookie().to_string();
        assert!(header.starts_with("session=;"), "{header}");
        assert!(header.contains("Max-Age=0") && header.contains("HttpOnly"), "{header}");
        assert!(!header.contains("Secure"), "{header}");
    }

    mod properties {
        use actix_web::http::header::HeaderValue;
        use proptest::prelude::*;

        use super::*;

        /// Cookie headers built from the pieces that matter to the parsers: names near
        /// ours, `=`, `;`, spaces, quotes, `%` escapes, and non-ASCII.
        fn header() -> impl Strategy<Value = Vec<u8>> {
            let piece = prop_oneof![
                Just("session".to_owned()),
                Just("__Host-session".to_owned()),
                Just("other".to_owned()),
                "[=; \"%a-f0-9.]{0,6}",
                "[A-Za-z0-9_.-]{0,12}",
                "\\PC{0,3}",
            ];
            proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat().into_bytes())
        }

        proptest! {
            /// [`CookiePolicy::read`] answers what actix-web's own cookie parser answers,
            /// for any one or two `Cookie` headers.
            #[test]
            fn read_is_actix_cookie(headers in proptest::collection::vec(header(), 1..3)) {
                prop_assume!(headers.iter().all(|h| HeaderValue::from_bytes(h).is_ok()));
                let slices: Vec<&[u8]> = headers.iter().map(Vec::as_slice).collect();
                let req = request(&slices);
                for policy in [CookiePolicy::secure(), CookiePolicy::insecure_plain_http()] {
                    prop_assert_eq!(policy.read(&req), actix(&req, policy.name()), "{:?}", headers);
                }
            }

            /// Any header bytes are read or refused without a panic.
            #[test]
            fn any_header_reads_without_panicking(h in proptest::collection::vec(any::<u8>(), 0..64)) {
                if let Ok(value) = HeaderValue::from_bytes(&h) {
                    let req = actix_web::test::TestRequest::default()
                        .append_header((header::COOKIE, value))
                        .to_http_request();
                    let _ = CookiePolicy::default().read(&req);
                }
            }
        }
    }
}
