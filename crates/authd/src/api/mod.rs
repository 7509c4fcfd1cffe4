//! Request and response bodies of the JSON API, with their OpenAPI schemas.
//!
//! These are the wire types; the flows' own types (`auth::User`, `auth::Session`) are
//! mapped into them so that the API can stay stable while the domain evolves. User ids
//! are strings on the wire: they are 63-bit integers, beyond what JavaScript numbers hold.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

mod rfc3339;

/// What a display name may be, as `auth`'s `normalize_name` decides: after trimming
/// white space (Unicode `White_Space`, as `str::trim` does) 1 to 100 characters, none of
/// them a control character (`Cc`). Written out character by character, since `\s`
/// and `\p{..}` differ between the regex engines that read this document.
pub const NAME_PATTERN: &str = concat!(
    r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*",
    r"[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]",
    r"(?:[^\x00-\x1f\x7f-\x9f]{0,98}",
    r"[^\x00-\x1f\x7f-\x9f \xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?",
    r"[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$",
);

/// A verification or reset token: 256 bits as 43 unpadded base64url characters, whose
/// last one carries 4 bits (so its 2 low bits are zero), as `VerificationToken::parse`
/// decodes it.
pub const TOKEN_PATTERN: &str = "^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$";

/// A session id: the hex SHA-256 of the session's secret (either case).
pub const SESSION_ID_PATTERN: &str = "^[0-9a-fA-F]{64}$";

/// `POST /v1/auth/register`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Display name: 1 to 100 characters once surrounding white space is trimmed, no
    /// control characters.
    #[schema(example = "Ada Lovelace")]
    pub name: String,
    /// Email address (at most 254 bytes once its domain is in ASCII form); a
    /// verification link is sent to it.
    #[schema(example = "ada@example.com", format = Email, max_length = 254)]
    pub email: String,
    /// Password: any Unicode, counted in scalar values, within this server's policy
    /// (`auth.password_min_chars`..=`auth.password_max_chars`), and not one of the
    /// 10,000 most common passwords (`400 weak_password`).
    #[schema(format = Password, example = "correct horse battery staple")]
    pub password: String,
}

impl fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("name", &self.name)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/auth/login`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email address of a verified account. Anything else, well-formed or not, is
    /// `401 invalid_credentials`.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// Password. One longer than the policy allows is `401 invalid_credentials`.
    #[schema(format = Password, example = "correct horse battery staple")]
    pub password: String,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest").field("email", &self.email).finish_non_exhaustive()
    }
}

/// A single-use token from a mailed link (`POST /v1/auth/verify-email`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token from the link's `#token=` fragment.
    pub token: String,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenRequest { .. }")
    }
}

/// An email address (`resend-verification`, `forgot-password`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    /// Email address (at most 254 bytes once its domain is in ASCII form).
    #[schema(example = "ada@example.com", format = Email, max_length = 254)]
    pub email: String,
}

/// `POST /v1/auth/logout-everywhere`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutEverywhereRequest {
    /// Keep the session making this request (default: end it too).
    #[serde(default)]
    pub keep_current: bool,
}

/// `POST /v1/auth/change-password`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The password in use; a wrong one is `401 invalid_credentials`.
    #[schema(format = Password)]
    pub current_password: String,
    /// The new password, within this server's policy.
    #[schema(format = Password)]
    pub new_password: String,
}

impl fmt::Debug for ChangePasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ChangePasswordRequest { .. }")
    }
}

/// `POST /v1/auth/reset-password`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    /// The token from the reset link's `#token=` fragment.
    pub token: String,
    /// The new password, within this server's policy.
    #[schema(format = Password)]
    pub new_password: String,
}

impl fmt::Debug for ResetPasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResetPasswordRequest { .. }")
    }
}

/// The answer of the requests that must not reveal whether an address is known.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AcceptedResponse {
    /// What happens next; the same text whether or not the address is known.
    pub message: String,
}

