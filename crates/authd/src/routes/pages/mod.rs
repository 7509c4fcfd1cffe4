//! The pages people use in a browser: `/` (home), `/register`, `/login`,
//! `/verify-email`, `/resend-verification`, `/forgot-password`, `/reset-password` and
//! `/account`, server-rendered, with their form posts.
//!
//! Rules every page keeps (docs/pages.md):
//! - **Same flows.** A form post calls the same [`auth::AuthService`] function as its
//!   JSON route (login and logout through the very helpers of [`super::auth`]), and sets
//!   or clears the same cookie ([`crate::cookies::CookiePolicy`]).
//! - **Same guard.** CSRF, IP blocks, and the per-address limits: `/register`,
//!   `/resend-verification`, `/forgot-password` and `/reset-password` count in the
//!   buckets of their `/v1/auth/*` routes (auth-actix's guard); login and password
//!   change are counted by the flows.
//! - **No enumeration.** Register, resend and forgot answer the API's one sentence,
//!   whether or not the address is known.
//! - **POST/redirect/GET**, plain forms: everything works with JavaScript off. The one
//!   script (served from this origin) only moves a mailed link's token from the URL
//!   fragment into the form, so that tokens never reach a server log or a `Referer`.
//! - **Strict CSP** ([`html::CSP`]): no inline script or style, forms post to this
//!   origin only, no framing. Every user-controlled string is escaped ([`html::esc`]).
//! - **Open redirects refused**: `next` is followed only when it is a path of this
//!   origin ([`html::safe_next`]).
//!
//! Pages are for people, not programs: they are not in the OpenAPI document.

use actix_web::{HttpRequest, web};
use auth::AuthError;

use crate::error::ApiError;
use crate::extract::CurrentUser;

pub mod account;
pub mod assets;
pub mod html;
pub mod signin;

pub use account::{account, change_password, end_session, home, logout, sign_out_others};
pub use assets::{script, stylesheet};
pub use signin::{
    forgot_password, forgot_password_page, login, login_page, register, register_page,
    resend_verification, resend_verification_page, reset_password, reset_password_page,
    verify_email, verify_email_page,
};

/// Who is asking for a page.
#[derive(Debug)]
pub enum Visitor {
    /// A live session.
    SignedIn(Box<CurrentUser>),
    /// No session; `ended` when the cookie named one that is over (the answer clears it).
    SignedOut {
        /// The request carried a dead session cookie.
        ended: bool,
    },
}

impl Visitor {
    /// The visitor of `req`: the session cookie validated like the API does it. A store
    /// outage is an error, never a signed-out visitor.
    pub async fn of(req: &HttpRequest) -> Result<Visitor, ApiError> {
        match CurrentUser::authenticate(req).await {
            Ok(current) => Ok(Visitor::SignedIn(Box::new(current))),
            Err(ApiError::SessionEnded(_)) => Ok(Visitor::SignedOut { ended: true }),
            Err(ApiError::Auth(AuthError::Unauthenticated)) => {
                Ok(Visitor::SignedOut { ended: false })
            }
            Err(e) => Err(e),
        }
    }

    /// The header's links for this visitor.
    pub fn nav(&self) -> &'static str {
        match self {
            Visitor::SignedIn(_) => NAV_SIGNED_IN,
            Visitor::SignedOut { .. } => NAV_SIGNED_OUT,
        }
    }
}

/// The header's links of a signed-in visitor: the account, and signing out (a form:
/// signing out changes state, so it is never a link).
pub const NAV_SIGNED_IN: &str = "<a href=\"/account\">Account</a>\
    <form method=\"post\" action=\"/logout\" class=\"inline\">\
    <button type=\"submit\" class=\"link\">Sign out</button></form>";

/// The header's links of a visitor without a session.
pub const NAV_SIGNED_OUT: &str =
    "<a href=\"/login\">Sign in</a><a href=\"/register\">Create account</a>";

/// The fields of a form post or a query string, in order; a missing one reads as `""`
/// and a repeated one as its first value. Never fails on what a browser sends.
#[derive(Debug, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    /// The fields of a posted form.
    pub fn form(form: web::Form<Vec<(String, String)>>) -> Self {
        Fields(form.into_inner())
    }

    /// The fields of `req`'s query string (none when it cannot be read).
    pub fn query(req: &HttpRequest) -> Self {
        web::Query::<Vec<(String, String)>>::from_query(req.query_string())
            .map(|q| Fields(q.into_inner()))
            .unwrap_or_default()
    }

    /// The value of `name`, or `""`.
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
    }

    /// The value of `name` when it is present and not empty.
    pub fn opt(&self, name: &str) -> Option<&str> {
        Some(self.get(name)).filter(|v| !v.is_empty())
    }
}
