//! Daily usage figures shared by every instance: a HyperLogLog of active user ids and a
//! hash of counters per UTC day, written in one pipeline per flush and read with two
//! commands, never by scanning keys.
//!
//! Keys (both carry the hash tag `{a:<day>}`, so a day's keys share a Cluster slot):
//! - `{prefix}{a:2026-11-27}:users`: HyperLogLog (`PFADD` / `PFCOUNT`, standard error
//!   0.81 %) of the ids of users seen that day;
//! - `{prefix}{a:2026-11-27}:counts`: hash of integer counters (`HINCRBY` / `HMGET`).
//!
//! Both expire after the retention the caller passes (refreshed by every write), so old
//! days disappear without a janitor.
//!
//! Also here: the warm-up marker `{prefix}warmed`, which tells a start-up warm-up whether
//! this Redis lost our keys since the last one.

use std::time::Duration;

use cache_core::{StoreError, UserId};
use chrono::NaiveDate;
use fred::interfaces::{ClientLike, HashesInterface, KeysInterface};
use fred::prelude::Value;
use fred::types::{ClusterHash, CustomCommand};

use crate::error::RedisError;
use crate::store::RedisStore;

/// User ids per `PFADD` (a flush with more sends several in the same pipeline).
const PFADD_CHUNK: usize = 1_000;

/// The counter fields of a day's hash, in the order of [`DayFigures`].
const FIELDS: [&str; 4] = ["created", "expired", "ended", "ended_seconds"];

/// A HyperLogLog command on the key in its first argument. Sent as a custom command so
/// that the crate needs no extra fred feature for two commands.
fn hll_command(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

/// What one instance adds to a day's figures in one flush.
#[derive(Debug, Clone, Copy, Default)]
pub struct DayDelta<'a> {
    /// Users seen (repeats are harmless: the HyperLogLog counts distinct ids).
    pub active_users: &'a [UserId],
    /// Sessions created.
    pub sessions_created: u64,
    /// Sessions found expired (by the janitor).
    pub sessions_expired: u64,
    /// Ended sessions whose duration is known.
    pub ended_sessions: u64,
    /// Sum of those durations, in seconds.
    pub ended_seconds: u64,
}

impl DayDelta<'_> {
    /// Whether the flush would change nothing.
    pub fn is_empty(&self) -> bool {
        self.active_users.is_empty()
            && self.sessions_created == 0
            && self.sessions_expired == 0
            && self.ended_sessions == 0
            && self.ended_seconds == 0
    }
}

/// A day's figures as every instance wrote them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayFigures {
    /// Estimated distinct active users (`PFCOUNT`).
    pub active_users: u64,
    /// Sessions created.
    pub sessions_created: u64,
    /// Sessions found expired.
    pub sessions_expired: u64,
    /// Ended sessions whose duration is known.
    pub ended_sessions: u64,
    /// Sum of those durations, in seconds.
    pub ended_seconds: u64,
}

impl RedisStore {
    fn day_keys(&self, day: NaiveDate) -> (String, String) {
        let base = format!("{}{{a:{}}}:", self.shared.keys.prefix(), day.format("%Y-%m-%d"));
        (format!("{base}users"), format!("{base}counts"))
    }

