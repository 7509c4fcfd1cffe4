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

/// Trims an email address, lower-cases its local part and maps its domain to its one
/// ASCII form (IDNA: UTS 46 processing, which also lower-cases and folds compatibility
/// forms such as full-width letters, then Punycode), then applies a pragmatic RFC 5322
/// check: one `@`, a non-empty local part of at most 64 bytes, a domain with a dot and
/// no empty label, at most 254 bytes in all, no whitespace or control characters, and an
/// address lettre can send to.
///
/// Every lookup, rate-limit key and stored address goes through here, so
/// `user@ＥＸＡＭＰＬＥ.com` and `User@example.com` are one account. Idempotent: the
/// result normalizes to itself.
pub(crate) fn normalize_email(email: &str) -> Result<String, AuthError> {
    let invalid = || AuthError::invalid("email", "must be a valid email address");
    let email = email.trim();
    if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if domain.contains('@') {
        return Err(invalid());
    }
    // The local part keeps its rule (lower case; its meaning is the receiving server's).
    let local = local.to_lowercase();
    let domain = idna::domain_to_ascii(domain).map_err(|_| invalid())?;
    let email = format!("{local}@{domain}");
    // Mapping can produce what the input did not show (a full-width space is a space).
    if email.len() > EMAIL_MAX_LEN || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    if local.is_empty()
        || local.len() > EMAIL_LOCAL_MAX_LEN
        || !domain.contains('.')
        || domain.split('.').any(str::is_empty)
    {
        return Err(invalid());
    }
    // What we accept must also be deliverable through lettre.
    if lettre::Address::new(&local, &domain).is_err() {
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
    fn domains_are_mapped_to_one_ascii_form() {
        let same = [
            "user@example.com",
            "user@EXAMPLE.COM",
            "user@\u{FF25}\u{FF38}\u{FF21}\u{FF2D}\u{FF30}\u{FF2C}\u{FF25}.com", // ＥＸＡＭＰＬＥ
            "user@\u{FF45}\u{FF58}\u{FF41}\u{FF4D}\u{FF50}\u{FF4C}\u{FF45}\u{FF0E}com", // ｅｘａｍｐｌｅ．com
            "user@example\u{3002}com", // ideographic full stop
            " User@Example.Com ",
        ];
        for email in same {
            assert_eq!(normalize_email(email).unwrap(), "user@example.com", "{email:?}");
        }
        // Internationalized domains are stored as Punycode, whatever their spelling.
        assert_eq!(normalize_email("Ana@Bücher.de").unwrap(), "ana@xn--bcher-kva.de");
        assert_eq!(normalize_email("ana@BÜCHER.DE").unwrap(), "ana@xn--bcher-kva.de");
        assert_eq!(normalize_email("ana@xn--bcher-kva.de").unwrap(), "ana@xn--bcher-kva.de");
        assert_eq!(normalize_email("ana@例え.jp").unwrap(), "ana@xn--r8jz45g.jp");
        // The local part keeps today's rule: lower-cased, nothing else.
        assert_eq!(
            normalize_email("Ünïcode.Local@example.com").unwrap(),
            "ünïcode.local@example.com"
        );
        assert_eq!(
            normalize_email("\u{FF55}ser@example.com").unwrap(),
            "\u{FF55}ser@example.com",
            "a full-width local part is another mailbox"
        );
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
            "a@exa\u{3000}mple.com", // an ideographic space maps to a space
            "a@xn--zz.com",          // not Punycode
            "a@example\u{FF0E}",     // a full-width trailing dot is a trailing dot
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

    mod properties {
        use proptest::prelude::*;

        use super::normalize_email;

        /// The full-width form of a printable ASCII character.
        fn full_width(c: char) -> char {
            if c.is_ascii_graphic() {
                char::from_u32(u32::from(c) + 0xFEE0).unwrap_or(c)
            } else {
                c
            }
        }

        proptest! {
            #[test]
            fn normalization_is_idempotent(
                email in "[a-zA-Z0-9.+_\u{e9}\u{fc}\u{ff41}-\u{ff5a}\u{ff21}-\u{ff3a}-]{1,12}@[a-zA-Z0-9\u{e9}\u{fc}\u{4f8b}\u{ff41}-\u{ff5a}\u{ff21}-\u{ff3a}\u{ff0e}\u{3002}.-]{1,20}\\.[a-zA-Z\u{ff41}-\u{ff5a}]{2,6}"
            ) {
                if let Ok(once) = normalize_email(&email) {
                    prop_assert_eq!(normalize_email(&once).ok(), Some(once.clone()));
                    prop_assert!(once.split_once('@').is_some_and(|(_, d)| d.is_ascii()));
                }
            }

            #[test]
            fn case_and_width_of_a_domain_do_not_matter(
                local in "[a-z0-9.]{1,10}",
                domain in "[a-z0-9]{1,12}(\\.[a-z0-9]{1,8}){0,2}\\.[a-z]{2,6}",
                upper in any::<bool>(),
                wide in any::<bool>(),
            ) {
                let Ok(plain) = normalize_email(&format!("{local}@{domain}")) else {
                    return Ok(());
                };
                let mut spelled: String = domain.clone();
                if upper {
                    spelled = spelled.to_ascii_uppercase();
                }
                if wide {
                    spelled = spelled.chars().map(full_width).collect();
                }
                prop_assert_eq!(normalize_email(&format!("{local}@{spelled}")).ok(), Some(plain));
            }
        }
    }
}
