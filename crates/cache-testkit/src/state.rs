//! `SessionStateStore` conformance properties. Each function is one test of the suite.

use cache_core::token::Secret;
use cache_core::{
    Clock, Conflict, ManualClock, SessionStateStore, StateKey, StateRecord, StoreError, UserId,
};
use chrono::Duration;

use crate::random_user;

const TTL: Duration = Duration::minutes(30);

/// A fresh random state key (as if from a new session cookie).
pub fn random_state_key() -> StateKey {
    let secret = Secret::generate().expect("OS random number generator");
    StateKey::of(&secret.encode())
}

/// A state of two entries (values as actix-session writes them: JSON), bound to `user`,
/// expiring `TTL` from the clock's now.
pub fn sample_state(clock: &ManualClock, user: Option<UserId>) -> StateRecord {
    StateRecord {
        state: [
            ("user_id".to_owned(), user.map_or("null".to_owned(), |u| u.to_string())),
            ("greeting".to_owned(), "\"hello, wörld {}\"".to_owned()),
        ]
        .into_iter()
        .collect(),
        user,
        expires_at: clock.now() + TTL,
    }
}

/// A saved state loads back equal.
pub async fn save_then_load_round_trips<S: SessionStateStore>(store: &S, clock: &ManualClock) {
    let (key, record) = (random_state_key(), sample_state(clock, Some(random_user())));
    store.save_state(&key, &record).await.unwrap();
    assert_eq!(store.load_state(&key).await.unwrap(), Some(record));
    let anonymous = (random_state_key(), sample_state(clock, None));
    store.save_state(&anonymous.0, &anonymous.1).await.unwrap();
    assert_eq!(store.load_state(&anonymous.0).await.unwrap(), Some(anonymous.1));
}

/// An unknown key is a miss, not an error; the map may be empty.
pub async fn load_missing_is_none<S: SessionStateStore>(store: &S, clock: &ManualClock) {
    assert_eq!(store.load_state(&random_state_key()).await.unwrap(), None);
    let mut empty = sample_state(clock, None);
    empty.state.clear();
    let key = random_state_key();
    store.save_state(&key, &empty).await.unwrap();
    assert_eq!(store.load_state(&key).await.unwrap(), Some(empty));
}

/// Saving over a live state is a conflict and leaves it as it was.
pub async fn save_over_a_live_state_conflicts<S: SessionStateStore>(
    store: &S,
    clock: &ManualClock,
) {
    let (key, first) = (random_state_key(), sample_state(clock, None));
    store.save_state(&key, &first).await.unwrap();
    let second = sample_state(clock, Some(random_user()));
    let result = store.save_state(&key, &second).await;
    assert!(matches!(result, Err(StoreError::Conflict(Conflict::Exists))), "{result:?}");
    assert_eq!(store.load_state(&key).await.unwrap(), Some(first));
}

/// A state is gone once the clock passes its expiry, and its key can be saved again.
pub async fn expired_state_is_gone<S: SessionStateStore>(store: &S, clock: &ManualClock) {
    let (key, record) = (random_state_key(), sample_state(clock, None));
    store.save_state(&key, &record).await.unwrap();
    clock.advance(TTL - Duration::seconds(1));
    assert!(store.load_state(&key).await.unwrap().is_some());
    clock.advance(Duration::seconds(1));
    assert_eq!(store.load_state(&key).await.unwrap(), None);
    let again = sample_state(clock, None);
    store.save_state(&key, &again).await.unwrap();
    assert_eq!(store.load_state(&key).await.unwrap(), Some(again));
}

/// An update replaces the map, the user and the expiry of a live state.
pub async fn update_replaces_a_live_state<S: SessionStateStore>(store: &S, clock: &ManualClock) {
    let (key, record) = (random_state_key(), sample_state(clock, None));
    store.save_state(&key, &record).await.unwrap();
    let mut changed = sample_state(clock, Some(random_user()));
    changed.state.insert("counter".to_owned(), "2".to_owned());
    changed.expires_at = clock.now() + TTL * 2;
    assert!(store.update_state(&key, &changed).await.unwrap());
    assert_eq!(store.load_state(&key).await.unwrap(), Some(changed));
}

/// An update of a missing or expired state says so and writes nothing.
pub async fn update_of_a_missing_or_expired_state_is_refused<S: SessionStateStore>(
    store: &S,
    clock: &ManualClock,
) {
    let key = random_state_key();
    assert!(!store.update_state(&key, &sample_state(clock, None)).await.unwrap());
    assert_eq!(store.load_state(&key).await.unwrap(), None);
    store.save_state(&key, &sample_state(clock, None)).await.unwrap();
    clock.advance(TTL);
    let late = sample_state(clock, None);
    assert!(!store.update_state(&key, &late).await.unwrap());
    assert_eq!(store.load_state(&key).await.unwrap(), None);
}

