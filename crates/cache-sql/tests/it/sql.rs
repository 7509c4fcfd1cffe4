//! Behaviour of the SQL store beyond the conformance suite: accounts, the revocation
//! journal, query accounting, migrations, corrupt rows, URLs and failure modes. Each
//! property runs on SQLite and, when `DATABASE_URL` is set, on PostgreSQL.

use std::time::Duration;

use cache_core::{
    AccountStore, Clock, Conflict, ManualClock, NewUser, Purpose, Revocation, RevocationJournal,
    SessionLookup, SessionStore, StoreError, User, UserCache, VerificationStore,
};
use cache_sql::{SqlConfig, SqlStore, testing};
use cache_testkit::{random_user, sample_session, sample_verification};
use chrono::Duration as Span;
use futures::future::join_all;

fn sample_user(clock: &ManualClock) -> User {
    let id = random_user();
    User {
        id,
        name: "Grace Hopper".to_owned(),
        email: format!("grace-{id}@example.com"),
        email_verified: false,
        created_at: clock.now(),
    }
}

fn new_account(clock: &ManualClock) -> NewUser {
    NewUser { user: sample_user(clock), password_hash: "$argon2id$v=19$stub".to_owned() }
}

on_both_backends!(
    accounts_round_trip_and_refuse_duplicates,
    set_password_hash_replaces_the_hash,
    mark_email_verified_only_for_the_current_email,
    profiles_written_through_the_cache_cannot_log_in,
    journal_records_every_revocation_oldest_first,
    revoking_nothing_journals_nothing,
    prune_journal_drops_old_rows_only,
    put_racing_a_revocation_never_revives,
    recent_sessions_are_live_and_most_recently_renewed,
    query_count_counts_statements,
    get_with_user_is_one_statement,
    migrate_is_idempotent,
    corrupt_rows_are_reported_as_corrupt,
    ping_and_pool_state,
);

async fn accounts_round_trip_and_refuse_duplicates(store: &SqlStore, clock: &ManualClock) {
    let account = new_account(clock);
    store.create_account(&account).await.unwrap();
    let by_email = store.credentials_by_email(&account.user.email).await.unwrap().unwrap();
    assert_eq!(by_email.user, account.user);
    assert_eq!(by_email.password_hash, account.password_hash);
    let by_id = store.credentials_by_id(account.user.id).await.unwrap().unwrap();
    assert_eq!(by_id, by_email);
    assert_eq!(store.get_user(account.user.id).await.unwrap(), Some(account.user.clone()));

    let mut same_email = new_account(clock);
    same_email.user.email = account.user.email.clone();
    let dup = store.create_account(&same_email).await;
    assert!(matches!(dup, Err(StoreError::Conflict(Conflict::Exists))), "{dup:?}");
    let mut same_id = new_account(clock);
    same_id.user.id = account.user.id;
    let dup = store.create_account(&same_id).await;
    assert!(matches!(dup, Err(StoreError::Conflict(Conflict::Exists))), "{dup:?}");
    assert_eq!(store.credentials_by_email(&same_email.user.email).await.unwrap(), Some(by_email));

    assert_eq!(store.credentials_by_email("nobody@example.com").await.unwrap(), None);
    assert_eq!(store.credentials_by_id(random_user()).await.unwrap(), None);
}

async fn set_password_hash_replaces_the_hash(store: &SqlStore, clock: &ManualClock) {
    let account = new_account(clock);
    store.create_account(&account).await.unwrap();
    assert!(store.set_password_hash(account.user.id, "$argon2id$new").await.unwrap());
    let creds = store.credentials_by_id(account.user.id).await.unwrap().unwrap();
    assert_eq!(creds.password_hash, "$argon2id$new");
    assert!(!store.set_password_hash(random_user(), "$argon2id$new").await.unwrap());
}

