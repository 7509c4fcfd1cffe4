//! The bricks of every page: HTML escaping, the page frame, the response headers (a
//! strict Content-Security-Policy), redirects, the `next` rule, and the error page.
//!
//! No template engine: each page is a `format!` of a few lines, and every string that
//! did not come from this file goes through [`esc`] first (a dozen call sites are easier
//! to review than a template crate's escaping rules).

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use auth::AuthError;

use crate::error::ApiError;

/// The policy of every page: nothing but this origin's script and stylesheet, forms
/// posting to this origin only, no framing, no `<base>`.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self'; connect-src 'self'; form-action 'self'; \
                       base-uri 'none'; frame-ancestors 'none'";

/// Where a sign-in goes when `next` is missing or refused.
pub const DEFAULT_NEXT: &str = "/account";

/// `s` safe as HTML text and as a double- or single-quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `next` when it is a path of this origin, else `None`: it must start with exactly one
/// `/` (not `//` or `/\`, which browsers read as another host), hold only visible ASCII
/// (no control characters, which URL parsers drop, so `/\t/evil` would become
/// `//evil`; no spaces; no backslashes anywhere), and be at most 2048 bytes. Without a
/// scheme or host it cannot leave the origin.
pub fn safe_next(next: &str) -> Option<&str> {
    let bytes = next.as_bytes();
    let ok = bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && bytes.len() <= 2048
        && bytes.iter().all(|&b| b.is_ascii_graphic() && b != b'\\');
    ok.then_some(next)
}

/// The page's `<head>` and frame around `main` (already HTML). `nav` is the header's
/// links (already HTML).
pub fn frame(title: &str, nav: &str, main: &str, script: bool) -> String {
    let title = esc(title);
    let script =
        if script { "<script src=\"/assets/auth-pages.js\" defer></script>\n" } else { "" };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n<title>{title} · tiered-auth</title>\n\
         <link rel=\"stylesheet\" href=\"/assets/pages.css\">\n{script}</head>\n<body>\n\
         <header><a class=\"brand\" href=\"/\">tiered-auth</a><nav aria-label=\"Site\">{nav}</nav></header>\n\
         <main id=\"main\">\n<h1>{title}</h1>\n{main}</main>\n</body>\n</html>\n"
    )
}

/// The message box of a page: `role="alert"` for errors (announced at once), `role=
/// "status"` for news. Empty without a message.
pub fn message(kind: Notice, text: Option<&str>) -> String {
    match text {
        None => String::new(),
        Some(text) => {
            let (class, role) = match kind {
                Notice::Error => ("error", "alert"),
                Notice::Info => ("info", "status"),
            };
            format!("<p class=\"{class}\" role=\"{role}\" id=\"message\">{}</p>\n", esc(text))
        }
    }
}

/// What a message box says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Something failed.
    Error,
    /// Something was done.
    Info,
}

/// A labelled input. `error` marks it invalid and points it at the message box.
pub fn field(label: &str, name: &str, kind: &str, value: &str, extra: &str, error: bool) -> String {
    let invalid = if error { " aria-invalid=\"true\" aria-describedby=\"message\"" } else { "" };
    format!(
        "<label for=\"{name}\">{label}</label>\n<input id=\"{name}\" name=\"{name}\" \
         type=\"{kind}\" value=\"{}\" {extra}{invalid}>\n",
        esc(value)
    )
}