/// `update_state_ttl` moves the expiry (forward or back) of a live state only.
pub async fn update_ttl_moves_the_expiry<S: SessionStateStore>(store: &S, clock: &ManualClock) {
    let (key, record) = (random_state_key(), sample_state(clock, Some(random_user())));
    store.save_state(&key, &record).await.unwrap();
    let later = clock.now() + TTL * 3;
    assert!(store.update_state_ttl(&key, later).await.unwrap());
    clock.advance(TTL * 2);
    let expected = StateRecord { expires_at: later, ..record.clone() };
    assert_eq!(store.load_state(&key).await.unwrap(), Some(expected));
    assert!(store.update_state_ttl(&key, clock.now() + Duration::seconds(5)).await.unwrap());
    clock.advance(Duration::seconds(5));
    assert_eq!(store.load_state(&key).await.unwrap(), None);
    assert!(!store.update_state_ttl(&key, clock.now() + TTL).await.unwrap());
    assert_eq!(store.load_state(&key).await.unwrap(), None);
    assert!(!store.update_state_ttl(&random_state_key(), clock.now() + TTL).await.unwrap());
}

/// A deleted state is gone; deleting again (or a key never saved) is fine.
pub async fn delete_is_idempotent<S: SessionStateStore>(store: &S, clock: &ManualClock) {
    let (key, other) = (random_state_key(), random_state_key());
    store.save_state(&key, &sample_state(clock, None)).await.unwrap();
    store.save_state(&other, &sample_state(clock, None)).await.unwrap();
    store.delete_state(&key).await.unwrap();
    assert_eq!(store.load_state(&key).await.unwrap(), None);
    store.delete_state(&key).await.unwrap();
    store.delete_state(&random_state_key()).await.unwrap();
    assert!(store.load_state(&other).await.unwrap().is_some(), "another state was deleted");
    assert!(!store.update_state(&key, &sample_state(clock, None)).await.unwrap());
}

/// "Log this user out everywhere": every state bound to the user goes, the others stay.
pub async fn delete_user_states_deletes_only_theirs<S: SessionStateStore>(
    store: &S,
    clock: &ManualClock,
) {
    let (user, other) = (random_user(), random_user());
    let theirs = [random_state_key(), random_state_key(), random_state_key()];
    for key in &theirs {
        store.save_state(key, &sample_state(clock, Some(user))).await.unwrap();
    }
    let (kept, anonymous) = (random_state_key(), random_state_key());
    store.save_state(&kept, &sample_state(clock, Some(other))).await.unwrap();
    store.save_state(&anonymous, &sample_state(clock, None)).await.unwrap();
    assert_eq!(store.delete_user_states(user).await.unwrap(), 3);
    for key in &theirs {
        assert_eq!(store.load_state(key).await.unwrap(), None);
    }
    assert!(store.load_state(&kept).await.unwrap().is_some());
    assert!(store.load_state(&anonymous).await.unwrap().is_some());
    assert_eq!(store.delete_user_states(user).await.unwrap(), 0);
}

/// A state moved to another user by an update is deleted with its new user only.
pub async fn delete_user_states_follows_rebinding<S: SessionStateStore>(
    store: &S,
    clock: &ManualClock,
) {
    let (first, second) = (random_user(), random_user());
    let key = random_state_key();
    store.save_state(&key, &sample_state(clock, Some(first))).await.unwrap();
    assert!(store.update_state(&key, &sample_state(clock, Some(second))).await.unwrap());
    assert_eq!(store.delete_user_states(first).await.unwrap(), 0);
    assert!(store.load_state(&key).await.unwrap().is_some());
    assert_eq!(store.delete_user_states(second).await.unwrap(), 1);
    assert_eq!(store.load_state(&key).await.unwrap(), None);
}

/// A cache fill stores whatever is there.
pub async fn put_overwrites<S: SessionStateStore>(store: &S, clock: &ManualClock) {
    let key = random_state_key();
    store.put_state(&key, &sample_state(clock, None)).await.unwrap();
    let newer = sample_state(clock, Some(random_user()));
    store.put_state(&key, &newer).await.unwrap();
    assert_eq!(store.load_state(&key).await.unwrap(), Some(newer));
}
