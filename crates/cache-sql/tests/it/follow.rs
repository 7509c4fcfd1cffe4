//! The SQL side of "revoked everywhere within a second, whatever Redis does" (issue 13):
//! the revocation follower of one store sees every journal row another store (another
//! instance) commits, on PostgreSQL through `LISTEN/NOTIFY` and on SQLite by polling;
//! a replay pages the journal by id; N instances migrating an empty database at once all
//! succeed (F10).
//!
//! Deadlines here are generous (a loaded CI machine); the latency figures come from
//! `cargo xtask revocation-latency`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cache_core::{Clock, Revocation, RevocationJournal, RevocationSink, SessionStore, StoreResult};
use cache_sql::{FollowConfig, RevocationFollower, SqlConfig, SqlStore};
use cache_testkit::{random_user, sample_session};
use futures::future::join_all;
use tempfile::TempDir;

/// Records what the follower applies.
#[derive(Default)]
struct Recorder(Mutex<Vec<Revocation>>);

#[async_trait]
impl RevocationSink for Recorder {
    async fn apply_revocations(&self, revocations: &[Revocation]) -> StoreResult<()> {
        self.0.lock().unwrap().extend_from_slice(revocations);
        Ok(())
    }
    async fn clear(&self) -> StoreResult<()> {
        Ok(())
    }
}

impl Recorder {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    async fn wait_for(&self, n: usize, what: &str) -> Duration {
        let start = Instant::now();
        while self.count() < n {
            assert!(start.elapsed() < Duration::from_secs(10), "{what}: {}/{n}", self.count());
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        start.elapsed()
    }
}

fn temp_sqlite_url() -> (TempDir, String) {
    let dir = TempDir::with_prefix("cache-sql-follow-").unwrap();
    let url = format!("sqlite://{}", dir.path().join("auth.db").display());
    (dir, url)
}

fn small() -> SqlConfig {
    SqlConfig { pool_size: 2, ..SqlConfig::default() }
}

/// Store A revokes (one session, then all of a user's), the follower on store B (its
/// own pool, same database) receives both, and nothing twice.
async fn follower_sees_the_other_instances_revocations(a: SqlStore, b: SqlStore, pg: bool) {
    let clock = cache_testkit::new_clock();
    let recorder = Arc::new(Recorder::default());
    let config = FollowConfig { poll_interval: Duration::from_millis(200), ..Default::default() };
    let follower = RevocationFollower::spawn(b, config, vec![recorder.clone()]).await;
    if pg {
        let start = Instant::now();
        while !follower.is_listening() {
            assert!(start.elapsed() < Duration::from_secs(10), "LISTEN never came up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let session = sample_session(&clock, random_user());
    a.create(&session).await.unwrap();
    assert!(a.delete(&session.key).await.unwrap());
    let took = recorder.wait_for(1, "single revoke").await;
    eprintln!("single revoke seen after {took:?}");
    assert!(
        matches!(&recorder.0.lock().unwrap()[0], Revocation::Session { key, .. } if *key == session.key)
    );

    let user = random_user();
    let other = sample_session(&clock, user);
    a.create(&other).await.unwrap();
    assert_eq!(a.delete_user_sessions(user, None).await.unwrap(), 1);
    recorder.wait_for(2, "revoke-all").await;
    assert!(
        matches!(&recorder.0.lock().unwrap()[1], Revocation::AllOfUser { user: u, .. } if *u == user)
    );

    // A burst of 50 from several tasks: every one arrives, once.
    let before = follower.applied();
    join_all((0..50).map(|_| {
        let (a, s) = (a.clone(), sample_session(&clock, random_user()));
        async move {
            a.create(&s).await.unwrap();
            a.delete(&s.key).await.unwrap();
        }
    }))
    .await;
    recorder.wait_for(52, "burst").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(recorder.count(), 52);
    assert_eq!(follower.applied() - before, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_on_sqlite_polls_the_journal() {
    let (_dir, url) = temp_sqlite_url();
    let clock = cache_testkit::new_clock();
    let a = SqlStore::connect(&url, small(), clock.clone()).await.unwrap();
    a.migrate().await.unwrap();
    let b = SqlStore::connect(&url, small(), clock).await.unwrap();
    follower_sees_the_other_instances_revocations(a, b, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_on_postgres_listens_for_notifications() {
    let Some(base) = cache_testkit::service_url("DATABASE_URL") else { return };
    let clock = cache_testkit::new_clock();
    let url = cache_sql::testing::empty_postgres_schema(&base, clock.clone()).await.unwrap();
    let a = SqlStore::connect(&url, small(), clock.clone()).await.unwrap();
    a.migrate().await.unwrap();
    let b = SqlStore::connect(&url, small(), clock).await.unwrap();
    follower_sees_the_other_instances_revocations(a, b, true).await;
}

/// The replay's pages: by id, bounded, filtered by time, complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_pages_by_id() {
    let clock = cache_testkit::new_clock();
    let store = cache_sql::testing::temp_sqlite(clock.clone()).await.unwrap();
    let start = clock.now();
    for _ in 0..7 {
        // Only a revocation of something that existed is journaled.
        let session = sample_session(&clock, random_user());
        store.create(&session).await.unwrap();
        assert_eq!(store.delete_user_sessions(session.key.user, None).await.unwrap(), 1);
        clock.advance(chrono::Duration::seconds(1));
    }
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = store.revocations_page(start, after, 3).await.unwrap();
        assert!(page.len() <= 3);
        seen.extend(page.iter().map(|e| e.id));
        match page.last() {
            Some(last) if page.len() == 3 => after = last.id,
            _ => break,
        }
    }
    assert_eq!(seen.len(), 7);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    // Older than `since`: left out.
    let recent = store.revocations_page(start + chrono::Duration::seconds(5), 0, 100).await;
    assert_eq!(recent.unwrap().len(), 2);
}

/// F10: four instances start at once on an empty database; all migrate and come up.
async fn four_at_once(url: &str) {
    let clock = cache_testkit::new_clock();
    let results = join_all((0..4).map(|_| {
        let (url, clock) = (url.to_owned(), clock.clone());
        async move {
            let store = SqlStore::connect(&url, small(), clock).await?;
            store.migrate().await?;
            Ok::<_, cache_core::StoreError>(store)
        }
    }))
    .await;
    let stores: Vec<SqlStore> =
        results.into_iter().map(|r| r.expect("instance comes up")).collect();
    let clock = cache_testkit::new_clock();
    for store in &stores {
        let s = sample_session(&clock, random_user());
        store.create(&s).await.unwrap();
        assert!(store.delete(&s.key).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_migrate_an_empty_sqlite_file_at_once() {
    let (_dir, url) = temp_sqlite_url();
    four_at_once(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_instances_migrate_an_empty_postgres_schema_at_once() {
    let Some(base) = cache_testkit::service_url("DATABASE_URL") else { return };
    let url =
        cache_sql::testing::empty_postgres_schema(&base, cache_testkit::new_clock()).await.unwrap();
    four_at_once(&url).await;
}
