//! Per-user fences: the memory of a "revoke all sessions of this user" that keeps late
//! cache fills of older snapshots out and hides entries that slipped in anyway.

use std::sync::atomic::{AtomicU64, Ordering};

use cache_core::{Session, TokenHash, UserId};
use chrono::{DateTime, Utc};

/// Every session of the user created at or before `at` is revoked, except `keep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fence {
    pub(crate) at: DateTime<Utc>,
    pub(crate) keep: Option<TokenHash>,
}

impl Fence {
    /// Whether `session` is revoked by this fence (same rule as
    /// `Revocation::AllOfUser::covers`; the caller has matched the user).
    pub(crate) fn covers(&self, session: &Session) -> bool {
        session.created_at <= self.at && self.keep.is_none_or(|k| k != session.key.hash)
    }

    /// The fence after `other` is recorded too. The later revocation wins, `at` never
    /// moves back, so revocations arriving out of order (another instance's, the
    /// journal's) cannot weaken a fence. Two at the same instant that disagree on the
    /// survivor keep none: revoking too much from a cache only costs a lookup below.
    pub(crate) fn merge(self, other: Fence) -> Fence {
        match other.at.cmp(&self.at) {
            std::cmp::Ordering::Greater => other,
            std::cmp::Ordering::Less => self,
            std::cmp::Ordering::Equal if self.keep == other.keep => self,
            std::cmp::Ordering::Equal => Fence { at: self.at, keep: None },
        }
    }
}

/// Words of [`FenceFilter`]: 65,536 bits, 8 KiB.
const FILTER_WORDS: usize = 1024;

/// Which users may have a fence: one bit per bucket of user ids, set before a fence is
/// recorded and never cleared. A clear bit proves that no fence of the user had been
/// recorded when it was read, so the hit path skips the fences cache (a moka read, and
/// its share of moka's inline housekeeping, which runs every 64 reads); a set bit, the
/// user's or a colliding user's, only means "look".
pub(crate) struct FenceFilter(Box<[AtomicU64]>);

impl FenceFilter {
    pub(crate) fn new() -> Self {
        Self((0..FILTER_WORDS).map(|_| AtomicU64::new(0)).collect())
    }

    /// Word index and mask of `user`'s bit (Fibonacci hashing of the id: random ids
    /// spread anyway, sequential ones spread too).
    fn bit(user: UserId) -> (usize, u64) {
        let h =
            u64::from_ne_bytes(user.get().to_ne_bytes()).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48;
        let h = usize::try_from(h).unwrap_or(0) % (FILTER_WORDS * 64);
        (h / 64, 1 << (h % 64))
    }

    /// Call before recording a fence of `user` (SeqCst: ordered with every `may_have`).
    pub(crate) fn mark(&self, user: UserId) {
        let (word, mask) = Self::bit(user);
        self.0[word].fetch_or(mask, Ordering::SeqCst);
    }

    /// `false` only when no fence of `user` was recorded before this call.
    pub(crate) fn may_have(&self, user: UserId) -> bool {
        let (word, mask) = Self::bit(user);
        self.0[word].load(Ordering::SeqCst) & mask != 0
    }
}

#[cfg(test)]
mod tests {
    use cache_core::token::Secret;
    use cache_core::{SessionKey, UserId};
    use chrono::Duration;

    use super::*;

    fn hash(n: u8) -> TokenHash {
        Secret::from_bytes([n; 32]).hash()
    }

    fn session(created_at: DateTime<Utc>, h: TokenHash) -> Session {
        Session {
            key: SessionKey { user: UserId::new(1).unwrap(), hash: h },
            created_at,
            renewed_at: created_at,
            expires_at: created_at + Duration::hours(1),
            absolute_expires_at: created_at + Duration::days(1),
            user_agent: None,
            ip: None,
            version: 0,
        }
    }

    #[test]
    fn covers_older_sessions_except_the_kept_one() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let fence = Fence { at: t, keep: Some(hash(1)) };
        assert!(fence.covers(&session(t, hash(2))));
        assert!(fence.covers(&session(t - Duration::seconds(1), hash(2))));
        assert!(!fence.covers(&session(t, hash(1))));
        assert!(!fence.covers(&session(t + Duration::microseconds(1), hash(2))));
    }

    #[test]
    fn the_filter_knows_every_marked_user() {
        let filter = FenceFilter::new();
        let users: Vec<UserId> = (0..1000).map(|_| UserId::random().unwrap()).collect();
        assert!(users.iter().all(|u| !filter.may_have(*u)));
        for u in &users[..10] {
            filter.mark(*u);
        }
        assert!(users[..10].iter().all(|u| filter.may_have(*u)));
        // Ten marks set at most ten bits of 65,536: almost every other user stays clear.
        let clear = users[10..].iter().filter(|u| !filter.may_have(**u)).count();
        assert!(clear >= 980, "{clear}");
    }

    #[test]
    fn merge_keeps_the_latest_and_never_moves_back() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let old = Fence { at: t, keep: Some(hash(1)) };
        let new = Fence { at: t + Duration::seconds(5), keep: Some(hash(2)) };
        assert_eq!(old.merge(new), new);
        assert_eq!(new.merge(old), new);
        assert_eq!(old.merge(old), old);
        let rival = Fence { at: t, keep: None };
        assert_eq!(old.merge(rival), Fence { at: t, keep: None });
        assert_eq!(rival.merge(old), Fence { at: t, keep: None });
    }
}
