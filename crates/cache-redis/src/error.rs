//! The crate's private error type and its mapping onto [`StoreError`].

use cache_core::StoreError;
use fred::error::{Error as FredError, ErrorKind};

/// What went wrong talking to Redis. Private: callers see [`StoreError`], whose source
/// chain keeps this (and fred's message) for logs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RedisError {
    /// fred (connection, protocol or server error).
    #[error("redis: {0}")]
    Fred(#[from] FredError),
    /// A reply we cannot decode.
    #[error("unexpected redis reply: {0}")]
    Reply(String),
    /// Reads are refused until the revocation journal has been replayed.
    #[error("redis not trusted yet: revocation replay pending after a (re)connect")]
    ReplayPending,
    /// A setting that cannot work.
    #[error("invalid redis configuration: {0}")]
    Config(&'static str),
    /// The TLS settings cannot be used (an unreadable or empty CA file).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    #[error("invalid redis TLS configuration: {0}")]
    Tls(String),
}

impl RedisError {
    /// An undecodable reply.
    pub(crate) fn reply(what: impl Into<String>) -> Self {
        RedisError::Reply(what.into())
    }
}

impl From<RedisError> for StoreError {
    fn from(e: RedisError) -> Self {
        match &e {
            RedisError::Fred(f) => match f.kind() {
                ErrorKind::Timeout => StoreError::timeout(e),
                ErrorKind::Parse | ErrorKind::Protocol => StoreError::corrupt(e),
                // IO, Canceled, Cluster (down or resharding), Routing, Backpressure, a
                // server-side error (-ERR, -BUSY, -LOADING, -READONLY): all mean "do not
                // rely on Redis right now", which the breaker and the tiers act on.
                _ => StoreError::unavailable(e),
            },
            RedisError::Reply(_) => StoreError::corrupt(e),
            RedisError::ReplayPending | RedisError::Config(_) | RedisError::Tls(_) => {
                StoreError::unavailable(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fred_errors_map_to_store_error_kinds() {
        let map = |kind| StoreError::from(RedisError::from(FredError::new(kind, "x"))).kind();
        assert_eq!(map(ErrorKind::Timeout), "timeout");
        assert_eq!(map(ErrorKind::IO), "unavailable");
        assert_eq!(map(ErrorKind::Canceled), "unavailable");
        assert_eq!(map(ErrorKind::Cluster), "unavailable");
        assert_eq!(map(ErrorKind::Parse), "corrupt");
        assert_eq!(StoreError::from(RedisError::reply("?")).kind(), "corrupt");
        assert_eq!(StoreError::from(RedisError::ReplayPending).kind(), "unavailable");
    }
}
