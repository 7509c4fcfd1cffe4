//! The alert mails: a sign-in from a new device, and a spike of failed sign-ins.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::mail::{MailKind, OutgoingMail};

fn when(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn address(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_canonical().to_string())
}

/// "New sign-in to your account": when, device, address, and the way out.
pub(super) fn new_sign_in_mail(
    base_url: &str,
    to: &str,
    at: DateTime<Utc>,
    device: &str,
    ip: Option<IpAddr>,
) -> OutgoingMail {
    let (when, address) = (when(at), address(ip));
    OutgoingMail {
        to: to.to_owned(),
        subject: "New sign-in to your account".to_owned(),
        text: format!(
            "Your account at {base_url} was signed in to from a device it was not used \
             from lately.\n\n\
             When: {when}\nDevice: {device}\nAddress: {address}\n\n\
             If this was you, there is nothing to do.\n\n\
             If this was not you, reset your password now: {base_url}/forgot-password\n\
             Resetting it signs out every session of your account.\n"
        ),
        kind: MailKind::NewSignIn,
    }
}

/// Failed sign-ins crossed the threshold within the window.
pub(super) fn failed_sign_ins_mail(
    base_url: &str,
    to: &str,
    at: DateTime<Utc>,
    count: u64,
    window_minutes: i64,
) -> OutgoingMail {
    let when = when(at);
    OutgoingMail {
        to: to.to_owned(),
        subject: "Failed sign-ins to your account".to_owned(),
        text: format!(
            "There were {count} failed attempts to sign in to your account at {base_url} \
             within {window_minutes} minutes (the last at {when}).\n\n\
             If this was not you, someone may be guessing your password. Your account is \
             still yours; to be safe, choose a new, unique password: \
             {base_url}/forgot-password\n"
        ),
        kind: MailKind::FailedSignIns,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_sign_in_mail_says_when_what_where_and_how_out() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let ip = Some("192.0.2.7".parse().unwrap());
        let mail =
            new_sign_in_mail("https://a.example", "x@example.com", at, "Firefox on Linux", ip);
        assert_eq!(mail.subject, "New sign-in to your account");
        for needle in [
            "2027-01-15 08:00 UTC",
            "Firefox on Linux",
            "192.0.2.7",
            "If this was not you, reset your password",
            "https://a.example/forgot-password",
        ] {
            assert!(mail.text.contains(needle), "{needle}: {}", mail.text);
        }
        let mail = failed_sign_ins_mail("https://a.example", "x@example.com", at, 10, 60);
        assert!(mail.text.contains("10 failed attempts"), "{}", mail.text);
    }
}
