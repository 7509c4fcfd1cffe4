//! cache-redis (in progress).
