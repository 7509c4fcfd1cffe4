//! Mail through lettre: a verification mail sent over SMTP to a server this test runs on
//! a loopback port, the link read out of the received message and used; one `.eml` per
//! message through the file transport; and a mail failure that does not fail the flow.
//!
//! The SMTP server below is our own (about fifty lines), kept after looking at
//! `mailin-embedded` 0.8: it serves on its own thread pool with no way to stop it (a
//! thread left running per test), and brings `scoped_threadpool`, `bufstream-fresh`,
//! `nom` 7 and, by default, `rustls-pemfile` (unmaintained) for what is a script of
//! fixed replies here. The received mail is decoded by `mail-parser`.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use crate::common::{PASSWORD, test_config, unique_email};
use auth::{
    AuthService, FileMailer, MailError, MailKind, Mailer, OutgoingMail, RegisterInput, SmtpConfig,
    SmtpMailer, SmtpTls,
};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One message as an SMTP server received it.
#[derive(Debug)]
struct Received {
    mail_from: String,
    rcpt_to: Vec<String>,
    data: String,
}

/// A minimal SMTP server (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) on a free
/// loopback port; every accepted message goes into the returned channel. The server task
/// ends with the test's runtime.
async fn start_smtp_server() -> (u16, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 test.invalid ESMTP ready\r\n").await.unwrap();
                let (mut from, mut rcpt) = (String::new(), Vec::new());
                while let Ok(Some(line)) = lines.next_line().await {
                    let verb = line.get(..4).unwrap_or(&line).to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-test.invalid\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n",
                        "HELO" => b"250 test.invalid\r\n",
                        "MAIL" => {
                            from = line;
                            b"250 OK\r\n"
                        }
                        "RCPT" => {
                            rcpt.push(line);
                            b"250 OK\r\n"
                        }
                        "DATA" => {
                            write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await.unwrap();
                            let mut data = String::new();
                            while let Ok(Some(line)) = lines.next_line().await {
                                if line == "." {
                                    break;
                                }
                                // Undo dot-stuffing.
                                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                                data.push_str("\r\n");
                            }
                            let message = Received {
                                mail_from: std::mem::take(&mut from),
                                rcpt_to: std::mem::take(&mut rcpt),
                                data,
                            };
                            let _ = tx.send(message);
                            b"250 OK queued\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await.unwrap();
                            break;
                        }
                        _ => b"250 OK\r\n",
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, rx)
}

/// The text body of a received message, its transfer encoding (quoted-printable or
/// other, as lettre picked it) undone by mail-parser.
fn body_text(data: &str) -> String {
    let message = mail_parser::MessageParser::default().parse(data).expect("a MIME message");
    message.body_text(0).expect("a text body").into_owned()
}

fn link_token(text: &str, path: &str) -> String {
    let marker = format!("https://auth.example.test{path}#token=");
    let start = text.find(&marker).unwrap_or_else(|| panic!("no link in {text}")) + marker.len();
    text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || "-_".contains(*c)).collect()
}

fn service_with_mailer(mailer: Arc<dyn Mailer>) -> AuthService {
    let h = crate::common::Harness::new();
    AuthService::new_insecure_for_tests(test_config(), h.stores.clone(), mailer, h.clock.clone())
        .unwrap()
}

fn smtp_config(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".to_owned(),
        port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "Tiered Auth <auth@example.test>".to_owned(),
        timeout: StdDuration::from_secs(10),
    }
}