async fn mark_email_verified_only_for_the_current_email(store: &SqlStore, clock: &ManualClock) {
    let account = new_account(clock);
    let id = account.user.id;
    store.create_account(&account).await.unwrap();

    let verified = store.mark_email_verified(id, &account.user.email).await.unwrap().unwrap();
    assert!(verified.email_verified);
    assert_eq!(verified, User { email_verified: true, ..account.user.clone() });
    assert_eq!(store.get_user(id).await.unwrap(), Some(verified.clone()));

    // The address changed after the link was sent: the old link verifies nothing.
    let changed =
        User { email: format!("new-{id}@example.com"), email_verified: false, ..verified };
    store.put_user(&changed).await.unwrap();
    assert_eq!(store.mark_email_verified(id, &account.user.email).await.unwrap(), None);
    assert_eq!(store.get_user(id).await.unwrap(), Some(changed));
    assert_eq!(store.mark_email_verified(random_user(), "x@example.com").await.unwrap(), None);
}

async fn profiles_written_through_the_cache_cannot_log_in(store: &SqlStore, clock: &ManualClock) {
    let user = sample_user(clock);
    store.put_user(&user).await.unwrap();
    assert_eq!(store.get_user(user.id).await.unwrap(), Some(user.clone()));
    assert_eq!(store.credentials_by_email(&user.email).await.unwrap(), None);
    assert_eq!(store.credentials_by_id(user.id).await.unwrap(), None);

    // A profile update through the cache interface keeps the account's credentials.
    let account = new_account(clock);
    store.create_account(&account).await.unwrap();
    let renamed = User { name: "Rear Admiral Hopper".to_owned(), ..account.user.clone() };
    store.put_user(&renamed).await.unwrap();
    let creds = store.credentials_by_id(account.user.id).await.unwrap().unwrap();
    assert_eq!((creds.user, creds.password_hash), (renamed, account.password_hash));

    // Taking another account's email is a conflict, through either interface.
    let thief = User { email: account.user.email.clone(), ..sample_user(clock) };
    let taken = store.put_user(&thief).await;
    assert!(matches!(taken, Err(StoreError::Conflict(Conflict::Exists))), "{taken:?}");
}

async fn journal_records_every_revocation_oldest_first(store: &SqlStore, clock: &ManualClock) {
    let start = clock.now();
    let user = random_user();
    let (a, b, c) =
        (sample_session(clock, user), sample_session(clock, user), sample_session(clock, user));
    for s in [&a, &b, &c] {
        store.create(s).await.unwrap();
    }
    clock.advance(Span::seconds(1));
    let t1 = clock.now();
    assert!(store.delete(&a.key).await.unwrap());
    clock.advance(Span::seconds(1));
    let t2 = clock.now();
    assert_eq!(store.delete_user_sessions(user, Some(c.key.hash)).await.unwrap(), 1);
    clock.advance(Span::seconds(1));
    let t3 = clock.now();
    assert_eq!(store.delete_user_sessions(user, None).await.unwrap(), 1);

    let all = store.revocations_since(start).await.unwrap();
    assert_eq!(
        all,
        vec![
            Revocation::Session { key: a.key, at: t1 },
            Revocation::AllOfUser { user, keep: Some(c.key.hash), at: t2 },
            Revocation::AllOfUser { user, keep: None, at: t3 },
        ]
    );
    assert_eq!(store.revocations_since(t2).await.unwrap(), all[1..].to_vec());
    assert_eq!(store.revocations_since(t3 + Span::microseconds(1)).await.unwrap(), vec![]);
    assert!(store.list_user_sessions(user).await.unwrap().is_empty());
}

/// A revocation of what was never there journals nothing (a made-up token must cost no
/// state), and returns that nothing was deleted.
async fn revoking_nothing_journals_nothing(store: &SqlStore, clock: &ManualClock) {
    let start = clock.now();
    let never = sample_session(clock, random_user());
    assert!(!store.delete(&never.key).await.unwrap());
    assert_eq!(store.delete_user_sessions(never.key.user, None).await.unwrap(), 0);
    assert_eq!(store.revocations_since(start).await.unwrap(), vec![]);
}

async fn prune_journal_drops_old_rows_only(store: &SqlStore, clock: &ManualClock) {
    let start = clock.now();
    let old = sample_session(clock, random_user());
    store.create(&old).await.unwrap();
    store.delete(&old.key).await.unwrap();
    clock.advance(Span::hours(1));
    let recent = sample_session(clock, random_user());
    store.create(&recent).await.unwrap();
    store.delete(&recent.key).await.unwrap();

    assert_eq!(store.prune_journal(clock.now() - Span::minutes(30)).await.unwrap(), 1);
    assert_eq!(
        store.revocations_since(start).await.unwrap(),
        vec![Revocation::Session { key: recent.key, at: clock.now() }]
    );
    assert_eq!(store.prune_journal(start).await.unwrap(), 0);
}

