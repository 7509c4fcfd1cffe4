//! [`RevocationFollower`]: delivers every row of the revocation journal to this
//! instance's caches, whatever Redis does.
//!
//! Redis pub/sub is the fast path of cross-instance invalidation, but it only carries
//! what a Redis script published: a frozen or dead Redis, or a revoking instance that
//! died between its SQL commit and its Redis write, leaves other instances' memory tiers
//! (and Redis itself) holding a session SQL has revoked. SQL is the authority, so the
//! guarantee is built on it: every instance follows the journal by id and applies each
//! new row to its sinks (the memory tier, and Redis, where the same scripts the replay
//! uses write the tombstone or fence: idempotent, so a dead revoker's Redis write is
//! redone by everyone else).
//!
//! - PostgreSQL: a trigger on `session_revocations` (migration `revocation_notify`)
//!   issues `NOTIFY` in the revoking transaction, so the notification is sent exactly
//!   when the row becomes visible. A dedicated connection (tokio-postgres directly, for
//!   its connect timeout and TCP keepalives, which diesel-async's `establish` does not
//!   take; diesel-async's `notifications_stream` would do the rest) `LISTEN`s and wakes
//!   the follower, which reads
//!   the journal past the last id it saw. The read also runs on every (re)connect of
//!   that connection and every `poll_interval`, so a lost notification costs at most a
//!   poll interval.
//! - SQLite (one host, maybe several processes): the journal is read every
//!   `poll_interval`.
//!
//! Ids, not times: revocation times come from the clocks of several instances. On
//! PostgreSQL ids are taken before commit, so a row may become visible after a higher
//! one; the follower remembers the ids it skipped ("holes") and looks for them on every
//! read for `gap_grace` (a rolled-back revocation leaves a hole that never fills).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_core::{JournalEntry, Revocation, RevocationSink};
use futures::future::join_all;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::SqlResult;
use crate::store::SqlStore;

/// Most holes remembered at once; a jump of the id sequence beyond that (a manual
/// `setval`) gives up the excess at once, with a warning.
const MAX_HOLES: usize = 10_000;
/// Most holes looked up per read.
const HOLES_PER_READ: usize = 1_000;

/// How the journal is followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowConfig {
    /// How often the journal is read without a notification: the delivery bound on
    /// SQLite, the safety net behind `LISTEN` on PostgreSQL.
    pub poll_interval: Duration,
    /// Most rows per read (a backlog is read in several).
    pub batch: usize,
    /// How long an id skipped by the sequence is looked for before it is given up
    /// (longer than any revocation transaction takes to commit).
    pub gap_grace: Duration,
}

impl Default for FollowConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            batch: 1_000,
            gap_grace: Duration::from_secs(10),
        }
    }
}

/// Counters of a follower, shared with its tasks.
#[derive(Debug, Default)]
struct State {
    /// Journal rows applied so far.
    applied: AtomicU64,
    /// The highest journal id seen.
    position: AtomicI64,
    /// Whether the PostgreSQL `LISTEN` connection is up.
    listening: AtomicBool,
    /// Whether the last read failed (logged once per transition).
    failing: AtomicBool,
}

/// Follows the SQL revocation journal and applies every new row to its sinks. Stops
/// when dropped.
pub struct RevocationFollower {
    state: Arc<State>,
    wake: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for RevocationFollower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationFollower")
            .field("position", &self.position())
            .field("applied", &self.applied())
            .field("listening", &self.is_listening())
            .finish_non_exhaustive()
    }
}

impl RevocationFollower {
    /// Starts following `sql`'s journal from its current end: what was revoked before
    /// is already in SQL, which every cache miss reads, and a Redis (re)connect replays
    /// it. Sinks are applied concurrently, so a frozen Redis does not delay the memory
    /// tier. The first read of the journal's end happens before this returns (when SQL
    /// answers), so nothing committed after it is missed.
    pub async fn spawn(
        sql: SqlStore,
        config: FollowConfig,
        sinks: Vec<Arc<dyn RevocationSink>>,
    ) -> Self {
        let state = Arc::new(State::default());
        let wake = Arc::new(Notify::new());
        let start = match sql.journal_head().await {
            Ok(head) => Some(head),
            Err(error) => {
                tracing::warn!(%error, "cannot read the revocation journal yet; retrying");
                None
            }
        };
        let mut tasks = Vec::new();
        #[cfg(feature = "postgres")]
        if let Some(url) = sql.postgres_url() {
            let timeout = sql.connect_timeout();
            tasks.push(tokio::spawn(listen(url.to_owned(), timeout, wake.clone(), state.clone())));
        }
        tasks.push(tokio::spawn(follow(sql, config, sinks, start, wake.clone(), state.clone())));
        Self { state, wake, tasks }
    }

