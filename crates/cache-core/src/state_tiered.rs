//! [`TieredStates`]: a faster [`SessionStateStore`] in front of a slower, authoritative
//! one, with the rules of [`crate::Tiered`]:
//!
//! - Reads are cache-aside: the front, then on a miss the back, whose answer fills the
//!   front (unless the front just failed to read).
//! - Writes and deletes reach the back (the authority) first, then the front; a failing
//!   front is skipped, logged and counted, a failing back is the caller's error. Wrap a
//!   front in [`crate::Breaker`] so a dead one is skipped at once.
//! - A front that missed a write (it failed) would keep an older state: the key is
//!   remembered and the front is skipped for it until a later write or fill of it
//!   succeeds, so this instance never reads the stale copy back; once the front takes
//!   writes again, the remembered keys are copied to it again from the back (a batch
//!   after each successful write), so other instances sharing the front (Redis) stop
//!   seeing what it missed. A "delete every state of this user" the front missed is
//!   retried the same way, and the front is not read meanwhile. Past `MAX_STALE` remembered keys the front is never
//!   read again by this instance (logged): correctness over speed.
//!
//! Nest it for three tiers: `TieredStates<Memory, TieredStates<Breaker<Redis>, Sql>>`.

use std::collections::HashSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use metrics::Counter;
use parking_lot::Mutex;

use crate::error::{StoreError, StoreResult};
use crate::id::UserId;
use crate::state::{SessionStateStore, StateKey, StateRecord};
use crate::tiered::TIERED;

/// Keys a front missed a write of, at most this many; beyond, the front is no longer
/// read.
const MAX_STALE: usize = 100_000;

/// Remembered keys repaired after one successful front write.
const HEAL_BATCH: usize = 64;

/// Keys whose front copy may be older than the back's.
#[derive(Default)]
struct Stale {
    keys: HashSet<StateKey>,
    /// Users whose "delete all" the front missed: it is retried, and the front not read.
    users: HashSet<UserId>,
    /// More keys went stale than `MAX_STALE`: trust no front copy.
    overflow: bool,
}

/// A front state store (cache) composed with a back one (the authority for this pair).
pub struct TieredStates<F, B> {
    front: F,
    back: B,
    front_tier: &'static str,
    stale: Mutex<Stale>,
    hit: Counter,
    miss: Counter,
    error: Counter,
    write_errors: Counter,
}

impl<F: SessionStateStore, B: SessionStateStore> TieredStates<F, B> {
    /// Composes `front` (a cache) over `back`.
    pub fn new(front: F, back: B) -> Self {
        let front_tier = front.state_tier();
        let c = |result: &'static str| metrics::counter!("tier_lookups_total", "kind" => "state", "tier" => front_tier, "result" => result);
        Self {
            front,
            back,
            front_tier,
            stale: Mutex::new(Stale::default()),
            hit: c("hit"),
            miss: c("miss"),
            error: c("error"),
            write_errors: metrics::counter!("tier_write_errors_total", "tier" => front_tier),
        }
    }
}

impl<F, B> TieredStates<F, B> {
    /// The front (cache) store.
    pub fn front(&self) -> &F {
        &self.front
    }

    /// The back (authoritative) store.
    pub fn back(&self) -> &B {
        &self.back
    }

    /// Whether the front's copy of `key` may be read.
    fn front_trusted(&self, key: &StateKey) -> bool {
        let stale = self.stale.lock();
        !stale.overflow && stale.users.is_empty() && !stale.keys.contains(key)
    }

    fn front_failed(&self, op: &'static str, e: &StoreError) {
        self.write_errors.increment(1);
        tracing::debug!(tier = self.front_tier, op, error = %e, "cache tier write skipped");
    }
}

