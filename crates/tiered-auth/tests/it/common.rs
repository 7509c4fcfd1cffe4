//! Shared test harness: an [`AuthService`] over the memory tier (sessions,
//! verifications, cached profiles), an in-test account store standing in for SQL, a
//! manual clock, and a mailer that hands every message to the test.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use auth::{
    Argon2Params, AuthConfig, AuthError, AuthService, ClientInfo, LoginInput, LoginOutcome,
    MailError, MailKind, Mailer, OutgoingMail, RegisterInput, Stores, User, UserId,
};
use cache_core::{
    AccountStore, Conflict, Credentials, ManualClock, NewUser, StoreError, StoreResult, Tiered,
    UserCache,
};
use cache_memory::{MemoryConfig, MemoryStore};
use tokio::sync::mpsc;

/// A password that meets the default policy.
pub const PASSWORD: &str = "correct horse battery staple";

/// The accounts table of a test: a map behind a mutex. It is also the authority for
/// profiles (the `UserCache` under the memory tier), as the SQL store is in production.
#[derive(Default)]
pub struct TestAccounts {
    rows: Mutex<HashMap<UserId, (User, String)>>,
}

impl TestAccounts {
    /// The stored PHC string of `email`'s account.
    pub fn password_hash(&self, email: &str) -> Option<String> {
        let rows = self.rows.lock().unwrap();
        rows.values().find(|(u, _)| u.email == email).map(|(_, h)| h.clone())
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.rows.lock().unwrap().len()
    }

    /// Replaces an account's email (an address change, which has no flow yet).
    pub fn set_email(&self, id: UserId, email: &str) {
        let mut rows = self.rows.lock().unwrap();
        if let Some((user, _)) = rows.get_mut(&id) {
            user.email = email.to_owned();
        }
    }
}

#[async_trait]
impl AccountStore for TestAccounts {
    async fn create_account(&self, new_user: &NewUser) -> StoreResult<()> {
        let mut rows = self.rows.lock().unwrap();
        let taken = rows.contains_key(&new_user.user.id)
            || rows.values().any(|(u, _)| u.email == new_user.user.email);
        if taken {
            return Err(StoreError::Conflict(Conflict::Exists));
        }
        rows.insert(new_user.user.id, (new_user.user.clone(), new_user.password_hash.clone()));
        Ok(())
    }

    async fn credentials_by_email(&self, email: &str) -> StoreResult<Option<Credentials>> {
        let rows = self.rows.lock().unwrap();
        Ok(rows
            .values()
            .find(|(u, _)| u.email == email)
            .map(|(user, hash)| Credentials { user: user.clone(), password_hash: hash.clone() }))
    }

    async fn credentials_by_id(&self, id: UserId) -> StoreResult<Option<Credentials>> {
        let rows = self.rows.lock().unwrap();
        Ok(rows
            .get(&id)
            .map(|(user, hash)| Credentials { user: user.clone(), password_hash: hash.clone() }))
    }

    async fn set_password_hash(&self, id: UserId, password_hash: &str) -> StoreResult<bool> {
        let mut rows = self.rows.lock().unwrap();
        Ok(rows.get_mut(&id).map(|(_, h)| *h = password_hash.to_owned()).is_some())
    }

    async fn mark_email_verified(&self, id: UserId, email: &str) -> StoreResult<Option<User>> {
        let mut rows = self.rows.lock().unwrap();
        Ok(rows.get_mut(&id).filter(|(u, _)| u.email == email).map(|(u, _)| {
            u.email_verified = true;
            u.clone()
        }))
    }
}

#[async_trait]
impl UserCache for TestAccounts {
    fn tier(&self) -> &'static str {
        "sql"
    }

    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        Ok(self.rows.lock().unwrap().get(&id).map(|(u, _)| u.clone()))
    }

    async fn put_user(&self, user: &User) -> StoreResult<()> {
        if let Some((u, _)) = self.rows.lock().unwrap().get_mut(&user.id) {
            *u = user.clone();
        }
        Ok(())
    }

    async fn invalidate_user(&self, _id: UserId) -> StoreResult<()> {
        Ok(())
    }
}

/// A mailer that passes every message to the test through a channel.
pub struct ChannelMailer(pub mpsc::UnboundedSender<OutgoingMail>);

#[async_trait]
impl Mailer for ChannelMailer {
    async fn send(&self, mail: OutgoingMail) -> Result<(), MailError> {
        let _ = self.0.send(mail);
        Ok(())
    }
}

/// A service and everything around it.
pub struct Harness {
    pub auth: AuthService,
    pub stores: Stores,
    pub config: AuthConfig,
    pub mailer: Arc<ChannelMailer>,
    pub clock: Arc<ManualClock>,
    pub memory: Arc<MemoryStore>,
    pub accounts: Arc<TestAccounts>,
    pub mail: mpsc::UnboundedReceiver<OutgoingMail>,
}

