//! The pages of a visitor without a session: create an account, verify the address (or
//! get a new link), sign in, and reset a forgotten password. Each `GET` shows a form;
//! each `POST` runs the flow and redirects (303) on success or shows the form again
//! with the reason and the status the API would answer.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use auth::{AuthService, LoginInput, RegisterInput};

use super::html::{
    DEFAULT_NEXT, Notice, esc, explain, failure, field, frame, headers, message, page, retry_after,
    safe_next, see_other,
};
use super::{Fields, NAV_SIGNED_OUT, Visitor};
use crate::cookies::CookiePolicy;
use crate::error::ApiError;
use crate::routes::auth::{
    FORGOT_ACCEPTED, REGISTER_ACCEPTED, RESEND_ACCEPTED, cleared, open_session,
};

type Form = web::Form<Vec<(String, String)>>;

/// A form page again after a failed post: the reason in an alert, the API's status.
fn refused(e: &ApiError, title: &str, main: impl FnOnce(&str) -> String) -> HttpResponse {
    let (status, text) = explain(e);
    let mut builder = headers(HttpResponse::build(status));
    retry_after(e, &mut builder);
    builder.content_type(actix_web::http::header::ContentType::html()).body(frame(
        title,
        NAV_SIGNED_OUT,
        &main(&text),
        true,
    ))
}

// --- register ---------------------------------------------------------------------------

fn register_form(name: &str, email: &str, error: Option<&str>) -> String {
    format!(
        "{}<form method=\"post\" action=\"/register\">\n{}{}{}\
         <p class=\"hint\" id=\"password-hint\">At least 8 characters; a long phrase is best.</p>\n\
         <button type=\"submit\">Create account</button>\n</form>\n\
         <p>Already have an account? <a href=\"/login\">Sign in</a></p>\n",
        message(Notice::Error, error),
        field("Name", "name", "text", name, "autocomplete=\"name\" required", false),
        field("Email address", "email", "email", email, "autocomplete=\"email\" required", false),
        field(
            "Password",
            "password",
            "password",
            "",
            "autocomplete=\"new-password\" minlength=\"8\" required aria-describedby=\"password-hint\"",
            error.is_some(),
        ),
    )
}

/// `GET /register`: the form, or (after a post) the one answer for every address.
pub async fn register_page(req: HttpRequest) -> HttpResponse {
    let main = if Fields::query(&req).get("sent") == "1" {
        format!(
            "{}<p><a href=\"/login\">Sign in</a> once your address is verified. \
             No mail? <a href=\"/resend-verification\">Send the link again</a>.</p>\n",
            message(Notice::Info, Some(REGISTER_ACCEPTED))
        )
    } else {
        register_form("", "", None)
    };
    page(StatusCode::OK, frame("Create an account", NAV_SIGNED_OUT, &main, false))
}

/// `POST /register`: [`AuthService::register`], then the same answer whether or not the
/// address was taken.
pub async fn register(service: web::Data<AuthService>, form: Form) -> HttpResponse {
    let f = Fields::form(form);
    let input = RegisterInput {
        name: f.get("name").to_owned(),
        email: f.get("email").to_owned(),
        password: f.get("password").to_owned(),
    };
    match service.register(input).await {
        Ok(()) => see_other("/register?sent=1").finish(),
        Err(e) => refused(&e.into(), "Create an account", |text| {
            register_form(f.get("name"), f.get("email"), Some(text))
        }),
    }
}

// --- sign in ----------------------------------------------------------------------------

/// The news a redirect to the sign-in page carries (a fixed list: the query names one).
fn login_notice(key: &str) -> Option<&'static str> {
    Some(match key {
        "verified" => "Your email address is verified. You can now sign in.",
        "password-reset" => "Your password has been changed. Please sign in with it.",
        "signed-out" => "You are signed out.",
        "session-ended" => "Your session has ended. Please sign in again.",
        _ => return None,
    })
}

fn login_form(email: &str, next: &str, notice: Option<&str>, error: Option<&str>) -> String {
    let next = safe_next(next).unwrap_or(DEFAULT_NEXT);
    format!(
        "{}{}<form method=\"post\" action=\"/login\">\n\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\n{}{}\
         <button type=\"submit\">Sign in</button>\n</form>\n\
         <p><a href=\"/forgot-password\">Forgot your password?</a></p>\n\
         <p>No account yet? <a href=\"/register\">Create one</a>. \
         Address not verified? <a href=\"/resend-verification\">Get a new link</a>.</p>\n",
        message(Notice::Info, notice),
        message(Notice::Error, error),
        esc(next),
        field(
            "Email address",
            "email",
            "email",
            email,
            "autocomplete=\"username\" required",
            false
        ),
        field(
            "Password",
            "password",
            "password",
            "",
            "autocomplete=\"current-password\" required",
            error.is_some()
        ),
    )
}