/// A user's public profile.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserBody {
    /// User id (a decimal string).
    #[schema(example = "4861920473619475832")]
    pub id: String,
    /// Display name.
    pub name: String,
    /// Normalized email address.
    pub email: String,
    /// Whether the address was confirmed.
    pub email_verified: bool,
    /// Sign-up time.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
}

impl From<auth::User> for UserBody {
    fn from(u: auth::User) -> Self {
        Self {
            id: decimal(u.id),
            name: u.name,
            email: u.email,
            email_verified: u.email_verified,
            created_at: u.created_at,
        }
    }
}

/// A user id in decimal, as its `Display` writes it, without `core::fmt`.
fn decimal(id: auth::UserId) -> String {
    let Ok(mut n) = u64::try_from(id.get()) else { return id.to_string() };
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        start -= 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    String::from_utf8_lossy(&buf[start..]).into_owned()
}

/// One session of the user.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionBody {
    /// Opaque id (`DELETE /v1/sessions/{id}` ends the session).
    pub id: String,
    /// Login time.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub created_at: DateTime<Utc>,
    /// The session was used at or after this time.
    #[serde(serialize_with = "rfc3339::serialize")]
    pub last_seen_at: DateTime<Utc>,
    /// When the session ends unless it is used (never after its absolute lifetime).
    #[serde(serialize_with = "rfc3339::serialize")]
    pub expires_at: DateTime<Utc>,
    /// User agent at login.
    pub user_agent: Option<String>,
    /// Client address at login.
    pub ip: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
}

impl From<auth::SessionInfo> for SessionBody {
    fn from(s: auth::SessionInfo) -> Self {
        Self {
            id: s.id,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
            user_agent: s.user_agent,
            ip: s.ip.map(|ip| ip.to_string()),
            current: s.current,
        }
    }
}

impl SessionBody {
    /// The body of the session making the request.
    pub fn current(s: &auth::Session) -> Self {
        Self {
            id: hex(s.key.hash.as_bytes()),
            created_at: s.created_at,
            last_seen_at: s.renewed_at,
            expires_at: s.expires_at.min(s.absolute_expires_at),
            user_agent: s.user_agent.clone(),
            ip: s.ip.map(|ip| ip.to_string()),
            current: true,
        }
    }
}

/// Lower-case hex of a session hash, as `TokenHash::to_hex` writes it, in one copy.
fn hex(bytes: &[u8; 32]) -> String {
    let mut buf = [0u8; 64];
    // 32 bytes always take exactly 64 digits: the length error cannot happen.
    let encoded = hex::encode_to_slice(bytes, &mut buf);
    debug_assert!(encoded.is_ok());
    // ASCII by construction; `from_utf8` checks it a word at a time.
    String::from_utf8(buf.to_vec()).unwrap_or_default()
}

/// A user with the session making the request (login, `GET /v1/me`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserSessionResponse {
    /// The user.
    pub user: UserBody,
    /// The current session.
    pub session: SessionBody,
}

impl UserSessionResponse {
    /// The JSON body, byte for byte what `serde_json::to_string(self)` writes, without
    /// serde: the keys are constants, the ids, times and flags need no escaping, and only
    /// the strings users chose are escaped (as serde_json escapes them).
    pub fn to_json(&self) -> String {
        let (user, session) = (&self.user, &self.session);
        let mut out = String::with_capacity(
            320 + user.name.len()
                + user.email.len()
                + session.user_agent.as_ref().map_or(0, String::len),
        );
        out.push_str("{\"user\":{\"id\":");
        json_str(&mut out, &user.id);
        out.push_str(",\"name\":");
        json_str(&mut out, &user.name);
        out.push_str(",\"email\":");
        json_str(&mut out, &user.email);
        out.push_str(if user.email_verified {
            ",\"email_verified\":true,\"created_at\":"
        } else {
            ",\"email_verified\":false,\"created_at\":"
        });
        rfc3339::push_json(&user.created_at, &mut out);
        out.push_str("},\"session\":{\"id\":");
        json_str(&mut out, &session.id);
        out.push_str(",\"created_at\":");
        rfc3339::push_json(&session.created_at, &mut out);
        out.push_str(",\"last_seen_at\":");
        rfc3339::push_json(&session.last_seen_at, &mut out);
        out.push_str(",\"expires_at\":");
        rfc3339::push_json(&session.expires_at, &mut out);
        out.push_str(",\"user_agent\":");
        json_opt_str(&mut out, session.user_agent.as_deref());
        out.push_str(",\"ip\":");
        json_opt_str(&mut out, session.ip.as_deref());
        out.push_str(if session.current { ",\"current\":true}}" } else { ",\"current\":false}}" });
        out
    }

