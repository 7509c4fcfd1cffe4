//! [`SecretDigest`]: a configured secret (the admin token) kept as its SHA-256 and
//! compared in constant time.

use std::fmt;

use sha2::{Digest, Sha256};

/// The SHA-256 of a configured secret (an admin token), kept instead of the secret, and
/// compared in constant time. Hashing both sides first also makes the comparison's time
/// independent of the presented value's length.
#[derive(Clone)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// The digest of `secret`.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Whether `presented` is the secret, in time independent of where they differ.
    pub fn matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(self.0.ct_eq(&presented))
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDigest(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_digests_match_only_their_secret() {
        let digest = SecretDigest::of("s3cret-admin-token");
        assert!(digest.matches("s3cret-admin-token"));
        assert!(!digest.matches("s3cret-admin-token "));
        assert!(!digest.matches(""));
        assert_eq!(format!("{digest:?}"), "SecretDigest(<redacted>)");
    }
}