/// `GET /login?next=/path`: the form. A signed-in visitor goes straight to `next`.
pub async fn login_page(req: HttpRequest, policy: web::Data<CookiePolicy>) -> HttpResponse {
    let q = Fields::query(&req);
    let next = safe_next(q.get("next")).unwrap_or(DEFAULT_NEXT);
    match Visitor::of(&req).await {
        Ok(Visitor::SignedIn(_)) => see_other(next).finish(),
        Ok(Visitor::SignedOut { ended }) => {
            let notice = login_notice(q.get("notice"));
            let html = frame("Sign in", NAV_SIGNED_OUT, &login_form("", next, notice, None), false);
            let mut builder = headers(HttpResponse::Ok());
            if ended {
                builder.cookie(policy.removal_cookie());
            }
            builder.content_type(actix_web::http::header::ContentType::html()).body(html)
        }
        Err(e) => failure(&e, NAV_SIGNED_OUT),
    }
}

/// `POST /login`: the API's login ([`open_session`]: limits, a fresh token, the old
/// session ended), then 303 to `next` when it is a path of this site, else `/account`.
pub async fn login(
    req: HttpRequest,
    service: web::Data<AuthService>,
    policy: web::Data<CookiePolicy>,
    form: Form,
) -> HttpResponse {
    let f = Fields::form(form);
    let input =
        LoginInput { email: f.get("email").to_owned(), password: f.get("password").to_owned() };
    match open_session(&req, &service, &policy, input).await {
        Ok((_, cookie)) => {
            see_other(safe_next(f.get("next")).unwrap_or(DEFAULT_NEXT)).cookie(cookie).finish()
        }
        Err(e) => refused(&e, "Sign in", |text| {
            login_form(f.get("email"), f.get("next"), None, Some(text))
        }),
    }
}

// --- mailed links: verify, reset ----------------------------------------------------------

/// The token input of a page a mailed link opens: filled and hidden by the script from
/// the URL fragment (`#token=...`); without JavaScript a person pastes it. Once known
/// (a form shown again) it is a hidden field.
fn token_field(label: &str, token: &str) -> String {
    if token.is_empty() {
        format!(
            "<div id=\"token-field\">\n{}<p class=\"hint\" id=\"token-hint\">The part of the \
             link in the email after <code>#token=</code>.</p>\n</div>\n",
            field(
                label,
                "token",
                "text",
                "",
                "autocomplete=\"off\" required aria-describedby=\"token-hint\"",
                false
            )
        )
    } else {
        format!("<input type=\"hidden\" name=\"token\" value=\"{}\">\n", esc(token))
    }
}

fn verify_form(error: Option<&str>) -> String {
    format!(
        "{}<form method=\"post\" action=\"/verify-email\" data-token-form data-auto-submit>\n{}\
         <button type=\"submit\">Verify my address</button>\n</form>\n\
         <p>Link expired? <a href=\"/resend-verification\">Get a new one</a>.</p>\n",
        message(Notice::Error, error),
        token_field("Verification code", ""),
    )
}

/// `GET /verify-email`: what the verification link opens. A `GET` changes nothing (mail
/// scanners follow links): the script posts the fragment's token through the form.
pub async fn verify_email_page() -> HttpResponse {
    page(
        StatusCode::OK,
        frame("Verify your email address", NAV_SIGNED_OUT, &verify_form(None), true),
    )
}

/// `POST /verify-email`: [`AuthService::verify_email`], then 303 to the sign-in page.
pub async fn verify_email(service: web::Data<AuthService>, form: Form) -> HttpResponse {
    let f = Fields::form(form);
    match service.verify_email(f.get("token")).await {
        Ok(_) => see_other("/login?notice=verified").finish(),
        Err(e) => refused(&e.into(), "Verify your email address", |text| verify_form(Some(text))),
    }
}

