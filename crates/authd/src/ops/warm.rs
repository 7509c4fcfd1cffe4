//! Cache warming at start-up: the most recently renewed live sessions, read from SQL in
//! one query, are loaded into the memory tier, and into Redis when Redis lost our keys
//! since the last warm-up (flushed, or restarted without persistence), so that the first
//! requests after a deploy or a Redis restart do not all fall through to SQL.
//!
//! Loading goes through the tiers' cache-fill path (`put`), which refuses revoked
//! sessions, so a warm-up can never revive one. User profiles are not loaded: they are
//! filled on first use and live far longer in Redis than sessions take to be renewed.

use cache_core::{Session, SessionStore, StoreError};
use cache_memory::MemoryStore;
use cache_redis::RedisStore;
use cache_sql::SqlStore;
use serde::Serialize;

/// What a warm-up loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WarmReport {
    /// Live sessions read from SQL.
    pub sessions: u64,
    /// Sessions stored in the memory tier.
    pub memory: u64,
    /// Sessions stored in Redis (`None`: Redis is off, or still had our keys).
    pub redis: Option<u64>,
}

/// Loads the `limit` most recently renewed live sessions into `memory` and, when it lost
/// our keys, into `redis`. A failing Redis is logged and skipped; only a failing SQL
/// read fails the warm-up.
pub async fn warm_up(
    sql: &SqlStore,
    memory: Option<&MemoryStore>,
    redis: Option<&RedisStore>,
    limit: usize,
) -> Result<WarmReport, StoreError> {
    let mut report = WarmReport::default();
    if limit == 0 || (memory.is_none() && redis.is_none()) {
        return Ok(report);
    }
    let sessions: Vec<Session> = sql.recent_sessions(limit).await?;
    report.sessions = sessions.len() as u64;
    if let Some(memory) = memory {
        for session in &sessions {
            if memory.put(session).await? {
                report.memory += 1;
            }
        }
    }
    if let Some(redis) = redis {
        match warm_redis(redis, &sessions).await {
            Ok(stored) => report.redis = stored,
            Err(e) => tracing::warn!(error = %e, "warm-up: Redis skipped"),
        }
    }
    Ok(report)
}

/// Fills Redis when its warm-up marker is missing, then sets the marker.
async fn warm_redis(redis: &RedisStore, sessions: &[Session]) -> Result<Option<u64>, StoreError> {
    if !redis.needs_warm_up().await? {
        return Ok(None);
    }
    let stored = redis.put_sessions_bulk(sessions).await?;
    redis.mark_warmed_up().await?;
    Ok(Some(stored))
}
