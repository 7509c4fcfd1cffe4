//! Unit tests of what the conformance suite cannot see: the tier's own ttl, its bound,
//! fences against racing writes, revocations from another instance, clearing.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use cache_core::token::Secret;
use cache_core::{
    Clock, ManualClock, Purpose, Revocation, RevocationSink, Session, SessionKey, SessionStore,
    User, UserCache, UserId, Verification, VerificationStore,
};
use chrono::Duration;

use crate::entry::Key;
use crate::index::Kind;
use crate::{MemoryConfig, MemoryStore};

fn store_with(clock: &Arc<ManualClock>, config: MemoryConfig) -> MemoryStore {
    MemoryStore::new(config, clock.clone())
}

fn store(clock: &Arc<ManualClock>) -> MemoryStore {
    store_with(clock, MemoryConfig::default())
}

fn user() -> UserId {
    UserId::random().unwrap()
}

fn session(clock: &ManualClock, user: UserId) -> Session {
    let now = clock.now();
    Session {
        key: SessionKey { user, hash: Secret::generate().unwrap().hash() },
        created_at: now,
        renewed_at: now,
        expires_at: now + Duration::hours(1),
        absolute_expires_at: now + Duration::days(1),
        user_agent: Some("unit test".to_owned()),
        ip: None,
        version: 0,
    }
}

fn profile(clock: &ManualClock) -> User {
    let id = user();
    User {
        id,
        name: "Grace".to_owned(),
        email: format!("grace-{id}@example.com"),
        email_verified: true,
        created_at: clock.now(),
    }
}

fn verification(clock: &ManualClock, user: UserId, purpose: Purpose) -> Verification {
    let now = clock.now();
    Verification {
        hash: Secret::generate().unwrap().hash(),
        purpose,
        user,
        identifier: format!("{user}@example.com"),
        created_at: now,
        expires_at: now + Duration::minutes(10),
    }
}

#[tokio::test]
async fn tier_name_is_memory() {
    let s = store(&ManualClock::starting_now());
    assert_eq!(SessionStore::tier(&s), "memory");
    assert_eq!(UserCache::tier(&s), "memory");
    assert_eq!(VerificationStore::tier(&s), "memory");
}

#[tokio::test]
async fn put_after_delete_is_refused() {
    let clock = ManualClock::starting_now();
    let s = store(&clock);
    let sess = session(&clock, user());
    // Deleting a session this tier never held still fences it: the fill may be in flight.
    assert!(!s.delete(&sess.key).await.unwrap());
    assert!(!s.put(&sess).await.unwrap());
    s.create(&sess).await.unwrap();
    assert_eq!(s.get(&sess.key).await.unwrap(), None);
    // Even a newer version of it stays out.
    let newer = sess.extended(clock.now() + Duration::hours(2), clock.now());
    assert!(!s.put(&newer).await.unwrap());
    assert_eq!(s.get(&sess.key).await.unwrap(), None);
}

#[tokio::test]
async fn fence_refuses_older_sessions_but_not_newer_ones_and_spares_the_kept_one() {
    let clock = ManualClock::starting_now();
    let s = store(&clock);
    let u = user();
    let (old, kept, other) = (session(&clock, u), session(&clock, u), session(&clock, user()));
    for x in [&old, &kept, &other] {
        assert!(s.put(x).await.unwrap());
    }
    clock.advance(Duration::seconds(1));
    assert_eq!(s.delete_user_sessions(u, Some(kept.key.hash)).await.unwrap(), 1);
    assert!(!s.put(&old).await.unwrap(), "an older session is refused");
    assert_eq!(s.get(&old.key).await.unwrap(), None);
    assert_eq!(s.get(&kept.key).await.unwrap(), Some(kept.clone()));
    assert_eq!(s.get(&other.key).await.unwrap(), Some(other));
    // The kept session can still be refreshed, e.g. by a renewal below.
    let renewed = kept.extended(clock.now() + Duration::hours(1), clock.now());
    assert!(s.put(&renewed).await.unwrap());
    assert_eq!(s.get(&kept.key).await.unwrap(), Some(renewed));
    // A login after the revocation is cached.
    clock.advance(Duration::seconds(1));
    let newer = session(&clock, u);
    assert!(s.put(&newer).await.unwrap());
    assert_eq!(s.get(&newer.key).await.unwrap(), Some(newer.clone()));
    // A second revocation without survivor takes the kept one too.
    clock.advance(Duration::seconds(1));
    assert_eq!(s.delete_user_sessions(u, None).await.unwrap(), 2);
    assert_eq!(s.get(&kept.key).await.unwrap(), None);
    assert!(!s.put(&kept).await.unwrap());
}

