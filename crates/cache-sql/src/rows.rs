//! Rows as read from either dialect, and their checked conversion into domain types.
//! A row the domain cannot represent (a hash that is not 32 bytes, an unknown purpose,
//! an unparsable address, a non-positive user id) is reported as corrupt, never guessed.

use cache_core::{Purpose, Revocation, Session, SessionKey, TokenHash, User, UserId, Verification};
use diesel::Queryable;

use crate::error::{SqlError, SqlResult};
use crate::schema::Ts;

/// Column list matching [`SessionRow`], for the schema module in scope.
macro_rules! session_columns {
    () => {
        (
            sessions::token_hash,
            sessions::user_id,
            sessions::created_at,
            sessions::renewed_at,
            sessions::expires_at,
            sessions::absolute_expires_at,
            sessions::user_agent,
            sessions::ip,
            sessions::version,
        )
    };
}
pub(crate) use session_columns;

/// Column list matching [`VerificationRow`].
macro_rules! verification_columns {
    () => {
        (
            verifications::token_hash,
            verifications::purpose,
            verifications::user_id,
            verifications::identifier,
            verifications::created_at,
            verifications::expires_at,
        )
    };
}
pub(crate) use verification_columns;

/// Column list matching [`UserRow`].
macro_rules! user_columns {
    () => {
        (users::id, users::name, users::email, users::email_verified, users::created_at)
    };
}
pub(crate) use user_columns;

/// Column list matching [`CredentialsRow`].
macro_rules! credentials_columns {
    () => {
        (
            (users::id, users::name, users::email, users::email_verified, users::created_at),
            users::password_hash.assume_not_null(),
        )
    };
}
pub(crate) use credentials_columns;

/// Column list matching [`RevocationRow`].
macro_rules! revocation_columns {
    () => {
        (
            session_revocations::user_id,
            session_revocations::token_hash,
            session_revocations::keep_hash,
            session_revocations::revoked_at,
        )
    };
}
pub(crate) use revocation_columns;

fn user_id(id: i64) -> SqlResult<UserId> {
    UserId::new(id).ok_or(SqlError::Corrupt("user id is not positive"))
}

fn hash(bytes: &[u8]) -> SqlResult<TokenHash> {
    TokenHash::from_slice(bytes).ok_or(SqlError::Corrupt("token hash is not 32 bytes"))
}

/// One `sessions` row.
#[derive(Queryable)]
pub(crate) struct SessionRow {
    token_hash: Vec<u8>,
    user_id: i64,
    created_at: Ts,
    renewed_at: Ts,
    expires_at: Ts,
    absolute_expires_at: Ts,
    user_agent: Option<String>,
    ip: Option<String>,
    version: i64,
}

impl TryFrom<SessionRow> for Session {
    type Error = SqlError;
    fn try_from(row: SessionRow) -> SqlResult<Session> {
        let ip = match row.ip {
            None => None,
            Some(ip) => Some(ip.parse().map_err(|_| SqlError::Corrupt("invalid IP address"))?),
        };
        Ok(Session {
            key: SessionKey { user: user_id(row.user_id)?, hash: hash(&row.token_hash)? },
            created_at: row.created_at.0,
            renewed_at: row.renewed_at.0,
            expires_at: row.expires_at.0,
            absolute_expires_at: row.absolute_expires_at.0,
            user_agent: row.user_agent,
            ip,
            version: row.version,
        })
    }
}

/// Converts rows, failing on the first corrupt one.
pub(crate) fn sessions(rows: Vec<SessionRow>) -> SqlResult<Vec<Session>> {
    rows.into_iter().map(Session::try_from).collect()
}

/// One `verifications` row.
#[derive(Queryable)]
pub(crate) struct VerificationRow {
    token_hash: Vec<u8>,
    purpose: String,
    user_id: i64,
    identifier: String,
    created_at: Ts,
    expires_at: Ts,
}

impl TryFrom<VerificationRow> for Verification {
    type Error = SqlError;
    fn try_from(row: VerificationRow) -> SqlResult<Verification> {
        Ok(Verification {
            hash: hash(&row.token_hash)?,
            purpose: Purpose::parse(&row.purpose)
                .ok_or(SqlError::Corrupt("unknown verification purpose"))?,
            user: user_id(row.user_id)?,
            identifier: row.identifier,
            created_at: row.created_at.0,
            expires_at: row.expires_at.0,
        })
    }
}

/// The profile columns of a `users` row.
#[derive(Queryable)]
pub(crate) struct UserRow {
    id: i64,
    name: String,
    email: String,
    email_verified: bool,
    created_at: Ts,
}

impl TryFrom<UserRow> for User {
    type Error = SqlError;
    fn try_from(row: UserRow) -> SqlResult<User> {
        Ok(User {
            id: user_id(row.id)?,
            name: row.name,
            email: row.email,
            email_verified: row.email_verified,
            created_at: row.created_at.0,
        })
    }
}

/// A profile and its password hash.
#[derive(Queryable)]
pub(crate) struct CredentialsRow {
    user: UserRow,
    password_hash: String,
}

impl TryFrom<CredentialsRow> for cache_core::Credentials {
    type Error = SqlError;
    fn try_from(row: CredentialsRow) -> SqlResult<cache_core::Credentials> {
        Ok(cache_core::Credentials { user: row.user.try_into()?, password_hash: row.password_hash })
    }
}

/// One `session_revocations` row.
#[derive(Queryable)]
pub(crate) struct RevocationRow {
    user_id: i64,
    token_hash: Option<Vec<u8>>,
    keep_hash: Option<Vec<u8>>,
    revoked_at: Ts,
}

impl TryFrom<RevocationRow> for Revocation {
    type Error = SqlError;
    fn try_from(row: RevocationRow) -> SqlResult<Revocation> {
        let user = user_id(row.user_id)?;
        let at = row.revoked_at.0;
        Ok(match row.token_hash {
            Some(h) => Revocation::Session { key: SessionKey { user, hash: hash(&h)? }, at },
            None => Revocation::AllOfUser {
                user,
                keep: row.keep_hash.as_deref().map(hash).transpose()?,
                at,
            },
        })
    }
}
