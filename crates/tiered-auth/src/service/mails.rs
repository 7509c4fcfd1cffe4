//! The mails the flows send (verification link, reset link, "already registered"
//! notice); they are sent from background tasks by `crate::mail::send_mail`.

use cache_core::VerificationToken;

pub(super) use crate::mail::send_mail;
use crate::mail::{MailKind, OutgoingMail};

/// `d` in words, for mails: whole hours or days when it is a multiple of them.
pub(super) fn in_words(d: chrono::Duration) -> String {
    let plural =
        |n: i64, unit: &str| if n == 1 { format!("1 {unit}") } else { format!("{n} {unit}s") };
    let minutes = d.num_minutes().max(1);
    if minutes % (24 * 60) == 0 {
        plural(minutes / (24 * 60), "day")
    } else if minutes % 60 == 0 {
        plural(minutes / 60, "hour")
    } else {
        plural(minutes, "minute")
    }
}

/// The link only confirms the address, and the mail says so: whoever registered chose
/// the password, and it may not be the recipient (an attacker pre-registering their
/// address). Such an account is left to expire, or taken over with a password reset.
pub(super) fn verification_mail(
    base_url: &str,
    to: &str,
    token: &VerificationToken,
    unverified_ttl: chrono::Duration,
) -> OutgoingMail {
    let link = format!("{base_url}/verify-email#token={}", token.encode());
    let expiry = in_words(unverified_ttl);
    OutgoingMail {
        to: to.to_owned(),
        subject: "Confirm your email address".to_owned(),
        text: format!(
            "Someone created an account at {base_url} with this email address.\n\n\
             If it was you, open this link to confirm your address:\n\n{link}\n\n\
             This link only confirms your address: it does not sign you in and does not \
             set a password. It works once and expires soon.\n\n\
             If you did not create this account, do not open the link; ignore this mail. \
             The unconfirmed account is deleted after {expiry}. To take it over with a \
             password of your own instead, use \"Forgot password\" at {base_url}.\n"
        ),
        kind: MailKind::EmailVerification,
    }
}

pub(super) fn reset_mail(base_url: &str, to: &str, token: &VerificationToken) -> OutgoingMail {
    let link = format!("{base_url}/reset-password#token={}", token.encode());
    OutgoingMail {
        to: to.to_owned(),
        subject: "Reset your password".to_owned(),
        text: format!(
            "Someone asked to reset the password of your account.\n\nOpen this link to \
             choose a new password:\n\n{link}\n\nThe link works once and expires soon. \
             If you did not ask for it, you can ignore this message; your password is \
             unchanged.\n"
        ),
        kind: MailKind::PasswordReset,
    }
}

pub(super) fn already_registered_mail(base_url: &str, to: String) -> OutgoingMail {
    OutgoingMail {
        to,
        subject: "Someone tried to register with your address".to_owned(),
        text: format!(
            "Someone (perhaps you) tried to create an account with this email address, \
             which already has one.\n\nIf it was you, sign in at {base_url} instead. If \
             you do not know the account's password (you forgot it, or you never \
             confirmed this address and someone else may have chosen it), use \
             \"Forgot password\" at {base_url}: the reset link mailed to this address \
             lets you choose a new password, confirms the address and signs out every \
             session of the account. If it was not you, you can ignore this message.\n"
        ),
        kind: MailKind::AlreadyRegistered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_carry_the_token_in_the_fragment() {
        let token = VerificationToken::generate().unwrap();
        let ttl = chrono::Duration::hours(24);
        let mail = verification_mail("https://a.example", "x@example.com", &token, ttl);
        let link = format!("https://a.example/verify-email#token={}", token.encode());
        assert!(mail.text.contains(&link));
        assert!(!format!("{mail:?}").contains(&token.encode()));
        let mail = reset_mail("https://a.example", "x@example.com", &token);
        assert!(mail.text.contains(&format!("/reset-password#token={}", token.encode())));
    }

    #[test]
    fn the_verification_mail_says_what_the_link_does_not_do() {
        let token = VerificationToken::generate().unwrap();
        let ttl = chrono::Duration::hours(24);
        let text = verification_mail("https://a.example", "x@example.com", &token, ttl).text;
        assert!(text.contains("does not sign you in"), "{text}");
        assert!(text.contains("does not set a password"), "{text}");
        assert!(text.contains("deleted after 1 day"), "{text}");
        assert_eq!(in_words(chrono::Duration::hours(36)), "36 hours");
        assert_eq!(in_words(chrono::Duration::minutes(90)), "90 minutes");
        assert_eq!(in_words(chrono::Duration::days(2)), "2 days");
        let notice = already_registered_mail("https://a.example", "x@example.com".into()).text;
        assert!(notice.contains("Forgot password"), "{notice}");
    }
}