/// A cache fill racing a revocation must lose whatever the interleaving: after both
/// finished, the session is gone.
async fn put_racing_a_revocation_never_revives(store: &SqlStore, clock: &ManualClock) {
    for round in 0..40 {
        let user = random_user();
        let session = sample_session(clock, user);
        store.create(&session).await.unwrap();
        let revoke = async {
            if round % 2 == 0 {
                store.delete(&session.key).await.map(drop)
            } else {
                store.delete_user_sessions(user, None).await.map(drop)
            }
        };
        let fills = join_all((0..4).map(|_| store.put(&session)));
        let (revoked, fills) = tokio::join!(revoke, fills);
        revoked.unwrap();
        for fill in fills {
            fill.unwrap();
        }
        assert_eq!(store.get(&session.key).await.unwrap(), None, "round {round}");
    }
}

async fn recent_sessions_are_live_and_most_recently_renewed(store: &SqlStore, clock: &ManualClock) {
    let mut sessions = Vec::new();
    for _ in 0..4 {
        clock.advance(Span::seconds(1));
        let s = sample_session(clock, random_user());
        store.create(&s).await.unwrap();
        sessions.push(s);
    }
    let mut expired = sample_session(clock, random_user());
    expired.expires_at = clock.now() + Span::seconds(1);
    store.create(&expired).await.unwrap();
    clock.advance(Span::seconds(2));
    let recent = store.recent_sessions(3).await.unwrap();
    let expected: Vec<_> = sessions.iter().rev().take(3).cloned().collect();
    assert_eq!(recent, expected);
    assert_eq!(store.recent_sessions(100).await.unwrap().len(), 4);
}

async fn query_count_counts_statements(store: &SqlStore, clock: &ManualClock) {
    let session = sample_session(clock, random_user());
    let before = store.query_count();
    store.create(&session).await.unwrap();
    assert_eq!(store.query_count(), before + 1);
    for _ in 0..5 {
        store.get(&session.key).await.unwrap();
    }
    assert_eq!(store.query_count(), before + 6);
    // A clone shares the count.
    let clone = store.clone();
    clone.get(&session.key).await.unwrap();
    assert_eq!(store.query_count(), before + 7);
    let v = sample_verification(clock, random_user(), Purpose::PasswordReset, Span::minutes(5));
    store.put_verification(&v).await.unwrap();
    store.consume(&v.hash, v.purpose).await.unwrap();
    assert_eq!(store.query_count(), before + 9);
}

async fn get_with_user_is_one_statement(store: &SqlStore, clock: &ManualClock) {
    let user = sample_user(clock);
    store.put_user(&user).await.unwrap();
    let session = sample_session(clock, user.id);
    store.create(&session).await.unwrap();
    let alone = sample_session(clock, random_user());
    store.create(&alone).await.unwrap();
    let before = store.query_count();
    let found = store.get_with_user(&session.key).await.unwrap().unwrap();
    assert_eq!((found.session, found.user), (session, Some(user)));
    assert_eq!(store.query_count(), before + 1);
    // A session without a known user, and a miss, are one statement too.
    assert_eq!(store.get_with_user(&alone.key).await.unwrap().unwrap().user, None);
    assert_eq!(store.get_with_user(&sample_session(clock, random_user()).key).await.unwrap(), None);
    assert_eq!(store.query_count(), before + 3);
}

async fn migrate_is_idempotent(store: &SqlStore, clock: &ManualClock) {
    let session = sample_session(clock, random_user());
    store.create(&session).await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.get(&session.key).await.unwrap(), Some(session));
}

