//! `SessionStore` conformance properties. Each function is one test of the suite.

use cache_core::{Clock, Conflict, ManualClock, SessionStore, StoreError};
use chrono::Duration;
use futures::future::join_all;

use crate::{random_key, random_user, sample_session};

/// A created session reads back equal.
pub async fn create_then_get_round_trips<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = sample_session(clock, random_user());
    store.create(&session).await.unwrap();
    assert_eq!(store.get(&session.key).await.unwrap(), Some(session));
}

/// An unknown key is a miss, not an error.
pub async fn get_missing_is_none<S: SessionStore>(store: &S, _clock: &ManualClock) {
    assert_eq!(store.get(&random_key(random_user())).await.unwrap(), None);
}

/// A token claiming another user does not find the session.
pub async fn get_with_another_user_is_none<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = sample_session(clock, random_user());
    store.create(&session).await.unwrap();
    let mut forged = session.key;
    forged.user = random_user();
    assert_eq!(store.get(&forged).await.unwrap(), None);
}

/// Creating the same key twice is a conflict.
pub async fn create_existing_conflicts<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = sample_session(clock, random_user());
    store.create(&session).await.unwrap();
    let again = store.create(&session).await;
    assert!(matches!(again, Err(StoreError::Conflict(Conflict::Exists))), "{again:?}");
}

/// Past its sliding expiry a session is gone.
pub async fn expired_session_is_gone<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = sample_session(clock, random_user());
    store.create(&session).await.unwrap();
    clock.advance(Duration::minutes(59));
    assert!(store.get(&session.key).await.unwrap().is_some(), "a live session was not found");
    clock.advance(Duration::minutes(1));
    assert_eq!(
        store.get(&session.key).await.unwrap(),
        None,
        "a session past its sliding expiry was served"
    );
}

/// Past its absolute expiry a session is gone, however recently it was extended.
pub async fn absolute_expiry_is_enforced<S: SessionStore>(store: &S, clock: &ManualClock) {
    let mut session = sample_session(clock, random_user());
    session.absolute_expires_at = session.created_at + Duration::hours(2);
    store.create(&session).await.unwrap();
    let mut version = session.version;
    for _ in 0..3 {
        clock.advance(Duration::minutes(30));
        let extended = store
            .extend(&session.key, version, clock.now() + Duration::hours(1))
            .await
            .unwrap()
            .expect("live session extends");
        assert!(extended.expires_at <= session.absolute_expires_at);
        version = extended.version;
    }
    clock.set(session.absolute_expires_at);
    assert_eq!(store.get(&session.key).await.unwrap(), None);
}

/// Extending moves the sliding expiry, stamps `renewed_at` and bumps the version.
pub async fn extend_moves_expiry_and_bumps_version<S: SessionStore>(
    store: &S,
    clock: &ManualClock,
) {
    let session = sample_session(clock, random_user());
    store.create(&session).await.unwrap();
    clock.advance(Duration::minutes(10));
    let now = clock.now();
    let extended = store
        .extend(&session.key, session.version, now + Duration::hours(1))
        .await
        .unwrap()
        .expect("live session extends");
    assert_eq!(extended.version, session.version + 1);
    assert_eq!(extended.renewed_at, now);
    assert_eq!(extended.expires_at, now + Duration::hours(1));
    assert_eq!(extended.created_at, session.created_at);
    assert_eq!(extended.key, session.key);
    assert_eq!(store.get(&session.key).await.unwrap(), Some(extended.clone()));
    // Still alive past the original expiry.
    clock.advance(Duration::minutes(55));
    assert_eq!(store.get(&session.key).await.unwrap(), Some(extended));
}

/// No extension passes the absolute expiry.
pub async fn extend_never_passes_absolute_expiry<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = sample_session(clock, random_user());
    store.create(&session).await.unwrap();
    let extended = store
        .extend(&session.key, 0, clock.now() + Duration::days(365))
        .await
        .unwrap()
        .expect("live session extends");
    assert_eq!(extended.expires_at, session.absolute_expires_at);
}

