//! The session cookie: its name and attributes, how it is set at login and cleared at
//! logout, and how it is read back.
//!
//! Attributes follow OWASP ASVS 5.0 §7: `HttpOnly`, `SameSite=Lax`, `Path=/`, no `Domain`,
//! and, when secure, the `__Host-` prefix with `Secure`. The value is the encoded
//! [`auth::SessionToken`] and nothing else.

use actix_web::HttpRequest;
use actix_web::cookie::{Cookie, SameSite, time};
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
    pub fn read(&self, req: &HttpRequest) -> Option<String> {
        // Several cookies of the same name can arrive (a parent-domain cookie next to ours);
        // actix returns the first one, which is what browsers send most specific first.
        req.cookie(self.name()).map(|c| c.value().to_owned())
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

    #[test]
    fn plain_cookie_and_removal() {
        let policy = CookiePolicy::insecure_plain_http();
        let header = policy.removal_cookie().to_string();
        assert!(header.starts_with("session=;"), "{header}");
        assert!(header.contains("Max-Age=0") && header.contains("HttpOnly"), "{header}");
        assert!(!header.contains("Secure"), "{header}");
    }
}
