//! cache-memory (in progress).
