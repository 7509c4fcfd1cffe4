//! The password policy: a length in Unicode scalar values, and not on the breach list
//! (`common.rs`).

use super::common::is_common;
use crate::config::PasswordPolicy;
use crate::error::AuthError;

/// Checks a new password against the policy. Length is counted in Unicode scalar values;
/// the password is never trimmed, normalized or truncated.
pub(crate) fn check_policy(
    policy: &PasswordPolicy,
    field: &'static str,
    password: &str,
) -> Result<(), AuthError> {
    let chars = password.chars().count();
    if chars < policy.min_chars {
        return Err(AuthError::WeakPassword(format!(
            "the password must be at least {} characters long",
            policy.min_chars
        )));
    }
    if chars > policy.max_chars {
        return Err(AuthError::invalid(
            field,
            format!("the password must be at most {} characters long", policy.max_chars),
        ));
    }
    if is_common(password) {
        return Err(AuthError::WeakPassword(
            "this password is one of the most common passwords found in data breaches; \
             choose another"
                .to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_counts_scalar_values() {
        let policy = PasswordPolicy { min_chars: 8, max_chars: 128 };
        // Exactly the minimum length (and not a common password).
        assert!(check_policy(&policy, "password", "kq8#mz2p").is_ok());
        assert!(matches!(
            check_policy(&policy, "password", "1234567"),
            Err(AuthError::WeakPassword(_))
        ));
        assert!(check_policy(&policy, "password", &"ß".repeat(8)).is_ok());
        assert!(check_policy(&policy, "password", &"ß".repeat(128)).is_ok());
        assert!(matches!(
            check_policy(&policy, "password", &"ß".repeat(129)),
            Err(AuthError::InvalidInput { field: "password", .. })
        ));
        // Whitespace counts and is kept.
        assert!(check_policy(&policy, "password", "        ").is_ok());
        // Long enough, but on the breach list: refused with the reason.
        match check_policy(&policy, "password", "Baseball1") {
            Err(AuthError::WeakPassword(reason)) => assert!(reason.contains("common"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}