    /// Journal rows applied to the sinks so far.
    pub fn applied(&self) -> u64 {
        self.state.applied.load(Ordering::Relaxed)
    }

    /// The highest journal id seen.
    pub fn position(&self) -> i64 {
        self.state.position.load(Ordering::Relaxed)
    }

    /// Whether PostgreSQL notifications are being received (always `false` on SQLite).
    pub fn is_listening(&self) -> bool {
        self.state.listening.load(Ordering::Relaxed)
    }

    /// Reads the journal now (tests and tools; the follower does it by itself).
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Stops following for good (what dropping does; tests use it to play a dead
    /// instance whose HTTP side still runs).
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.state.listening.store(false, Ordering::Relaxed);
    }
}

impl Drop for RevocationFollower {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Which journal rows have been applied: everything up to `high`, except `holes`.
#[derive(Debug)]
struct Cursor {
    high: i64,
    /// Ids below `high` not seen yet, with when they were first missed.
    holes: BTreeMap<i64, Instant>,
}

impl Cursor {
    fn new(high: i64) -> Self {
        Self { high, holes: BTreeMap::new() }
    }

    /// The holes to look up in the next read.
    fn wanted(&self) -> Vec<i64> {
        self.holes.keys().copied().take(HOLES_PER_READ).collect()
    }

    /// Takes `entries` (in id order) into account; returns the revocations not applied
    /// before.
    fn accept(&mut self, entries: Vec<JournalEntry>, now: Instant) -> Vec<Revocation> {
        let mut fresh = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.id > self.high {
                let skipped = entry.id - self.high - 1;
                let room = MAX_HOLES.saturating_sub(self.holes.len()) as i64;
                if skipped > room {
                    tracing::warn!(
                        skipped,
                        "the revocation journal's ids jumped; not waiting for all of the skipped ones"
                    );
                }
                for id in (self.high + 1..entry.id).take(room.max(0) as usize) {
                    self.holes.insert(id, now);
                }
                self.high = entry.id;
                fresh.push(entry.revocation);
            } else if self.holes.remove(&entry.id).is_some() {
                fresh.push(entry.revocation);
            }
        }
        fresh
    }

    /// Gives up holes missed for longer than `grace`.
    fn expire(&mut self, now: Instant, grace: Duration) {
        self.holes.retain(|_, since| now.duration_since(*since) < grace);
    }
}

async fn follow(
    sql: SqlStore,
    config: FollowConfig,
    sinks: Vec<Arc<dyn RevocationSink>>,
    start: Option<i64>,
    wake: Arc<Notify>,
    state: Arc<State>,
) {
    let mut tick = tokio::time::interval(config.poll_interval.max(Duration::from_millis(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor = start.map(Cursor::new);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = wake.notified() => {}
        }
        let result = match &mut cursor {
            Some(cursor) => read(&sql, &config, &sinks, cursor, &state).await,
            None => sql.journal_head().await.map(|head| cursor = Some(Cursor::new(head))),
        };
        match result {
            Ok(()) => {
                if state.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("reading the revocation journal again");
                }
            }
            Err(error) => {
                if !state.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "cannot read the revocation journal; retrying");
                }
            }
        }
    }
}

/// Reads every row past the cursor (and the holes) and applies them.
async fn read(
    sql: &SqlStore,
    config: &FollowConfig,
    sinks: &[Arc<dyn RevocationSink>],
    cursor: &mut Cursor,
    state: &State,
) -> SqlResult<()> {
    let mut holes = cursor.wanted();
    loop {
        let (new, late) = sql.journal_after(cursor.high, config.batch, holes).await?;
        holes = Vec::new();
        let full = new.len() >= config.batch;
        let now = Instant::now();
        let mut fresh = cursor.accept(late, now);
        fresh.extend(cursor.accept(new, now));
        state.position.store(cursor.high, Ordering::Relaxed);
        if !fresh.is_empty() {
            apply(sinks, &fresh).await;
            state.applied.fetch_add(fresh.len() as u64, Ordering::Relaxed);
        }
        if !full {
            break;
        }
    }
    cursor.expire(Instant::now(), config.gap_grace);
    Ok(())
}

/// Applies `revocations` to every sink at once. A failure is only logged: the memory
/// tier does not fail, and a Redis store that could not confirm a revocation distrusts
/// itself and replays the journal before it is read again.
async fn apply(sinks: &[Arc<dyn RevocationSink>], revocations: &[Revocation]) {
    let results = join_all(sinks.iter().map(|sink| sink.apply_revocations(revocations))).await;
    for error in results.into_iter().filter_map(Result::err) {
        tracing::debug!(%error, "a cache did not take revocations from the journal");
    }
    metrics::counter!("revocations_followed_total").increment(revocations.len() as u64);
}

