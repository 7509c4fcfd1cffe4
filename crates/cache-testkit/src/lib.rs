//! cache-testkit (in progress).
