//! `[admin]`: the admin API's bearer token and the rule a token must meet.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::redact::redacted_out;

/// The admin API.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminSettings {
    /// The bearer token of `/v1/admin/*` (at least 32 characters; generate it, e.g.
    /// `openssl rand -base64 32`). Unset (the default): the admin API is disabled and
    /// answers 404 `admin_disabled`. Only its SHA-256 is kept in memory.
    #[serde(serialize_with = "redacted_out", skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretString>,
    /// A file whose content is `token` (trailing newline trimmed). Setting both is an
    /// error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// Shortest accepted admin token: 32 characters of a generated secret are far beyond
/// guessing, and rule out a typed-in password.
pub const ADMIN_TOKEN_MIN_CHARS: usize = 32;

/// Least estimated entropy of an admin token, in bits: the token's length times the
/// Shannon entropy of its own character distribution. 32 random hex characters (128
/// bits) estimate at about 115, and at no less than 89 in 200,000 draws (the estimate
/// of a short random string runs low), so the bar sits well below that: a generated
/// token of the documented minimum is never refused, while `aaaa…` estimates at 0 and
/// `abab…` at one bit per character. (96 refused about one such token in 10,000.)
pub const ADMIN_TOKEN_MIN_BITS: f64 = 80.0;

/// Why `token` is too weak to guard the admin API, or `None` when it is acceptable.
///
/// Length alone lets `aaaa…aaaa` or `0123456789abcdef0123456789abcdef` through. A
/// generated token (`openssl rand -hex 16` or `-base64 32`, a UUID) passes every rule
/// below with overwhelming probability; a typed-in phrase or a pattern does not:
/// - at least [`ADMIN_TOKEN_MIN_CHARS`] characters;
/// - at least two character classes (lower case, upper case, digits, others);
/// - at most a quarter of its 3-character sequences seen before in it (`abcdabcd…`,
///   `Password1Password2…`);
/// - not mostly runs: at most three quarters of the neighbouring pairs are equal or
///   consecutive characters (`aaaa`, `abcd`, `9876`). In 32 random hex characters 17 %
///   of the pairs are (44 of the 256), so a bar at half refused about one generated token
///   in 80,000 (the binomial tail, 1.3e-5; seen in CI); at three quarters, 3e-13;
/// - at least [`ADMIN_TOKEN_MIN_BITS`] of estimated entropy.
pub fn admin_token_weakness(token: &str) -> Option<String> {
    let chars: Vec<char> = token.chars().collect();
    let n = chars.len();
    if n < ADMIN_TOKEN_MIN_CHARS {
        return Some(format!("it must be at least {ADMIN_TOKEN_MIN_CHARS} characters long"));
    }
    let classes = [
        chars.iter().any(char::is_ascii_lowercase),
        chars.iter().any(char::is_ascii_uppercase),
        chars.iter().any(char::is_ascii_digit),
        chars.iter().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if classes.iter().filter(|&&present| present).count() < 2 {
        return Some("it uses one class of characters only".to_owned());
    }
    // Random text rarely repeats a 3-character sequence; `abab…`, `PasswordPassword…`
    // or `2024-2024-…` mostly consist of repeats.
    let mut seen = std::collections::HashSet::new();
    let repeats = chars.windows(3).filter(|gram| !seen.insert(*gram)).count();
    if repeats * 4 > n - 2 {
        return Some("it repeats parts of itself".to_owned());
    }
    let steps = chars
        .windows(2)
        .filter(|pair| (i64::from(u32::from(pair[1])) - i64::from(u32::from(pair[0]))).abs() <= 1)
        .count();
    if steps * 4 > (n - 1) * 3 {
        return Some("it is mostly repeated or consecutive characters".to_owned());
    }
    let mut counts = std::collections::HashMap::<char, u32>::new();
    for &c in &chars {
        *counts.entry(c).or_default() += 1;
    }
    #[allow(clippy::cast_precision_loss)] // Token lengths are far below 2^52.
    let bits = {
        let len = n as f64;
        let per_char: f64 = counts
            .values()
            .map(|&k| {
                let p = f64::from(k) / len;
                -p * p.log2()
            })
            .sum();
        per_char * len
    };
    if bits < ADMIN_TOKEN_MIN_BITS {
        return Some(format!(
            "its estimated entropy is {bits:.0} bits, below {ADMIN_TOKEN_MIN_BITS:.0} \
             (too few distinct characters)"
        ));
    }
    None
}
