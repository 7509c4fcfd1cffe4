//! The bundled list of the most common passwords from breach corpora
//! (`data/common-passwords.txt`, the 10,000 most frequent, lower case), refused as new
//! passwords at registration, change and reset (NIST SP 800-63B §3.1.1.2).
//!
//! The list is compiled into the binary and loaded into a hash set on first use. The
//! comparison ignores case, so `Password1` is refused like `password1`: a breach list's
//! capitalised variants are as guessable as the originals.

use std::collections::HashSet;
use std::sync::OnceLock;

/// The list as shipped: one password per line, `#` starts a comment line.
const LIST: &str = include_str!("../../data/common-passwords.txt");

fn list() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        LIST.lines()
            .map(str::trim_end)
            .filter(|line| !line.is_empty() && !line.starts_with('#'))
            .collect()
    })
}

/// Whether `password` (compared in lower case) is on the list.
pub(crate) fn is_common(password: &str) -> bool {
    // Entries are at most a few dozen bytes: a longer password cannot match, and is not
    // lower-cased for nothing.
    password.len() <= 64 && list().contains(password.to_lowercase().as_str())
}

/// How many passwords the bundled list holds.
pub fn common_password_count() -> usize {
    list().len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_holds_the_ten_thousand_most_common() {
        assert!(common_password_count() >= 10_000, "{}", common_password_count());
        for common in ["password", "12345678", "Password", "QWERTYUIOP", "iloveyou", "trustno1"] {
            assert!(is_common(common), "{common}");
        }
        for fine in ["correct horse battery staple", "tiered-auth 2025!", "", "#"] {
            assert!(!is_common(fine), "{fine}");
        }
        // Comment lines are not passwords.
        assert!(!is_common("# the 10,000 most common passwords, most common first, one per line."));
    }
}
