//! Secrets in `authd check-config`'s output: redacted URLs and hidden values.

use secrecy::SecretString;

/// What `authd check-config` prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// A secret URL with its password (and query) replaced, for `authd check-config`.
pub(super) fn redacted_url_out<S: serde::Serializer>(
    url: &SecretString,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(secrecy::ExposeSecret::expose_secret(url)))
}

/// A set secret URL, redacted (unset ones are skipped).
pub(super) fn redacted_optional_url_out<S: serde::Serializer>(
    url: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => redacted_url_out(url, s),
        None => s.serialize_none(),
    }
}

/// A set secret (password, token), never shown (unset ones are skipped).
pub(super) fn redacted_out<S: serde::Serializer>(
    _: &Option<SecretString>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(REDACTED)
}

/// A URL with any password (and any query string, which may carry one) replaced by
/// `***`, for logs and error messages.
pub fn redact_url(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((base, _)) => (base, "?***"),
        None => (url, ""),
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("{url}{query}");
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}{path}{query}")
        }
        None => format!("{url}{query}"),
    }
}
