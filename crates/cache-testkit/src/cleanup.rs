//! `ExpiredCleanup` conformance properties. The store must be isolated per test.

use std::collections::HashSet;

use cache_core::{ExpiredCleanup, ManualClock, Purpose, SessionStore, VerificationStore};
use chrono::Duration;

use crate::{random_user, sample_session, sample_verification};

/// Expired sessions go in batches of at most `limit`, and only they go.
pub async fn delete_expired_sessions_in_batches<S>(store: &S, clock: &ManualClock)
where
    S: SessionStore + VerificationStore + ExpiredCleanup,
{
    let user = random_user();
    let mut expired = HashSet::new();
    let mut live = Vec::new();
    for i in 0..10 {
        let mut s = sample_session(clock, user);
        if i < 7 {
            s.expires_at = s.created_at + Duration::minutes(1);
            expired.insert(s.key);
        } else {
            live.push(s.clone());
        }
        store.create(&s).await.unwrap();
    }
    clock.advance(Duration::minutes(2));
    let mut batches = Vec::new();
    let mut deleted = HashSet::new();
    loop {
        let batch = store.delete_expired_sessions(3).await.unwrap();
        batches.push(batch.len());
        if batch.is_empty() {
            break;
        }
        deleted.extend(batch);
        assert!(batches.len() < 10, "cleanup does not converge: {batches:?}");
    }
    assert_eq!(batches, vec![3, 3, 1, 0]);
    assert_eq!(deleted, expired);
    for s in live {
        assert_eq!(store.get(&s.key).await.unwrap(), Some(s));
    }
}

/// Expired verifications go in batches; live ones stay consumable.
pub async fn delete_expired_verifications_in_batches<S>(store: &S, clock: &ManualClock)
where
    S: SessionStore + VerificationStore + ExpiredCleanup,
{
    let user = random_user();
    let short = Duration::minutes(1);
    let long = Duration::minutes(30);
    let expired: Vec<_> = (0..5)
        .map(|_| sample_verification(clock, user, Purpose::EmailVerification, short))
        .collect();
    let live: Vec<_> =
        (0..2).map(|_| sample_verification(clock, user, Purpose::PasswordReset, long)).collect();
    for v in expired.iter().chain(&live) {
        store.put_verification(v).await.unwrap();
    }
    clock.advance(Duration::minutes(2));
    let mut batches = Vec::new();
    loop {
        let n = store.delete_expired_verifications(2).await.unwrap();
        batches.push(n);
        if n == 0 {
            break;
        }
        assert!(batches.len() < 10, "cleanup does not converge: {batches:?}");
    }
    assert_eq!(batches, vec![2, 2, 1, 0]);
    for v in live {
        assert_eq!(store.consume(&v.hash, v.purpose).await.unwrap(), Some(v));
    }
}
