//! Table definitions for each dialect, and [`Ts`], the timestamp both dialects bind.
//!
//! The two schemas differ only in how a timestamp is stored: `TIMESTAMPTZ` in PostgreSQL,
//! BIGINT microseconds since the epoch in SQLite (so that SQL comparisons and ordering
//! are numeric and exact). Queries are written once against whichever module is in
//! scope and bind [`Ts`], which knows both representations.

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};

/// A UTC timestamp as stored by either dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow)]
#[cfg_attr(feature = "postgres", diesel(sql_type = diesel::sql_types::Timestamptz))]
#[cfg_attr(feature = "sqlite", diesel(sql_type = diesel::sql_types::BigInt))]
pub(crate) struct Ts(pub(crate) DateTime<Utc>);

#[cfg(feature = "postgres")]
impl ToSql<diesel::sql_types::Timestamptz, diesel::pg::Pg> for Ts {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, diesel::pg::Pg>) -> serialize::Result {
        <DateTime<Utc> as ToSql<diesel::sql_types::Timestamptz, diesel::pg::Pg>>::to_sql(
            &self.0, out,
        )
    }
}

#[cfg(feature = "postgres")]
impl FromSql<diesel::sql_types::Timestamptz, diesel::pg::Pg> for Ts {
    fn from_sql(bytes: diesel::pg::PgValue<'_>) -> deserialize::Result<Self> {
        <DateTime<Utc> as FromSql<diesel::sql_types::Timestamptz, diesel::pg::Pg>>::from_sql(bytes)
            .map(Ts)
    }
}

#[cfg(feature = "sqlite")]
impl ToSql<diesel::sql_types::BigInt, diesel::sqlite::Sqlite> for Ts {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, diesel::sqlite::Sqlite>) -> serialize::Result {
        out.set_value(self.0.timestamp_micros());
        Ok(serialize::IsNull::No)
    }
}

#[cfg(feature = "sqlite")]
impl FromSql<diesel::sql_types::BigInt, diesel::sqlite::Sqlite> for Ts {
    fn from_sql(value: diesel::sqlite::SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
        let micros =
            <i64 as FromSql<diesel::sql_types::BigInt, diesel::sqlite::Sqlite>>::from_sql(value)?;
        DateTime::from_timestamp_micros(micros)
            .map(Ts)
            .ok_or_else(|| "timestamp out of range".into())
    }
}

/// Defines the four tables with `$ts` as the timestamp type.
macro_rules! tables {
    ($ts:ty) => {
        /// The SQL type of a timestamp column in this dialect.
        #[allow(dead_code)] // Used by the queries of one dialect at a time.
        pub(crate) type TsSql = $ts;

        diesel::table! {
            users (id) {
                id -> BigInt,
                name -> Text,
                email -> Text,
                email_verified -> Bool,
                password_hash -> Nullable<Text>,
                created_at -> $ts,
                updated_at -> $ts,
            }
        }

        diesel::table! {
            sessions (token_hash) {
                token_hash -> Binary,
                user_id -> BigInt,
                created_at -> $ts,
                renewed_at -> $ts,
                expires_at -> $ts,
                absolute_expires_at -> $ts,
                user_agent -> Nullable<Text>,
                ip -> Nullable<Text>,
                version -> BigInt,
            }
        }

        diesel::table! {
            verifications (token_hash) {
                token_hash -> Binary,
                purpose -> Text,
                user_id -> BigInt,
                identifier -> Text,
                created_at -> $ts,
                expires_at -> $ts,
            }
        }

        diesel::table! {
            session_revocations (id) {
                id -> BigInt,
                user_id -> BigInt,
                token_hash -> Nullable<Binary>,
                keep_hash -> Nullable<Binary>,
                revoked_at -> $ts,
            }
        }

        diesel::allow_tables_to_appear_in_same_query!(
            users,
            sessions,
            verifications,
            session_revocations
        );
    };
}

/// The PostgreSQL schema (`migrations/postgres`).
#[cfg(feature = "postgres")]
pub(crate) mod pg {
    tables!(diesel::sql_types::Timestamptz);
}

/// The SQLite schema (`migrations/sqlite`).
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite {
    tables!(diesel::sql_types::BigInt);
}