/// Keeps a `LISTEN` connection open and wakes the follower on every notification and
/// every (re)connect (notifications sent while it was down are lost; the read after
/// the reconnect finds their rows).
#[cfg(feature = "postgres")]
async fn listen(url: String, connect_timeout: Duration, wake: Arc<Notify>, state: Arc<State>) {
    let mut backoff = Duration::from_millis(20);
    // Logged once per outage (and once if it never comes up).
    let mut warned = false;
    loop {
        let result = listen_once(&url, connect_timeout, &wake, &state).await;
        if state.listening.swap(false, Ordering::Relaxed) {
            backoff = Duration::from_millis(20);
            warned = false;
        }
        wake.notify_one();
        let error = result.err().map(|e| e.to_string()).unwrap_or_else(|| "closed".to_owned());
        if warned {
            tracing::debug!(%error, "revocation notifications still down");
        } else {
            tracing::warn!(
                %error,
                "revocation notifications lost; following the journal by polling until back"
            );
            warned = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// The channel of the journal in the connection's schema: the trigger notifies
/// `'revocations_' || md5(schema)` (an identifier of fixed length whatever the schema's
/// name), so environments in schemas of one database do not wake each other.
#[cfg(feature = "postgres")]
const CHANNEL_QUERY: &str = "SELECT 'revocations_' || md5(current_schema())";

#[cfg(feature = "postgres")]
async fn listen_once(
    url: &str,
    connect_timeout: Duration,
    wake: &Arc<Notify>,
    state: &State,
) -> Result<(), tokio_postgres::Error> {
    use futures::StreamExt as _;
    use tokio_postgres::AsyncMessage;

    let mut config: tokio_postgres::Config = url.parse()?;
    config.connect_timeout(connect_timeout);
    // Without keepalives a connection the network dropped silently would wait forever;
    // the poll covers the meantime.
    config.keepalives_idle(Duration::from_secs(30));
    // The same TLS setting as diesel-async's own connections.
    let (client, mut connection) = config.connect(tokio_postgres::NoTls).await?;
    let notify = wake.clone();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(_)) => notify.notify_one(),
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    });
    let subscribed = async {
        let channel: String = client.query_one(CHANNEL_QUERY, &[]).await?.try_get(0)?;
        // An md5 hex digest after a fixed prefix: nothing to quote.
        client.batch_execute(&format!("LISTEN {channel}")).await
    }
    .await;
    if let Err(error) = subscribed {
        driver.abort();
        return Err(error);
    }
    if !state.listening.swap(true, Ordering::Relaxed) {
        tracing::info!("listening for revocation notifications");
    }
    // Rows committed before the LISTEN took effect sent their notification to nobody.
    wake.notify_one();
    let ended = driver.await;
    drop(client);
    match ended {
        Ok(result) => result,
        // Aborted only with this task.
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use cache_core::{SessionKey, TokenHash, UserId};
    use chrono::DateTime;

    use super::*;

    fn entry(id: i64) -> JournalEntry {
        let key = SessionKey {
            user: UserId::new(id).unwrap(),
            hash: TokenHash::from_bytes([id as u8; 32]),
        };
        JournalEntry { id, revocation: Revocation::Session { key, at: DateTime::UNIX_EPOCH } }
    }

    #[test]
    fn late_rows_below_the_cursor_are_applied_once() {
        let now = Instant::now();
        let mut cursor = Cursor::new(10);
        // 11 and 12 are still in flight when 13 commits.
        assert_eq!(cursor.accept(vec![entry(13)], now).len(), 1);
        assert_eq!(cursor.wanted(), vec![11, 12]);
        assert_eq!(cursor.accept(vec![entry(12)], now).len(), 1);
        assert_eq!(cursor.accept(vec![entry(12), entry(13)], now).len(), 0);
        assert_eq!(cursor.wanted(), vec![11]);
        // 11 rolled back: given up after the grace period.
        cursor.expire(now + Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(cursor.wanted(), vec![11]);
        cursor.expire(now + Duration::from_secs(11), Duration::from_secs(10));
        assert!(cursor.wanted().is_empty());
        assert_eq!(cursor.high, 13);
    }

    #[test]
    fn a_jump_of_the_sequence_is_bounded() {
        let mut cursor = Cursor::new(0);
        assert_eq!(cursor.accept(vec![entry(1_000_000)], Instant::now()).len(), 1);
        assert_eq!(cursor.holes.len(), MAX_HOLES);
        assert_eq!(cursor.wanted().len(), HOLES_PER_READ);
    }
}
