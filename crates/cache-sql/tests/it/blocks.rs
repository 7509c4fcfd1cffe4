//! IP blocks on SQL: upsert, expiry, lifting, CIDR and IPv6 round trips, hand-edited
//! rows, and blocks surviving a new connection. Each property runs on SQLite and, when
//! `DATABASE_URL` is set, on PostgreSQL.

use cache_core::{BlockList, BlockReason, BlockSet, Clock, IpBlock, ManualClock};
use cache_sql::SqlStore;
use chrono::Duration as Span;

on_both_backends!(blocks_upsert_expire_and_lift, malformed_rows_are_skipped);

fn block(net: &str, reason: BlockReason, clock: &ManualClock, ttl: Option<i64>) -> IpBlock {
    let now = clock.now();
    IpBlock {
        net: net.parse().unwrap(),
        expires_at: ttl.map(|s| now + Span::seconds(s)),
        reason,
        created_at: now,
    }
}

async fn blocks_upsert_expire_and_lift(store: &SqlStore, clock: &ManualClock) {
    let stuffing = block("192.0.2.7", BlockReason::CredentialStuffing, clock, Some(3600));
    store.block(&stuffing).await.unwrap();
    clock.advance(Span::seconds(1));
    let range = block("198.51.100.0/24", BlockReason::Manual, clock, None);
    store.block(&range).await.unwrap();
    clock.advance(Span::seconds(1));
    let v6 = block("2001:db8:1::/48", BlockReason::TokenGuessing, clock, Some(60));
    store.block(&v6).await.unwrap();

    // Most recent first, every field as written.
    let active = store.active_blocks(clock.now()).await.unwrap();
    assert_eq!(active, vec![v6.clone(), range.clone(), stuffing.clone()]);
    let set = BlockSet::new(active);
    assert!(set.find("198.51.100.77".parse().unwrap(), clock.now()).is_some());
    assert!(set.find("2001:db8:1:ffff::1".parse().unwrap(), clock.now()).is_some());
    assert!(set.find("192.0.2.8".parse().unwrap(), clock.now()).is_none());

    // A new block of the same range replaces the old one.
    let manual = block("192.0.2.7/32", BlockReason::Manual, clock, None);
    store.block(&manual).await.unwrap();
    let active = store.active_blocks(clock.now()).await.unwrap();
    assert_eq!(active.len(), 3);
    assert!(active.contains(&manual));
    assert!(!active.contains(&stuffing));

    // Expired blocks are not active, and are purged by the next write.
    clock.advance(Span::seconds(60));
    let active = store.active_blocks(clock.now()).await.unwrap();
    assert_eq!(active, vec![manual.clone(), range.clone()]);
    store.block(&block("203.0.113.9", BlockReason::Manual, clock, Some(10))).await.unwrap();
    assert!(!store.unblock(&v6.net).await.unwrap(), "the expired row was purged");

    // Lifting takes exactly the range named.
    assert!(!store.unblock(&"198.51.100.0/25".parse().unwrap()).await.unwrap());
    assert!(store.unblock(&range.net).await.unwrap());
    assert!(!store.unblock(&range.net).await.unwrap());
    let nets: Vec<String> =
        store.active_blocks(clock.now()).await.unwrap().iter().map(|b| b.net.to_string()).collect();
    assert_eq!(nets, ["203.0.113.9/32", "192.0.2.7/32"]);
}

async fn malformed_rows_are_skipped(store: &SqlStore, clock: &ManualClock) {
    store.block(&block("192.0.2.1", BlockReason::Manual, clock, None)).await.unwrap();
    let created = if store.backend() == "postgres" {
        "now()".to_owned()
    } else {
        clock.now().timestamp_micros().to_string()
    };
    cache_sql::testing::execute(
        store,
        &format!(
            "INSERT INTO ip_blocks (net, expires_at, reason, created_at) VALUES \
             ('not-a-net', NULL, 'manual', {created}), ('192.0.2.2/32', NULL, 'whim', {created})"
        ),
    )
    .await
    .unwrap();
    let active = store.active_blocks(clock.now()).await.unwrap();
    let nets: Vec<String> = active.iter().map(|b| b.net.to_string()).collect();
    assert_eq!(nets, ["192.0.2.1/32"]);
}

/// Blocks live in the database file, not in the store: a new connection sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_survive_a_new_connection() {
    let clock = cache_testkit::new_clock();
    let dir =
        std::env::temp_dir().join(format!("cache-sql-blocks-{}", cache_testkit::random_user()));
    let url = format!("sqlite://{}", dir.join("auth.db").display());
    let first = SqlStore::connect(&url, Default::default(), clock.clone()).await.unwrap();
    first.migrate().await.unwrap();
    first.block(&block("10.0.0.0/8", BlockReason::Manual, &clock, None)).await.unwrap();
    drop(first);
    let second = SqlStore::connect(&url, Default::default(), clock.clone()).await.unwrap();
    let nets: Vec<String> = second
        .active_blocks(clock.now())
        .await
        .unwrap()
        .iter()
        .map(|b| b.net.to_string())
        .collect();
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(nets, ["10.0.0.0/8"]);
}
