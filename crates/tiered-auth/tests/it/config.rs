//! Configuration checks of `AuthService::new`, and the production argon2 parameters end
//! to end (the only tests that pay for them).

use crate::common::{Harness, PASSWORD, test_config, unique_email};
use auth::{Argon2Params, AuthConfig, AuthError, AuthService, PasswordPolicy};
use chrono::Duration;

fn build(h: &Harness, config: AuthConfig) -> Result<AuthService, AuthError> {
    AuthService::new(config, h.stores.clone(), h.mailer.clone(), h.clock.clone())
}

fn build_insecure(h: &Harness, config: AuthConfig) -> Result<AuthService, AuthError> {
    AuthService::new_insecure_for_tests(config, h.stores.clone(), h.mailer.clone(), h.clock.clone())
}

#[test]
fn defaults_match_the_spec() {
    let c = AuthConfig::default();
    assert_eq!(c.session_idle, Duration::days(7));
    assert_eq!(c.session_update_age, Duration::days(1));
    assert_eq!(c.session_absolute, Duration::days(30));
    assert_eq!(c.email_verification_ttl, Duration::minutes(10));
    assert_eq!(c.password_reset_ttl, Duration::minutes(30));
    assert_eq!(c.password, PasswordPolicy { min_chars: 8, max_chars: 1024 });
    assert_eq!(c.argon2, Argon2Params { memory_kib: 19456, iterations: 2, parallelism: 1 });
    assert!(c.hash_concurrency >= 1);
    assert_eq!(c.user_agent_max_len, 512);
}

#[test]
fn production_refuses_weak_argon2_parameters() {
    let h = Harness::new();
    for weak in [
        Argon2Params::INSECURE_FOR_TESTS,
        Argon2Params { memory_kib: 19455, ..Argon2Params::MINIMUM },
        Argon2Params { iterations: 1, ..Argon2Params::MINIMUM },
        Argon2Params { parallelism: 0, ..Argon2Params::MINIMUM },
    ] {
        let config = AuthConfig { argon2: weak, ..AuthConfig::default() };
        assert!(matches!(build(&h, config), Err(AuthError::Config(_))), "{weak:?}");
    }
    // The test constructor takes them.
    build_insecure(&h, test_config()).unwrap();
}

#[test]
fn inconsistent_configurations_are_refused() {
    let h = Harness::new();
    let base = test_config;
    let bad = [
        AuthConfig { session_idle: Duration::zero(), ..base() },
        AuthConfig { session_absolute: Duration::seconds(-1), ..base() },
        AuthConfig { session_update_age: Duration::days(7), ..base() },
        AuthConfig { email_verification_ttl: Duration::zero(), ..base() },
        AuthConfig { password_reset_ttl: Duration::zero(), ..base() },
        AuthConfig { password: PasswordPolicy { min_chars: 0, max_chars: 1024 }, ..base() },
        AuthConfig { password: PasswordPolicy { min_chars: 8, max_chars: 64 }, ..base() },
        AuthConfig { password: PasswordPolicy { min_chars: 200, max_chars: 128 }, ..base() },
        AuthConfig { hash_concurrency: 0, ..base() },
        AuthConfig { public_base_url: "auth.example.com".to_owned(), ..base() },
        AuthConfig { public_base_url: "https://".to_owned(), ..base() },
        AuthConfig { public_base_url: "https://a.example/?x=1".to_owned(), ..base() },
        AuthConfig { public_base_url: "javascript:alert(1)".to_owned(), ..base() },
    ];
    for config in bad {
        let err = build_insecure(&h, config.clone()).unwrap_err();
        assert_eq!(err.code(), "invalid_config", "{config:?}");
    }
}

/// The one flow at production cost: argon2id m=19456 KiB, t=2, p=1, PHC string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_argon2_parameters_end_to_end() {
    let mut h = Harness::new();
    let config = AuthConfig {
        public_base_url: "https://auth.example.test".to_owned(),
        ..AuthConfig::default()
    };
    h.auth = build(&h, config).unwrap();
    let email = unique_email();
    h.verified_user(&email, PASSWORD).await;
    let phc = h.accounts.password_hash(&email).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    h.login(&email, PASSWORD).await.unwrap();
    assert!(matches!(h.login(&email, "wrong password").await, Err(AuthError::InvalidCredentials)));
}

/// An unknown email costs an argon2 verification like a wrong password does (against a
/// dummy hash), so response times do not reveal which addresses have accounts. Counted,
/// not timed: each failed login runs exactly one verification.
#[test]
fn unknown_emails_cost_an_argon2_verification_too() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // A snapshot consumes counters (metrics-util 0.19.2+): it holds the increments since
    // the previous one, so the running total is summed here.
    let total = std::cell::Cell::new(0);
    let verifications = || {
        let increments = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .find(|(key, ..)| key.key().name() == "auth_password_verifications_total")
            .map_or(0, |(.., value)| match value {
                DebugValue::Counter(n) => n,
                _ => 0,
            });
        total.set(total.get() + increments);
        total.get()
    };
    // A current-thread runtime: the counter is recorded on this thread, where the local
    // recorder is installed (argon2 itself runs on the blocking pool).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let mut h = Harness::with_config(AuthConfig {
                argon2: Argon2Params { memory_kib: 4096, iterations: 1, parallelism: 1 },
                ..test_config()
            });
            let email = unique_email();
            h.verified_user(&email, PASSWORD).await;
            let before = verifications();
            let err = h.login(&unique_email(), PASSWORD).await.unwrap_err();
            assert!(matches!(err, AuthError::InvalidCredentials));
            assert_eq!(verifications(), before + 1, "an unknown email runs one verification");
            let err = h.login(&email, "wrong password").await.unwrap_err();
            assert!(matches!(err, AuthError::InvalidCredentials));
            assert_eq!(verifications(), before + 2, "a wrong password runs one verification");
            // The benchmark baseline of a login's verify runs the same verification.
            assert!(h.auth.verify_dummy_password().await.unwrap());
            assert_eq!(verifications(), before + 3, "the baseline runs one verification");
        })
    });
}