    /// `200 OK` with this body: the bytes and headers of `HttpResponse::Ok().json(self)`
    /// (`content-type: application/json`), at a fraction of the cost.
    pub fn ok(&self) -> actix_web::HttpResponse {
        actix_web::HttpResponse::Ok()
            .insert_header(actix_web::http::header::ContentType::json())
            .body(self.to_json())
    }
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes it: `"` and `\\`
/// with a backslash, the control characters below U+0020 as `\b \t \n \f \r` or
/// `\u00xx` (lower-case hex), everything else (U+007F and non-ASCII included) as is.
fn json_str(out: &mut String, s: &str) {
    out.push('"');
    // Most strings need no escape: one pass without an early exit (which compiles to
    // vector code), then one copy.
    if !s.bytes().fold(false, |dirty, b| dirty | (b < 0x20) | (b == b'"') | (b == b'\\')) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        if b >= 0x20 && b != b'"' && b != b'\\' {
            continue;
        }
        // `i` is at an ASCII byte, hence a char boundary.
        out.push_str(s.get(start..i).unwrap_or_default());
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let mut digits = [0u8; 2];
                let encoded = hex::encode_to_slice([b], &mut digits);
                debug_assert!(encoded.is_ok());
                out.push_str("\\u00");
                out.extend(digits.map(char::from));
            }
        }
        start = i + 1;
    }
    out.push_str(s.get(start..).unwrap_or_default());
    out.push('"');
}

/// `null` or the JSON string.
fn json_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.push_str("null"),
    }
}

/// `GET /v1/sessions`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionListResponse {
    /// Live sessions, most recently used first.
    pub sessions: Vec<SessionBody>,
}

