//! Every flow of `AuthService` over the memory tier and an in-test account store, with a
// tidy: long-file every flow end to end on the reference stores, one test each; grouping them into tests/it/ modules is issue 18's next step
//! manual clock.

use crate::common::{Harness, PASSWORD, client, token_in, unique_email};
use auth::{AuthError, MailKind, RegisterInput};
use chrono::Duration;

#[tokio::test]
async fn register_verify_login_validate_logout() {
    let mut h = Harness::new();
    let email = unique_email();
    let token = h.register(&format!("  {}  ", email.to_uppercase()), PASSWORD).await;

    // Not verified yet: the right password says so, a wrong one does not.
    assert!(matches!(h.login(&email, PASSWORD).await, Err(AuthError::EmailNotVerified)));
    assert!(matches!(h.login(&email, "wrong password").await, Err(AuthError::InvalidCredentials)));

    let user = h.auth.verify_email(&token).await.unwrap();
    assert_eq!(user.email, email);
    assert!(user.email_verified);
    assert_eq!(user.name, "Test User");

    let outcome = h.login(&email, PASSWORD).await.unwrap();
    assert_eq!(outcome.user.id, user.id);
    assert_eq!(outcome.session.key, outcome.token.key());
    assert_eq!(outcome.session.version, 0);
    assert_eq!(outcome.session.user_agent.as_deref(), Some("Mozilla/5.0 (test)"));
    assert_eq!(outcome.session.ip, "192.0.2.7".parse().ok());
    let now = h.clock_now();
    assert_eq!(outcome.session.created_at, now);
    assert_eq!(outcome.session.expires_at, now + Duration::days(7));
    assert_eq!(outcome.session.absolute_expires_at, now + Duration::days(30));

    let cookie = outcome.token.encode();
    let auth = h.validate(&cookie).await.unwrap();
    assert_eq!(auth.user.id, user.id);
    assert!(auth.user.email_verified);
    assert_eq!(auth.session.key, outcome.token.key());

    h.auth.logout(&cookie).await.unwrap();
    assert!(matches!(h.validate(&cookie).await, Err(AuthError::Unauthenticated)));
    // Idempotent, and garbage is fine too.
    h.auth.logout(&cookie).await.unwrap();
    h.auth.logout("garbage").await.unwrap();
    h.auth.logout("").await.unwrap();
}

impl Harness {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use cache_core::Clock as _;
        self.clock.now()
    }
}