async fn corrupt_rows_are_reported_as_corrupt(store: &SqlStore, clock: &ManualClock) {
    let (now, later) = (clock.now(), clock.now() + Span::hours(1));
    let (now, later) = match store.backend() {
        "postgres" => (format!("'{}'", now.to_rfc3339()), format!("'{}'", later.to_rfc3339())),
        _ => (now.timestamp_micros().to_string(), later.timestamp_micros().to_string()),
    };
    let blob = |hex: &str| match store.backend() {
        "postgres" => format!("'\\x{hex}'::bytea"),
        _ => format!("X'{hex}'"),
    };
    let short_hash_user = random_user();
    testing::execute(
        store,
        &format!(
            "INSERT INTO sessions VALUES ({}, {short_hash_user}, {now}, {now}, {later}, {later}, \
             NULL, NULL, 0)",
            blob("0102")
        ),
    )
    .await
    .unwrap();
    let listed = store.list_user_sessions(short_hash_user).await;
    assert!(matches!(listed, Err(StoreError::Corrupt(_))), "{listed:?}");

    let bad_ip = sample_session(clock, random_user());
    testing::execute(
        store,
        &format!(
            "INSERT INTO sessions VALUES ({}, {}, {now}, {now}, {later}, {later}, NULL, \
             'not-an-ip', 0)",
            blob(&bad_ip.key.hash.to_hex()),
            bad_ip.key.user
        ),
    )
    .await
    .unwrap();
    let got = store.get(&bad_ip.key).await;
    assert!(matches!(got, Err(StoreError::Corrupt(_))), "{got:?}");
    let got = store.get_with_user(&bad_ip.key).await;
    assert!(matches!(got, Err(StoreError::Corrupt(_))), "{got:?}");
}

async fn ping_and_pool_state(store: &SqlStore, _clock: &ManualClock) {
    let before = store.query_count();
    let latency = store.ping().await.unwrap();
    assert!(latency > Duration::ZERO, "{latency:?}");
    assert_eq!(store.query_count(), before + 1);
    let state = store.pool_state();
    assert!(state.connections >= 1 && state.idle <= state.connections, "{state:?}");
    assert!(["postgres", "sqlite"].contains(&store.backend()));
}

/// The migration harness blocks; `migrate` must still work from a current-thread
/// runtime (what actix workers run).
#[tokio::test]
async fn migrate_works_on_a_current_thread_runtime() {
    let clock = cache_testkit::new_clock();
    let store = testing::temp_sqlite(clock.clone()).await.unwrap();
    store.migrate().await.unwrap();
    if let Some(url) = cache_testkit::service_url("DATABASE_URL") {
        let store = testing::isolated_postgres(&url, clock.clone()).await.unwrap();
        store.migrate().await.unwrap();
        let session = sample_session(&clock, random_user());
        store.create(&session).await.unwrap();
        assert_eq!(store.get(&session.key).await.unwrap(), Some(session));
    }
}

/// A database that is down answers with an error within the connection timeout,
/// never hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_fails_fast() {
    let clock = cache_testkit::new_clock();
    let result =
        SqlStore::connect("postgres://postgres@127.0.0.1:1/test", SqlConfig::default(), clock)
            .await;
    let err = result.expect_err("nothing listens on port 1");
    assert!(err.is_unavailable(), "{err:?}");
}

/// A statement blocked past the query timeout fails as a timeout (not as unavailable),
/// and the store works again once the blocker is gone: the abandoned connection is
/// either discarded or returned in a usable state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_blocked_statement_times_out_then_recovers() {
    let Some(url) = cache_testkit::service_url("DATABASE_URL") else { return };
    let clock = cache_testkit::new_clock();
    let config = SqlConfig { query_timeout: Duration::from_millis(300), ..SqlConfig::default() };
    let store = testing::isolated_postgres_with(&url, config, clock.clone()).await.unwrap();
    let session = sample_session(&clock, random_user());
    store.create(&session).await.unwrap();

    // Revocations of a user serialize on an advisory lock: hold it from another session.
    let config = SqlConfig { pool_size: 1, ..SqlConfig::default() };
    let locker = SqlStore::connect(&url, config, clock.clone()).await.unwrap();
    let user = session.key.user;
    testing::execute(&locker, &format!("SELECT pg_advisory_lock({user})")).await.unwrap();

    // The Timeout kind shows the query timeout (300 ms) cut the wait short.
    let blocked = store.delete(&session.key).await;
    assert!(matches!(blocked, Err(StoreError::Timeout(_))), "{blocked:?}");

    testing::execute(&locker, &format!("SELECT pg_advisory_unlock({user})")).await.unwrap();
    for _ in 0..8 {
        store.ping().await.unwrap();
    }
    assert!(store.delete(&session.key).await.unwrap());
    assert_eq!(store.get(&session.key).await.unwrap(), None);
}

