//! `[cookie]`: the session cookie.

use serde::{Deserialize, Serialize};

/// The session cookie.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CookieSettings {
    /// `true`: cookie `__Host-session` with `Secure` (HTTPS only). `false` (the embedded
    /// default, for plain-http local use): cookie `session` without `Secure`, and a warning
    /// at start-up.
    pub secure: bool,
}
