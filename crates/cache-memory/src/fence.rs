//! Per-user fences: the memory of a "revoke all sessions of this user" that keeps late
//! cache fills of older snapshots out and hides entries that slipped in anyway.

use cache_core::{Session, TokenHash};
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
