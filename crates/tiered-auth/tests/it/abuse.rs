//! The abuse protection of the flows: breached passwords refused with the reason, login
//! limits (failures count, successes do not, exact under parallel attempts), stuffing
//! blocks, per-account limits on resends and reset requests, and the fingerprint
//! policies, over the memory tier and the in-memory limiter and block list.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{Harness, PASSWORD, client, test_config, unique_email};
use auth::{
    Abuse, AbuseConfig, AuthConfig, AuthError, AuthService, ClientInfo, FingerprintPolicy,
    LoginInput,
};
use cache_core::{BlockReason, Limit};
use cache_memory::{MemoryBlockList, MemoryRateLimiter};

fn guarded(h: &Harness, config: AbuseConfig) -> AuthService {
    let abuse = Abuse::new(
        config,
        Arc::new(MemoryRateLimiter::default()),
        Arc::new(MemoryBlockList::new()),
        h.clock.clone(),
    )
    .unwrap();
    h.auth.clone().with_abuse(abuse)
}

fn login(email: &str, password: &str) -> LoginInput {
    LoginInput { email: email.to_owned(), password: password.to_owned() }
}

fn from(ip: &str) -> ClientInfo {
    ClientInfo { ip: ip.parse().ok(), ..client() }
}

#[tokio::test]
async fn common_passwords_are_refused_with_the_reason() {
    let mut h = Harness::new();
    let weak = |r: Result<_, AuthError>| match r {
        Err(AuthError::WeakPassword(reason)) => assert!(reason.contains("common"), "{reason}"),
        other => panic!("{other:?}"),
    };
    weak(
        h.auth
            .register(auth::RegisterInput {
                name: "N".into(),
                email: unique_email(),
                password: "Password123".into(),
            })
            .await,
    );
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let auth = h.validate(&h.login_token(&email, PASSWORD).await).await.unwrap();
    weak(h.auth.change_password(&auth, PASSWORD, "iloveyou", &client()).await.map(drop));
    h.auth.forgot_password(&email).await.unwrap();
    let token = crate::common::token_in(&h.next_mail().await, "/reset-password");
    weak(h.auth.reset_password(&token, "qwertyuiop").await);
    // The refusal did not burn the link.
    h.auth.reset_password(&token, "a sound new passphrase").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_the_limit_of_parallel_wrong_passwords_is_checked() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let config = AbuseConfig {
        login_per_account: Limit::new(5, Duration::from_secs(900)),
        ..AbuseConfig::default()
    };
    let auth = guarded(&h, config);
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let (auth, email) = (auth.clone(), email.clone());
            // Spread over many addresses: the account limit still holds.
            let client = from(&format!("192.0.2.{}", i % 30 + 1));
            tokio::spawn(async move { auth.login(login(&email, "wrong password"), &client).await })
        })
        .collect();
    let (mut checked, mut limited) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Err(AuthError::InvalidCredentials) => checked += 1,
            Err(AuthError::RateLimited { .. }) => limited += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((checked, limited), (5, 55));
    // Even the right password waits for the lockout.
    assert!(matches!(
        auth.login(login(&email, PASSWORD), &client()).await,
        Err(AuthError::RateLimited { .. })
    ));
    h.advance(chrono::Duration::seconds(901));
    auth.login(login(&email, PASSWORD), &client()).await.unwrap();
}

#[tokio::test]
async fn successes_do_not_count_and_case_does_not_split_an_account() {
    let mut h = Harness::new();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let auth = guarded(&h, AbuseConfig::default());
    for _ in 0..20 {
        auth.login(login(&email, PASSWORD), &client()).await.unwrap();
    }
    // Five failures from one address for one account, however it is spelled.
    for spelling in
        [email.clone(), email.to_uppercase(), format!("  {email} ")].iter().cycle().take(5)
    {
        assert!(matches!(
            auth.login(login(spelling, "nope nope"), &client()).await,
            Err(AuthError::InvalidCredentials)
        ));
    }
    match auth.login(login(&email, PASSWORD), &client()).await {
        Err(AuthError::RateLimited { limit: 5, remaining: 0, retry_after, .. }) => {
            assert_eq!(retry_after, Duration::from_secs(15 * 60));
        }
        other => panic!("{other:?}"),
    }
    // From another address the same account still logs in.
    auth.login(login(&email, PASSWORD), &from("192.0.2.99")).await.unwrap();
}

#[tokio::test]
async fn failures_across_accounts_block_the_address() {
    let h = Harness::new();
    let auth = guarded(&h, AbuseConfig::default());
    let attacker = from("203.0.113.50");
    for n in 0..10 {
        let result =
            auth.login(login(&format!("victim{n}@example.com"), "hunter22"), &attacker).await;
        assert!(matches!(result, Err(AuthError::InvalidCredentials)), "{result:?}");
    }
    let abuse = auth.abuse().unwrap();
    let block = abuse.blocked(attacker.ip.unwrap()).expect("the address is blocked");
    assert_eq!(block.reason, BlockReason::CredentialStuffing);
    assert!(abuse.blocked("203.0.113.51".parse().unwrap()).is_none());
}

#[tokio::test]
async fn resends_and_reset_requests_are_limited_per_account() {
    let h = Harness::new();
    let auth = guarded(&h, AbuseConfig::default());
    let email = unique_email();
    for _ in 0..3 {
        auth.forgot_password(&email).await.unwrap();
        auth.resend_verification(&email.to_uppercase()).await.unwrap();
    }
    assert!(matches!(auth.forgot_password(&email).await, Err(AuthError::RateLimited { .. })));
    assert!(matches!(auth.resend_verification(&email).await, Err(AuthError::RateLimited { .. })));
    // Another account is not affected.
    auth.forgot_password(&unique_email()).await.unwrap();
}

/// One session logged in by `client()`, then used by `other`, under `policy`.
async fn fingerprint(policy: FingerprintPolicy, other: ClientInfo) -> (bool, bool) {
    let mut h = Harness::with_config(AuthConfig { fingerprint: policy, ..test_config() });
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let token = h.login_token(&email, PASSWORD).await;
    let used = h.auth.validate(&token, &other).await.is_ok();
    // Whether the session survived, as seen by its original client.
    let alive = h.validate(&token).await.is_ok();
    (used, alive)
}

#[tokio::test]
async fn fingerprint_policies() {
    let new_address = from("198.51.100.1");
    let new_agent = ClientInfo { user_agent: Some("curl/8.0".into()), ..client() };
    let off = FingerprintPolicy::Off;
    let (lenient, strict) = (FingerprintPolicy::Lenient, FingerprintPolicy::Strict);
    assert_eq!(fingerprint(off, new_agent.clone()).await, (true, true));
    assert_eq!(fingerprint(off, new_address.clone()).await, (true, true));
    // Lenient: another user agent revokes; another address is only logged.
    assert_eq!(fingerprint(lenient, new_agent.clone()).await, (false, false));
    assert_eq!(fingerprint(lenient, new_address.clone()).await, (true, true));
    // Strict: either revokes.
    assert_eq!(fingerprint(strict, new_agent).await, (false, false));
    assert_eq!(fingerprint(strict, new_address).await, (false, false));
    assert_eq!(fingerprint(strict, client()).await, (true, true));
    // A user agent is compared as stored (cut at the same length).
    let long = ClientInfo { user_agent: Some("é".repeat(600)), ..client() };
    let mut h = Harness::with_config(AuthConfig { fingerprint: strict, ..test_config() });
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let token = h.auth.login(login(&email, PASSWORD), &long).await.unwrap().token.encode();
    h.auth.validate(&token, &long).await.unwrap();
}