#[tokio::test]
async fn verification_tokens_are_single_use() {
    let mut h = Harness::new();
    let token = h.register(&unique_email(), PASSWORD).await;
    h.auth.verify_email(&token).await.unwrap();
    assert!(matches!(h.auth.verify_email(&token).await, Err(AuthError::InvalidToken)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_verifications_succeed_once() {
    let mut h = Harness::new();
    let token = h.register(&unique_email(), PASSWORD).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (auth, token) = (h.auth.clone(), token.clone());
            tokio::spawn(async move { auth.verify_email(&token).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(AuthError::InvalidToken) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test]
async fn expired_and_garbage_verification_tokens_are_refused() {
    let mut h = Harness::new();
    let email = unique_email();
    let token = h.register(&email, PASSWORD).await;
    h.advance(Duration::minutes(10));
    assert!(matches!(h.auth.verify_email(&token).await, Err(AuthError::InvalidToken)));
    for garbage in ["", "x", "not a token", &"A".repeat(44), &token[..42]] {
        assert!(matches!(h.auth.verify_email(garbage).await, Err(AuthError::InvalidToken)));
    }
    assert!(matches!(h.login(&email, PASSWORD).await, Err(AuthError::EmailNotVerified)));
}

#[tokio::test]
async fn a_session_token_is_not_a_verification_token() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    // A reset token does not verify an email, and the attempt does not burn it.
    h.auth.forgot_password(&email).await.unwrap();
    let reset = token_in(&h.next_mail().await, "/reset-password");
    assert!(matches!(h.auth.verify_email(&reset).await, Err(AuthError::InvalidToken)));
    h.auth.reset_password(&reset, "a brand new password").await.unwrap();
}

#[tokio::test]
async fn resend_replaces_the_token_only_for_unverified_accounts() {
    let mut h = Harness::new();
    let email = unique_email();
    let first = h.register(&email, PASSWORD).await;
    h.auth.resend_verification(&email.to_uppercase()).await.unwrap();
    let mail = h.next_mail().await;
    assert_eq!(mail.kind, MailKind::EmailVerification);
    assert_eq!(mail.to, email);
    let second = token_in(&mail, "/verify-email");
    assert_ne!(first, second);
    assert!(matches!(h.auth.verify_email(&first).await, Err(AuthError::InvalidToken)));
    h.auth.verify_email(&second).await.unwrap();

    // Verified and unknown addresses: the same answer, and no mail.
    h.auth.resend_verification(&email).await.unwrap();
    h.auth.resend_verification(&unique_email()).await.unwrap();
    h.assert_no_mail().await;
}

#[tokio::test]
async fn register_with_a_taken_email_answers_the_same_and_notifies_the_owner() {
    let mut h = Harness::new();
    let email = unique_email();
    let user = h.verified_user(&email, PASSWORD).await;

    let again = RegisterInput {
        name: "Mallory".to_owned(),
        email: email.to_uppercase(),
        password: "another password".to_owned(),
    };
    h.auth.register(again).await.unwrap();
    let mail = h.next_mail().await;
    assert_eq!(mail.kind, MailKind::AlreadyRegistered);
    assert_eq!(mail.to, email);
    assert!(!mail.text.contains("#token="));
    assert_eq!(h.accounts.len(), 1);
    // The account is untouched.
    assert_eq!(h.login(&email, PASSWORD).await.unwrap().user.id, user.id);
    assert!(matches!(
        h.login(&email, "another password").await,
        Err(AuthError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn register_rejects_bad_input_before_doing_anything() {
    let mut h = Harness::new();
    let input = |name: &str, email: &str, password: &str| RegisterInput {
        name: name.to_owned(),
        email: email.to_owned(),
        password: password.to_owned(),
    };
    let cases = [
        (input("", &unique_email(), PASSWORD), "invalid_input"),
        (input(&"n".repeat(101), &unique_email(), PASSWORD), "invalid_input"),
        (input("Ann", "not-an-email", PASSWORD), "invalid_input"),
        (input("Ann", "a@b", PASSWORD), "invalid_input"),
        (input("Ann", &unique_email(), "short"), "weak_password"),
        (input("Ann", &unique_email(), "1234567"), "weak_password"),
        (input("Ann", &unique_email(), &"p".repeat(1025)), "invalid_input"),
    ];
    for (case, code) in cases {
        let err = h.auth.register(case.clone()).await.unwrap_err();
        assert_eq!(err.code(), code, "{case:?}");
    }
    assert_eq!(h.accounts.len(), 0);
    h.assert_no_mail().await;
}

#[tokio::test]
async fn password_length_counts_unicode_scalar_values_and_never_truncates() {
    let mut h = Harness::new();
    // Eight characters, 32 bytes: long enough.
    let emoji = "🔑🔑🔑🔑🔑🔑🔑🔑";
    let email = unique_email();
    h.verified_user(&email, emoji).await;
    h.login(&email, emoji).await.unwrap();
    // Seven characters (28 bytes) is too short.
    let err = h
        .auth
        .register(RegisterInput {
            name: "A".to_owned(),
            email: unique_email(),
            password: "🔑".repeat(7),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, AuthError::WeakPassword(_)));

    // A long password is used whole: a prefix of it does not log in.
    let long = format!("{}{}", "x".repeat(200), "tail");
    let email = unique_email();
    h.verified_user(&email, &long).await;
    h.login(&email, &long).await.unwrap();
    assert!(matches!(h.login(&email, &long[..200]).await, Err(AuthError::InvalidCredentials)));
    // Nor is the password trimmed.
    assert!(matches!(
        h.login(&email, &format!(" {long}")).await,
        Err(AuthError::InvalidCredentials)
    ));
}

#[tokio::test]
async fn login_does_not_tell_unknown_emails_from_wrong_passwords() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let unknown = h.login(&unique_email(), PASSWORD).await.unwrap_err();
    let wrong = h.login(&email, "wrong password!").await.unwrap_err();
    let malformed = h.login("no-at-sign", PASSWORD).await.unwrap_err();
    let overlong = h.login(&email, &"p".repeat(5000)).await.unwrap_err();
    for err in [&unknown, &wrong, &malformed, &overlong] {
        assert!(matches!(err, AuthError::InvalidCredentials), "{err:?}");
    }
    assert_eq!(unknown.to_string(), wrong.to_string());
    // Email lookup is normalized.
    h.login(&format!(" {} ", email.to_uppercase()), PASSWORD).await.unwrap();
}

#[tokio::test]
async fn every_login_makes_a_new_token() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let a = h.login_token(&email, PASSWORD).await;
    let b = h.login_token(&email, PASSWORD).await;
    assert_ne!(a, b);
    // Both are live until logged out (authd ignores a cookie sent to login).
    h.validate(&a).await.unwrap();
    h.validate(&b).await.unwrap();
    h.auth.logout(&a).await.unwrap();
    assert!(matches!(h.validate(&a).await, Err(AuthError::Unauthenticated)));
    h.validate(&b).await.unwrap();
}

#[tokio::test]
async fn user_agents_are_truncated() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let client = auth::ClientInfo { user_agent: Some("é".repeat(600)), ip: None };
    let login = auth::LoginInput { email, password: PASSWORD.to_owned() };
    let outcome = h.auth.login(login, &client).await.unwrap();
    let ua = outcome.session.user_agent.unwrap();
    assert_eq!(ua.len(), 512);
    assert_eq!(ua, "é".repeat(256));
}

#[tokio::test]
async fn garbage_session_tokens_are_unauthenticated() {
    let h = Harness::new();
    for garbage in [
        "",
        "garbage",
        "1.",
        "1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &"9".repeat(5000),
        "\u{0}\u{1}",
    ] {
        assert!(matches!(h.validate(garbage).await, Err(AuthError::Unauthenticated)));
    }
}

#[tokio::test]
async fn idle_sessions_expire() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let token = h.login_token(&email, PASSWORD).await;
    h.advance(Duration::days(7) - Duration::seconds(1));
    // Used just in time: renewed (older than a day) and alive for another 7 days.
    let renewed = h.validate(&token).await.unwrap();
    assert_eq!(renewed.session.version, 1);
    h.advance(Duration::days(7));
    assert!(matches!(h.validate(&token).await, Err(AuthError::Unauthenticated)));

    let token = h.login_token(&email, PASSWORD).await;
    h.advance(Duration::days(7));
    assert!(matches!(h.validate(&token).await, Err(AuthError::Unauthenticated)));
}

#[tokio::test]
async fn sessions_are_renewed_in_place_once_per_update_age() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let outcome = h.login(&email, PASSWORD).await.unwrap();
    let token = outcome.token.encode();
    let login_expiry = outcome.session.expires_at;

    // Younger than update_age: no renewal.
    h.advance(Duration::days(1) - Duration::seconds(1));
    let auth = h.validate(&token).await.unwrap();
    assert_eq!(auth.session.version, 0);
    assert_eq!(auth.session.expires_at, login_expiry);

    // At update_age: extended with the same token.
    h.advance(Duration::seconds(1));
    let auth = h.validate(&token).await.unwrap();
    assert_eq!(auth.session.version, 1);
    assert_eq!(auth.session.key, outcome.token.key());
    assert_eq!(auth.session.renewed_at, h.clock_now());
    assert_eq!(auth.session.expires_at, h.clock_now() + Duration::days(7));
    assert_eq!(auth.session.created_at, outcome.session.created_at);

    // Used again within a day of the renewal: not renewed again.
    for _ in 0..5 {
        h.advance(Duration::hours(4));
        let again = h.validate(&token).await.unwrap();
        assert_eq!(again.session.version, 1);
        assert_eq!(again.session.expires_at, auth.session.expires_at);
    }
    h.advance(Duration::hours(4));
    assert_eq!(h.validate(&token).await.unwrap().session.version, 2);
}

#[tokio::test]
async fn renewal_never_passes_the_absolute_lifetime() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let outcome = h.login(&email, PASSWORD).await.unwrap();
    let token = outcome.token.encode();
    let absolute = outcome.session.absolute_expires_at;

    // Used every two days: renewed each time, but never beyond 30 days after login.
    let mut last = outcome.session;
    for _ in 0..14 {
        h.advance(Duration::days(2));
        last = h.validate(&token).await.unwrap().session;
        assert!(last.expires_at <= absolute);
    }
    assert_eq!(last.expires_at, absolute);
    assert_eq!(last.absolute_expires_at, absolute);
    h.advance(Duration::days(2) - Duration::seconds(1));
    h.validate(&token).await.unwrap();
    h.advance(Duration::seconds(1));
    assert!(matches!(h.validate(&token).await, Err(AuthError::Unauthenticated)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_renewals_extend_once() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let token = h.login_token(&email, PASSWORD).await;
    h.advance(Duration::days(2));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (auth, token) = (h.auth.clone(), token.clone());
            tokio::spawn(async move { auth.validate(&token, &crate::common::client()).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().session.version, 1);
    }
    assert_eq!(h.validate(&token).await.unwrap().session.version, 1);
}

#[tokio::test]
async fn logout_everywhere_keeps_the_current_session_only_when_asked() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let tokens: Vec<String> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(h.login_token(&email, PASSWORD).await);
        }
        v
    };
    let other = unique_email();
    h.verified_user(&other, PASSWORD).await;
    let bystander = h.login_token(&other, PASSWORD).await;

    let current = h.validate(&tokens[0]).await.unwrap();
    assert_eq!(h.auth.logout_everywhere(&current, true).await.unwrap(), 2);
    h.validate(&tokens[0]).await.unwrap();
    for t in &tokens[1..] {
        assert!(matches!(h.validate(t).await, Err(AuthError::Unauthenticated)));
    }
    assert_eq!(h.auth.logout_everywhere(&current, false).await.unwrap(), 1);
    assert!(matches!(h.validate(&tokens[0]).await, Err(AuthError::Unauthenticated)));
    h.validate(&bystander).await.unwrap();

    // A later login works. (A revocation covers sessions created up to its instant, so
    // let the clock move as it would between two requests.)
    h.advance(Duration::seconds(1));
    let fresh = h.login_token(&email, PASSWORD).await;
    h.validate(&fresh).await.unwrap();
}

#[tokio::test]
async fn sessions_are_listed_and_revoked_by_their_owner_only() {
    let mut h = Harness::new();
    let email = unique_email();
    let user = h.verified_user(&email, PASSWORD).await;
    let first = h.login(&email, PASSWORD).await.unwrap();
    h.advance(Duration::minutes(1));
    let second = h.login(&email, PASSWORD).await.unwrap();
    let auth = h.validate(&second.token.encode()).await.unwrap();

    let list = h.auth.list_sessions(&auth).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, second.session.key.hash.to_hex());
    assert!(list[0].current);
    assert_eq!(list[1].id, first.session.key.hash.to_hex());
    assert!(!list[1].current);
    assert_eq!(list[1].created_at, first.session.created_at);
    assert_eq!(list[1].last_seen_at, first.session.renewed_at);
    assert_eq!(list[1].expires_at, first.session.expires_at);
    assert_eq!(list[1].user_agent.as_deref(), Some("Mozilla/5.0 (test)"));
    assert_eq!(list[1].ip, "192.0.2.7".parse().ok());
    assert!(list.iter().all(|s| s.id.len() == 64));

    // Another user cannot revoke it, nor learn whether it exists.
    let mallory = unique_email();
    h.verified_user(&mallory, PASSWORD).await;
    let m_auth = h.validate(&h.login_token(&mallory, PASSWORD).await).await.unwrap();
    assert!(matches!(h.auth.revoke_session(&m_auth, &list[1].id).await, Err(AuthError::NotFound)));
    for bad in ["", "zz", &"0".repeat(64), &list[1].id[..63]] {
        assert!(matches!(h.auth.revoke_session(&auth, bad).await, Err(AuthError::NotFound)));
    }
    h.validate(&first.token.encode()).await.unwrap();

    h.auth.revoke_session(&auth, &list[1].id).await.unwrap();
    assert!(matches!(h.validate(&first.token.encode()).await, Err(AuthError::Unauthenticated)));
    assert!(matches!(h.auth.revoke_session(&auth, &list[1].id).await, Err(AuthError::NotFound)));
    let list = h.auth.list_sessions(&auth).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(auth.user.id, user.id);
}