/// The same on SQLite, where a statement cannot be interrupted: the caller stops
/// waiting, the statement finishes in the background and its connection goes back to
/// the pool intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_blocked_statement_times_out_then_recovers() {
    let clock = cache_testkit::new_clock();
    let mut bytes = [0u8; 8];
    cache_core::token::fill_random(&mut bytes).unwrap();
    let root = std::env::temp_dir().join(format!("cache-sql-lock-{}", u64::from_le_bytes(bytes)));
    let url = format!("sqlite://{}", root.join("auth.db").display());
    let config = SqlConfig { query_timeout: Duration::from_millis(300), ..SqlConfig::default() };
    let store = SqlStore::connect(&url, config, clock.clone()).await.unwrap();
    store.migrate().await.unwrap();
    let session = sample_session(&clock, random_user());
    store.create(&session).await.unwrap();

    // A writer that holds the database's write lock (the store waits up to busy_timeout).
    let config = SqlConfig { pool_size: 1, ..SqlConfig::default() };
    let locker = SqlStore::connect(&url, config, clock.clone()).await.unwrap();
    testing::execute(&locker, "BEGIN IMMEDIATE").await.unwrap();

    // The Timeout kind shows the query timeout (300 ms) cut the wait short.
    let blocked = store.delete(&session.key).await;
    assert!(matches!(blocked, Err(StoreError::Timeout(_))), "{blocked:?}");

    testing::execute(&locker, "COMMIT").await.unwrap();
    // The abandoned delete may still complete on its own: either way the session goes.
    store.delete(&session.key).await.unwrap();
    assert_eq!(store.get(&session.key).await.unwrap(), None);
    let other = sample_session(&clock, random_user());
    store.create(&other).await.unwrap();
    assert_eq!(store.get(&other.key).await.unwrap(), Some(other));
    drop((store, locker));
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_in_memory_is_one_shared_database() {
    let clock = cache_testkit::new_clock();
    let store =
        SqlStore::connect("sqlite::memory:", SqlConfig::default(), clock.clone()).await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    let user = random_user();
    let sessions: Vec<_> = (0..20).map(|_| sample_session(&clock, user)).collect();
    for result in join_all(sessions.iter().map(|s| store.create(s))).await {
        result.unwrap();
    }
    assert_eq!(store.list_user_sessions(user).await.unwrap().len(), 20);
    assert_eq!(store.pool_state().connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_and_missing_directories_are_created() {
    let clock = cache_testkit::new_clock();
    let mut bytes = [0u8; 8];
    cache_core::token::fill_random(&mut bytes).unwrap();
    let root = std::env::temp_dir().join(format!("cache-sql-url-{}", u64::from_le_bytes(bytes)));
    let file = root.join("nested/deeper/auth.db");
    let url = format!("sqlite://{}", file.display());
    let store = SqlStore::connect(&url, SqlConfig::default(), clock.clone()).await.unwrap();
    store.migrate().await.unwrap();
    let session = sample_session(&clock, random_user());
    store.create(&session).await.unwrap();
    assert!(file.exists());
    drop(store);

    // A second store on the same file sees the data: it is the authority, not a cache.
    let again = SqlStore::connect(&url, SqlConfig::default(), clock).await.unwrap();
    again.migrate().await.unwrap();
    assert_eq!(again.get(&session.key).await.unwrap(), Some(session));
    drop(again);
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    for url in ["mysql://localhost/db", "redis://127.0.0.1", "sqlite:", ""] {
        let result = SqlStore::connect(url, SqlConfig::default(), cache_testkit::new_clock()).await;
        assert!(result.is_err(), "{url}");
    }
}

#[tokio::test]
async fn expired_rows_do_not_count_as_revoked() {
    let clock = cache_testkit::new_clock();
    let store = testing::temp_sqlite(clock.clone()).await.unwrap();
    let user = random_user();
    let mut short = sample_session(&clock, user);
    short.expires_at = clock.now() + Span::minutes(1);
    let long = sample_session(&clock, user);
    store.create(&short).await.unwrap();
    store.create(&long).await.unwrap();
    clock.advance(Span::minutes(2));
    assert_eq!(store.delete_user_sessions(user, None).await.unwrap(), 1);
}
