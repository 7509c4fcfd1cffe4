//! The driver errors of this crate, and how they map onto [`StoreError`].

use std::time::Duration;

use cache_core::{BoxError, Conflict, StoreError};
use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Everything that can go wrong below the store traits. Private: callers see
/// [`StoreError`], which keeps this as its source.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SqlError {
    /// A statement failed.
    #[error("SQL statement failed")]
    Query(#[from] DieselError),
    /// No connection could be had from the pool in time (the database is down or the
    /// pool is exhausted).
    #[error("no database connection within {timeout:?}{}", last.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default())]
    PoolTimeout {
        /// The pool's connection timeout.
        timeout: Duration,
        /// The last connection error the pool saw, if any.
        last: Option<String>,
    },
    /// A connection could not be established.
    #[error("could not connect to the database")]
    Connect(#[source] BoxError),
    /// The operation did not finish within the query timeout.
    #[error("SQL operation timed out after {0:?}")]
    Timeout(Duration),
    /// A row holds something the domain types cannot represent.
    #[error("corrupt row: {0}")]
    Corrupt(&'static str),
    /// The migrations could not be applied.
    #[error("migrations failed")]
    Migration(#[source] BoxError),
    /// The URL names no supported (or no compiled-in) backend.
    #[error("unsupported database URL scheme (expected postgres://, postgresql:// or sqlite:)")]
    UnsupportedUrl,
    /// A background task panicked or was cancelled.
    #[error("database task failed")]
    Task(#[source] tokio::task::JoinError),
    /// Local I/O (creating the SQLite file's directory) failed.
    #[cfg(feature = "sqlite")]
    #[error("could not prepare the database file")]
    Io(#[source] std::io::Error),
}

impl From<SqlError> for StoreError {
    fn from(e: SqlError) -> Self {
        match &e {
            SqlError::Query(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                StoreError::Conflict(Conflict::Exists)
            }
            SqlError::Query(DieselError::DeserializationError(_)) | SqlError::Corrupt(_) => {
                StoreError::corrupt(e)
            }
            SqlError::Timeout(_) => StoreError::timeout(e),
            _ => StoreError::unavailable(e),
        }
    }
}

pub(crate) type SqlResult<T> = Result<T, SqlError>;
