//! Store failures and races, pinned with mockall mocks and always-failing stores: an
//! outage is `Unavailable` (or `Internal` for corrupt data), never a false success, and
//! renewal is a compare-and-set that cannot revive a revoked session.

use std::sync::Arc;

use crate::common::{Harness, PASSWORD, client, token_in, unique_email};
use async_trait::async_trait;
use auth::{AuthError, AuthService, LoginInput, RegisterInput, Stores};
use cache_core::{
    AccountStore, Clock as _, Conflict, Credentials, MockSessionStore, MockUserCache, NewUser,
    Purpose, Session, SessionKey, SessionLookup, SessionStore, SessionToken, StoreError,
    StoreResult, TokenHash, User, UserCache, UserId, Verification, VerificationStore,
};
use chrono::{DateTime, Duration, Utc};

/// Which error a [`Down`] store answers with.
#[derive(Clone, Copy)]
enum Failure {
    Unavailable,
    Timeout,
    Corrupt,
}

impl Failure {
    fn error(self) -> StoreError {
        match self {
            Failure::Unavailable => StoreError::unavailable("connection refused"),
            Failure::Timeout => StoreError::timeout("deadline elapsed"),
            Failure::Corrupt => StoreError::corrupt("bad row"),
        }
    }

    fn expected_code(self) -> &'static str {
        match self {
            Failure::Unavailable | Failure::Timeout => "unavailable",
            Failure::Corrupt => "internal",
        }
    }
}

/// A store whose every operation fails.
struct Down(Failure);

/// The combined read fails as `get` does.
impl SessionLookup for Down {}

#[async_trait]
impl SessionStore for Down {
    fn tier(&self) -> &'static str {
        "down"
    }
    async fn create(&self, _: &Session) -> StoreResult<()> {
        Err(self.0.error())
    }
    async fn get(&self, _: &SessionKey) -> StoreResult<Option<Session>> {
        Err(self.0.error())
    }
    async fn put(&self, _: &Session) -> StoreResult<bool> {
        Err(self.0.error())
    }
    async fn extend(
        &self,
        _: &SessionKey,
        _: i64,
        _: DateTime<Utc>,
    ) -> StoreResult<Option<Session>> {
        Err(self.0.error())
    }
    async fn delete(&self, _: &SessionKey) -> StoreResult<bool> {
        Err(self.0.error())
    }
    async fn delete_user_sessions(&self, _: UserId, _: Option<TokenHash>) -> StoreResult<u64> {
        Err(self.0.error())
    }
    async fn list_user_sessions(&self, _: UserId) -> StoreResult<Vec<Session>> {
        Err(self.0.error())
    }
}

#[async_trait]
impl UserCache for Down {
    fn tier(&self) -> &'static str {
        "down"
    }
    async fn get_user(&self, _: UserId) -> StoreResult<Option<User>> {
        Err(self.0.error())
    }
    async fn put_user(&self, _: &User) -> StoreResult<()> {
        Err(self.0.error())
    }
    async fn invalidate_user(&self, _: UserId) -> StoreResult<()> {
        Err(self.0.error())
    }
}

#[async_trait]
impl VerificationStore for Down {
    fn tier(&self) -> &'static str {
        "down"
    }
    async fn put_verification(&self, _: &Verification) -> StoreResult<()> {
        Err(self.0.error())
    }
    async fn consume(&self, _: &TokenHash, _: Purpose) -> StoreResult<Option<Verification>> {
        Err(self.0.error())
    }
    async fn delete_verifications(&self, _: UserId, _: Purpose) -> StoreResult<u64> {
        Err(self.0.error())
    }
}

#[async_trait]
impl AccountStore for Down {
    async fn create_account(&self, _: &NewUser) -> StoreResult<()> {
        Err(self.0.error())
    }
    async fn credentials_by_email(&self, _: &str) -> StoreResult<Option<Credentials>> {
        Err(self.0.error())
    }
    async fn credentials_by_id(&self, _: UserId) -> StoreResult<Option<Credentials>> {
        Err(self.0.error())
    }
    async fn set_password_hash(&self, _: UserId, _: &str) -> StoreResult<bool> {
        Err(self.0.error())
    }
    async fn mark_email_verified(&self, _: UserId, _: &str) -> StoreResult<Option<User>> {
        Err(self.0.error())
    }
}

