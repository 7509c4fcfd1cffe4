//! Encoding of sessions, users and verifications into Redis values and script
//! arguments, and back from replies. Only token hashes appear in keys; values hold no
//! secret.
//!
//! Sessions, fences and profiles are plain strings, so that a validation reads all of
//! them with one `MGET` (docs/redis.md, "Key layout"):
//!
//! - session: `c r e a v IP UA`: created, renewed, expires, absolute expiry (µs since
//!   the epoch), version, then the address (`-` when unknown) and the user agent
//!   (`-` when unknown, else `+` and the agent, which may hold spaces: it is last).
//!   The scripts read the five numbers with one pattern and keep the rest as it is.
//! - fence: `at keep`: the revoke-all time (µs) and the kept session's hash (may be
//!   empty).
//! - profile: `id ev c n NAMEEMAIL`: id, email verified (`0`/`1`), created (µs), the
//!   name's length in bytes, then the name and the email without a separator. Only this
//!   module reads it.

use std::net::IpAddr;

use cache_core::{Session, SessionKey, TokenHash, User, UserId, Verification};
use chrono::{DateTime, Utc};
use fred::bytes::Bytes;
use fred::prelude::Value;

use crate::error::RedisError;
use crate::keys::put_decimal;

/// Microseconds since the epoch, as scripts compare them.
pub(crate) fn micros(t: DateTime<Utc>) -> String {
    t.timestamp_micros().to_string()
}

/// Milliseconds of a duration for `PX`/`PEXPIRE`, at least 1.
pub(crate) fn millis(d: std::time::Duration) -> String {
    d.as_millis().clamp(1, u128::from(u64::MAX)).to_string()
}

/// A session's stored value (see the module docs).
pub(crate) fn session_value(session: &Session) -> Bytes {
    let ua = session.user_agent.as_deref();
    let mut out = Vec::with_capacity(96 + ua.map_or(0, str::len));
    for n in [
        session.created_at.timestamp_micros(),
        session.renewed_at.timestamp_micros(),
        session.expires_at.timestamp_micros(),
        session.absolute_expires_at.timestamp_micros(),
        session.version,
    ] {
        put_decimal(&mut out, n);
        out.push(b' ');
    }
    match session.ip {
        Some(ip) => out.extend_from_slice(ip.to_string().as_bytes()),
        None => out.push(b'-'),
    }
    match ua {
        Some(ua) => {
            out.extend_from_slice(b" +");
            out.extend_from_slice(ua.as_bytes());
        }
        None => out.extend_from_slice(b" -"),
    }
    Bytes::from(out)
}

/// The write script's arguments after hash, now and mode: created, expires, absolute
/// expiry (what its checks compare), version, and the value to store.
pub(crate) fn session_args(session: &Session) -> [Value; 5] {
    [
        micros(session.created_at).into(),
        micros(session.expires_at).into(),
        micros(session.absolute_expires_at).into(),
        session.version.to_string().into(),
        session_value(session).into(),
    ]
}

/// The five numbers at the start of a session value and the rest (address and agent).
pub(crate) struct SessionFields<'a> {
    pub(crate) created: i64,
    pub(crate) renewed: i64,
    pub(crate) expires: i64,
    pub(crate) absolute: i64,
    pub(crate) version: i64,
    rest: &'a str,
}