#[tokio::test]
async fn a_session_written_past_the_fence_is_still_hidden() {
    // Simulates the race the read-path check exists for: a fill that checked the fence
    // before it was recorded lands after the eviction, unindexed.
    let clock = ManualClock::starting_now();
    let s = store(&clock);
    let sess = session(&clock, user());
    let value = s.inner.cached_session(sess.clone(), clock.now()).unwrap();
    s.inner.main.insert(Key::Session(sess.key), value);
    assert_eq!(s.get(&sess.key).await.unwrap(), Some(sess.clone()));
    assert_eq!(s.delete_user_sessions(sess.key.user, None).await.unwrap(), 0);
    assert_eq!(s.get(&sess.key).await.unwrap(), None);
    assert_eq!(s.extend(&sess.key, 0, clock.now() + Duration::hours(2)).await.unwrap(), None);
}

#[tokio::test]
async fn the_tier_ttl_caps_entries_through_the_clock() {
    let clock = ManualClock::starting_now();
    let s = store(&clock); // ttl 30 s
    let sess = session(&clock, user());
    let prof = profile(&clock);
    let ver = verification(&clock, sess.key.user, Purpose::EmailVerification);
    s.create(&sess).await.unwrap();
    s.put_user(&prof).await.unwrap();
    s.put_verification(&ver).await.unwrap();
    clock.advance(Duration::seconds(29));
    assert_eq!(s.get(&sess.key).await.unwrap(), Some(sess.clone()));
    assert_eq!(s.get_user(prof.id).await.unwrap(), Some(prof.clone()));
    clock.advance(Duration::seconds(1));
    assert_eq!(s.get(&sess.key).await.unwrap(), None, "the session still lives, but too stale");
    assert_eq!(s.get_user(prof.id).await.unwrap(), None);
    assert_eq!(s.consume(&ver.hash, ver.purpose).await.unwrap(), None);
    assert!(s.list_user_sessions(sess.key.user).await.unwrap().is_empty());
    // A fresh fill of the same session is served again for another ttl.
    assert!(s.put(&sess).await.unwrap());
    assert_eq!(s.get(&sess.key).await.unwrap(), Some(sess));
}

#[tokio::test]
async fn a_short_lived_session_expires_before_the_ttl() {
    let clock = ManualClock::starting_now();
    let s = store(&clock);
    let mut sess = session(&clock, user());
    sess.expires_at = clock.now() + Duration::seconds(10);
    s.create(&sess).await.unwrap();
    clock.advance(Duration::seconds(10));
    assert_eq!(s.get(&sess.key).await.unwrap(), None);
    // An expired snapshot is not cached at all.
    assert!(!s.put(&sess).await.unwrap());
}

#[tokio::test]
async fn size_stays_bounded() {
    let clock = ManualClock::starting_now();
    let max = 200;
    let s = store_with(&clock, MemoryConfig { max_entries: max, ..MemoryConfig::default() });
    for _ in 0..10 * max {
        s.put(&session(&clock, user())).await.unwrap();
    }
    for _ in 0..max {
        s.put_user(&profile(&clock)).await.unwrap();
    }
    s.inner.main.run_pending_tasks();
    s.inner.index.run_pending_tasks();
    let count = s.entry_count();
    assert!(count > 0 && count <= max, "{count} entries, max {max}");
    assert!(s.inner.index.entry_count() <= max);
    // Every entry weighs a few hundred bytes; the estimate follows evictions down.
    let bytes = s.weighted_size();
    assert!(bytes >= count * 200 && bytes <= count * 1000, "{bytes} bytes for {count} entries");
}

