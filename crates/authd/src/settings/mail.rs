//! `[mail]`: outgoing mail (file or SMTP transport).

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::redact::redacted_out;

/// Where mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MailTransport {
    /// One `.eml` file per message in `mail.dir`, plus a log line.
    File,
    /// An SMTP server (`mail.smtp.*`).
    Smtp,
}

/// Outgoing mail.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailSettings {
    /// `file` (default) or `smtp`.
    pub transport: MailTransport,
    /// Folder of the file transport.
    pub dir: PathBuf,
    /// The `From:` address.
    pub from: String,
    /// SMTP settings, used when `transport = "smtp"`.
    pub smtp: SmtpSettings,
}

impl Default for MailSettings {
    fn default() -> Self {
        Self {
            transport: MailTransport::File,
            dir: PathBuf::from("data/mail"),
            from: "tiered-auth <no-reply@localhost>".to_owned(),
            smtp: SmtpSettings::default(),
        }
    }
}

/// Transport security of the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTlsMode {
    /// Plain text (a local relay only).
    None,
    /// Plain connection upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// SMTP server settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    /// Host name of the server.
    pub host: String,
    /// Port (587 for STARTTLS, 465 for TLS, 25 for a local relay).
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    pub tls: SmtpTlsMode,
    /// Login user, if the server wants one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Login password.
    #[serde(serialize_with = "redacted_out", skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretString>,
    /// A file whose content is `password` (trailing newline trimmed). Setting both is an
    /// error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Deadline of one SMTP exchange.
    pub timeout_secs: u64,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 587,
            tls: SmtpTlsMode::Starttls,
            username: None,
            password: None,
            password_file: None,
            timeout_secs: 10,
        }
    }
}
