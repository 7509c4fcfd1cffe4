//! The key layout (see `docs/redis.md`).
//!
//! Everything about one user carries the hash tag `{u:<id>}`, so that a session, the
//! user's session index, revoke-all fence and tombstones live in one Cluster hash slot
//! and one Lua script can read and write them atomically. Verifications are found by
//! token hash alone, so they carry the hash as their tag.

use std::ops::Range;

use cache_core::{Purpose, SessionKey, TokenHash, UserId};
use fred::bytes::{BufMut, Bytes};
use fred::prelude::Value;
use fred::types::Key;

/// The name of the Redis key that holds the session `key` under `prefix`
/// (`{prefix}{u:<id>}:s:<hash hex>`): for tools that read a session's raw value, such as
/// the bench's Redis baseline.
pub fn session_key(prefix: &str, key: &SessionKey) -> String {
    format!("{prefix}{{u:{}}}:s:{}", key.user, key.hash.to_hex())
}

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

    /// A session (string, `codec::session_value`), TTL = remaining life.
    pub(crate) fn session(&self, user: UserId, hash: &TokenHash) -> String {
        session_key(&self.prefix, &SessionKey { user, hash: *hash })
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

/// The KEYS of a single-session script (session, index, fence, tombstone, and the user's
/// profile when asked for) and its first two arguments (the token hash in hex, "now" in
/// µs), written into one buffer that every key and argument is a slice of: one
/// allocation per call where formatting each name took nine, and clones that only bump
/// a reference count (so a `NOSCRIPT` retry can rebuild them for free).
#[derive(Debug, Clone)]
pub(crate) struct SessionCall {
    buf: Bytes,
    keys: [Range<usize>; 5],
    key_count: usize,
    hex: Range<usize>,
    now: Range<usize>,
}

impl SessionCall {
    /// The script's KEYS.
    pub(crate) fn keys(&self) -> Vec<Key> {
        self.keys[..self.key_count].iter().map(|r| Key::from(self.buf.slice(r.clone()))).collect()
    }

    /// The token hash in lower-case hex (ARGV[1] of every session script).
    pub(crate) fn hex(&self) -> Value {
        Value::Bytes(self.buf.slice(self.hex.clone()))
    }

    /// The token hash in lower-case hex, as text.
    pub(crate) fn hex_str(&self) -> &str {
        std::str::from_utf8(&self.buf[self.hex.clone()]).unwrap_or_default()
    }

    /// "Now" in µs since the epoch (ARGV[2] of every session script).
    pub(crate) fn now(&self) -> Value {
        Value::Bytes(self.buf.slice(self.now.clone()))
    }
}

/// The lower-case hex of `hash`, on the stack.
fn hex_digits(hash: &TokenHash) -> [u8; 64] {
    let mut out = [0u8; 64];
    // 32 bytes always take exactly 64 digits: the length error cannot happen.
    let encoded = hex::encode_to_slice(hash.as_bytes(), &mut out);
    debug_assert!(encoded.is_ok());
    out
}

/// Appends `n` in decimal (what `Display` writes, without the formatting machinery,
/// which cost more than the rest of a session call's keys together).
pub(crate) fn put_decimal(buf: &mut impl BufMut, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b"0123456789"[usize::try_from(rest % 10).unwrap_or(0)];
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        buf.put_u8(b'-');
    }
    buf.put_slice(&digits[i..]);
}

impl Keys {
    /// The keys and first arguments of a single-session script for `key` at `now_micros`;
    /// with `with_user`, the user's profile is a fifth key.
    pub(crate) fn session_call(
        &self,
        key: &SessionKey,
        now_micros: i64,
        with_user: bool,
    ) -> SessionCall {
        // `{prefix}{u:<id>}:` is at most prefix + 4 + 19 digits + 2 bytes; the five key
        // tails (`s:`+64, `idx`, `fence`, `t:`+64, `user`) and "now" (at most 20) add 166.
        let mut buf: Vec<u8> = Vec::with_capacity(5 * (self.prefix.len() + 25) + 166);
        buf.put_slice(self.prefix.as_bytes());
        buf.put_slice(b"{u:");
        put_decimal(&mut buf, key.user.get());
        buf.put_slice(b"}:");
        let base = 0..buf.len();
        let hex = hex_digits(&key.hash);
        buf.put_slice(b"s:");
        buf.put_slice(&hex);
        let session = 0..buf.len();
        let mut push = |tail: &[&[u8]]| {
            let start = buf.len();
            buf.extend_from_within(base.clone());
            for part in tail {
                buf.put_slice(part);
            }
            start..buf.len()
        };
        let index = push(&[b"idx"]);
        let fence = push(&[b"fence"]);
        let tombstone = push(&[b"t:", &hex]);
        let user = push(&[b"user"]);
        let start = buf.len();
        put_decimal(&mut buf, now_micros);
        let now = start..buf.len();
        // The hex is the tail of the session key.
        let hex = session.end - 64..session.end;
        SessionCall {
            buf: Bytes::from(buf),
            keys: [session, index, fence, tombstone, user],
            key_count: if with_user { 5 } else { 4 },
            hex,
            now,
        }
    }

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
    fn a_session_call_names_the_same_keys() {
        let keys = Keys::new("ta:");
        let key = SessionKey {
            user: UserId::new(9_007_199_254_740_993).unwrap(),
            hash: TokenHash::from_bytes(std::array::from_fn(|i| u8::try_from(i * 8).unwrap())),
        };
        let now = 1_700_000_000_123_456;
        let call = keys.session_call(&key, now, true);
        let names: Vec<String> =
            call.keys().iter().map(|k| k.as_str().unwrap().to_owned()).collect();
        assert_eq!(
            names,
            [
                keys.session(key.user, &key.hash),
                keys.index(key.user),
                keys.fence(key.user),
                keys.tombstone(key.user, &key.hash),
                keys.user(key.user),
            ]
        );
        assert_eq!(call.hex().as_str().unwrap(), key.hash.to_hex());
        assert_eq!(call.now().as_str().unwrap(), now.to_string());
        assert_eq!(keys.session_call(&key, now, false).keys().len(), 4);
        let slot = fred::util::redis_keyslot(b"{u:9007199254740993}");
        for name in &names {
            assert_eq!(fred::util::redis_keyslot(name.as_bytes()), slot, "{name}");
        }
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