impl<'a> SessionFields<'a> {
    /// Splits a stored session value.
    pub(crate) fn parse(value: &'a str) -> Result<Self, RedisError> {
        let mut parts = value.splitn(6, ' ');
        let mut next = |what: &str| -> Result<i64, RedisError> {
            parts
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| RedisError::reply(format!("session value: bad {what}")))
        };
        let (created, renewed, expires, absolute, version) = (
            next("created")?,
            next("renewed")?,
            next("expires")?,
            next("absolute")?,
            next("version")?,
        );
        let rest = parts.next().ok_or_else(|| RedisError::reply("session value: no address"))?;
        Ok(Self { created, renewed, expires, absolute, version, rest })
    }

    /// Live at `now` (µs): before both the expiry and the absolute expiry, as the
    /// scripts' `live` decides.
    pub(crate) fn live_at(&self, now: i64) -> bool {
        now < self.expires && now < self.absolute
    }

    /// The session these fields describe.
    pub(crate) fn session(&self, key: SessionKey) -> Result<Session, RedisError> {
        let (ip, ua) = self
            .rest
            .split_once(' ')
            .ok_or_else(|| RedisError::reply("session value: no user agent"))?;
        let ip = match ip {
            "-" => None,
            ip => Some(ip.parse::<IpAddr>().map_err(|_| RedisError::reply("invalid ip"))?),
        };
        let user_agent = match ua.strip_prefix('+') {
            Some(ua) => Some(ua.to_owned()),
            None if ua == "-" => None,
            None => return Err(RedisError::reply("session value: bad user agent")),
        };
        Ok(Session {
            key,
            created_at: time(self.created, "created")?,
            renewed_at: time(self.renewed, "renewed")?,
            expires_at: time(self.expires, "expires")?,
            absolute_expires_at: time(self.absolute, "absolute expiry")?,
            user_agent,
            ip,
            version: self.version,
        })
    }
}

/// A fence value `at keep`: whether it covers the session `hex` created at `created`
/// (a revoke-all at or after its creation that did not keep it). A fence that does not
/// parse covers every session, as the scripts' `covered` decides: a revocation is never
/// lost to a bad value.
pub(crate) fn fence_covers(fence: &str, hex: &str, created: i64) -> bool {
    let Some((at, keep)) = fence.split_once(' ') else { return true };
    at.parse::<i64>().map_or(true, |at| created <= at && keep != hex)
}

fn text(v: &Value, what: &str) -> Result<String, RedisError> {
    v.as_string().ok_or_else(|| RedisError::reply(format!("{what} is not a string")))
}

/// A string borrowed from the reply (no copy for the bulk strings Redis returns).
fn borrowed<'a>(v: &'a Value, what: &str) -> Result<std::borrow::Cow<'a, str>, RedisError> {
    v.as_str().ok_or_else(|| RedisError::reply(format!("{what} is not a string")))
}

fn time(micros: i64, what: &str) -> Result<DateTime<Utc>, RedisError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| RedisError::reply(format!("{what} is out of range")))
}

/// Decodes a stored session value.
pub(crate) fn session_from_value(key: SessionKey, value: &Value) -> Result<Session, RedisError> {
    SessionFields::parse(&borrowed(value, "session")?)?.session(key)
}

/// Decodes a script reply that is either nil or the session's value.
pub(crate) fn optional_session(
    key: SessionKey,
    reply: Value,
) -> Result<Option<Session>, RedisError> {
    match reply {
        Value::Null => Ok(None),
        value => session_from_value(key, &value).map(Some),
    }
}

/// Decodes the list script's `[hash, value, …]`.
pub(crate) fn session_list(user: UserId, reply: Value) -> Result<Vec<Session>, RedisError> {
    let items = match reply {
        Value::Array(items) => items,
        Value::Null => return Ok(Vec::new()),
        other => return Err(RedisError::reply(format!("list reply is {:?}", other.kind()))),
    };
    if items.len() % 2 != 0 {
        return Err(RedisError::reply("odd list reply"));
    }
    let mut sessions = Vec::with_capacity(items.len() / 2);
    for pair in items.chunks_exact(2) {
        let hash = TokenHash::from_hex(&text(&pair[0], "hash")?)
            .ok_or_else(|| RedisError::reply("invalid hash in index"))?;
        sessions.push(session_from_value(SessionKey { user, hash }, &pair[1])?);
    }
    Ok(sessions)
}

/// A profile's stored value (see the module docs).
pub(crate) fn user_value(user: &User) -> Bytes {
    let mut out = Vec::with_capacity(48 + user.name.len() + user.email.len());
    put_decimal(&mut out, user.id.get());
    out.extend_from_slice(if user.email_verified { b" 1 " } else { b" 0 " });
    put_decimal(&mut out, user.created_at.timestamp_micros());
    out.push(b' ');
    put_decimal(&mut out, i64::try_from(user.name.len()).unwrap_or(i64::MAX));
    out.push(b' ');
    out.extend_from_slice(user.name.as_bytes());
    out.extend_from_slice(user.email.as_bytes());
    Bytes::from(out)
}