fn register(email: &str) -> RegisterInput {
    RegisterInput {
        name: "Smtp".to_owned(),
        email: email.to_owned(),
        password: PASSWORD.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_mail_goes_out_over_smtp_and_its_link_works() {
    let (port, mut inbox) = start_smtp_server().await;
    let mailer = SmtpMailer::new(smtp_config(port)).unwrap();
    let auth = service_with_mailer(Arc::new(mailer));
    let email = unique_email();
    auth.register(register(&email)).await.unwrap();

    let received = tokio::time::timeout(StdDuration::from_secs(20), inbox.recv())
        .await
        .expect("no message within 20 s")
        .unwrap();
    assert!(received.mail_from.contains("<auth@example.test>"), "{}", received.mail_from);
    assert_eq!(received.rcpt_to.len(), 1);
    assert!(received.rcpt_to[0].contains(&format!("<{email}>")));
    assert!(received.data.contains("Subject: Confirm your email address"));
    assert!(received.data.contains(&format!("To: {email}")));

    let token = link_token(&body_text(&received.data), "/verify-email");
    assert_eq!(token.len(), 43);
    let user = auth.verify_email(&token).await.unwrap();
    assert_eq!(user.email, email);
    assert!(user.email_verified);
}

#[tokio::test]
async fn smtp_errors_surface_from_send_but_do_not_fail_the_flow() {
    // A port nobody listens on.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let mailer = SmtpMailer::new(smtp_config(port)).unwrap();
    let mail = OutgoingMail {
        to: "someone@example.com".to_owned(),
        subject: "s".to_owned(),
        text: "t".to_owned(),
        kind: MailKind::PasswordReset,
    };
    assert!(matches!(mailer.send(mail).await, Err(MailError::Smtp(_))));
    // The flow answers without waiting for the mail server.
    let auth = service_with_mailer(Arc::new(mailer));
    auth.register(register(&unique_email())).await.unwrap();
}

#[test]
fn smtp_tls_modes_and_credentials_build() {
    for tls in [SmtpTls::None, SmtpTls::StartTls, SmtpTls::Tls] {
        let config = SmtpConfig {
            host: "smtp.example.com".to_owned(),
            port: 587,
            tls,
            username: Some("user".to_owned()),
            password: Some("secret".to_owned().into()),
            from: "auth@example.com".to_owned(),
            timeout: StdDuration::from_secs(5),
        };
        let mailer = SmtpMailer::new(config).unwrap();
        assert!(!format!("{mailer:?}").contains("secret"));
    }
    let bad_from = SmtpConfig { from: "not an address".to_owned(), ..smtp_config(25) };
    assert!(matches!(SmtpMailer::new(bad_from), Err(MailError::Address(_))));
}

async fn wait_for_eml(dir: &std::path::Path, count: usize) -> Vec<std::path::PathBuf> {
    for _ in 0..1000 {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let files: Vec<_> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect();
            if files.len() >= count {
                return files;
            }
        }
        tokio::time::sleep(StdDuration::from_millis(10)).await;
    }
    panic!("no .eml file in {}", dir.display());
}

#[tokio::test]
async fn the_file_mailer_writes_one_eml_per_message() {
    let dir = TempDir::with_prefix("auth-mail-").unwrap();
    let mailer =
        FileMailer::new(dir.path().join("mail")).with_from("Auth <auth@example.test>").unwrap();
    assert_eq!(mailer.dir(), dir.path().join("mail"));
    let auth = service_with_mailer(Arc::new(mailer));
    let email = unique_email();
    auth.register(register(&email)).await.unwrap();

    let files = wait_for_eml(&dir.path().join("mail"), 1).await;
    assert_eq!(files.len(), 1);
    let data = std::fs::read_to_string(&files[0]).unwrap();
    assert!(data.contains("From: Auth <auth@example.test>"));
    let token = link_token(&body_text(&data), "/verify-email");
    // The link stands verbatim on one line of the file (8bit, no folding), so a plain
    // `grep -o 'token=...'` finds it, as the README's quick start does.
    assert!(data.contains("Content-Transfer-Encoding: 8bit"), "{data}");
    assert!(data.contains(&format!("/verify-email#token={token}\r\n")), "{data}");
    auth.verify_email(&token).await.unwrap();

    auth.forgot_password(&email).await.unwrap();
    let files = wait_for_eml(&dir.path().join("mail"), 2).await;
    assert_eq!(files.len(), 2);
}

#[tokio::test]
async fn the_file_mailer_refuses_a_bad_recipient() {
    let dir = TempDir::with_prefix("auth-mail-").unwrap();
    let mailer = FileMailer::new(dir.path());
    let mail = OutgoingMail {
        to: "not an address".to_owned(),
        subject: "s".to_owned(),
        text: "t".to_owned(),
        kind: MailKind::EmailVerification,
    };
    assert!(matches!(mailer.send(mail).await, Err(MailError::Address(_))));
}

/// A mail server that never answers.
struct Stuck;

#[async_trait::async_trait]
impl Mailer for Stuck {
    async fn send(&self, _: OutgoingMail) -> Result<(), MailError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn flows_do_not_wait_for_the_mail_server() {
    let auth = service_with_mailer(Arc::new(Stuck));
    let email = unique_email();
    auth.register(register(&email)).await.unwrap();
    auth.resend_verification(&email).await.unwrap();
    auth.register(register(&email)).await.unwrap();
}
