//! The one error type every store returns.

use std::error::Error as StdError;

/// A boxed source error, kept so that logs show the driver's own message.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// What went wrong in a store. The variants are what a caller decides on: retry or
/// degrade (`Unavailable`, `Timeout`), alert (`Corrupt`), or report a conflict.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached, refused the operation, or its pool is exhausted.
    #[error("store backend unavailable")]
    Unavailable(#[source] BoxError),
    /// The backend did not answer within its deadline.
    #[error("store backend timed out")]
    Timeout(#[source] BoxError),
    /// The backend answered with data we cannot decode.
    #[error("store returned corrupt data")]
    Corrupt(#[source] BoxError),
    /// A compare-and-set lost, or a unique key already exists.
    #[error("conflict: {0}")]
    Conflict(Conflict),
}

/// Which kind of conflict a [`StoreError::Conflict`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// The session's version changed since it was read.
    #[error("version changed")]
    Version,
    /// The record already exists (same key or same unique email).
    #[error("already exists")]
    Exists,
}

impl StoreError {
    /// An `Unavailable` error from any source.
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        StoreError::Unavailable(e.into())
    }

    /// A `Timeout` error from any source.
    pub fn timeout(e: impl Into<BoxError>) -> Self {
        StoreError::Timeout(e.into())
    }

    /// A `Corrupt` error from any source.
    pub fn corrupt(e: impl Into<BoxError>) -> Self {
        StoreError::Corrupt(e.into())
    }

    /// Whether the backend was unreachable or slow (as opposed to answering badly).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Timeout(_))
    }

    /// A short stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Timeout(_) => "timeout",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::Conflict(_) => "conflict",
        }
    }
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;
