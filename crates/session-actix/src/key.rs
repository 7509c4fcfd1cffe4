//! Session keys: 48 bytes from the OS CSPRNG, encoded as 64 characters of unpadded
//! base64url (384 bits; actix-session's own keys are 64 alphanumeric characters, about
//! 381 bits). Stores never see a key, only its SHA-256 ([`cache_core::StateKey`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Random bytes per session key.
const KEY_BYTES: usize = 48;

/// Length of a session key as sent in the cookie.
pub const SESSION_KEY_LEN: usize = 64;

/// The OS random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct KeyError(getrandom::Error);

/// A new session key.
pub fn generate_session_key() -> Result<String, KeyError> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes).map_err(KeyError)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_64_cookie_safe_characters_and_differ() {
        let a = generate_session_key().unwrap();
        let b = generate_session_key().unwrap();
        assert_eq!(a.len(), SESSION_KEY_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{a}");
        assert_ne!(a, b);
    }
}