/// A stale version loses the compare-and-set.
pub async fn extend_with_stale_version_conflicts<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = sample_session(clock, random_user());
    store.create(&session).await.unwrap();
    let wrong = store.extend(&session.key, 7, clock.now() + Duration::hours(2)).await;
    assert!(matches!(wrong, Err(StoreError::Conflict(Conflict::Version))), "{wrong:?}");
    store.extend(&session.key, 0, clock.now() + Duration::hours(2)).await.unwrap().unwrap();
    let stale = store.extend(&session.key, 0, clock.now() + Duration::hours(3)).await;
    assert!(matches!(stale, Err(StoreError::Conflict(Conflict::Version))), "{stale:?}");
    assert_eq!(store.get(&session.key).await.unwrap().unwrap().version, 1);
}

/// Extending an unknown session finds nothing.
pub async fn extend_missing_is_none<S: SessionStore>(store: &S, clock: &ManualClock) {
    let key = random_key(random_user());
    assert_eq!(store.extend(&key, 0, clock.now() + Duration::hours(1)).await.unwrap(), None);
}

/// An expired session cannot be brought back by extending it.
pub async fn extend_expired_is_none<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = sample_session(clock, random_user());
    store.create(&session).await.unwrap();
    clock.advance(Duration::hours(2));
    let extended = store.extend(&session.key, 0, clock.now() + Duration::hours(1)).await.unwrap();
    assert_eq!(extended, None);
    assert_eq!(store.get(&session.key).await.unwrap(), None);
}

/// Of concurrent extensions from the same version exactly one wins.
pub async fn concurrent_extends_one_wins<S: SessionStore + Clone + 'static>(
    store: &S,
    clock: &ManualClock,
) {
    let session = sample_session(clock, random_user());
    store.create(&session).await.unwrap();
    let new_expiry = clock.now() + Duration::hours(2);
    let results = join_all((0..10).map(|_| {
        let (store, key) = (store.clone(), session.key);
        tokio::spawn(async move { store.extend(&key, 0, new_expiry).await })
    }))
    .await;
    let results: Vec<_> = results.into_iter().map(|r| r.expect("task")).collect();
    let wins = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(StoreError::Conflict(Conflict::Version))))
        .count();
    assert_eq!((wins, conflicts), (1, 9), "{results:?}");
}

/// Delete reports whether it deleted, and deleting twice is fine.
pub async fn delete_is_idempotent<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = sample_session(clock, random_user());
    store.create(&session).await.unwrap();
    assert!(store.delete(&session.key).await.unwrap());
    assert_eq!(store.get(&session.key).await.unwrap(), None);
    assert!(!store.delete(&session.key).await.unwrap());
}

/// Revoking all of a user's sessions but one keeps that one and other users' sessions.
pub async fn delete_user_sessions_keeps_one<S: SessionStore>(store: &S, clock: &ManualClock) {
    let (alice, bob) = (random_user(), random_user());
    let mine: Vec<_> = (0..3).map(|_| sample_session(clock, alice)).collect();
    let theirs = sample_session(clock, bob);
    for s in mine.iter().chain([&theirs]) {
        store.create(s).await.unwrap();
    }
    let deleted = store.delete_user_sessions(alice, Some(mine[0].key.hash)).await.unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(store.get(&mine[0].key).await.unwrap(), Some(mine[0].clone()));
    for s in &mine[1..] {
        assert_eq!(store.get(&s.key).await.unwrap(), None);
    }
    assert_eq!(store.get(&theirs.key).await.unwrap(), Some(theirs));
    let listed = store.list_user_sessions(alice).await.unwrap();
    assert_eq!(listed, vec![mine[0].clone()]);
}

/// Revoking all of a user's sessions without a survivor leaves none.
pub async fn delete_user_sessions_without_keep_deletes_all<S: SessionStore>(
    store: &S,
    clock: &ManualClock,
) {
    let user = random_user();
    let sessions: Vec<_> = (0..3).map(|_| sample_session(clock, user)).collect();
    for s in &sessions {
        store.create(s).await.unwrap();
    }
    assert_eq!(store.delete_user_sessions(user, None).await.unwrap(), 3);
    for s in &sessions {
        assert_eq!(store.get(&s.key).await.unwrap(), None);
    }
    assert!(store.list_user_sessions(user).await.unwrap().is_empty());
    assert_eq!(store.delete_user_sessions(user, None).await.unwrap(), 0);
}

