//! The key layout (see `docs/redis.md`).
//!
//! Everything about one user carries the hash tag `{u:<id>}`, so that a session, the
//! user's session index, revoke-all fence and tombstones live in one Cluster hash slot
//! and one Lua script can read and write them atomically. Verifications are found by
//! token hash alone, so they carry the hash as their tag.

use cache_core::{Purpose, TokenHash, UserId};

/// Builds key names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    channel: String,
}

impl Keys {
    /// Keys under `prefix` (validated by the config: no braces).
    pub(crate) fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned(), channel: format!("{prefix}invalidate") }
    }

    /// The key prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The pub/sub channel of invalidation messages.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// `{prefix}{u:<id>}:`: the start of every per-user key, which scripts extend with
    /// `s:<hash>` / `t:<hash>` for index members.
    pub(crate) fn user_base(&self, user: UserId) -> String {
        format!("{}{{u:{user}}}:", self.prefix)
    }

    /// A session (hash of fields), TTL = remaining life.
    pub(crate) fn session(&self, user: UserId, hash: &TokenHash) -> String {
        format!("{}s:{}", self.user_base(user), hash.to_hex())
    }

    /// Tombstone of a single revoked session.
    pub(crate) fn tombstone(&self, user: UserId, hash: &TokenHash) -> String {
        format!("{}t:{}", self.user_base(user), hash.to_hex())
    }

    /// The user's session index: sorted set of token hashes scored by expiry (µs).
    pub(crate) fn index(&self, user: UserId) -> String {
        format!("{}idx", self.user_base(user))
    }

    /// The user's revoke-all fence: hash `at` (µs), `keep` (hex or empty).
    pub(crate) fn fence(&self, user: UserId) -> String {
        format!("{}fence", self.user_base(user))
    }

    /// The user's cached profile.
    pub(crate) fn user(&self, user: UserId) -> String {
        format!("{}user", self.user_base(user))
    }

    /// A pending verification, tagged by its own hash.
    pub(crate) fn verification(&self, hash: &TokenHash) -> String {
        format!("{}v:{{{}}}", self.prefix, hash.to_hex())
    }

    /// The set of a user's pending verification hashes for one purpose.
    pub(crate) fn verification_set(&self, user: UserId, purpose: Purpose) -> String {
        format!("{}vs:{}", self.user_base(user), purpose.as_str())
    }
}

impl Keys {
    /// Whether `key` is a cache entry this tier may drop on `clear`: a session, an index,
    /// a profile, a verification or a verification set; not a fence or tombstone, nor a
    /// key of another feature sharing the prefix.
    pub(crate) fn is_cache_entry(&self, key: &str) -> bool {
        let Some(rest) = key.strip_prefix(self.prefix.as_str()) else { return false };
        if let Some(rest) = rest.strip_prefix("v:{") {
            return rest.len() == 65 && rest.ends_with('}');
        }
        let Some(rest) = rest.strip_prefix("{u:") else { return false };
        let Some((_user, tail)) = rest.split_once("}:") else { return false };
        tail.starts_with("s:") || tail == "idx" || tail == "user" || tail.starts_with("vs:")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Cluster hash tag: the part between the first `{` and the next `}`.
    fn tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let close = key[open..].find('}').unwrap() + open;
        &key[open + 1..close]
    }

    #[test]
    fn per_user_keys_share_one_slot() {
        let keys = Keys::new("ta:");
        let user = UserId::new(42).unwrap();
        let hash = TokenHash::from_bytes([9; 32]);
        let all = [
            keys.session(user, &hash),
            keys.tombstone(user, &hash),
            keys.index(user),
            keys.fence(user),
            keys.user(user),
            keys.verification_set(user, Purpose::PasswordReset),
        ];
        for key in &all {
            assert!(key.starts_with("ta:{u:42}:"), "{key}");
            assert_eq!(tag(key), "u:42");
            assert_eq!(
                fred::util::redis_keyslot(key.as_bytes()),
                fred::util::redis_keyslot(b"{u:42}")
            );
        }
        assert_eq!(keys.session(user, &hash), format!("ta:{{u:42}}:s:{}", hash.to_hex()));
        assert_eq!(tag(&keys.verification(&hash)), hash.to_hex());
        assert_eq!(keys.channel(), "ta:invalidate");
    }

    #[test]
    fn clear_drops_cache_entries_only() {
        let keys = Keys::new("ta:");
        let user = UserId::new(42).unwrap();
        let hash = TokenHash::from_bytes([9; 32]);
        for key in [
            keys.session(user, &hash),
            keys.index(user),
            keys.user(user),
            keys.verification(&hash),
            keys.verification_set(user, Purpose::EmailVerification),
        ] {
            assert!(keys.is_cache_entry(&key), "{key}");
        }
        for key in [
            keys.fence(user),
            keys.tombstone(user, &hash),
            "ta:{a:2026-11-27}:users".to_owned(),
            "ta:warmed".to_owned(),
            "tb:{u:42}:idx".to_owned(),
        ] {
            assert!(!keys.is_cache_entry(&key), "{key}");
        }
    }
}
