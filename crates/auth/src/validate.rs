//! Validation and normalization of names and email addresses.

use crate::error::AuthError;

/// Longest display name, in characters, after trimming.
pub(crate) const NAME_MAX_CHARS: usize = 100;
/// Longest email address (RFC 5321 path limit minus the angle brackets).
pub(crate) const EMAIL_MAX_LEN: usize = 254;
/// Longest local part (RFC 5321).
pub(crate) const EMAIL_LOCAL_MAX_LEN: usize = 64;

/// Trims a display name and checks it is 1..=100 characters without control characters.
pub(crate) fn normalize_name(name: &str) -> Result<String, AuthError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 {
        return Err(AuthError::invalid("name", "must not be empty"));
    }
    if chars > NAME_MAX_CHARS {
        return Err(AuthError::invalid(
            "name",
            format!("must be at most {NAME_MAX_CHARS} characters long"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(AuthError::invalid("name", "must not contain control characters"));
    }
    Ok(name.to_owned())
}

/// Trims and lower-cases an email address, then applies a pragmatic RFC 5322 check: one
/// `@`, a non-empty local part of at most 64 bytes, a domain with a dot and no empty
/// label, at most 254 bytes in all, no whitespace or control characters, and an address
/// lettre can send to.
pub(crate) fn normalize_email(email: &str) -> Result<String, AuthError> {
    let invalid = || AuthError::invalid("email", "must be a valid email address");
    let email = email.trim().to_lowercase();
    if email.len() > EMAIL_MAX_LEN || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if local.is_empty()
        || local.len() > EMAIL_LOCAL_MAX_LEN
        || domain.contains('@')
        || !domain.contains('.')
        || domain.split('.').any(str::is_empty)
    {
        return Err(invalid());
    }
    // What we accept must also be deliverable through lettre.
    if lettre::Address::new(local, domain).is_err() {
        return Err(invalid());
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized() {
        assert_eq!(normalize_email("  Alice@Example.COM ").unwrap(), "alice@example.com");
        assert_eq!(normalize_email("a.b+tag@sub.example.org").unwrap(), "a.b+tag@sub.example.org");
    }

    #[test]
    fn bad_emails_are_rejected() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let long_total = format!("a@{}.com", "b".repeat(250));
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@localhost",
            "a@@example.com",
            "a@b@example.com",
            "a b@example.com",
            "a@exa mple.com",
            "a\u{0}@example.com",
            "a@example..com",
            "a@.example.com",
            "a@example.com.",
            long_local.as_str(),
            long_total.as_str(),
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(normalize_name("  Ada  ").unwrap(), "Ada");
        assert!(normalize_name("   ").is_err());
        assert!(normalize_name(&"é".repeat(100)).is_ok());
        assert!(normalize_name(&"é".repeat(101)).is_err());
        assert!(normalize_name("a\nb").is_err());
    }
}