/// Listing returns the user's live sessions, most recently renewed first.
pub async fn list_user_sessions_live_newest_first<S: SessionStore>(store: &S, clock: &ManualClock) {
    let user = random_user();
    let mut short = sample_session(clock, user);
    short.expires_at = clock.now() + Duration::minutes(5);
    store.create(&short).await.unwrap();
    let mut expected = Vec::new();
    for _ in 0..3 {
        clock.advance(Duration::seconds(10));
        let s = sample_session(clock, user);
        store.create(&s).await.unwrap();
        expected.push(s);
    }
    store.create(&sample_session(clock, random_user())).await.unwrap();
    // Renewing the oldest makes it the most recent.
    clock.advance(Duration::seconds(10));
    let renewed =
        store.extend(&expected[0].key, 0, clock.now() + Duration::hours(1)).await.unwrap().unwrap();
    expected[0] = renewed;
    clock.advance(Duration::minutes(5));
    expected.sort_by_key(|s| std::cmp::Reverse(s.renewed_at));
    assert_eq!(store.list_user_sessions(user).await.unwrap(), expected);
}

/// A cache fill of an unknown session is stored.
pub async fn put_stores_a_snapshot<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = sample_session(clock, random_user());
    assert!(store.put(&session).await.unwrap());
    assert_eq!(store.get(&session.key).await.unwrap(), Some(session));
}

/// A late cache fill never brings a deleted session back.
pub async fn put_never_revives_a_deleted_session<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = sample_session(clock, random_user());
    store.create(&session).await.unwrap();
    assert!(store.delete(&session.key).await.unwrap());
    assert!(!store.put(&session).await.unwrap(), "a cache fill stored a deleted session");
    assert_eq!(store.get(&session.key).await.unwrap(), None, "a deleted session was served");
}

/// A late cache fill never brings back a session covered by a revoke-all, but a
/// session created afterwards is stored, and the kept one may be refreshed.
pub async fn put_never_revives_revoked_user_sessions<S: SessionStore>(
    store: &S,
    clock: &ManualClock,
) {
    let user = random_user();
    let (old, kept) = (sample_session(clock, user), sample_session(clock, user));
    store.create(&old).await.unwrap();
    store.create(&kept).await.unwrap();
    clock.advance(Duration::seconds(1));
    assert_eq!(store.delete_user_sessions(user, Some(kept.key.hash)).await.unwrap(), 1);
    assert!(!store.put(&old).await.unwrap());
    assert_eq!(store.get(&old.key).await.unwrap(), None);
    assert_eq!(store.get(&kept.key).await.unwrap(), Some(kept.clone()));
    clock.advance(Duration::seconds(1));
    let newer = sample_session(clock, user);
    assert!(store.put(&newer).await.unwrap());
    assert_eq!(store.get(&newer.key).await.unwrap(), Some(newer));
}

/// A cache fill with an older version than the stored one is ignored.
pub async fn put_keeps_the_newer_version<S: SessionStore>(store: &S, clock: &ManualClock) {
    let session = sample_session(clock, random_user());
    store.create(&session).await.unwrap();
    clock.advance(Duration::minutes(1));
    let extended =
        store.extend(&session.key, 0, clock.now() + Duration::hours(1)).await.unwrap().unwrap();
    assert!(!store.put(&session).await.unwrap());
    assert_eq!(store.get(&session.key).await.unwrap(), Some(extended));
}

/// Concurrent logins of one user all land in the user's index.
pub async fn concurrent_creates_are_all_listed<S: SessionStore + Clone + 'static>(
    store: &S,
    clock: &ManualClock,
) {
    let user = random_user();
    let sessions: Vec<_> = (0..50).map(|_| sample_session(clock, user)).collect();
    let tasks = sessions.into_iter().map(|s| {
        let store = store.clone();
        tokio::spawn(async move { store.create(&s).await })
    });
    for result in join_all(tasks).await {
        result.expect("task").unwrap();
    }
    assert_eq!(store.list_user_sessions(user).await.unwrap().len(), 50);
}