#[tokio::test]
async fn change_password_needs_the_current_one_and_revokes_the_others() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let current = h.login_token(&email, PASSWORD).await;
    let other_a = h.login_token(&email, PASSWORD).await;
    let other_b = h.login_token(&email, PASSWORD).await;
    let auth = h.validate(&current).await.unwrap();

    let new = "a completely new password";
    assert!(matches!(
        h.auth.change_password(&auth, "not my password", new, &client()).await,
        Err(AuthError::InvalidCredentials)
    ));
    assert!(matches!(
        h.auth.change_password(&auth, PASSWORD, "short", &client()).await,
        Err(AuthError::WeakPassword(_))
    ));
    // Failed attempts changed nothing.
    h.validate(&other_a).await.unwrap();
    let other_c = h.login_token(&email, PASSWORD).await;

    assert_eq!(h.auth.change_password(&auth, PASSWORD, new, &client()).await.unwrap(), 3);
    h.validate(&current).await.unwrap();
    for t in [&other_a, &other_b, &other_c] {
        assert!(matches!(h.validate(t).await, Err(AuthError::Unauthenticated)));
    }
    assert!(matches!(h.login(&email, PASSWORD).await, Err(AuthError::InvalidCredentials)));
    h.login(&email, new).await.unwrap();
}

