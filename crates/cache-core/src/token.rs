//! Secret tokens and their hashes.
//!
//! A session cookie carries `"{user_id}.{secret}"`: the user id in decimal, then 256 bits
//! from the OS CSPRNG encoded as unpadded base64url (43 characters). The user id lets the
//! Redis tier put a session, its user's index and its user's revocation epoch in one hash
//! slot; the secret is what makes the token unguessable. Stores only ever see the SHA-256
//! of the secret ([`TokenHash`]), so a dump of any store yields no usable session.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::id::UserId;
pub use crate::random::{RandomError, fill_random};

/// Number of random bytes in every secret token (256 bits).
pub const SECRET_LEN: usize = 32;
/// Length of a secret once base64url-encoded without padding.
pub const ENCODED_SECRET_LEN: usize = 43;
/// Longest session cookie value we accept: a 20-digit user id, a dot and a secret.
pub const MAX_SESSION_TOKEN_LEN: usize = 20 + 1 + ENCODED_SECRET_LEN;

/// Why a presented token could not be parsed. Deliberately coarse: a client learns only
/// that its token is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenParseError {
    /// The value is empty, too long, or not of the expected shape.
    #[error("malformed token")]
    Malformed,
    /// The random part is not 43 characters of base64url.
    #[error("malformed token secret")]
    BadSecret,
    /// The user id part is not a positive decimal integer.
    #[error("malformed token user id")]
    BadUserId,
}

/// 256 random bits, the secret part of every token. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; SECRET_LEN]);

impl Secret {
    /// Draws a new secret from the OS CSPRNG.
    pub fn generate() -> Result<Self, RandomError> {
        let mut bytes = [0u8; SECRET_LEN];
        fill_random(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// Builds a secret from raw bytes (tests, seeding).
    pub fn from_bytes(bytes: [u8; SECRET_LEN]) -> Self {
        Self(bytes)
    }

    /// The SHA-256 of the secret: the only form any store keeps.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0).into())
    }

    /// Unpadded base64url form, as sent to the client.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses the unpadded base64url form.
    pub fn decode(s: &str) -> Result<Self, TokenParseError> {
        if s.len() != ENCODED_SECRET_LEN {
            return Err(TokenParseError::BadSecret);
        }
        let mut bytes = [0u8; SECRET_LEN];
        match URL_SAFE_NO_PAD.decode_slice(s.as_bytes(), &mut bytes) {
            Ok(SECRET_LEN) => Ok(Self(bytes)),
            _ => Err(TokenParseError::BadSecret),
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// SHA-256 of a token secret: the key every store uses. Comparisons are constant-time.
#[derive(Clone, Copy, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Wraps raw digest bytes (as read back from a store).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Parses a digest from a byte slice; `None` unless it is exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// Raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, as used in Redis keys and logs.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }
}

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

// Hashing and ordering see the same bytes as the constant-time equality.
impl std::hash::Hash for TokenHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialOrd for TokenHash {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TokenHash {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl fmt::Debug for TokenHash {
    // A hash is not a credential, but a short prefix is all a log reader needs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.to_hex()[..12])
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What identifies a session in every store: its user and the hash of its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey {
    /// The session's owner (also the Redis Cluster hash tag).
    pub user: UserId,
    /// SHA-256 of the token secret.
    pub hash: TokenHash,
}

/// A session token as held by the client. `Debug` and `Display` are redacted; only
/// [`SessionToken::encode`] reveals it, for the `Set-Cookie` header.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken {
    user: UserId,
    secret: Secret,
}

impl SessionToken {
    /// A fresh token for `user` from the OS CSPRNG.
    pub fn generate(user: UserId) -> Result<Self, RandomError> {
        Ok(Self { user, secret: Secret::generate()? })
    }

    /// Builds a token from parts (tests, seeding).
    pub fn from_parts(user: UserId, secret: Secret) -> Self {
        Self { user, secret }
    }

    /// The user the token claims to belong to. Only a store lookup confirms it.
    pub fn user(&self) -> UserId {
        self.user
    }

    /// The store key: user id and SHA-256 of the secret.
    pub fn key(&self) -> SessionKey {
        SessionKey { user: self.user, hash: self.secret.hash() }
    }

    /// The cookie value `"{user_id}.{secret}"`.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.user.get(), self.secret.encode())
    }

    /// Parses a cookie value; never panics on any input.
    pub fn parse(s: &str) -> Result<Self, TokenParseError> {
        if s.is_empty() || s.len() > MAX_SESSION_TOKEN_LEN {
            return Err(TokenParseError::Malformed);
        }
        let (user, secret) = s.split_once('.').ok_or(TokenParseError::Malformed)?;
        let user = UserId::from_str(user).map_err(|_| TokenParseError::BadUserId)?;
        Ok(Self { user, secret: Secret::decode(secret)? })
    }
}

impl FromStr for SessionToken {
    type Err = TokenParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionToken(user={}, <redacted>)", self.user)
    }
}

impl fmt::Display for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted session token>")
    }
}

/// A single-use token for email verification or password reset: 256 random bits,
/// base64url in a link. Redacted in `Debug`/`Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct VerificationToken(Secret);

impl VerificationToken {
    /// A fresh token from the OS CSPRNG.
    pub fn generate() -> Result<Self, RandomError> {
        Ok(Self(Secret::generate()?))
    }