fn register_input(email: &str) -> RegisterInput {
    RegisterInput { name: "N".to_owned(), email: email.to_owned(), password: PASSWORD.to_owned() }
}

fn login_input(email: &str) -> LoginInput {
    LoginInput { email: email.to_owned(), password: PASSWORD.to_owned() }
}

fn assert_code<T: std::fmt::Debug>(result: Result<T, AuthError>, code: &str, what: &str) {
    match result {
        Err(e) => assert_eq!(e.code(), code, "{what}: {e:?}"),
        Ok(v) => panic!("{what}: succeeded with {v:?} although a store is down"),
    }
}

#[tokio::test]
async fn every_flow_reports_an_outage_of_its_stores() {
    for failure in [Failure::Unavailable, Failure::Timeout, Failure::Corrupt] {
        let code = failure.expected_code();
        let mut h = Harness::new();
        let email = unique_email();
        h.verified_user(&email, PASSWORD).await;
        let token = h.login_token(&email, PASSWORD).await;
        let auth = h.validate(&token).await.unwrap();
        let down = || Arc::new(Down(failure));

        // Accounts down.
        let s = h.service_with(|s| s.accounts = down());
        assert_code(s.register(register_input(&unique_email())).await, code, "register");
        assert_code(s.login(login_input(&email), &client()).await, code, "login");
        assert_code(s.resend_verification(&email).await, code, "resend");
        assert_code(s.forgot_password(&email).await, code, "forgot");
        assert_code(
            s.change_password(&auth, PASSWORD, "new password!", &client()).await,
            code,
            "change",
        );

        // Sessions down.
        let s = h.service_with(|s| s.sessions = down());
        assert_code(s.login(login_input(&email), &client()).await, code, "login/create");
        assert_code(s.validate(&token, &client()).await, code, "validate");
        assert_code(s.logout(&token).await, code, "logout");
        assert_code(s.logout_everywhere(&auth, true).await, code, "logout everywhere");
        assert_code(s.list_sessions(&auth).await, code, "list");
        assert_code(s.revoke_session(&auth, &auth.session.key.hash.to_hex()).await, code, "revoke");
        assert_code(s.revoke_user_sessions(auth.user.id).await, code, "admin revoke");

        // Users down: validate needs the user cache only when the session's tier did not
        // return the profile with the session; then it cannot confirm the user.
        let s = h.service_with(|s| s.users = down());
        s.validate(&token, &client()).await.unwrap();
        h.memory.invalidate_user(auth.user.id).await.unwrap();
        assert_code(s.validate(&token, &client()).await, code, "validate/user");

        // Verifications down. Register, resend and forgot store their links in the
        // background (issue 11, item 7: a known address must cost what an unknown one
        // does), so they answer as usual and the link is neither stored nor mailed; the
        // failure is logged and counted.
        let s = h.service_with(|s| s.verifications = down());
        s.register(register_input(&unique_email())).await.unwrap();
        assert_code(s.verify_email(&"A".repeat(43)).await, code, "verify");
        s.forgot_password(&email).await.unwrap();
        assert_code(s.reset_password(&"A".repeat(43), "new password!").await, code, "reset");
        h.assert_no_mail().await;

        // Nothing above took effect: the session is alive, the password unchanged.
        h.validate(&token).await.unwrap();
        h.login(&email, PASSWORD).await.unwrap();
    }
}

#[tokio::test]
async fn a_reset_that_cannot_revoke_the_sessions_is_not_a_success() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    h.auth.forgot_password(&email).await.unwrap();
    let token = token_in(&h.next_mail().await, "/reset-password");
    let s = h.service_with(|s| s.sessions = Arc::new(Down(Failure::Unavailable)));
    assert_code(s.reset_password(&token, "a new password").await, "unavailable", "reset");
}