#[tokio::test]
async fn forgot_and_reset_password() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let sessions = [h.login_token(&email, PASSWORD).await, h.login_token(&email, PASSWORD).await];

    h.auth.forgot_password(&email.to_uppercase()).await.unwrap();
    let mail = h.next_mail().await;
    assert_eq!(mail.kind, MailKind::PasswordReset);
    assert_eq!(mail.to, email);
    let token = token_in(&mail, "/reset-password");

    // A weak password is refused without burning the token.
    assert!(matches!(h.auth.reset_password(&token, "weak").await, Err(AuthError::WeakPassword(_))));
    let new = "my new password is long";
    h.auth.reset_password(&token, new).await.unwrap();
    for s in &sessions {
        assert!(matches!(h.validate(s).await, Err(AuthError::Unauthenticated)));
    }
    assert!(matches!(h.login(&email, PASSWORD).await, Err(AuthError::InvalidCredentials)));
    h.advance(Duration::seconds(1));
    let fresh = h.login_token(&email, new).await;
    h.validate(&fresh).await.unwrap();

    // Single use.
    assert!(matches!(
        h.auth.reset_password(&token, "yet another password").await,
        Err(AuthError::InvalidToken)
    ));
    for garbage in ["", "garbage", &"A".repeat(43)] {
        assert!(matches!(
            h.auth.reset_password(garbage, "yet another password").await,
            Err(AuthError::InvalidToken)
        ));
    }
}