/// Decodes a profile value; nil (not cached) is `None`.
pub(crate) fn user_from_value(value: &Value) -> Result<Option<User>, RedisError> {
    if value.is_null() {
        return Ok(None);
    }
    let value = borrowed(value, "profile")?;
    let bad = || RedisError::reply("profile value is malformed");
    let mut parts = value.splitn(5, ' ');
    let mut next = || parts.next().ok_or_else(bad);
    let id: i64 = next()?.parse().map_err(|_| bad())?;
    let verified = match next()? {
        "1" => true,
        "0" => false,
        _ => return Err(bad()),
    };
    let created: i64 = next()?.parse().map_err(|_| bad())?;
    let name_len: usize = next()?.parse().map_err(|_| bad())?;
    let rest = next()?;
    let (Some(name), Some(email)) = (rest.get(..name_len), rest.get(name_len..)) else {
        return Err(bad());
    };
    Ok(Some(User {
        id: UserId::new(id).ok_or_else(|| RedisError::reply("invalid user id"))?,
        name: name.to_owned(),
        email: email.to_owned(),
        email_verified: verified,
        created_at: time(created, "created")?,
    }))
}

/// A verification as stored (JSON, no secret: the hash is the key).
pub(crate) fn verification_json(v: &Verification) -> Result<String, RedisError> {
    serde_json::to_string(v).map_err(|e| RedisError::reply(format!("verification encoding: {e}")))
}

