//! The wire format of cross-instance invalidation messages.
//!
//! A revocation on one instance is published (by the Redis tier) so that every other
//! instance drops the session from its memory tier. The format is a short line of text:
//! `s {user} {hash_hex} {at_micros}` for one session, `u {user} {keep_hex|-} {at_micros}`
//! for all of a user's sessions, `p {user}` for a changed user profile, `t {hash_hex}` for
//! a changed or deleted session state, `w {user}` for every state bound to a user.

use chrono::DateTime;

use crate::model::{Revocation, UserId};
use crate::state::StateKey;
use crate::token::{SessionKey, TokenHash};

/// A message on the invalidation channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// Sessions were revoked.
    Revoked(Revocation),
    /// A user's cached profile is stale.
    User(UserId),
    /// A session state changed or was deleted.
    State(StateKey),
    /// Every session state bound to the user was deleted.
    UserStates(UserId),
}

impl Invalidation {
    /// Encodes the message.
    pub fn encode(&self) -> String {
        match self {
            Invalidation::Revoked(Revocation::Session { key, at }) => {
                format!("s {} {} {}", key.user, key.hash.to_hex(), at.timestamp_micros())
            }
            Invalidation::Revoked(Revocation::AllOfUser { user, keep, at }) => {
                let keep = keep.map_or_else(|| "-".to_owned(), |k| k.to_hex());
                format!("u {user} {keep} {}", at.timestamp_micros())
            }
            Invalidation::User(user) => format!("p {user}"),
            Invalidation::State(key) => format!("t {}", key.to_hex()),
            Invalidation::UserStates(user) => format!("w {user}"),
        }
    }

    /// Decodes a message; `None` for anything malformed.
    pub fn decode(s: &str) -> Option<Self> {
        let mut parts = s.split(' ');
        let kind = parts.next()?;
        if kind == "t" {
            let hash = TokenHash::from_hex(parts.next()?)?;
            return parts
                .next()
                .is_none()
                .then_some(Invalidation::State(StateKey::from_hash(hash)));
        }
        let user: UserId = parts.next()?.parse().ok()?;
        let msg = match kind {
            "p" => Invalidation::User(user),
            "w" => Invalidation::UserStates(user),
            "s" | "u" => {
                let third = parts.next()?;
                let at = DateTime::from_timestamp_micros(parts.next()?.parse().ok()?)?;
                if kind == "s" {
                    let hash = TokenHash::from_hex(third)?;
                    Invalidation::Revoked(Revocation::Session {
                        key: SessionKey { user, hash },
                        at,
                    })
                } else {
                    let keep = if third == "-" { None } else { Some(TokenHash::from_hex(third)?) };
                    Invalidation::Revoked(Revocation::AllOfUser { user, keep, at })
                }
            }
            _ => return None,
        };
        parts.next().is_none().then_some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Secret;

    #[test]
    fn messages_round_trip() {
        let user = UserId::new(9).unwrap();
        let hash = Secret::from_bytes([3; 32]).hash();
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        for msg in [
            Invalidation::Revoked(Revocation::Session { key: SessionKey { user, hash }, at }),
            Invalidation::Revoked(Revocation::AllOfUser { user, keep: Some(hash), at }),
            Invalidation::Revoked(Revocation::AllOfUser { user, keep: None, at }),
            Invalidation::User(user),
            Invalidation::State(StateKey::from_hash(hash)),
            Invalidation::UserStates(user),
        ] {
            assert_eq!(Invalidation::decode(&msg.encode()), Some(msg));
        }
        for bad in
            ["", "x 1", "s 1 zz 5", "p 0", "p 1 extra", "u 1 - notanumber", "t zz", "t", "w 0"]
        {
            assert_eq!(Invalidation::decode(bad), None, "{bad:?}");
        }
    }
}