#[tokio::test]
async fn warming_the_user_cache_is_best_effort() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let mut users = MockUserCache::new();
    users.expect_put_user().times(1).returning(|_| Err(StoreError::unavailable("down")));
    let s = h.service_with(|s| s.users = Arc::new(users));
    // The session is stored; only the cache warm-up failed.
    let outcome = s.login(login_input(&email), &client()).await.unwrap();
    h.validate(&outcome.token.encode()).await.unwrap();
}

/// A session of a fresh token, created `age` before `now` and never renewed.
fn session_aged(now: DateTime<Utc>, age: Duration) -> (SessionToken, Session) {
    let token = SessionToken::generate(UserId::random().unwrap()).unwrap();
    let created = now - age;
    let session = Session {
        key: token.key(),
        created_at: created,
        renewed_at: created,
        expires_at: created + Duration::days(7),
        absolute_expires_at: created + Duration::days(30),
        user_agent: None,
        ip: None,
        version: 0,
    };
    (token, session)
}

fn user_of(session: &Session) -> User {
    User {
        id: session.key.user,
        name: "N".to_owned(),
        email: "n@example.com".to_owned(),
        email_verified: true,
        created_at: session.created_at,
    }
}

fn service(h: &Harness, sessions: MockSessionStore, users: MockUserCache) -> AuthService {
    h.service_with(|s: &mut Stores| {
        s.sessions = Arc::new(sessions);
        s.users = Arc::new(users);
    })
}

#[tokio::test]
async fn the_hot_path_is_one_session_and_one_user_lookup() {
    let h = Harness::new();
    let (token, session) = session_aged(h.clock.now(), Duration::hours(23));
    let user = user_of(&session);
    let mut sessions = MockSessionStore::new();
    let expected_key = token.key();
    let s2 = session.clone();
    sessions
        .expect_get()
        .withf(move |key| *key == expected_key)
        .times(1)
        .returning(move |_| Ok(Some(s2.clone())));
    let mut users = MockUserCache::new();
    let u2 = user.clone();
    let id = user.id;
    users
        .expect_get_user()
        .withf(move |u| *u == id)
        .times(1)
        .returning(move |_| Ok(Some(u2.clone())));
    // No other expectation: any other store call (extend, put, ...) panics.
    let auth = service(&h, sessions, users).validate(&token.encode(), &client()).await.unwrap();
    assert_eq!(auth.session, session);
    assert_eq!(auth.user, user);
}

#[tokio::test]
async fn renewal_extends_by_the_idle_timeout_with_a_compare_and_set() {
    let h = Harness::new();
    let now = h.clock.now();
    let (token, session) = session_aged(now, Duration::days(1));
    let renewed = session.extended(now + Duration::days(7), now);
    let mut sessions = MockSessionStore::new();
    let s2 = session.clone();
    sessions.expect_get().times(1).returning(move |_| Ok(Some(s2.clone())));
    let r2 = renewed.clone();
    let key = token.key();
    sessions
        .expect_extend()
        .withf(move |k, version, new_expiry| {
            *k == key && *version == 0 && *new_expiry == now + Duration::days(7)
        })
        .times(1)
        .returning(move |_, _, _| Ok(Some(r2.clone())));
    let mut users = MockUserCache::new();
    let user = user_of(&session);
    users.expect_get_user().times(1).returning(move |_| Ok(Some(user.clone())));
    let auth = service(&h, sessions, users).validate(&token.encode(), &client()).await.unwrap();
    assert_eq!(auth.session, renewed);
}

#[tokio::test]
async fn renewal_near_the_absolute_lifetime_asks_for_no_more_than_it() {
    let h = Harness::new();
    let now = h.clock.now();
    let (token, mut session) = session_aged(now, Duration::days(28));
    session.renewed_at = now - Duration::days(2);
    session.expires_at = now + Duration::days(2);
    let absolute = session.absolute_expires_at;
    let mut sessions = MockSessionStore::new();
    let s2 = session.clone();
    sessions.expect_get().returning(move |_| Ok(Some(s2.clone())));
    let s3 = session.clone();
    sessions
        .expect_extend()
        .withf(move |_, _, new_expiry| *new_expiry == absolute)
        .times(1)
        .returning(move |_, _, _| Ok(Some(s3.extended(absolute, now))));
    let mut users = MockUserCache::new();
    let user = user_of(&session);
    users.expect_get_user().returning(move |_| Ok(Some(user.clone())));
    let auth = service(&h, sessions, users).validate(&token.encode(), &client()).await.unwrap();
    assert_eq!(auth.session.expires_at, absolute);
}