    /// The store key.
    pub fn hash(&self) -> TokenHash {
        self.0.hash()
    }

    /// The base64url form that goes into a link.
    pub fn encode(&self) -> String {
        self.0.encode()
    }

    /// Parses the base64url form.
    pub fn parse(s: &str) -> Result<Self, TokenParseError> {
        Secret::decode(s).map(Self)
    }
}

impl fmt::Debug for VerificationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerificationToken(<redacted>)")
    }
}

impl fmt::Display for VerificationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted verification token>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_token_round_trips_and_is_redacted() {
        let token = SessionToken::generate(UserId::new(42).unwrap()).unwrap();
        let encoded = token.encode();
        assert!(encoded.starts_with("42."));
        assert_eq!(encoded.len(), 3 + ENCODED_SECRET_LEN);
        let parsed = SessionToken::parse(&encoded).unwrap();
        assert_eq!(parsed.key(), token.key());
        assert!(!format!("{token:?}").contains(&encoded[3..]));
        assert!(!format!("{token}").contains(&encoded[3..]));
    }

    #[test]
    fn two_tokens_differ() {
        let user = UserId::new(1).unwrap();
        let a = SessionToken::generate(user).unwrap();
        let b = SessionToken::generate(user).unwrap();
        assert_ne!(a.key().hash, b.key().hash);
    }

    #[test]
    fn garbage_is_rejected_without_panic() {
        for input in [
            "",
            ".",
            "1.",
            ".AAAA",
            "abc.def",
            "-1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
            "1.ÀAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "99999999999999999999999.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(SessionToken::parse(input).is_err(), "{input:?} parsed");
        }
        assert!(SessionToken::parse("1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").is_ok());
    }

    #[test]
    fn hash_hex_round_trips() {
        let hash = Secret::from_bytes([7; 32]).hash();
        assert_eq!(TokenHash::from_hex(&hash.to_hex()), Some(hash));
        assert_eq!(TokenHash::from_hex("zz"), None);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn user() -> impl Strategy<Value = UserId> {
            any::<i64>().prop_filter_map("ids are positive", UserId::new)
        }

        proptest! {
            #[test]
            fn session_tokens_round_trip(user in user(), secret in any::<[u8; 32]>()) {
                let token = SessionToken::from_parts(user, Secret::from_bytes(secret));
                let parsed = SessionToken::parse(&token.encode()).unwrap();
                prop_assert_eq!(parsed.key(), token.key());
                prop_assert!(parsed == token);
            }

            /// Any cookie value parses or fails, never panics; what parses is a token
            /// that encodes back to a value that parses to itself.
            #[test]
            fn any_cookie_value_parses_or_fails(s in any::<String>()) {
                if let Ok(token) = SessionToken::parse(&s) {
                    prop_assert!(SessionToken::parse(&token.encode()).unwrap() == token);
                }
            }

            /// The same for values shaped like tokens, which reach the deeper checks.
            #[test]
            fn near_miss_tokens_parse_or_fail(
                user in "[+-]?[0-9]{0,21}",
                dots in "\\.{0,2}",
                secret in "[A-Za-z0-9_=+/-]{40,46}",
            ) {
                let s = format!("{user}{dots}{secret}");
                if let Ok(token) = SessionToken::parse(&s) {
                    prop_assert_eq!(token.encode(), format!("{}.{secret}", token.user().get()));
                }
                let _ = Secret::decode(&secret);
                let _ = VerificationToken::parse(&secret);
            }

            /// A 43-character base64url string decodes exactly when its last character
            /// carries no bits past the 256 (what the API's token pattern says).
            #[test]
            fn secrets_decode_when_their_last_character_is_canonical(
                head in "[A-Za-z0-9_-]{42}",
                last in "[A-Za-z0-9_-]",
            ) {
                let s = format!("{head}{last}");
                let canonical = "AEIMQUYcgkosw048".contains(last.as_str());
                prop_assert_eq!(Secret::decode(&s).is_ok(), canonical);
                if let Ok(secret) = Secret::decode(&s) {
                    prop_assert_eq!(secret.encode(), s);
                }
            }

            #[test]
            fn hashes_round_trip_through_hex(bytes in any::<[u8; 32]>(), s in any::<String>()) {
                let hash = TokenHash::from_bytes(bytes);
                prop_assert_eq!(TokenHash::from_hex(&hash.to_hex()), Some(hash));
                prop_assert_eq!(TokenHash::from_hex(&hash.to_hex().to_uppercase()), Some(hash));
                let _ = TokenHash::from_hex(&s);
            }
        }
    }
}