/// The headers of every page: CSP, no referrer, no caching, no framing.
pub fn headers(mut builder: HttpResponseBuilder) -> HttpResponseBuilder {
    builder
        .insert_header((header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .insert_header((header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")));
    builder
}

/// A page with `status`.
pub fn page(status: StatusCode, html: String) -> HttpResponse {
    headers(HttpResponse::build(status)).content_type(ContentType::html()).body(html)
}

/// `303 See Other` to `location`, a path of this site (POST/redirect/GET). Never fails:
/// a location that is not a valid header value (it cannot be: callers pass constants
/// or [`safe_next`] paths) goes to `/`.
pub fn see_other(location: &str) -> HttpResponseBuilder {
    let value = HeaderValue::from_str(location).unwrap_or(HeaderValue::from_static("/"));
    let mut builder = headers(HttpResponse::SeeOther());
    builder.insert_header((header::LOCATION, value));
    builder
}

/// The words a person reads for a failed flow, and the status of the page.
pub fn explain(e: &ApiError) -> (StatusCode, String) {
    let status = e.status_code();
    let text = match e {
        ApiError::Auth(AuthError::InvalidCredentials) => {
            "Wrong email address or password.".to_owned()
        }
        ApiError::Auth(AuthError::EmailNotVerified) => {
            "Your email address is not verified yet: open the link we mailed you, or ask for a \
             new one below."
                .to_owned()
        }
        ApiError::Auth(AuthError::InvalidToken) => {
            "This link is invalid or has expired. Please ask for a new one.".to_owned()
        }
        ApiError::Auth(AuthError::RateLimited { retry_after, .. }) => format!(
            "Too many attempts. Please try again in {} seconds.",
            auth::error::retry_after_secs(retry_after)
        ),
        _ if status == StatusCode::SERVICE_UNAVAILABLE => {
            "The service is temporarily unavailable. Please try again in a moment.".to_owned()
        }
        _ if status.is_server_error() => "Something went wrong on our side.".to_owned(),
        // Client errors of the flows are written for people ("email: not a valid email
        // address") and never hold a secret.
        other => capitalize(&other.to_string()),
    };
    if status.is_server_error() {
        // The one place a page's server error is reported; the person sees none of it.
        tracing::error!(code = e.code(), error = %crate::error::error_chain(e), "page failed");
    }
    (status, text)
}

/// `Retry-After` of a rate-limited or unavailable answer, as the API sends it.
pub fn retry_after(e: &ApiError, builder: &mut HttpResponseBuilder) {
    let secs = match e {
        ApiError::Auth(AuthError::RateLimited { retry_after, .. }) => {
            auth::error::retry_after_secs(retry_after)
        }
        _ if e.status_code() == StatusCode::SERVICE_UNAVAILABLE => 1,
        _ => return,
    };
    builder.insert_header((header::RETRY_AFTER, HeaderValue::from(secs)));
}

/// The page of a failure with no form to show again (an outage on a GET).
pub fn failure(e: &ApiError, nav: &str) -> HttpResponse {
    let (status, text) = explain(e);
    let main = format!("{}<p><a href=\"/\">Home</a></p>\n", message(Notice::Error, Some(&text)));
    let mut builder = headers(HttpResponse::build(status));
    retry_after(e, &mut builder);
    builder.content_type(ContentType::html()).body(frame("Something went wrong", nav, &main, false))
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).chain(['.']).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(esc(r#"<a href="x" onclick='y'>&</a>"#), {
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        });
        assert_eq!(esc("Zoë"), "Zoë");
    }

    #[test]
    fn only_same_origin_paths_are_followed() {
        for good in ["/", "/account", "/account?x=1#top", "/a/b/../c", "/%2F%2Fevil.example"] {
            assert_eq!(safe_next(good), Some(good), "{good}");
        }
        for bad in [
            "",
            "account",
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/\t/evil.example",
            "/\n/evil.example",
            "/a\\b",
            "/ spaced",
            "/\u{7f}",
            "/é",
            " /account",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(2047))).map(str::len), Some(2048));
        assert_eq!(safe_next(&format!("/{}", "a".repeat(2048))), None);
    }

    #[test]
    fn messages_are_escaped_and_announced() {
        let alert = message(Notice::Error, Some("<b>no</b>"));
        assert!(alert.contains("role=\"alert\"") && alert.contains("&lt;b&gt;no"), "{alert}");
        assert!(message(Notice::Info, Some("done")).contains("role=\"status\""));
        assert!(message(Notice::Info, None).is_empty());
        let input = field("Email", "email", "email", "\"><script>", "required", true);
        assert!(input.contains("value=\"&quot;&gt;&lt;script&gt;\""), "{input}");
        assert!(input.contains("aria-describedby=\"message\""), "{input}");
    }
}
