//! Outgoing mail: the [`Mailer`] trait the flows call, the messages they send, and two
//! transports built on lettre: [`FileMailer`] (one `.eml` per message in a folder, the
//! embedded default) and [`SmtpMailer`] (async SMTP with TLS options, for production).
//!
//! Nothing here logs a message body: bodies carry single-use tokens.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Body;
use lettre::message::Mailbox;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

/// Sends mail. Implementations must not log bodies (they carry tokens).
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Delivers one message (to the transport; delivery to the inbox is not confirmed).
    async fn send(&self, mail: OutgoingMail) -> Result<(), MailError>;
}

/// Sends `mail`; a failure is logged (without the body, which holds a token) and
/// counted (`auth_mail_failures_total`). For background tasks, whose caller has already
/// answered.
pub(crate) async fn send_mail(mailer: &dyn Mailer, mail: OutgoingMail) {
    let kind = mail.kind;
    if let Err(e) = mailer.send(mail).await {
        metrics::counter!("auth_mail_failures_total", "kind" => kind.as_str()).increment(1);
        tracing::error!(kind = kind.as_str(), error = %crate::error::Chain(&e), "mail not sent");
    }
}

/// Which flow a message belongs to; for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MailKind {
    /// A link that verifies the address of a new account.
    EmailVerification,
    /// Someone tried to register with an address that already has an account.
    AlreadyRegistered,
    /// A link that allows setting a new password.
    PasswordReset,
    /// A sign-in from a device not seen lately.
    NewSignIn,
    /// Failed sign-ins crossed the alert threshold.
    FailedSignIns,
}

impl MailKind {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::EmailVerification => "email_verification",
            MailKind::AlreadyRegistered => "already_registered",
            MailKind::PasswordReset => "password_reset",
            MailKind::NewSignIn => "new_sign_in",
            MailKind::FailedSignIns => "failed_sign_ins",
        }
    }
}

impl fmt::Display for MailKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One plain-text message. `Debug` leaves the body out: it may hold a token.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// The flow that sent it.
    pub kind: MailKind,
}

impl fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Why a message could not be sent. The cause is the error's `source()`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// A sender or recipient address lettre does not accept.
    #[error("invalid mail address")]
    Address(#[from] lettre::address::AddressError),
    /// The message could not be built.
    #[error("could not build the message")]
    Build(#[from] lettre::error::Error),
    /// The SMTP server refused or could not be reached.
    #[error("smtp transport failed")]
    Smtp(#[from] lettre::transport::smtp::Error),
    /// The message file could not be written.
    #[error("could not write the mail file")]
    File(#[from] lettre::transport::file::Error),
    /// The mail folder could not be created.
    #[error("could not create the mail folder")]
    Io(#[from] std::io::Error),
}

/// Sender used when none is configured.
pub const DEFAULT_FROM: &str = "tiered-auth <no-reply@localhost>";

fn build_message(from: &Mailbox, mail: OutgoingMail) -> Result<Message, MailError> {
    let to: Mailbox = mail.to.parse()?;
    // 8bit keeps every line (the link above all) intact in the file and on the wire,
    // where quoted-printable would fold it and escape its '='. RFC 5322 allows lines of
    // up to 998 bytes; lettre's own chooser stops at 76, so the check is ours. Anything
    // that does not fit (or holds a NUL) goes through lettre's choice of encoding.
    let crlf = mail.text.replace("\r\n", "\n").replace('\n', "\r\n");
    let fits_8bit = !crlf.contains('\0')
        && crlf.split("\r\n").all(|line| line.len() <= 998 && !line.contains('\r'));
    let body = if fits_8bit {
        Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::EightBit)
    } else {
        Body::new(crlf)
    };
    Ok(Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)?)
}

/// Writes one `.eml` file per message into a folder (created on first use), through
/// lettre's `AsyncFileTransport`, and logs the file's path (never its content).
#[derive(Clone)]
pub struct FileMailer {
    dir: PathBuf,
    from: Mailbox,
    transport: AsyncFileTransport<Tokio1Executor>,
}

impl FileMailer {
    /// A mailer writing into `dir`, sending as [`DEFAULT_FROM`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        // A constant, valid address: checking it again could only fail at run time.
        let from = Mailbox::new(
            Some("tiered-auth".to_owned()),
            lettre::Address::new_dangerous("no-reply", "localhost"),
        );
        Self { transport: AsyncFileTransport::new(&dir), dir, from }
    }

    /// Sets the sender (`"Name <addr@example.com>"` or a bare address).
    pub fn with_from(mut self, from: &str) -> Result<Self, MailError> {
        self.from = from.parse()?;
        Ok(self)
    }

    /// The folder messages are written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl fmt::Debug for FileMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileMailer").field("dir", &self.dir).field("from", &self.from).finish()
    }
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, mail: OutgoingMail) -> Result<(), MailError> {
        let kind = mail.kind;
        let message = build_message(&self.from, mail)?;
        // Created here rather than in `new` so that a folder removed while running (a
        // cleaned-up temp dir) comes back instead of failing every later message.
        tokio::fs::create_dir_all(&self.dir).await?;
        let id = self.transport.send(message).await?;
        let path = self.dir.join(format!("{id}.eml"));
        tracing::info!(path = %path.display(), kind = kind.as_str(), "mail written");
        Ok(())
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain text (a local relay or a test server only).
    None,
    /// Plain connection upgraded with STARTTLS, which is required (usually port 587).
    #[default]
    StartTls,
    /// TLS from the first byte (usually port 465).
    Tls,
}

/// Where and how to send mail over SMTP.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// Server host name (also the name its TLS certificate is checked against).
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Transport security.
    pub tls: SmtpTls,
    /// Login, when the server requires authentication.
    pub username: Option<String>,
    /// Password for `username`.
    pub password: Option<SecretString>,
    /// Sender, `"Name <addr@example.com>"` or a bare address.
    pub from: String,
    /// Deadline of each SMTP command (connecting included).
    pub timeout: Duration,
}

/// Sends mail through an SMTP server with lettre's async (tokio) transport. TLS is
/// rustls with the webpki root certificates.
#[derive(Clone)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
}

impl SmtpMailer {
    /// Builds the transport. Connections are opened per message, so an unreachable server
    /// shows up at `send`, not here.
    pub fn new(config: SmtpConfig) -> Result<Self, MailError> {
        let from: Mailbox = config.from.parse()?;
        let builder = match config.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&config.host),
            SmtpTls::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host)?
            }
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host)?,
        };
        let mut builder = builder.port(config.port).timeout(Some(config.timeout));
        if let Some(username) = config.username {
            let password =
                config.password.as_ref().map(|p| p.expose_secret().to_owned()).unwrap_or_default();
            builder = builder.credentials(Credentials::new(username, password));
        }
        Ok(Self { transport: builder.build(), from, host: config.host })
    }
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer").field("host", &self.host).field("from", &self.from).finish()
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: OutgoingMail) -> Result<(), MailError> {
        let kind = mail.kind;
        let message = build_message(&self.from, mail)?;
        self.transport.send(message).await?;
        tracing::info!(host = %self.host, kind = kind.as_str(), "mail sent");
        Ok(())
    }
}