/// Decodes a verification's JSON.
pub(crate) fn verification_from_json(s: &str) -> Result<Verification, RedisError> {
    serde_json::from_str(s).map_err(|e| RedisError::reply(format!("verification decoding: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn key() -> SessionKey {
        SessionKey { user: UserId::new(7).unwrap(), hash: TokenHash::from_bytes([1; 32]) }
    }

    fn session(ua: Option<&str>, ip: Option<&str>) -> Session {
        let now = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        Session {
            key: key(),
            created_at: now,
            renewed_at: now + Duration::seconds(5),
            expires_at: now + Duration::days(1),
            absolute_expires_at: now + Duration::days(30),
            user_agent: ua.map(str::to_owned),
            ip: ip.map(|ip| ip.parse().unwrap()),
            version: 3,
        }
    }

    #[test]
    fn session_values_round_trip() {
        for (ua, ip) in [
            (Some("Mozilla/5.0 (X11; Linux x86_64) +-  two  spaces"), Some("::1")),
            (Some(""), Some("2001:db8::7")),
            (Some("-"), Some("192.0.2.1")),
            (None, None),
        ] {
            let session = session(ua, ip);
            let value = Value::from(session_value(&session));
            assert_eq!(session_from_value(key(), &value).unwrap(), session, "{ua:?} {ip:?}");
        }
        // What the scripts' pattern `^(%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+) (.*)$` reads.
        let value = String::from_utf8(session_value(&session(None, None)).to_vec()).unwrap();
        assert_eq!(
            value,
            "1700000000123456 1700000005123456 1700086400123456 1702592000123456 3 - -"
        );
        let fields = SessionFields::parse(&value).unwrap();
        assert!(fields.live_at(1_700_086_400_123_455));
        assert!(!fields.live_at(1_700_086_400_123_456));
    }

    #[test]
    fn malformed_session_values_are_errors() {
        for bad in
            ["", "1 2 3 4", "1 2 3 4 5", "1 2 3 4 x - -", "1 2 3 4 5 nonip -", "1 2 3 4 5 - ua"]
        {
            assert!(session_from_value(key(), &Value::from(bad)).is_err(), "{bad:?}");
        }
        assert!(session_from_value(key(), &Value::Integer(1)).is_err());
    }

    #[test]
    fn fences_cover_sessions_created_at_or_before_them_but_the_kept_one() {
        let hex = key().hash.to_hex();
        assert!(fence_covers("100 ", &hex, 100));
        assert!(fence_covers("100 ", &hex, 99));
        assert!(!fence_covers("100 ", &hex, 101));
        assert!(!fence_covers(&format!("100 {hex}"), &hex, 50));
        assert!(fence_covers(&format!("100 {hex}"), "other", 50));
        // Malformed: covers everything, later sessions and the kept one included.
        assert!(fence_covers("100", &hex, 1_000));
        assert!(fence_covers(&format!("x {hex}"), &hex, 1_000));
    }

    #[test]
    fn user_values_round_trip() {
        let created = DateTime::from_timestamp_micros(1_600_000_000_000_001).unwrap();
        for (name, email, verified) in [
            ("Ada Lovelace", "ada@example.com", true),
            ("", "a@b.c", false),
            ("名前 with  spaces 7 1", "x y@example.com", true),
        ] {
            let user = User {
                id: UserId::new(9_007_199_254_740_993).unwrap(),
                name: name.to_owned(),
                email: email.to_owned(),
                email_verified: verified,
                created_at: created,
            };
            assert_eq!(user_from_value(&Value::from(user_value(&user))).unwrap(), Some(user));
        }
        assert_eq!(user_from_value(&Value::Null).unwrap(), None);
        // A length that ends inside a character, beyond the value, or garbage: errors.
        for bad in ["1 1 5 1 名x", "1 1 5 99 ab", "1 2 5 0 a", "x 1 5 0 a", "1 1 5", "0 1 5 0 a"] {
            assert!(user_from_value(&Value::from(bad)).is_err(), "{bad:?}");
        }
    }

    mod properties {
        use std::net::IpAddr;

        use proptest::prelude::*;

        use super::*;

        /// Microseconds chrono can hold (about ±262,000 years).
        fn instant() -> impl Strategy<Value = DateTime<Utc>> {
            (DateTime::<Utc>::MIN_UTC.timestamp_micros()
                ..=DateTime::<Utc>::MAX_UTC.timestamp_micros())
                .prop_map(|us| DateTime::from_timestamp_micros(us).unwrap())
        }

        fn session_strategy() -> impl Strategy<Value = Session> {
            (
                (any::<i64>().prop_filter_map("ids are positive", UserId::new), any::<[u8; 32]>()),
                (instant(), instant(), instant(), instant()),
                proptest::option::of(any::<String>()),
                proptest::option::of(any::<IpAddr>()),
                any::<i64>(),
            )
                .prop_map(|((user, hash), (c, r, e, a), user_agent, ip, version)| {
                    Session {
                        key: SessionKey { user, hash: TokenHash::from_bytes(hash) },
                        created_at: c,
                        renewed_at: r,
                        expires_at: e,
                        absolute_expires_at: a,
                        user_agent,
                        ip,
                        version,
                    }
                })
        }

        proptest! {
            #[test]
            fn sessions_round_trip(session in session_strategy()) {
                let value = Value::from(session_value(&session));
                prop_assert_eq!(session_from_value(session.key, &value).unwrap(), session);
            }

            #[test]
            fn users_round_trip(
                id in any::<i64>().prop_filter_map("ids are positive", UserId::new),
                name in any::<String>(),
                email in any::<String>(),
                email_verified in any::<bool>(),
                created_at in instant(),
            ) {
                let user = User { id, name, email, email_verified, created_at };
                let value = Value::from(user_value(&user));
                prop_assert_eq!(user_from_value(&value).unwrap(), Some(user));
            }

            /// Whatever a Redis value holds (another version's format, a key written by
            /// hand), decoding answers a value or an error, never a panic.
            #[test]
            fn any_bytes_decode_or_fail_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let value = Value::Bytes(bytes.clone().into());
                let _ = session_from_value(key(), &value);
                let _ = user_from_value(&value);
                let _ = optional_session(key(), value.clone());
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    let _ = fence_covers(text, "ab", 1);
                    let _ = verification_from_json(text);
                    let _ = session_from_value(key(), &Value::from(text));
                    let _ = user_from_value(&Value::from(text));
                }
            }

            /// The same for values shaped like ours: five numbers, then anything.
            #[test]
            fn near_misses_decode_or_fail_without_panicking(
                numbers in proptest::collection::vec(any::<i64>(), 0..7),
                rest in "[ +\\-0-9a-f:.]{0,40}",
            ) {
                let mut text: Vec<String> = numbers.iter().map(i64::to_string).collect();
                text.push(rest);
                let text = text.join(" ");
                let _ = session_from_value(key(), &Value::from(text.as_str()));
                let _ = user_from_value(&Value::from(text.as_str()));
            }
        }
    }
}
