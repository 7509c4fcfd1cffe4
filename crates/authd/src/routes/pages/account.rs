//! The home page and the pages of a signed-in visitor: `/account` (who you are, your
//! sessions, ending one or all others, changing the password) and signing out.
//!
//! A visitor without a live session who asks for one of these is sent to the sign-in
//! page (303), with the dead cookie cleared. The recent security events of issue 15
//! (section 3) are not here yet: their section goes after the sessions once the event
//! log exists.

use actix_web::http::StatusCode;
use actix_web::http::header::ContentType;
use actix_web::{HttpRequest, HttpResponse, web};
use auth::{AuthService, SessionInfo};

use super::html::{
    Notice, esc, explain, failure, field, frame, headers, message, retry_after, see_other,
};
use super::{Fields, NAV_SIGNED_IN, NAV_SIGNED_OUT, Visitor};
use crate::cookies::CookiePolicy;
use crate::error::ApiError;
use crate::extract::{CurrentUser, client_info};
use crate::routes::auth::{cleared, end_session as end_current};
use crate::routes::me::is_current;

type Form = web::Form<Vec<(String, String)>>;

/// Where a signed-out visitor of the account pages goes.
const SIGN_IN: &str = "/login?next=/account";

/// `GET /`: signed out, links to sign in and to create an account; signed in, who you
/// are and a link to the account page.
pub async fn home(req: HttpRequest, policy: web::Data<CookiePolicy>) -> HttpResponse {
    let visitor = match Visitor::of(&req).await {
        Ok(visitor) => visitor,
        Err(e) => return failure(&e, NAV_SIGNED_OUT),
    };
    let main = match &visitor {
        Visitor::SignedIn(current) => format!(
            "<p>You are signed in as <strong>{}</strong> ({}).</p>\n\
             <p><a class=\"button\" href=\"/account\">Your account and sessions</a></p>\n",
            esc(&current.user().name),
            esc(&current.user().email),
        ),
        Visitor::SignedOut { .. } => "<p>Sign in to see your account and the devices you are \
             signed in on.</p>\n<p><a class=\"button\" href=\"/login\">Sign in</a> \
             <a class=\"button secondary\" href=\"/register\">Create an account</a></p>\n"
            .to_owned(),
    };
    let mut builder = headers(HttpResponse::Ok());
    if matches!(visitor, Visitor::SignedOut { ended: true }) {
        builder.cookie(policy.removal_cookie());
    }
    builder.content_type(ContentType::html()).body(frame("Welcome", visitor.nav(), &main, false))
}

/// The signed-in visitor of an account page, or the answer to give instead: a redirect
/// to the sign-in page (clearing a dead cookie), or the failure page of an outage.
async fn signed_in(req: &HttpRequest, policy: &CookiePolicy) -> Result<CurrentUser, HttpResponse> {
    match Visitor::of(req).await {
        Ok(Visitor::SignedIn(current)) => Ok(*current),
        Ok(Visitor::SignedOut { ended: true }) => {
            Err(see_other(&format!("{SIGN_IN}&notice=session-ended"))
                .cookie(policy.removal_cookie())
                .finish())
        }
        Ok(Visitor::SignedOut { ended: false }) => Err(see_other(SIGN_IN).finish()),
        Err(e) => Err(failure(&e, NAV_SIGNED_OUT)),
    }
}

/// The news a redirect to the account page carries (a fixed list).
fn account_notice(key: &str) -> Option<&'static str> {
    Some(match key {
        "session-ended" => "The session has been ended.",
        "others-ended" => "You are signed out everywhere else.",
        "password-changed" => "Your password has been changed; your other sessions have ended.",
        _ => return None,
    })
}

/// "Chrome on Linux": the browser and system families of a user agent, for people (the
/// same words as the security events' device summaries).
pub fn device(user_agent: Option<&str>) -> String {
    auth::events::device::summary(user_agent.unwrap_or(""))
}

fn when(t: chrono::DateTime<chrono::Utc>) -> String {
    format!("<time datetime=\"{}\">{}</time>", t.to_rfc3339(), t.format("%Y-%m-%d %H:%M UTC"))
}

fn session_item(s: &SessionInfo) -> String {
    let device = esc(&device(s.user_agent.as_deref()));
    let address = s.ip.map_or_else(|| "unknown address".to_owned(), |ip| ip.to_string());
    let this = if s.current { " <strong class=\"badge\">This device</strong>" } else { "" };
    let button = if s.current { "Sign out here" } else { "End session" };
    format!(
        "<li{}>\n<p class=\"device\">{device}{this}</p>\n<dl>\n<dt>Address</dt><dd>{}</dd>\n\
         <dt>Last seen</dt><dd>{}</dd>\n<dt>Signed in</dt><dd>{}</dd>\n</dl>\n\
         <form method=\"post\" action=\"/account/sessions/end\">\n\
         <input type=\"hidden\" name=\"id\" value=\"{}\">\n\
         <button type=\"submit\" class=\"secondary\" aria-label=\"{button}: {device}, {}\">{button}</button>\n\
         </form>\n</li>\n",
        if s.current { " class=\"current\"" } else { "" },
        esc(&address),
        when(s.last_seen_at),
        when(s.created_at),
        esc(&s.id),
        esc(&address),
    )
}

