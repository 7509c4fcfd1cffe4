//! cache-sql (in progress).