    /// Adds `delta` to the figures of `day` in one pipeline and (re)sets both keys to
    /// expire after `retention`. Not idempotent: a caller that retries after an error may
    /// count a delta twice, so it should retry only failures that reached no server
    /// (connection errors) or accept that rare double count.
    pub async fn add_day_figures(
        &self,
        day: NaiveDate,
        delta: &DayDelta<'_>,
        retention: Duration,
    ) -> Result<(), StoreError> {
        if delta.is_empty() {
            return Ok(());
        }
        let (users, counts) = self.day_keys(day);
        let ttl = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX).max(1);
        let pipeline = self.shared.pool.next().pipeline();
        let queue = async {
            for chunk in delta.active_users.chunks(PFADD_CHUNK) {
                let mut args: Vec<Value> = Vec::with_capacity(chunk.len() + 1);
                args.push(users.as_str().into());
                args.extend(chunk.iter().map(|id| Value::from(id.get())));
                pipeline.custom::<(), Value>(hll_command("PFADD"), args).await?;
            }
            if !delta.active_users.is_empty() {
                pipeline.pexpire::<(), _>(users.as_str(), ttl, None).await?;
            }
            let values = [
                delta.sessions_created,
                delta.sessions_expired,
                delta.ended_sessions,
                delta.ended_seconds,
            ];
            let mut any = false;
            for (field, value) in FIELDS.iter().zip(values) {
                if value > 0 {
                    let by = i64::try_from(value).unwrap_or(i64::MAX);
                    pipeline.hincrby::<(), _, _>(counts.as_str(), *field, by).await?;
                    any = true;
                }
            }
            if any {
                pipeline.pexpire::<(), _>(counts.as_str(), ttl, None).await?;
            }
            Ok::<_, fred::error::Error>(())
        };
        queue.await.map_err(RedisError::from)?;
        for result in pipeline.try_all::<Value>().await {
            result.map_err(RedisError::from)?;
        }
        Ok(())
    }

    /// The figures of `day` (zeros for a day nobody recorded).
    pub async fn day_figures(&self, day: NaiveDate) -> Result<DayFigures, StoreError> {
        let (users, counts) = self.day_keys(day);
        let pipeline = self.shared.pool.next().pipeline();
        let queue = async {
            pipeline
                .custom::<(), Value>(hll_command("PFCOUNT"), vec![users.as_str().into()])
                .await?;
            pipeline.hmget::<(), _, _>(counts.as_str(), FIELDS.to_vec()).await?;
            Ok::<_, fred::error::Error>(())
        };
        queue.await.map_err(RedisError::from)?;
        let (active_users, counters): (Option<u64>, Vec<Option<u64>>) =
            pipeline.all().await.map_err(RedisError::from)?;
        let counter = |i: usize| counters.get(i).copied().flatten().unwrap_or(0);
        Ok(DayFigures {
            active_users: active_users.unwrap_or(0),
            sessions_created: counter(0),
            sessions_expired: counter(1),
            ended_sessions: counter(2),
            ended_seconds: counter(3),
        })
    }

    fn warm_marker(&self) -> String {
        format!("{}warmed", self.shared.keys.prefix())
    }

    /// Whether the warm-up marker `{prefix}warmed` is missing: this Redis lost our keys
    /// since the last warm-up (it was flushed, or restarted without persistence) or was
    /// never warmed.
    pub async fn needs_warm_up(&self) -> Result<bool, StoreError> {
        let present: i64 =
            self.shared.pool.exists(self.warm_marker()).await.map_err(RedisError::from)?;
        Ok(present == 0)
    }

    /// Sets the warm-up marker (no expiry: only losing the data set loses it).
    pub async fn mark_warmed_up(&self) -> Result<(), StoreError> {
        let _: Value = self
            .shared
            .pool
            .set(self.warm_marker(), "1", None, None, false)
            .await
            .map_err(RedisError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use cache_core::{ManualClock, SharedClock};

    use super::*;
    use crate::RedisConfig;

    async fn store() -> Option<RedisStore> {
        let url = cache_testkit::service_url("REDIS_URL")?;
        let clock: SharedClock = ManualClock::starting_now();
        let prefix = format!("analytics-test:{}:", UserId::random().unwrap());
        let config = RedisConfig {
            url,
            key_prefix: prefix,
            command_timeout: Duration::from_secs(2),
            ..RedisConfig::default()
        };
        Some(RedisStore::connect(config, clock).await.unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn day_figures_add_up_across_flushes() {
        let Some(store) = store().await else { return };
        let day = NaiveDate::from_ymd_opt(2026, 1, 2).unwrap();
        let other_day = day.succ_opt().unwrap();
        assert_eq!(store.day_figures(day).await.unwrap(), DayFigures::default());

        let users: Vec<UserId> = (0..2_500).map(|_| UserId::random().unwrap()).collect();
        let retention = Duration::from_secs(60);
        // Two instances' flushes, overlapping in users.
        let first = DayDelta {
            active_users: &users[..1_500],
            sessions_created: 7,
            sessions_expired: 2,
            ended_sessions: 2,
            ended_seconds: 90,
        };
        let second =
            DayDelta { active_users: &users[1_000..], sessions_created: 1, ..DayDelta::default() };
        store.add_day_figures(day, &first, retention).await.unwrap();
        store.add_day_figures(day, &second, retention).await.unwrap();
        store.add_day_figures(day, &DayDelta::default(), retention).await.unwrap();

        let figures = store.day_figures(day).await.unwrap();
        assert_eq!(figures.sessions_created, 8);
        assert_eq!(figures.sessions_expired, 2);
        assert_eq!(figures.ended_sessions, 2);
        assert_eq!(figures.ended_seconds, 90);
        // HyperLogLog: 0.81 % standard error; 3 % is beyond three sigmas.
        let error = figures.active_users.abs_diff(2_500);
        assert!(error <= 75, "estimated {} distinct users of 2500", figures.active_users);
        assert_eq!(store.day_figures(other_day).await.unwrap(), DayFigures::default());

        // Both keys expire with the retention.
        let (users_key, counts_key) = store.day_keys(day);
        for key in [users_key, counts_key] {
            let ttl: i64 = store.pool().pttl(key.as_str()).await.unwrap();
            assert!(ttl > 0 && ttl <= 60_000, "{key}: pttl {ttl}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn warm_up_marker_tells_a_flushed_redis() {
        let Some(store) = store().await else { return };
        assert!(store.needs_warm_up().await.unwrap(), "never warmed");
        store.mark_warmed_up().await.unwrap();
        assert!(!store.needs_warm_up().await.unwrap());
        // What FLUSHALL or a restart without persistence does to our keys.
        let _: i64 = store.pool().del(store.warm_marker()).await.unwrap();
        assert!(store.needs_warm_up().await.unwrap(), "a flushed Redis is warmed again");
    }
}
