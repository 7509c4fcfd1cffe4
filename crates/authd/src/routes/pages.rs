//! The two small HTML pages mail links point to: `/verify-email#token=...` and
//! `/reset-password#token=...`.
//!
//! The token travels in the URL fragment, which browsers never send to a server, so it
//! reaches no access log and no `Referer`. The page's script reads it from
//! `location.hash`, removes it from the address bar, and POSTs it to the JSON API. A GET
//! never changes state (mail scanners follow links). The script is served from this
//! origin so that a strict Content-Security-Policy (no inline script) applies.

use actix_web::HttpResponse;
use actix_web::http::header::{self, ContentType, HeaderValue};

const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; \
                   style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'; \
                   frame-ancestors 'none'";

const VERIFY_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Verify your email address</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}</style>
</head>
<body data-page="verify-email">
<h1>Verify your email address</h1>
<p id="status">Checking your link…</p>
<noscript><p>This page needs JavaScript to confirm your address.</p></noscript>
<script src="/assets/auth-pages.js"></script>
</body>
</html>
"#;

const RESET_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Choose a new password</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}
label,input,button{display:block;margin:.5rem 0}</style>
</head>
<body data-page="reset-password">
<h1>Choose a new password</h1>
<form id="reset" hidden>
<label for="password">New password</label>
<input id="password" type="password" autocomplete="new-password" minlength="8" required>
<button type="submit">Set password</button>
</form>
<p id="status"></p>
<noscript><p>This page needs JavaScript to set your password.</p></noscript>
<script src="/assets/auth-pages.js"></script>
</body>
</html>
"#;

const SCRIPT: &str = r#""use strict";
(function () {
  var status = document.getElementById("status");
  var match = /(?:^#|&)token=([A-Za-z0-9_-]+)/.exec(location.hash);
  var token = match ? match[1] : null;
  // Drop the token from the address bar and history.
  history.replaceState(null, "", location.pathname);
  function post(path, body) {
    return fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify(body)
    }).then(function (r) {
      if (r.status === 204) { return { ok: true }; }
      return r.json().then(function (j) { return { ok: r.ok, body: j }; });
    });
  }
  function show(text) { status.textContent = text; }
  if (!token) { show("This link is incomplete. Please use the link from the email as it is."); return; }
  var page = document.body.getAttribute("data-page");
  if (page === "verify-email") {
    post("/v1/auth/verify-email", { token: token }).then(function (r) {
      show(r.ok ? "Your email address is verified. You can now log in."
                : "This link is invalid or has expired. Please request a new one.");
    }, function () { show("The server could not be reached. Please try again."); });
  } else if (page === "reset-password") {
    var form = document.getElementById("reset");
    form.hidden = false;
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var password = document.getElementById("password").value;
      post("/v1/auth/reset-password", { token: token, new_password: password }).then(function (r) {
        if (r.ok) { form.hidden = true; show("Your password has been changed. You can now log in."); }
        else { show((r.body && r.body.error && r.body.error.message) || "The password could not be changed."); }
      }, function () { show("The server could not be reached. Please try again."); });
    });
  }
})();
"#;

fn page(html: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::html())
        .insert_header((header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .insert_header((header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .body(html)
}

/// `GET /verify-email`: posts the fragment's token to `/v1/auth/verify-email`.
#[utoipa::path(
    get, path = "/verify-email", tag = "pages",
    responses((status = 200, description = "The page the verification link opens", content_type = "text/html", body = String))
)]
pub async fn verify_email_page() -> HttpResponse {
    page(VERIFY_PAGE)
}

/// `GET /reset-password`: asks for a new password and posts it with the fragment's token.
#[utoipa::path(
    get, path = "/reset-password", tag = "pages",
    responses((status = 200, description = "The page the reset link opens", content_type = "text/html", body = String))
)]
pub async fn reset_password_page() -> HttpResponse {
    page(RESET_PAGE)
}

/// `GET /assets/auth-pages.js`: the script of both pages.
#[utoipa::path(
    get, path = "/assets/auth-pages.js", tag = "pages",
    responses((status = 200, description = "The script of both pages", content_type = "text/javascript", body = String))
)]
pub async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")))
        .body(SCRIPT)
}