#[tokio::test]
async fn reset_tokens_expire_and_are_superseded() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;

    h.auth.forgot_password(&email).await.unwrap();
    let expired = token_in(&h.next_mail().await, "/reset-password");
    h.advance(Duration::minutes(30));
    assert!(matches!(
        h.auth.reset_password(&expired, "another long password").await,
        Err(AuthError::InvalidToken)
    ));

    h.auth.forgot_password(&email).await.unwrap();
    let older = token_in(&h.next_mail().await, "/reset-password");
    h.advance(Duration::minutes(29));
    h.auth.forgot_password(&email).await.unwrap();
    let newer = token_in(&h.next_mail().await, "/reset-password");
    assert!(matches!(
        h.auth.reset_password(&older, "another long password").await,
        Err(AuthError::InvalidToken)
    ));
    h.auth.reset_password(&newer, "another long password").await.unwrap();
    h.login(&email, "another long password").await.unwrap();
}

#[tokio::test]
async fn a_reset_link_dies_when_the_address_changes() {
    let mut h = Harness::new();
    let email = unique_email();
    let user = h.verified_user(&email, PASSWORD).await;
    h.auth.forgot_password(&email).await.unwrap();
    let token = token_in(&h.next_mail().await, "/reset-password");
    h.accounts.set_email(user.id, &unique_email());
    assert!(matches!(
        h.auth.reset_password(&token, "another long password").await,
        Err(AuthError::InvalidToken)
    ));
}