impl<F: SessionStateStore, B: SessionStateStore> TieredStates<F, B> {
    /// Records the outcome of a front write of `key`. A failed write leaves the front
    /// possibly older than the back for `key`: remembered. After a success (the front
    /// works again), repairs what it missed: the user-wide deletes, and up to
    /// `HEAL_BATCH` remembered keys (copied again from the back), so that other
    /// instances reading the front do not get what it missed for long.
    async fn front_wrote(&self, op: &'static str, key: &StateKey, result: StoreResult<()>) {
        match result {
            Ok(()) => {
                let (users, keys): (Vec<UserId>, Vec<StateKey>) = {
                    let mut stale = self.stale.lock();
                    stale.keys.remove(key);
                    let users = stale.users.iter().copied().collect();
                    (users, stale.keys.iter().take(HEAL_BATCH).copied().collect())
                };
                for user in users {
                    if self.front.delete_user_states(user).await.is_ok() {
                        self.stale.lock().users.remove(&user);
                    }
                }
                for key in keys {
                    let healed = match self.back.load_state(&key).await {
                        Ok(Some(record)) => self.front.put_state(&key, &record).await.is_ok(),
                        Ok(None) => self.front.delete_state(&key).await.is_ok(),
                        Err(_) => false,
                    };
                    if !healed {
                        break;
                    }
                    self.stale.lock().keys.remove(&key);
                }
            }
            Err(e) => {
                self.front_failed(op, &e);
                let mut stale = self.stale.lock();
                if stale.keys.len() < MAX_STALE {
                    stale.keys.insert(*key);
                } else if !stale.overflow {
                    stale.overflow = true;
                    tracing::warn!(
                        tier = self.front_tier,
                        "too many state writes missed by a cache tier; no longer reading it"
                    );
                }
            }
        }
    }
}

