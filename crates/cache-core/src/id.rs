//! [`UserId`]: who a session, a profile or a verification belongs to. Its own module,
//! below `token` (a session key names its user) and `model` (every record does).

use std::fmt;
use std::num::NonZeroI64;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::random::{RandomError, fill_random};

/// A user's id: a random positive 63-bit integer, so that ids in cookies reveal neither
/// the number of users nor the order of sign-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct UserId(NonZeroI64);

impl UserId {
    /// Wraps a stored id; `None` unless it is positive.
    pub fn new(id: i64) -> Option<Self> {
        if id > 0 { NonZeroI64::new(id).map(Self) } else { None }
    }

    /// A fresh random id from the OS CSPRNG.
    pub fn random() -> Result<Self, RandomError> {
        loop {
            let mut bytes = [0u8; 8];
            fill_random(&mut bytes)?;
            let id = i64::from_le_bytes(bytes) & i64::MAX;
            if let Some(id) = Self::new(id) {
                return Ok(id);
            }
        }
    }

    /// The integer value, as stored in SQL.
    pub fn get(self) -> i64 {
        self.0.get()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Error for a user id that is not a positive decimal integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid user id")]
pub struct InvalidUserId;

impl FromStr for UserId {
    type Err = InvalidUserId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `i64::from_str` accepts a leading '+'; a canonical id never has one.
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidUserId);
        }
        s.parse::<i64>().ok().and_then(Self::new).ok_or(InvalidUserId)
    }
}

impl TryFrom<i64> for UserId {
    type Error = InvalidUserId;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Self::new(v).ok_or(InvalidUserId)
    }
}

impl From<UserId> for i64 {
    fn from(v: UserId) -> Self {
        v.get()
    }
}
