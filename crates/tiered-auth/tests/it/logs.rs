//! Nothing secret reaches the logs: every flow runs (including failures that log) with a
//! subscriber capturing all levels, and the output is searched for every token, password
//! and hash the flows handled.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use crate::common::{Harness, PASSWORD, unique_email};
use async_trait::async_trait;
use auth::{
    AuthService, FileMailer, MailError, Mailer, OutgoingMail, RegisterInput, SmtpConfig,
    SmtpMailer, SmtpTls,
};
use cache_core::{MockUserCache, StoreError};
use chrono::Duration;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    async fn wait_for(&self, needle: &str) {
        for _ in 0..1000 {
            if self.text().contains(needle) {
                return;
            }
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
        panic!("{needle:?} never logged:\n{}", self.text());
    }
}

/// Sends through a real mailer and also hands each message to the test.
struct Tee<M>(M, tokio::sync::mpsc::UnboundedSender<OutgoingMail>);

#[async_trait]
impl<M: Mailer> Mailer for Tee<M> {
    async fn send(&self, mail: OutgoingMail) -> Result<(), MailError> {
        let _ = self.1.send(mail.clone());
        self.0.send(mail).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_password_or_hash_is_ever_logged() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let h = Harness::new();
    let dir = std::env::temp_dir().join(format!("auth-logs-{}", auth::UserId::random().unwrap()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let auth = AuthService::new_insecure_for_tests(
        crate::common::test_config(),
        h.stores.clone(),
        Arc::new(Tee(FileMailer::new(&dir), tx)),
        h.clock.clone(),
    )
    .unwrap();
    let mut next_mail = async || rx.recv().await.unwrap();
    let mut secrets: Vec<String> = vec![PASSWORD.to_owned()];

    let email = unique_email();
    let input = |password: &str| RegisterInput {
        name: "Logged".to_owned(),
        email: email.clone(),
        password: password.to_owned(),
    };
    auth.register(input(PASSWORD)).await.unwrap();
    let verify = crate::common::token_in(&next_mail().await, "/verify-email");
    logs.wait_for("mail written").await;
    secrets.push(verify.clone());
    auth.verify_email(&verify).await.unwrap();
    secrets.push(h.accounts.password_hash(&email).unwrap());

    // Taken address: the notice.
    auth.register(input("other password")).await.unwrap();
    next_mail().await;
    secrets.push("other password".to_owned());

    let outcome = auth
        .login(
            auth::LoginInput { email: email.clone(), password: PASSWORD.to_owned() },
            &crate::common::client(),
        )
        .await
        .unwrap();
    let cookie = outcome.token.encode();
    secrets.push(cookie.clone());
    secrets.push(cookie.split_once('.').unwrap().1.to_owned());
    secrets.push(outcome.session.key.hash.to_hex());
    let _ = auth
        .login(
            auth::LoginInput { email: email.clone(), password: "wrong guess".to_owned() },
            &crate::common::client(),
        )
        .await
        .unwrap_err();
    secrets.push("wrong guess".to_owned());

    // Renewal, and a renewal whose user lookup warms nothing (logged warnings).
    h.clock.advance(Duration::days(2));
    auth.validate(&cookie, &crate::common::client()).await.unwrap();
    let mut users = MockUserCache::new();
    users.expect_put_user().returning(|_| Err(StoreError::unavailable("cache down")));
    users.expect_invalidate_user().returning(|_| Err(StoreError::unavailable("cache down")));
    let failing = h.service_with(|s| s.users = Arc::new(users));
    let second = failing
        .login(
            auth::LoginInput { email: email.clone(), password: PASSWORD.to_owned() },
            &crate::common::client(),
        )
        .await
        .unwrap();
    secrets.push(second.token.encode());
    logs.wait_for("could not warm the user cache").await;

    auth.forgot_password(&email).await.unwrap();
    let reset = crate::common::token_in(&next_mail().await, "/reset-password");
    secrets.push(reset.clone());
    failing.reset_password(&reset, "the new password").await.unwrap();
    secrets.push("the new password".to_owned());
    secrets.push(h.accounts.password_hash(&email).unwrap());
    logs.wait_for("could not invalidate the cached profile").await;
    auth.logout(&cookie).await.unwrap();

    // A mail that cannot be delivered is logged, without its content.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let smtp = SmtpMailer::new(SmtpConfig {
        host: "127.0.0.1".to_owned(),
        port,
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "auth@example.test".to_owned(),
        timeout: StdDuration::from_secs(5),
    })
    .unwrap();
    let (tx2, mut rx2) = tokio::sync::mpsc::unbounded_channel();
    let undeliverable = AuthService::new_insecure_for_tests(
        crate::common::test_config(),
        h.stores.clone(),
        Arc::new(Tee(smtp, tx2)),
        h.clock.clone(),
    )
    .unwrap();
    h.clock.advance(Duration::seconds(1));
    undeliverable.forgot_password(&email).await.unwrap();
    secrets.push(crate::common::token_in(&rx2.recv().await.unwrap(), "/reset-password"));
    logs.wait_for("mail not sent").await;

    let text = logs.text();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(text.contains(".eml"), "the mail file's path is logged:\n{text}");
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "{secret:?} was logged:\n{text}");
    }
    assert!(!text.contains("#token="), "a link was logged:\n{text}");
}
