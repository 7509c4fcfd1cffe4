//! The per-user index: which session and verification hashes the main cache may hold
//! for a user, so that listing and revoking a user's entries costs O(their number)
//! instead of a scan of the whole cache.
//!
//! The index is a hint, never the authority on what is live: it may name hashes the
//! main cache has already dropped (every reader looks each one up) and, after a race
//! or an index eviction, miss one (fences in the main read path keep such a session
//! hidden, and its own lifetime reclaims it).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use cache_core::{TokenHash, UserId};
use moka::sync::Cache;
use parking_lot::Mutex;

/// Which of a user's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Session,
    Verification,
}

/// Below this many hashes a user's index is never pruned.
const MIN_PRUNE_AT: usize = 16;

/// One user's hashes.
#[derive(Debug)]
struct UserIndex {
    sessions: HashSet<TokenHash>,
    verifications: HashSet<TokenHash>,
    /// Size past which dropped hashes are pruned; doubled after each prune, so a user
    /// with many sessions pays amortized O(1) per insert.
    prune_at: usize,
}

impl UserIndex {
    fn set(&mut self, kind: Kind) -> &mut HashSet<TokenHash> {
        match kind {
            Kind::Session => &mut self.sessions,
            Kind::Verification => &mut self.verifications,
        }
    }

    fn len(&self) -> usize {
        self.sessions.len() + self.verifications.len()
    }
}

/// Every user's index, bounded and idle-expiring like the entries it points to.
pub(crate) struct Indexes {
    cache: Cache<UserId, Arc<Mutex<UserIndex>>>,
}

impl Indexes {
    /// An index of at most `max_users` users, each dropped after `idle` without a write.
    /// Every entry of the main cache lives at most `idle` after its last write, and that
    /// write touched the index, so an index entry outlives what it names.
    pub(crate) fn new(max_users: u64, idle: Duration) -> Self {
        Self { cache: Cache::builder().max_capacity(max_users).time_to_idle(idle).build() }
    }

    /// Records `hash` for `user`. When the index has grown, first drops the hashes for
    /// which `still_cached` says the main cache no longer holds the entry.
    pub(crate) fn insert(
        &self,
        user: UserId,
        kind: Kind,
        hash: TokenHash,
        still_cached: impl Fn(Kind, &TokenHash) -> bool,
    ) {
        let entry = self.cache.get_with(user, || {
            Arc::new(Mutex::new(UserIndex {
                sessions: HashSet::new(),
                verifications: HashSet::new(),
                prune_at: MIN_PRUNE_AT,
            }))
        });
        let mut index = entry.lock();
        if index.len() >= index.prune_at {
            index.sessions.retain(|h| still_cached(Kind::Session, h));
            index.verifications.retain(|h| still_cached(Kind::Verification, h));
            index.prune_at = (2 * index.len()).max(MIN_PRUNE_AT);
        }
        index.set(kind).insert(hash);
    }

    /// The hashes of `kind` recorded for `user`.
    pub(crate) fn hashes(&self, user: UserId, kind: Kind) -> Vec<TokenHash> {
        match self.cache.get(&user) {
            Some(entry) => entry.lock().set(kind).iter().copied().collect(),
            None => Vec::new(),
        }
    }

    /// Removes from `user`'s index the hashes of `kind` that `take` selects, and returns
    /// them. The decision is made under the index lock, so two concurrent revocations
    /// do not both claim the same hash.
    pub(crate) fn take(
        &self,
        user: UserId,
        kind: Kind,
        mut take: impl FnMut(&TokenHash) -> bool,
    ) -> Vec<TokenHash> {
        let Some(entry) = self.cache.get(&user) else { return Vec::new() };
        let mut index = entry.lock();
        let mut taken = Vec::new();
        index.set(kind).retain(|h| {
            let t = take(h);
            if t {
                taken.push(*h);
            }
            !t
        });
        taken
    }

    /// Forgets every user's index (with a cleared main cache it names nothing).
    pub(crate) fn clear(&self) {
        self.cache.invalidate_all();
    }

    #[cfg(test)]
    pub(crate) fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }

    #[cfg(test)]
    pub(crate) fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }
}