#[tokio::test]
async fn weighted_size_returns_to_zero_when_everything_is_gone() {
    let clock = ManualClock::starting_now();
    let s = store(&clock);
    assert_eq!(s.weighted_size(), 0);
    let sess = session(&clock, user());
    s.create(&sess).await.unwrap();
    s.put(&sess).await.unwrap(); // replaced: counted once
    let prof = profile(&clock);
    s.put_user(&prof).await.unwrap();
    s.put_user(&prof).await.unwrap();
    let ver = verification(&clock, sess.key.user, Purpose::PasswordReset);
    s.put_verification(&ver).await.unwrap();
    s.inner.main.run_pending_tasks();
    let one_each = s.weighted_size();
    assert!(one_each > 0);
    s.extend(&sess.key, 0, clock.now() + Duration::hours(2)).await.unwrap().unwrap();
    s.inner.main.run_pending_tasks();
    assert_eq!(s.weighted_size(), one_each, "an extension replaces, it does not add");
    s.delete(&sess.key).await.unwrap();
    s.invalidate_user(prof.id).await.unwrap();
    s.consume(&ver.hash, ver.purpose).await.unwrap().unwrap();
    s.inner.main.run_pending_tasks();
    assert_eq!(s.weighted_size(), 0);
}

#[tokio::test]
async fn revocations_from_another_instance_apply_with_their_own_time() {
    let clock = ManualClock::starting_now();
    let (here, there) = (store(&clock), store(&clock));
    let u = user();
    let (a, b, kept) = (session(&clock, u), session(&clock, u), session(&clock, u));
    for x in [&a, &b, &kept] {
        here.put(x).await.unwrap();
        there.put(x).await.unwrap();
    }
    clock.advance(Duration::seconds(1));
    let revoked_at = clock.now();
    // A login on this instance after the other instance's revocation, before it arrives.
    clock.advance(Duration::seconds(1));
    let later = session(&clock, u);
    here.put(&later).await.unwrap();

    there.delete(&a.key).await.unwrap();
    there.delete_user_sessions(u, Some(kept.key.hash)).await.unwrap();
    here.apply_revocations(&[
        Revocation::Session { key: a.key, at: revoked_at },
        Revocation::AllOfUser { user: u, keep: Some(kept.key.hash), at: revoked_at },
    ])
    .await
    .unwrap();

    for gone in [&a, &b] {
        assert_eq!(here.get(&gone.key).await.unwrap(), None);
        assert!(!here.put(gone).await.unwrap(), "a revoked session stays out");
    }
    assert_eq!(here.get(&kept.key).await.unwrap(), Some(kept.clone()));
    assert_eq!(here.get(&later.key).await.unwrap(), Some(later.clone()), "created after");
    let mut listed = here.list_user_sessions(u).await.unwrap();
    listed.sort_by_key(|s| s.created_at);
    assert_eq!(listed, vec![kept, later]);
}

#[tokio::test]
async fn an_older_revocation_arriving_late_does_not_weaken_the_fence() {
    let clock = ManualClock::starting_now();
    let s = store(&clock);
    let u = user();
    let first = session(&clock, u);
    clock.advance(Duration::seconds(5));
    let second = session(&clock, u);
    let t_new = clock.now();
    s.apply_revocations(&[Revocation::AllOfUser { user: u, keep: None, at: t_new }]).await.unwrap();
    s.apply_revocations(&[Revocation::AllOfUser {
        user: u,
        keep: Some(second.key.hash),
        at: t_new - Duration::seconds(1),
    }])
    .await
    .unwrap();
    assert!(!s.put(&first).await.unwrap());
    assert!(!s.put(&second).await.unwrap(), "the later revocation had no survivor");
}

#[tokio::test]
async fn clear_drops_sessions_users_and_verifications_but_keeps_revocations() {
    let clock = ManualClock::starting_now();
    let s = store(&clock);
    let u = user();
    let (sess, revoked) = (session(&clock, u), session(&clock, user()));
    let prof = profile(&clock);
    let ver = verification(&clock, u, Purpose::EmailVerification);
    s.create(&sess).await.unwrap();
    s.create(&revoked).await.unwrap();
    s.delete(&revoked.key).await.unwrap();
    s.put_user(&prof).await.unwrap();
    s.put_verification(&ver).await.unwrap();

    s.clear().await.unwrap();
    assert_eq!(s.get(&sess.key).await.unwrap(), None);
    assert_eq!(s.get_user(prof.id).await.unwrap(), None);
    assert_eq!(s.consume(&ver.hash, ver.purpose).await.unwrap(), None);
    assert!(s.list_user_sessions(u).await.unwrap().is_empty());
    s.inner.main.run_pending_tasks();
    assert_eq!(s.entry_count(), 0);
    assert_eq!(s.weighted_size(), 0);
    // Refilling works, except for what was revoked.
    assert!(s.put(&sess).await.unwrap());
    assert_eq!(s.get(&sess.key).await.unwrap(), Some(sess));
    assert!(!s.put(&revoked).await.unwrap());
}