/// The default configuration with cheap argon2 parameters.
pub fn test_config() -> AuthConfig {
    AuthConfig {
        argon2: Argon2Params::INSECURE_FOR_TESTS,
        public_base_url: "https://auth.example.test/".to_owned(),
        hash_concurrency: 2,
        ..AuthConfig::default()
    }
}

/// A memory store that keeps everything for the whole (simulated) life of a test, so
/// that it can stand in for the tiers below it.
pub fn memory_store(clock: &Arc<ManualClock>) -> Arc<MemoryStore> {
    let year = StdDuration::from_secs(400 * 24 * 3600);
    Arc::new(MemoryStore::new(
        MemoryConfig { max_entries: 100_000, ttl: year, fence_ttl: year },
        clock.clone(),
    ))
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(test_config())
    }

    pub fn with_config(config: AuthConfig) -> Self {
        let clock = ManualClock::starting_now();
        let memory = memory_store(&clock);
        let accounts = Arc::new(TestAccounts::default());
        let stores = Stores {
            sessions: memory.clone(),
            users: Arc::new(Tiered::with_names(memory.clone(), accounts.clone(), "memory", "sql")),
            verifications: memory.clone(),
            accounts: accounts.clone(),
        };
        let (tx, mail) = mpsc::unbounded_channel();
        let mailer = Arc::new(ChannelMailer(tx));
        let auth = AuthService::new_insecure_for_tests(
            config.clone(),
            stores.clone(),
            mailer.clone(),
            clock.clone(),
        )
        .unwrap();
        Self { auth, stores, config, mailer, clock, memory, accounts, mail }
    }

    /// Another service over the same stores, clock and mailer, except what `edit`
    /// replaces (a failing store, say).
    pub fn service_with(&self, edit: impl FnOnce(&mut Stores)) -> AuthService {
        let mut stores = self.stores.clone();
        edit(&mut stores);
        AuthService::new_insecure_for_tests(
            self.config.clone(),
            stores,
            self.mailer.clone(),
            self.clock.clone(),
        )
        .unwrap()
    }

    /// The next message sent (waits for the background send).
    pub async fn next_mail(&mut self) -> OutgoingMail {
        tokio::time::timeout(StdDuration::from_secs(10), self.mail.recv())
            .await
            .expect("no mail within 10 s")
            .expect("mailer gone")
    }

    /// Asserts that no mail is pending. Sends go through spawned tasks, so first let every
    /// task that is ready run (the tests using this run on the current-thread runtime,
    /// whose queue is first in, first out).
    pub async fn assert_no_mail(&mut self) {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        if let Ok(mail) = self.mail.try_recv() {
            panic!("unexpected mail: {mail:?}");
        }
    }

    /// Registers an account and returns the verification token from its mail.
    pub async fn register(&mut self, email: &str, password: &str) -> String {
        self.auth
            .register(RegisterInput {
                name: "Test User".to_owned(),
                email: email.to_owned(),
                password: password.to_owned(),
            })
            .await
            .unwrap();
        let mail = self.next_mail().await;
        assert_eq!(mail.kind, MailKind::EmailVerification);
        token_in(&mail, "/verify-email")
    }

    /// Registers and verifies an account.
    pub async fn verified_user(&mut self, email: &str, password: &str) -> User {
        let token = self.register(email, password).await;
        self.auth.verify_email(&token).await.unwrap()
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<LoginOutcome, AuthError> {
        self.auth
            .login(LoginInput { email: email.to_owned(), password: password.to_owned() }, &client())
            .await
    }

    /// The encoded token of a fresh login that must succeed.
    pub async fn login_token(&self, email: &str, password: &str) -> String {
        self.login(email, password).await.unwrap().token.encode()
    }

    pub async fn validate(&self, token: &str) -> Result<auth::Authenticated, AuthError> {
        self.auth.validate(token, &client()).await
    }

    pub fn advance(&self, by: chrono::Duration) {
        self.clock.advance(by);
    }
}

/// A typical browser client.
pub fn client() -> ClientInfo {
    ClientInfo { user_agent: Some("Mozilla/5.0 (test)".to_owned()), ip: "192.0.2.7".parse().ok() }
}

/// A unique address per call, so tests never collide.
pub fn unique_email() -> String {
    format!("user{}@example.com", UserId::random().unwrap())
}

/// The token of the link to `path` in a mail: `{base}{path}#token=<token>`.
pub fn token_in(mail: &OutgoingMail, path: &str) -> String {
    let marker = format!("https://auth.example.test{path}#token=");
    let start =
        mail.text.find(&marker).unwrap_or_else(|| panic!("no {path} link in mail")) + marker.len();
    mail.text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || "-_".contains(*c))
        .collect()
}
