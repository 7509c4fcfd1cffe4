//! `VerificationStore` conformance properties.

use cache_core::{ManualClock, Purpose, VerificationStore};
use chrono::Duration;
use futures::future::join_all;

use crate::{random_user, sample_verification};

const TTL: Duration = Duration::minutes(10);

/// A stored verification is consumed back equal.
pub async fn put_then_consume_round_trips<S: VerificationStore>(store: &S, clock: &ManualClock) {
    let v = sample_verification(clock, random_user(), Purpose::EmailVerification, TTL);
    store.put_verification(&v).await.unwrap();
    assert_eq!(store.consume(&v.hash, v.purpose).await.unwrap(), Some(v));
}

/// A token works once.
pub async fn consume_is_single_use<S: VerificationStore>(store: &S, clock: &ManualClock) {
    let v = sample_verification(clock, random_user(), Purpose::PasswordReset, TTL);
    store.put_verification(&v).await.unwrap();
    assert!(store.consume(&v.hash, v.purpose).await.unwrap().is_some());
    assert_eq!(store.consume(&v.hash, v.purpose).await.unwrap(), None);
}

/// An unknown token is a miss.
pub async fn consume_missing_is_none<S: VerificationStore>(store: &S, clock: &ManualClock) {
    let v = sample_verification(clock, random_user(), Purpose::EmailVerification, TTL);
    assert_eq!(store.consume(&v.hash, v.purpose).await.unwrap(), None);
}

/// An expired token is refused.
pub async fn consume_expired_is_none<S: VerificationStore>(store: &S, clock: &ManualClock) {
    let v = sample_verification(clock, random_user(), Purpose::EmailVerification, TTL);
    store.put_verification(&v).await.unwrap();
    clock.advance(TTL);
    assert_eq!(store.consume(&v.hash, v.purpose).await.unwrap(), None);
}

/// A token presented for another purpose is refused and stays usable for its own.
pub async fn consume_wrong_purpose_keeps_the_token<S: VerificationStore>(
    store: &S,
    clock: &ManualClock,
) {
    let v = sample_verification(clock, random_user(), Purpose::EmailVerification, TTL);
    store.put_verification(&v).await.unwrap();
    assert_eq!(store.consume(&v.hash, Purpose::PasswordReset).await.unwrap(), None);
    assert_eq!(store.consume(&v.hash, Purpose::EmailVerification).await.unwrap(), Some(v));
}

/// Of 50 concurrent consumers exactly one gets the token.
pub async fn concurrent_consumers_exactly_one_wins<S: VerificationStore + Clone + 'static>(
    store: &S,
    clock: &ManualClock,
) {
    let v = sample_verification(clock, random_user(), Purpose::PasswordReset, TTL);
    store.put_verification(&v).await.unwrap();
    let results = join_all((0..50).map(|_| {
        let (store, hash, purpose) = (store.clone(), v.hash, v.purpose);
        tokio::spawn(async move { store.consume(&hash, purpose).await })
    }))
    .await;
    let results: Vec<_> = results.into_iter().map(|r| r.expect("task")).collect();
    let winners = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
    let errors: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(winners, 1);
}

/// Deleting a user's tokens of one purpose leaves other purposes and users alone.
pub async fn delete_verifications_supersedes_older_tokens<S: VerificationStore>(
    store: &S,
    clock: &ManualClock,
) {
    let (user, other) = (random_user(), random_user());
    let emails: Vec<_> =
        (0..2).map(|_| sample_verification(clock, user, Purpose::EmailVerification, TTL)).collect();
    let reset = sample_verification(clock, user, Purpose::PasswordReset, TTL);
    let others = sample_verification(clock, other, Purpose::EmailVerification, TTL);
    for v in emails.iter().chain([&reset, &others]) {
        store.put_verification(v).await.unwrap();
    }
    assert_eq!(store.delete_verifications(user, Purpose::EmailVerification).await.unwrap(), 2);
    for v in &emails {
        assert_eq!(store.consume(&v.hash, v.purpose).await.unwrap(), None);
    }
    assert_eq!(store.consume(&reset.hash, reset.purpose).await.unwrap(), Some(reset));
    assert_eq!(store.consume(&others.hash, others.purpose).await.unwrap(), Some(others));
}
