//! The pages' one script and one stylesheet, served from this origin so that the
//! Content-Security-Policy can forbid everything inline.
//!
//! The script does one thing: on a page a mailed link opens (`/verify-email#token=...`,
//! `/reset-password#token=...`), it moves the token from the URL fragment (which browsers
//! never send to a server, so it reaches no log and no `Referer`) into the form, removes
//! it from the address bar, and submits the verification form. Everything else is plain
//! HTML forms.

use actix_web::HttpResponse;
use actix_web::http::header::{self, HeaderValue};

const SCRIPT: &str = r#""use strict";
(function () {
  var form = document.querySelector("form[data-token-form]");
  if (!form) { return; }
  function take() {
    var match = /(?:^#|&)token=([A-Za-z0-9_-]+)/.exec(location.hash);
    // Drop the token from the address bar and history.
    if (location.hash) { history.replaceState(null, "", location.pathname); }
    if (!match) { return; }
    var input = form.querySelector("input[name=token]");
    if (!input) { return; }
    input.value = match[1];
    var wrap = document.getElementById("token-field");
    if (wrap) { wrap.hidden = true; }
    if (form.hasAttribute("data-auto-submit")) {
      form.submit();
    } else {
      var next = form.querySelector("input[type=password]");
      if (next) { next.focus(); }
    }
  }
  take();
  // A link opened in a tab that already shows the page only changes the fragment.
  window.addEventListener("hashchange", take);
})();
"#;

const STYLESHEET: &str = r#"*,*::before,*::after{box-sizing:border-box}
html{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;line-height:1.5;color:#1a1a1a;background:#f6f7f9}
body{margin:0}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;justify-content:space-between;padding:.75rem 1rem;background:#fff;border-bottom:1px solid #d8dce2}
header nav{display:flex;gap:1rem;align-items:center}
.brand{font-weight:700;text-decoration:none;color:#1a1a1a}
main{max-width:34rem;margin:1.5rem auto;padding:1.25rem;background:#fff;border:1px solid #d8dce2;border-radius:.5rem}
@media (max-width:36rem){main{margin:0;border:0;border-radius:0}}
h1{font-size:1.5rem;margin:0 0 1rem}
h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
a{color:#0b57d0}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input[type=text],input[type=email],input[type=password]{display:block;width:100%;padding:.6rem;font:inherit;border:1px solid #8a929c;border-radius:.35rem}
input[aria-invalid=true]{border-color:#b3261e}
:focus-visible{outline:3px solid #0b57d0;outline-offset:2px}
button,.button{display:inline-block;margin:.75rem .5rem 0 0;padding:.6rem 1rem;font:inherit;font-weight:600;color:#fff;background:#0b57d0;border:1px solid #0b57d0;border-radius:.35rem;cursor:pointer;text-decoration:none}
button.secondary,.button.secondary{color:#0b57d0;background:#fff}
button.link{margin:0;padding:0;color:#0b57d0;background:none;border:0;font-weight:400;text-decoration:underline}
form.inline{display:inline}
.hint{margin:.25rem 0 0;font-size:.9rem;color:#4a5360}
.error,.info{padding:.6rem .8rem;border-radius:.35rem}
.error{background:#fce8e6;border:1px solid #b3261e;color:#8c1d18}
.info{background:#e6f4ea;border:1px solid #137333;color:#0d5323}
.sessions{list-style:none;padding:0;margin:0}
.sessions li{padding:.75rem;margin:.5rem 0;border:1px solid #d8dce2;border-radius:.35rem}
.sessions li.current{border-color:#0b57d0}
.sessions .device{margin:0;font-weight:600}
.badge{margin-left:.5rem;padding:0 .4rem;font-size:.8rem;color:#fff;background:#0b57d0;border-radius:.25rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:0 .75rem;margin:.25rem 0}
dt{color:#4a5360}
dd{margin:0;overflow-wrap:anywhere}
"#;

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")))
        .body(body)
}

/// `GET /assets/auth-pages.js`: the script of the pages mailed links open.
pub async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /assets/pages.css`: the pages' stylesheet.
pub async fn stylesheet() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLESHEET)
}