#[tokio::test]
async fn a_user_index_is_pruned_as_it_grows() {
    let clock = ManualClock::starting_now();
    let s = store(&clock);
    let u = user();
    for _ in 0..100 {
        let sess = session(&clock, u);
        s.create(&sess).await.unwrap();
        s.delete(&sess.key).await.unwrap();
    }
    let live: Vec<_> = (0..30).map(|_| session(&clock, u)).collect();
    for sess in &live {
        s.create(sess).await.unwrap();
    }
    let indexed = s.inner.index.hashes(u, Kind::Session).len();
    assert!((30..=60).contains(&indexed), "{indexed} hashes indexed for 30 live sessions");
    assert_eq!(s.list_user_sessions(u).await.unwrap().len(), 30);
}

#[tokio::test]
async fn delete_verifications_only_touches_that_user_and_purpose() {
    let clock = ManualClock::starting_now();
    let s = store(&clock);
    let u = user();
    let emails: Vec<_> =
        (0..3).map(|_| verification(&clock, u, Purpose::EmailVerification)).collect();
    let reset = verification(&clock, u, Purpose::PasswordReset);
    for v in emails.iter().chain([&reset]) {
        s.put_verification(v).await.unwrap();
    }
    s.consume(&emails[0].hash, Purpose::EmailVerification).await.unwrap().unwrap();
    assert_eq!(s.delete_verifications(u, Purpose::EmailVerification).await.unwrap(), 2);
    assert_eq!(s.delete_verifications(u, Purpose::EmailVerification).await.unwrap(), 0);
    assert_eq!(s.consume(&reset.hash, reset.purpose).await.unwrap(), Some(reset));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consume_is_single_use_across_threads() {
    let clock = ManualClock::starting_now();
    let s = store(&clock);
    for _ in 0..20 {
        let v = verification(&clock, user(), Purpose::PasswordReset);
        s.put_verification(&v).await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (s, barrier, hash) = (s.clone(), barrier.clone(), v.hash);
                tokio::spawn(async move {
                    barrier.wait().await;
                    s.consume(&hash, Purpose::PasswordReset).await.unwrap()
                })
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            winners += usize::from(task.await.unwrap().is_some());
        }
        assert_eq!(winners, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_fills_never_outlive_a_delete() {
    // A fill racing a delete on another thread either lands first (and is deleted) or
    // sees the tombstone: never a session served after the delete returned.
    let clock = ManualClock::starting_now();
    let s = store(&clock);
    for _ in 0..200 {
        let sess = session(&clock, user());
        let filler = {
            let (s, sess) = (s.clone(), sess.clone());
            tokio::spawn(async move {
                for _ in 0..20 {
                    s.put(&sess).await.unwrap();
                }
            })
        };
        s.delete(&sess.key).await.unwrap();
        filler.await.unwrap();
        assert_eq!(s.get(&sess.key).await.unwrap(), None);
    }
}

#[test]
fn moka_expiry_is_capped_by_the_ttl_in_real_time() {
    let clock = ManualClock::starting_now();
    let s = store_with(
        &clock,
        MemoryConfig { ttl: StdDuration::from_millis(1), ..MemoryConfig::default() },
    );
    let sess = session(&clock, user());
    let value = s.inner.cached_session(sess.clone(), clock.now()).unwrap();
    s.inner.main.insert(Key::Session(sess.key), value);
    // Real time moves on; moka drops the entry without the clock being touched. Bounded
    // polling rather than one sleep: moka's timer granularity is coarse.
    let key = Key::Session(sess.key);
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    while s.inner.main.contains_key(&key) {
        assert!(std::time::Instant::now() < deadline, "moka never expired the entry");
        std::hint::spin_loop();
    }
    assert!(s.inner.main.get(&key).is_none());
}