fn reset_form(token: &str, error: Option<&str>) -> String {
    format!(
        "{}<form method=\"post\" action=\"/reset-password\" data-token-form>\n{}{}\
         <button type=\"submit\">Set password</button>\n</form>\n",
        message(Notice::Error, error),
        token_field("Reset code", token),
        field(
            "New password",
            "new_password",
            "password",
            "",
            "autocomplete=\"new-password\" minlength=\"8\" required",
            error.is_some()
        ),
    )
}

/// `GET /reset-password`: what the reset link opens; asks for the new password.
pub async fn reset_password_page() -> HttpResponse {
    page(
        StatusCode::OK,
        frame("Choose a new password", NAV_SIGNED_OUT, &reset_form("", None), true),
    )
}

/// `POST /reset-password`: [`AuthService::reset_password`] (every session ends, this
/// browser's too), then 303 to the sign-in page with the cookie cleared.
pub async fn reset_password(
    service: web::Data<AuthService>,
    policy: web::Data<CookiePolicy>,
    form: Form,
) -> HttpResponse {
    let f = Fields::form(form);
    match service.reset_password(f.get("token"), f.get("new_password")).await {
        Ok(()) => cleared(&policy, see_other("/login?notice=password-reset")),
        Err(e) => {
            let e = ApiError::from(e);
            // A refused token is not worth keeping; a weak password is retried with it.
            let keep = !matches!(e, ApiError::Auth(auth::AuthError::InvalidToken));
            let token = if keep { f.get("token") } else { "" };
            refused(&e, "Choose a new password", |text| reset_form(token, Some(text)))
        }
    }
}

// --- ask for a mail: resend, forgot --------------------------------------------------------

/// A page that asks for an address and mails it a link: its path, title, button and the
/// answer that is the same for every address.
struct MailForm {
    path: &'static str,
    title: &'static str,
    intro: &'static str,
    button: &'static str,
    accepted: &'static str,
}

const RESEND: MailForm = MailForm {
    path: "/resend-verification",
    title: "Get a new verification link",
    intro: "Enter the address you registered with; older links stop working.",
    button: "Send a new link",
    accepted: RESEND_ACCEPTED,
};

const FORGOT: MailForm = MailForm {
    path: "/forgot-password",
    title: "Forgot your password?",
    intro: "Enter your address and we will mail you a link to choose a new password.",
    button: "Send reset link",
    accepted: FORGOT_ACCEPTED,
};

impl MailForm {
    fn form(&self, email: &str, error: Option<&str>) -> String {
        format!(
            "{}<p>{}</p>\n<form method=\"post\" action=\"{}\">\n{}\
             <button type=\"submit\">{}</button>\n</form>\n<p><a href=\"/login\">Back to sign in</a></p>\n",
            message(Notice::Error, error),
            self.intro,
            self.path,
            field(
                "Email address",
                "email",
                "email",
                email,
                "autocomplete=\"email\" required",
                error.is_some()
            ),
            self.button,
        )
    }

    fn get(&self, req: &HttpRequest) -> HttpResponse {
        let main = if Fields::query(req).get("sent") == "1" {
            format!(
                "{}<p><a href=\"/login\">Back to sign in</a></p>\n",
                message(Notice::Info, Some(self.accepted))
            )
        } else {
            self.form("", None)
        };
        page(StatusCode::OK, frame(self.title, NAV_SIGNED_OUT, &main, false))
    }

    fn answer(&self, result: Result<(), auth::AuthError>, email: &str) -> HttpResponse {
        match result {
            Ok(()) => see_other(&format!("{}?sent=1", self.path)).finish(),
            Err(e) => refused(&e.into(), self.title, |text| self.form(email, Some(text))),
        }
    }
}

/// `GET /resend-verification`.
pub async fn resend_verification_page(req: HttpRequest) -> HttpResponse {
    RESEND.get(&req)
}

/// `POST /resend-verification`: [`AuthService::resend_verification`]; one answer for
/// every address.
pub async fn resend_verification(service: web::Data<AuthService>, form: Form) -> HttpResponse {
    let f = Fields::form(form);
    RESEND.answer(service.resend_verification(f.get("email")).await, f.get("email"))
}

/// `GET /forgot-password`.
pub async fn forgot_password_page(req: HttpRequest) -> HttpResponse {
    FORGOT.get(&req)
}

/// `POST /forgot-password`: [`AuthService::forgot_password`]; one answer for every
/// address.
pub async fn forgot_password(service: web::Data<AuthService>, form: Form) -> HttpResponse {
    let f = Fields::form(form);
    FORGOT.answer(service.forgot_password(f.get("email")).await, f.get("email"))
}