#[async_trait]
impl<F: SessionStateStore, B: SessionStateStore> SessionStateStore for TieredStates<F, B> {
    fn state_tier(&self) -> &'static str {
        TIERED
    }

    async fn load_state(&self, key: &StateKey) -> StoreResult<Option<StateRecord>> {
        let mut fill = true;
        if self.front_trusted(key) {
            match self.front.load_state(key).await {
                Ok(Some(found)) => {
                    self.hit.increment(1);
                    return Ok(Some(found));
                }
                Ok(None) => self.miss.increment(1),
                Err(e) => {
                    self.error.increment(1);
                    tracing::debug!(tier = self.front_tier, error = %e, "cache tier read failed");
                    // A front that just failed to read would likely fail (slowly) to write.
                    fill = false;
                }
            }
        }
        let found = self.back.load_state(key).await?;
        if let Some(record) = found.as_ref().filter(|_| fill) {
            match self.front.put_state(key, record).await {
                // A failed fill leaves the front no older than before: nothing to remember.
                Err(e) => self.front_failed("fill", &e),
                ok => self.front_wrote("fill", key, ok).await,
            }
        }
        Ok(found)
    }

    async fn save_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()> {
        self.back.save_state(key, record).await?;
        let result = self.front.put_state(key, record).await;
        self.front_wrote("save", key, result).await;
        Ok(())
    }

    async fn update_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<bool> {
        let updated = self.back.update_state(key, record).await?;
        let result = if updated {
            self.front.put_state(key, record).await
        } else {
            self.front.delete_state(key).await
        };
        self.front_wrote("update", key, result).await;
        Ok(updated)
    }

    async fn update_state_ttl(
        &self,
        key: &StateKey,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let updated = self.back.update_state_ttl(key, expires_at).await?;
        let result = if updated {
            // A front that no longer holds it has nothing to extend: the next read fills.
            self.front.update_state_ttl(key, expires_at).await.map(drop)
        } else {
            self.front.delete_state(key).await
        };
        self.front_wrote("update_ttl", key, result).await;
        Ok(updated)
    }

    async fn delete_state(&self, key: &StateKey) -> StoreResult<()> {
        self.back.delete_state(key).await?;
        let result = self.front.delete_state(key).await;
        self.front_wrote("delete", key, result).await;
        Ok(())
    }

    async fn delete_user_states(&self, user: UserId) -> StoreResult<u64> {
        let deleted = self.back.delete_user_states(user).await?;
        if let Err(e) = self.front.delete_user_states(user).await {
            self.front_failed("delete_user_states", &e);
            self.stale.lock().users.insert(user);
        }
        Ok(deleted)
    }

    async fn put_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()> {
        self.back.put_state(key, record).await?;
        let result = self.front.put_state(key, record).await;
        self.front_wrote("put", key, result).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    use chrono::Duration;

    use super::*;

    /// A map store that fails every call while `down`.
    #[derive(Default)]
    struct MapStates {
        map: Mutex<HashMap<StateKey, StateRecord>>,
        down: AtomicBool,
    }

    impl MapStates {
        fn check(&self) -> StoreResult<()> {
            if self.down.load(Ordering::SeqCst) {
                Err(StoreError::unavailable("down"))
            } else {
                Ok(())
            }
        }
        fn peek(&self, key: &StateKey) -> Option<StateRecord> {
            self.map.lock().get(key).cloned()
        }
    }

    #[async_trait]
    impl SessionStateStore for MapStates {
        fn state_tier(&self) -> &'static str {
            "map"
        }
        async fn load_state(&self, key: &StateKey) -> StoreResult<Option<StateRecord>> {
            self.check()?;
            Ok(self.peek(key))
        }
        async fn save_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()> {
            self.put_state(key, record).await
        }
        async fn update_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<bool> {
            self.check()?;
            Ok(self.map.lock().insert(*key, record.clone()).is_some())
        }
        async fn update_state_ttl(&self, _: &StateKey, _: DateTime<Utc>) -> StoreResult<bool> {
            self.check()?;
            Ok(false)
        }
        async fn delete_state(&self, key: &StateKey) -> StoreResult<()> {
            self.check()?;
            self.map.lock().remove(key);
            Ok(())
        }
        async fn delete_user_states(&self, user: UserId) -> StoreResult<u64> {
            self.check()?;
            let mut map = self.map.lock();
            let before = map.len();
            map.retain(|_, r| r.user != Some(user));
            Ok((before - map.len()) as u64)
        }
        async fn put_state(&self, key: &StateKey, record: &StateRecord) -> StoreResult<()> {
            self.check()?;
            self.map.lock().insert(*key, record.clone());
            Ok(())
        }
    }

    fn record(value: &str, user: Option<UserId>) -> StateRecord {
        StateRecord {
            state: [("v".to_owned(), value.to_owned())].into_iter().collect(),
            user,
            expires_at: DateTime::<Utc>::MIN_UTC + Duration::days(365 * 1000),
        }
    }

    #[tokio::test]
    async fn a_write_the_front_missed_is_never_read_back_and_is_repaired() {
        let tiered = TieredStates::new(MapStates::default(), MapStates::default());
        let (key, other) = (StateKey::of("k"), StateKey::of("other"));
        tiered.save_state(&key, &record("1", None)).await.unwrap();
        tiered.front().down.store(true, Ordering::SeqCst);
        assert!(tiered.update_state(&key, &record("2", None)).await.unwrap());
        tiered.front().down.store(false, Ordering::SeqCst);
        // The front still holds "1", but this instance reads the authority's "2".
        assert_eq!(tiered.front().peek(&key), Some(record("1", None)));
        assert_eq!(tiered.load_state(&key).await.unwrap(), Some(record("2", None)));
        // The next successful front write repairs the front for everyone.
        tiered.save_state(&other, &record("x", None)).await.unwrap();
        assert_eq!(tiered.front().peek(&key), Some(record("2", None)));
    }

    #[tokio::test]
    async fn a_user_wide_delete_the_front_missed_keeps_it_unread_until_retried() {
        let tiered = TieredStates::new(MapStates::default(), MapStates::default());
        let user = UserId::new(7).unwrap();
        let key = StateKey::of("k");
        tiered.save_state(&key, &record("1", Some(user))).await.unwrap();
        tiered.front().down.store(true, Ordering::SeqCst);
        assert_eq!(tiered.delete_user_states(user).await.unwrap(), 1);
        tiered.front().down.store(false, Ordering::SeqCst);
        assert!(tiered.front().peek(&key).is_some());
        assert_eq!(tiered.load_state(&key).await.unwrap(), None);
        tiered.save_state(&StateKey::of("other"), &record("x", None)).await.unwrap();
        assert_eq!(tiered.front().peek(&key), None);
    }

    #[tokio::test]
    async fn a_failed_fill_is_not_remembered() {
        let tiered = TieredStates::new(MapStates::default(), MapStates::default());
        let key = StateKey::of("k");
        tiered.back().put_state(&key, &record("1", None)).await.unwrap();
        tiered.front().down.store(true, Ordering::SeqCst);
        assert_eq!(tiered.load_state(&key).await.unwrap(), Some(record("1", None)));
        assert!(tiered.stale.lock().keys.is_empty());
        tiered.front().down.store(false, Ordering::SeqCst);
        assert_eq!(tiered.load_state(&key).await.unwrap(), Some(record("1", None)));
        assert_eq!(tiered.front().peek(&key), Some(record("1", None)));
    }
}