#[tokio::test]
async fn a_session_revoked_during_renewal_is_not_revived() {
    let h = Harness::new();
    let (token, session) = session_aged(h.clock.now(), Duration::days(2));
    let mut sessions = MockSessionStore::new();
    sessions.expect_get().times(1).returning(move |_| Ok(Some(session.clone())));
    // The compare-and-set finds nothing: revoked between the read and the renewal.
    sessions.expect_extend().times(1).returning(|_, _, _| Ok(None));
    let users = MockUserCache::new();
    let result = service(&h, sessions, users).validate(&token.encode(), &client()).await;
    assert!(matches!(result, Err(AuthError::Unauthenticated)));
}

#[tokio::test]
async fn a_lost_renewal_race_uses_the_winners_session() {
    let h = Harness::new();
    let now = h.clock.now();
    let (token, session) = session_aged(now, Duration::days(2));
    let theirs = session.extended(now + Duration::days(7), now);
    let mut sessions = MockSessionStore::new();
    let mut seq = mockall::Sequence::new();
    let s2 = session.clone();
    sessions.expect_get().times(1).in_sequence(&mut seq).returning(move |_| Ok(Some(s2.clone())));
    sessions
        .expect_extend()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Err(StoreError::Conflict(Conflict::Version)));
    let t2 = theirs.clone();
    sessions.expect_get().times(1).in_sequence(&mut seq).returning(move |_| Ok(Some(t2.clone())));
    let mut users = MockUserCache::new();
    let user = user_of(&session);
    users.expect_get_user().times(1).returning(move |_| Ok(Some(user.clone())));
    let auth = service(&h, sessions, users).validate(&token.encode(), &client()).await.unwrap();
    assert_eq!(auth.session, theirs);
}

#[tokio::test]
async fn a_lost_renewal_race_against_a_revocation_is_unauthenticated() {
    let h = Harness::new();
    let (token, session) = session_aged(h.clock.now(), Duration::days(2));
    let mut sessions = MockSessionStore::new();
    let mut seq = mockall::Sequence::new();
    sessions
        .expect_get()
        .times(1)
        .in_sequence(&mut seq)
        .returning(move |_| Ok(Some(session.clone())));
    sessions
        .expect_extend()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _, _| Err(StoreError::Conflict(Conflict::Version)));
    sessions.expect_get().times(1).in_sequence(&mut seq).returning(|_| Ok(None));
    let result =
        service(&h, sessions, MockUserCache::new()).validate(&token.encode(), &client()).await;
    assert!(matches!(result, Err(AuthError::Unauthenticated)));
}

#[tokio::test]
async fn a_failed_renewal_serves_the_session_as_read() {
    let h = Harness::new();
    let (token, session) = session_aged(h.clock.now(), Duration::days(2));
    let mut sessions = MockSessionStore::new();
    let s2 = session.clone();
    sessions.expect_get().times(1).returning(move |_| Ok(Some(s2.clone())));
    sessions.expect_extend().times(1).returning(|_, _, _| Err(StoreError::timeout("slow")));
    let mut users = MockUserCache::new();
    let user = user_of(&session);
    users.expect_get_user().times(1).returning(move |_| Ok(Some(user.clone())));
    let auth = service(&h, sessions, users).validate(&token.encode(), &client()).await.unwrap();
    assert_eq!(auth.session, session);
}

#[tokio::test]
async fn a_session_whose_user_is_gone_is_unauthenticated() {
    let h = Harness::new();
    let (token, session) = session_aged(h.clock.now(), Duration::hours(1));
    let mut sessions = MockSessionStore::new();
    sessions.expect_get().returning(move |_| Ok(Some(session.clone())));
    let mut users = MockUserCache::new();
    users.expect_get_user().returning(|_| Ok(None));
    let result = service(&h, sessions, users).validate(&token.encode(), &client()).await;
    assert!(matches!(result, Err(AuthError::Unauthenticated)));
}
