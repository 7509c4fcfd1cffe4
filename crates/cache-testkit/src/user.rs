//! `UserCache` conformance properties.

use cache_core::{Clock, ManualClock, User, UserCache};

use crate::random_user;

/// Whether the store under test is a cache or the source of truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `invalidate_user` drops the entry.
    Cache,
    /// `invalidate_user` leaves the record (there is nothing to invalidate).
    Authority,
}

pub(crate) fn sample_user(clock: &ManualClock) -> User {
    let id = random_user();
    User {
        id,
        name: "Ada Lovelace".to_owned(),
        email: format!("ada-{id}@example.com"),
        email_verified: false,
        created_at: clock.now(),
    }
}

/// A stored profile reads back equal.
pub async fn put_then_get_round_trips<S: UserCache>(store: &S, clock: &ManualClock, _: Kind) {
    let user = sample_user(clock);
    store.put_user(&user).await.unwrap();
    assert_eq!(store.get_user(user.id).await.unwrap(), Some(user));
}

/// An unknown user is a miss.
pub async fn get_missing_is_none<S: UserCache>(store: &S, _clock: &ManualClock, _: Kind) {
    assert_eq!(store.get_user(random_user()).await.unwrap(), None);
}

/// A second put replaces the profile.
pub async fn put_replaces<S: UserCache>(store: &S, clock: &ManualClock, _: Kind) {
    let mut user = sample_user(clock);
    store.put_user(&user).await.unwrap();
    user.name = "Ada King".to_owned();
    user.email_verified = true;
    store.put_user(&user).await.unwrap();
    assert_eq!(store.get_user(user.id).await.unwrap(), Some(user));
}

/// Invalidation drops a cached copy; the authority keeps its record.
pub async fn invalidate_user<S: UserCache>(store: &S, clock: &ManualClock, kind: Kind) {
    let user = sample_user(clock);
    store.put_user(&user).await.unwrap();
    store.invalidate_user(user.id).await.unwrap();
    let expected = match kind {
        Kind::Cache => None,
        Kind::Authority => Some(user.clone()),
    };
    assert_eq!(store.get_user(user.id).await.unwrap(), expected);
    // Invalidating an unknown user is fine.
    store.invalidate_user(random_user()).await.unwrap();
}
