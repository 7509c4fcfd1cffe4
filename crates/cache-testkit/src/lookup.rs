//! `SessionLookup` conformance properties: the combined session-and-user read agrees
//! with `SessionStore::get` and `UserCache::get_user`.

use cache_core::{
    Clock as _, ManualClock, Session, SessionLookup, SessionWithUser, User, UserCache,
};
use chrono::Duration;

use crate::user::{Kind, sample_user};
use crate::{random_key, random_user, sample_session};

/// A profile put into the store and a session of that user created in it.
async fn user_with_session<S>(store: &S, clock: &ManualClock) -> (User, Session)
where
    S: SessionLookup + UserCache,
{
    let user = sample_user(clock);
    store.put_user(&user).await.unwrap();
    let session = sample_session(clock, user.id);
    store.create(&session).await.unwrap();
    (user, session)
}

/// An unknown key is a miss, not an error.
pub async fn lookup_missing_is_none<S>(store: &S, _clock: &ManualClock, _: Kind)
where
    S: SessionLookup + UserCache,
{
    assert_eq!(store.get_with_user(&random_key(random_user())).await.unwrap(), None);
}

/// The session and its user's profile come back together, equal to what was stored.
pub async fn lookup_returns_the_session_and_its_user<S>(store: &S, clock: &ManualClock, _: Kind)
where
    S: SessionLookup + UserCache,
{
    let (user, session) = user_with_session(store, clock).await;
    let found = store.get_with_user(&session.key).await.unwrap();
    assert_eq!(found, Some(SessionWithUser { session: session.clone(), user: Some(user) }));
    // And it agrees with the two separate reads.
    assert_eq!(store.get(&session.key).await.unwrap(), Some(session));
}

/// A session whose user the store does not know is still found, without a user.
pub async fn lookup_without_a_known_user_gives_the_session<S>(
    store: &S,
    clock: &ManualClock,
    _: Kind,
) where
    S: SessionLookup + UserCache,
{
    let session = sample_session(clock, random_user());
    store.create(&session).await.unwrap();
    let found = store.get_with_user(&session.key).await.unwrap();
    assert_eq!(found, Some(SessionWithUser::alone(session)));
}

/// A token claiming another user finds nothing, even when that user is known.
pub async fn lookup_with_another_user_is_none<S>(store: &S, clock: &ManualClock, _: Kind)
where
    S: SessionLookup + UserCache,
{
    let (owner, other) = (sample_user(clock), sample_user(clock));
    store.put_user(&owner).await.unwrap();
    store.put_user(&other).await.unwrap();
    let session = sample_session(clock, owner.id);
    store.create(&session).await.unwrap();
    let mut forged = session.key;
    forged.user = other.id;
    assert_eq!(store.get_with_user(&forged).await.unwrap(), None);
}

/// Expired, deleted and user-revoked sessions are never returned, user or not.
pub async fn lookup_hides_expired_and_revoked_sessions<S>(store: &S, clock: &ManualClock, _: Kind)
where
    S: SessionLookup + UserCache,
{
    let user = sample_user(clock);
    store.put_user(&user).await.unwrap();
    let deleted = sample_session(clock, user.id);
    let revoked = sample_session(clock, user.id);
    let mut expiring = sample_session(clock, user.id);
    expiring.expires_at = clock.now() + Duration::minutes(5);
    for s in [&deleted, &revoked, &expiring] {
        store.create(s).await.unwrap();
        assert!(store.get_with_user(&s.key).await.unwrap().is_some());
    }
    store.delete(&deleted.key).await.unwrap();
    assert_eq!(store.get_with_user(&deleted.key).await.unwrap(), None);
    clock.advance(Duration::minutes(5));
    assert_eq!(store.get_with_user(&expiring.key).await.unwrap(), None);
    assert!(store.get_with_user(&revoked.key).await.unwrap().is_some());
    store.delete_user_sessions(user.id, None).await.unwrap();
    assert_eq!(store.get_with_user(&revoked.key).await.unwrap(), None);
}

/// A replaced profile is what the next lookup returns.
pub async fn lookup_sees_a_replaced_profile<S>(store: &S, clock: &ManualClock, _: Kind)
where
    S: SessionLookup + UserCache,
{
    let (mut user, session) = user_with_session(store, clock).await;
    assert!(store.get_with_user(&session.key).await.unwrap().is_some());
    user.name = "Ada King".to_owned();
    user.email_verified = true;
    store.put_user(&user).await.unwrap();
    let found = store.get_with_user(&session.key).await.unwrap().expect("live session");
    assert_eq!(found.user, Some(user));
}

/// After `invalidate_user` a cache no longer returns the profile (the session stays);
/// the authority still does.
pub async fn lookup_after_invalidate_user<S>(store: &S, clock: &ManualClock, kind: Kind)
where
    S: SessionLookup + UserCache,
{
    let (user, session) = user_with_session(store, clock).await;
    store.invalidate_user(user.id).await.unwrap();
    let expected = match kind {
        Kind::Cache => None,
        Kind::Authority => Some(user),
    };
    let found = store.get_with_user(&session.key).await.unwrap().expect("live session");
    assert_eq!(found, SessionWithUser { session, user: expected });
}