/// The account page of `current`, with a notice or the password form's error.
async fn render(
    current: &CurrentUser,
    service: &AuthService,
    notice: Option<&str>,
    password_error: Option<(&ApiError, StatusCode, &str)>,
) -> HttpResponse {
    let sessions = match service.list_sessions(current.authenticated()).await {
        Ok(sessions) => sessions,
        Err(e) => return failure(&e.into(), NAV_SIGNED_IN),
    };
    let user = current.user();
    let items: String = sessions.iter().map(session_item).collect();
    let main = format!(
        "{}<p>Signed in as <strong>{}</strong> ({}).</p>\n\
         <section aria-labelledby=\"sessions-title\">\n<h2 id=\"sessions-title\">Where you are signed in</h2>\n\
         <ul class=\"sessions\">\n{items}</ul>\n\
         <form method=\"post\" action=\"/account/sign-out-others\">\n\
         <button type=\"submit\" class=\"secondary\">Sign out everywhere else</button>\n</form>\n</section>\n\
         <section aria-labelledby=\"password-title\">\n<h2 id=\"password-title\">Change your password</h2>\n\
         {}<form method=\"post\" action=\"/account/password\">\n{}{}\
         <button type=\"submit\">Change password</button>\n</form>\n</section>\n\
         <section aria-labelledby=\"signout-title\">\n<h2 id=\"signout-title\">Sign out</h2>\n\
         <form method=\"post\" action=\"/logout\">\n<button type=\"submit\">Sign out</button>\n</form>\n</section>\n",
        message(Notice::Info, notice),
        esc(&user.name),
        esc(&user.email),
        message(Notice::Error, password_error.map(|(_, _, text)| text)),
        field(
            "Current password",
            "current_password",
            "password",
            "",
            "autocomplete=\"current-password\" required",
            password_error.is_some()
        ),
        field(
            "New password",
            "new_password",
            "password",
            "",
            "autocomplete=\"new-password\" minlength=\"8\" required",
            false
        ),
    );
    let status = password_error.map_or(StatusCode::OK, |(_, status, _)| status);
    let mut builder = headers(HttpResponse::build(status));
    if let Some((e, _, _)) = password_error {
        retry_after(e, &mut builder);
    }
    builder.content_type(ContentType::html()).body(frame(
        "Your account",
        NAV_SIGNED_IN,
        &main,
        false,
    ))
}

/// `GET /account`.
pub async fn account(
    req: HttpRequest,
    service: web::Data<AuthService>,
    policy: web::Data<CookiePolicy>,
) -> HttpResponse {
    let current = match signed_in(&req, &policy).await {
        Ok(current) => current,
        Err(answer) => return answer,
    };
    let notice = account_notice(Fields::query(&req).get("notice"));
    render(&current, &service, notice, None).await
}

/// `POST /account/sessions/end` (`id`): [`AuthService::revoke_session`], as `DELETE
/// /v1/sessions/{id}`. Ending this browser's own session signs it out.
pub async fn end_session(
    req: HttpRequest,
    service: web::Data<AuthService>,
    policy: web::Data<CookiePolicy>,
    form: Form,
) -> HttpResponse {
    let current = match signed_in(&req, &policy).await {
        Ok(current) => current,
        Err(answer) => return answer,
    };
    let id = Fields::form(form).get("id").to_owned();
    match service.revoke_session(current.authenticated(), &id).await {
        Ok(()) if is_current(&current, &id) => {
            cleared(&policy, see_other("/login?notice=signed-out"))
        }
        Ok(()) => see_other("/account?notice=session-ended").finish(),
        // Already gone (ended elsewhere, expired): the list shows what is left.
        Err(auth::AuthError::NotFound) => see_other("/account").finish(),
        Err(e) => failure(&e.into(), NAV_SIGNED_IN),
    }
}

/// `POST /account/sign-out-others`: [`AuthService::logout_everywhere`] keeping this
/// session.
pub async fn sign_out_others(
    req: HttpRequest,
    service: web::Data<AuthService>,
    policy: web::Data<CookiePolicy>,
) -> HttpResponse {
    let current = match signed_in(&req, &policy).await {
        Ok(current) => current,
        Err(answer) => return answer,
    };
    match service.logout_everywhere(current.authenticated(), true).await {
        Ok(_) => see_other("/account?notice=others-ended").finish(),
        Err(e) => failure(&e.into(), NAV_SIGNED_IN),
    }
}

/// `POST /account/password` (`current_password`, `new_password`):
/// [`AuthService::change_password`], limits and all; other sessions end.
pub async fn change_password(
    req: HttpRequest,
    service: web::Data<AuthService>,
    policy: web::Data<CookiePolicy>,
    form: Form,
) -> HttpResponse {
    let current = match signed_in(&req, &policy).await {
        Ok(current) => current,
        Err(answer) => return answer,
    };
    let f = Fields::form(form);
    let client = client_info(&req);
    let result = service
        .change_password(
            current.authenticated(),
            f.get("current_password"),
            f.get("new_password"),
            &client,
        )
        .await;
    match result {
        Ok(_) => see_other("/account?notice=password-changed").finish(),
        Err(e) => {
            let e = ApiError::from(e);
            let (status, text) = explain(&e);
            render(&current, &service, None, Some((&e, status, &text))).await
        }
    }
}

/// `POST /logout`: the API's logout ([`end_current`]), then home with the cookie
/// cleared. Without a session it only clears the cookie.
pub async fn logout(
    req: HttpRequest,
    service: web::Data<AuthService>,
    policy: web::Data<CookiePolicy>,
) -> HttpResponse {
    match end_current(&req, &service, &policy).await {
        Ok(()) => cleared(&policy, see_other("/login?notice=signed-out")),
        Err(e) => failure(&e, NAV_SIGNED_IN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_summarized() {
        let chrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                      HeadlessChrome/126.0.0.0 Safari/537.36";
        assert_eq!(device(Some(chrome)), "Chrome on Linux");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        assert_eq!(device(Some(iphone)), "Safari on iOS");
        assert_eq!(device(Some("curl/8.5.0")), "curl");
        assert_eq!(device(None), "Unknown device");
        assert_eq!(device(Some("<script>")), "Unknown device");
    }
}