#[tokio::test]
async fn forgot_password_answers_the_same_for_unknown_and_unverified_addresses() {
    let mut h = Harness::new();
    let unverified = unique_email();
    h.register(&unverified, PASSWORD).await;
    h.auth.forgot_password(&unique_email()).await.unwrap();
    h.assert_no_mail().await;
    // An unverified account gets its link too (issue 11, item 5): see below.
    h.auth.forgot_password(&unverified).await.unwrap();
    assert_eq!(h.next_mail().await.kind, MailKind::PasswordReset);
    assert_eq!(h.auth.forgot_password("not an email").await.unwrap_err().code(), "invalid_input");
}

/// Issue 11, item 5 (account pre-hijacking), at the flow level: someone registers the
/// owner's address with their own password; the owner's reset takes the account over,
/// verifies it, and voids the other verification links.
#[tokio::test]
async fn a_reset_takes_over_and_verifies_an_account_someone_else_registered() {
    let mut h = Harness::new();
    let email = unique_email();
    let attackers = "the attacker's own password";
    let pending = h.register(&email, attackers).await;
    assert!(matches!(h.login(&email, attackers).await, Err(AuthError::EmailNotVerified)));

    h.auth.forgot_password(&email).await.unwrap();
    let mail = h.next_mail().await;
    assert_eq!(mail.kind, MailKind::PasswordReset);
    let token = token_in(&mail, "/reset-password");
    let owners = "the owner's new password";
    h.auth.reset_password(&token, owners).await.unwrap();

    assert!(matches!(h.login(&email, attackers).await, Err(AuthError::InvalidCredentials)));
    let outcome = h.login(&email, owners).await.unwrap();
    assert!(outcome.user.email_verified);
    // The verification link mailed at registration has nothing left to do.
    assert!(matches!(h.auth.verify_email(&pending).await, Err(AuthError::InvalidToken)));
}

/// A verification link verifies and nothing more: it returns no session and leaves the
/// password alone (the mail says so).
#[tokio::test]
async fn a_verification_link_only_verifies() {
    let mut h = Harness::new();
    let email = unique_email();
    let token = h.register(&email, PASSWORD).await;
    let hash_before = h.accounts.password_hash(&email).unwrap();
    let user = h.auth.verify_email(&token).await.unwrap();
    assert!(user.email_verified);
    assert_eq!(h.accounts.password_hash(&email).unwrap(), hash_before);
    assert!(h.auth.user_sessions(user.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn admins_can_end_every_session_of_a_user() {
    let mut h = Harness::new();
    let email = unique_email();
    let user = h.verified_user(&email, PASSWORD).await;
    let a = h.login_token(&email, PASSWORD).await;
    let b = h.login_token(&email, PASSWORD).await;
    assert_eq!(h.auth.revoke_user_sessions(user.id).await.unwrap(), 2);
    for t in [&a, &b] {
        assert!(matches!(h.validate(t).await, Err(AuthError::Unauthenticated)));
    }
    assert_eq!(h.auth.revoke_user_sessions(user.id).await.unwrap(), 0);
}

#[tokio::test]
async fn a_password_change_voids_pending_reset_links() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    h.auth.forgot_password(&email).await.unwrap();
    let reset = token_in(&h.next_mail().await, "/reset-password");
    let auth = h.validate(&h.login_token(&email, PASSWORD).await).await.unwrap();
    h.auth.change_password(&auth, PASSWORD, "changed on purpose", &client()).await.unwrap();
    assert!(matches!(
        h.auth.reset_password(&reset, "attacker's password").await,
        Err(AuthError::InvalidToken)
    ));
    h.login(&email, "changed on purpose").await.unwrap();
}