/// How many sessions a request ended.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RevokedResponse {
    /// Number of sessions ended.
    pub revoked: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator of test values.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn string(&mut self) -> String {
            const PICKS: [char; 16] = [
                'a',
                'Z',
                ' ',
                '"',
                '\\',
                '/',
                '\u{7f}',
                '\u{e9}',
                '\u{2028}',
                '\u{1f600}',
                '<',
                '&',
                '\'',
                '%',
                '.',
                '@',
            ];
            let len = self.next() % 12;
            (0..len)
                .map(|_| {
                    let r = self.next();
                    if r.is_multiple_of(3) {
                        // Every control character.
                        char::from((r >> 8) as u8 % 0x20)
                    } else {
                        PICKS[(r >> 8) as usize % PICKS.len()]
                    }
                })
                .collect()
        }

        fn time(&mut self) -> DateTime<Utc> {
            let secs = (self.next() % 253_402_300_800) as i64 - 62_167_219_200;
            let nanos = match self.next() % 4 {
                0 => 0,
                1 => (self.next() % 1000) as u32 * 1_000_000,
                2 => (self.next() % 1_000_000) as u32 * 1_000,
                _ => (self.next() % 1_000_000_000) as u32,
            };
            DateTime::from_timestamp(secs, nanos).unwrap()
        }
    }

    #[test]
    fn to_json_writes_what_serde_json_writes() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for i in 0..20_000 {
            let body = UserSessionResponse {
                user: UserBody {
                    id: g.string(),
                    name: g.string(),
                    email: g.string(),
                    email_verified: i % 2 == 0,
                    created_at: g.time(),
                },
                session: SessionBody {
                    id: g.string(),
                    created_at: g.time(),
                    last_seen_at: g.time(),
                    expires_at: g.time(),
                    user_agent: (i % 3 != 0).then(|| g.string()),
                    ip: (i % 5 != 0).then(|| g.string()),
                    current: i % 7 != 0,
                },
            };
            assert_eq!(body.to_json(), serde_json::to_string(&body).unwrap());
        }
    }

    #[test]
    fn every_control_character_is_escaped_as_serde_json_does() {
        for b in 0u8..=0x7f {
            let s = format!("a{}b", char::from(b));
            let mut out = String::new();
            json_str(&mut out, &s);
            assert_eq!(out, serde_json::to_string(&s).unwrap(), "byte {b:#x}");
        }
    }

    #[test]
    fn signed_years_are_written_as_chrono_writes_them() {
        let mut out = String::new();
        for dt in [DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC] {
            out.clear();
            rfc3339::push_json(&dt, &mut out);
            assert_eq!(out, serde_json::to_string(&dt).unwrap());
        }
    }

    #[test]
    fn session_ids_are_written_as_to_hex_writes_them() {
        let mut g = Gen(0x2545_f491_4f6c_dd1d);
        for _ in 0..1_000 {
            let mut bytes = [0u8; 32];
            for b in &mut bytes {
                *b = g.next() as u8;
            }
            let hash = auth::TokenHash::from_bytes(bytes);
            assert_eq!(hex(hash.as_bytes()), hash.to_hex());
        }
    }

    #[test]
    fn ids_are_written_as_display_writes_them() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut ids = vec![1, 9, 10, 99, 100, 12_345, i64::MAX - 1, i64::MAX];
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ids.push((x >> (x % 63)) as i64);
        }
        for raw in ids {
            let Some(id) = auth::UserId::new(raw) else { continue };
            assert_eq!(decimal(id), id.to_string());
        }
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn instant() -> impl Strategy<Value = DateTime<Utc>> {
            let (min, max) =
                (DateTime::<Utc>::MIN_UTC.timestamp(), DateTime::<Utc>::MAX_UTC.timestamp());
            (min..=max, 0u32..1_000_000_000)
                .prop_filter_map("in chrono's range", |(s, n)| DateTime::from_timestamp(s, n))
        }

        fn body() -> impl Strategy<Value = UserSessionResponse> {
            (
                (any::<String>(), any::<String>(), any::<String>(), any::<bool>(), instant()),
                (any::<String>(), instant(), instant(), instant()),
                (
                    proptest::option::of(any::<String>()),
                    proptest::option::of(any::<String>()),
                    any::<bool>(),
                ),
            )
                .prop_map(|(u, s, rest)| UserSessionResponse {
                    user: UserBody {
                        id: u.0,
                        name: u.1,
                        email: u.2,
                        email_verified: u.3,
                        created_at: u.4,
                    },
                    session: SessionBody {
                        id: s.0,
                        created_at: s.1,
                        last_seen_at: s.2,
                        expires_at: s.3,
                        user_agent: rest.0,
                        ip: rest.1,
                        current: rest.2,
                    },
                })
        }

        proptest! {
            /// The hand-written writer, byte for byte serde_json's, over any strings
            /// (every Unicode scalar value) and any instant.
            #[test]
            fn to_json_is_serde_json(body in body()) {
                prop_assert_eq!(body.to_json(), serde_json::to_string(&body).unwrap());
            }

            #[test]
            fn strings_are_escaped_as_serde_json_escapes_them(s in any::<String>()) {
                let mut out = String::new();
                json_str(&mut out, &s);
                prop_assert_eq!(out, serde_json::to_string(&s).unwrap());
            }

            #[test]
            fn ids_and_hashes_are_written_as_display_writes_them(
                raw in 1..=i64::MAX,
                bytes in any::<[u8; 32]>(),
            ) {
                let id = auth::UserId::new(raw).unwrap();
                prop_assert_eq!(decimal(id), id.to_string());
                let hash = auth::TokenHash::from_bytes(bytes);
                prop_assert_eq!(hex(hash.as_bytes()), hash.to_hex());
            }
        }
    }
}
