//! Encoding of sessions, users and verifications into script arguments and back from
//! replies. Only token hashes appear in keys; values hold no secret.

use std::net::IpAddr;

use cache_core::{Session, SessionKey, TokenHash, User, UserId, Verification};
use chrono::{DateTime, Utc};
use fred::prelude::Value;

use crate::error::RedisError;

/// Microseconds since the epoch, as scripts compare them.
pub(crate) fn micros(t: DateTime<Utc>) -> String {
    t.timestamp_micros().to_string()
}

/// Milliseconds of a duration for `PX`/`PEXPIRE`, at least 1.
pub(crate) fn millis(d: std::time::Duration) -> String {
    d.as_millis().clamp(1, u128::from(u64::MAX)).to_string()
}

fn optional(value: Option<String>) -> Value {
    match value {
        Some(v) => Value::from(format!("1{v}")),
        None => Value::from("0"),
    }
}

/// The field arguments of the write script: created, renewed, expires, absolute,
/// version, user agent, ip.
pub(crate) fn session_args(session: &Session) -> [Value; 7] {
    [
        micros(session.created_at).into(),
        micros(session.renewed_at).into(),
        micros(session.expires_at).into(),
        micros(session.absolute_expires_at).into(),
        session.version.to_string().into(),
        optional(session.user_agent.clone()),
        optional(session.ip.map(|ip| ip.to_string())),
    ]
}

fn text(v: &Value, what: &str) -> Result<String, RedisError> {
    v.as_string().ok_or_else(|| RedisError::reply(format!("{what} is not a string")))
}

/// A string field borrowed from the reply (no copy for the bulk strings Redis returns).
fn borrowed<'a>(v: &'a Value, what: &str) -> Result<std::borrow::Cow<'a, str>, RedisError> {
    v.as_str().ok_or_else(|| RedisError::reply(format!("{what} is not a string")))
}

/// An integer field (a Redis integer or a decimal string).
pub(crate) fn int(v: &Value, what: &str) -> Result<i64, RedisError> {
    match v {
        Value::Integer(i) => Ok(*i),
        _ => borrowed(v, what)?
            .parse()
            .map_err(|_| RedisError::reply(format!("{what} is not an integer"))),
    }
}

fn time(v: &Value, what: &str) -> Result<DateTime<Utc>, RedisError> {
    DateTime::from_timestamp_micros(int(v, what)?)
        .ok_or_else(|| RedisError::reply(format!("{what} is out of range")))
}

/// Decodes the 7 fields returned by the session scripts (`c r e a v ua ip`).
pub(crate) fn session_from_fields(
    key: SessionKey,
    fields: &[Value],
) -> Result<Session, RedisError> {
    let [c, r, e, a, v, ua, ip] = fields else {
        return Err(RedisError::reply(format!("session has {} fields, not 7", fields.len())));
    };
    let ip = if ip.is_null() {
        None
    } else {
        Some(borrowed(ip, "ip")?.parse::<IpAddr>().map_err(|_| RedisError::reply("invalid ip"))?)
    };
    Ok(Session {
        key,
        created_at: time(c, "created")?,
        renewed_at: time(r, "renewed")?,
        expires_at: time(e, "expires")?,
        absolute_expires_at: time(a, "absolute expiry")?,
        user_agent: if ua.is_null() { None } else { Some(text(ua, "user agent")?) },
        ip,
        version: int(v, "version")?,
    })
}

/// Decodes a script reply that is either nil or the session's fields.
pub(crate) fn optional_session(
    key: SessionKey,
    reply: Value,
) -> Result<Option<Session>, RedisError> {
    match reply {
        Value::Null => Ok(None),
        Value::Array(fields) => session_from_fields(key, &fields).map(Some),
        other => Err(RedisError::reply(format!("session reply is {:?}", other.kind()))),
    }
}

/// Decodes the list script's `[hash, fields, …]`.
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
        let Value::Array(fields) = &pair[1] else {
            return Err(RedisError::reply("list entry without fields"));
        };
        sessions.push(session_from_fields(SessionKey { user, hash }, fields)?);
    }
    Ok(sessions)
}

/// Arguments of the put_user script after the TTL: id, name, email, verified, created.
pub(crate) fn user_args(user: &User) -> [Value; 5] {
    [
        user.id.get().to_string().into(),
        user.name.clone().into(),
        user.email.clone().into(),
        if user.email_verified { "1" } else { "0" }.into(),
        micros(user.created_at).into(),
    ]
}

/// Decodes `HMGET user id name email ev c`.
pub(crate) fn user_from_fields(fields: &[Value]) -> Result<Option<User>, RedisError> {
    let [id, name, email, verified, created] = fields else {
        return Err(RedisError::reply("user reply does not have 5 fields"));
    };
    if id.is_null() {
        return Ok(None);
    }
    let id =
        UserId::new(int(id, "user id")?).ok_or_else(|| RedisError::reply("invalid user id"))?;
    Ok(Some(User {
        id,
        name: text(name, "name")?,
        email: text(email, "email")?,
        email_verified: borrowed(verified, "email_verified")? == "1",
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

    #[test]
    fn session_fields_round_trip() {
        let now = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let key =
            SessionKey { user: UserId::new(7).unwrap(), hash: TokenHash::from_bytes([1; 32]) };
        for (ua, ip) in [(Some("curl/8".to_owned()), Some("::1".parse().unwrap())), (None, None)] {
            let session = Session {
                key,
                created_at: now,
                renewed_at: now,
                expires_at: now + Duration::days(1),
                absolute_expires_at: now + Duration::days(30),
                user_agent: ua,
                ip,
                version: 3,
            };
            // What the script stores and returns: the optional fields without their flag.
            let fields: Vec<Value> = session_args(&session)
                .into_iter()
                .enumerate()
                .map(|(i, v)| match (i, v.as_string()) {
                    (5 | 6, Some(s)) if s == "0" => Value::Null,
                    (5 | 6, Some(s)) => Value::from(s[1..].to_owned()),
                    (_, _) => v,
                })
                .collect();
            assert_eq!(session_from_fields(key, &fields).unwrap(), session);
        }
        assert!(session_from_fields(key, &[Value::from("x")]).is_err());
    }
}
