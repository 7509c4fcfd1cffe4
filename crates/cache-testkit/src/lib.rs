#![doc = include_str!("../README.md")]

use std::io::Write as _;
use std::sync::Arc;

use cache_core::token::Secret;
use cache_core::{ManualClock, Purpose, Session, SessionKey, UserId, Verification};
use chrono::Duration;

pub mod cleanup;
pub mod lookup;
#[cfg(feature = "servers")]
pub mod servers;
pub mod session;
pub mod state;
pub mod user;
pub mod verification;

/// Environment variable that turns a skipped server-backed test into a failure.
pub const REQUIRE_SERVICES: &str = "AUTH_TEST_REQUIRE_SERVICES";

/// Whether `AUTH_TEST_REQUIRE_SERVICES=1` is set.
pub fn services_required() -> bool {
    std::env::var(REQUIRE_SERVICES).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// The URL of a backing service from `var` (e.g. `DATABASE_URL`, `REDIS_URL`).
///
/// When unset, prints a skip line naming the test straight to stderr (past libtest's
/// output capture, so `cargo test` shows what it skipped) and returns `None`; with
/// `AUTH_TEST_REQUIRE_SERVICES=1` it panics instead, because a skip is not a pass.
pub fn service_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            skip(&format!("{var} is not set"));
            None
        }
    }
}

/// Records that the current test is skipped for `reason` (or panics when services are
/// required).
pub fn skip(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    if services_required() {
        panic!("{test}: {reason}, and {REQUIRE_SERVICES}=1 forbids skipping");
    }
    let _ = writeln!(std::io::stderr().lock(), "skipped: {test}: {reason}");
}

/// A fresh manual clock at the current wall-clock time (so real TTLs stay sensible).
pub fn new_clock() -> Arc<ManualClock> {
    ManualClock::starting_now()
}

/// A random user id.
pub fn random_user() -> UserId {
    UserId::random().expect("OS random number generator")
}

/// A random session key of `user`.
pub fn random_key(user: UserId) -> SessionKey {
    SessionKey { user, hash: Secret::generate().expect("OS random number generator").hash() }
}

/// A session of `user` created now: idle expiry in one hour, absolute expiry in a day.
pub fn sample_session(clock: &ManualClock, user: UserId) -> Session {
    use cache_core::Clock as _;
    let now = clock.now();
    Session {
        key: random_key(user),
        created_at: now,
        renewed_at: now,
        expires_at: now + Duration::hours(1),
        absolute_expires_at: now + Duration::days(1),
        user_agent: Some("Mozilla/5.0 (conformance)".to_owned()),
        ip: Some("203.0.113.7".parse().expect("literal address")),
        version: 0,
    }
}

/// A verification of `user` for `purpose`, created now, live for `ttl`.
pub fn sample_verification(
    clock: &ManualClock,
    user: UserId,
    purpose: Purpose,
    ttl: Duration,
) -> Verification {
    use cache_core::Clock as _;
    let now = clock.now();
    Verification {
        hash: Secret::generate().expect("OS random number generator").hash(),
        purpose,
        user,
        identifier: format!("user-{user}@example.com"),
        created_at: now,
        expires_at: now + ttl,
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __suite {
    ($factory:path, $module:ident, [$($name:ident),* $(,)?]) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let clock = $crate::new_clock();
                let Some(store) = $factory(clock.clone()).await else { return };
                // Shared so that the concurrency properties can spawn real tasks.
                let store = ::std::sync::Arc::new(store);
                $crate::$module::$name(&store, &clock).await;
            }
        )*
    };
}

/// Expands to the `SessionStateStore` conformance tests for the store `$factory` makes.
#[macro_export]
macro_rules! session_state_suite {
    ($factory:path) => {
        $crate::__suite!(
            $factory,
            state,
            [
                save_then_load_round_trips,
                load_missing_is_none,
                save_over_a_live_state_conflicts,
                expired_state_is_gone,
                update_replaces_a_live_state,
                update_of_a_missing_or_expired_state_is_refused,
                update_ttl_moves_the_expiry,
                delete_is_idempotent,
                delete_user_states_deletes_only_theirs,
                delete_user_states_follows_rebinding,
                put_overwrites,
            ]
        );
    };
}

/// Expands to the `SessionStore` conformance tests for the store `$factory` makes.
#[macro_export]
macro_rules! session_store_suite {
    ($factory:path) => {
        $crate::__suite!(
            $factory,
            session,
            [
                create_then_get_round_trips,
                get_missing_is_none,
                get_with_another_user_is_none,
                create_existing_conflicts,
                expired_session_is_gone,
                absolute_expiry_is_enforced,
                extend_moves_expiry_and_bumps_version,
                extend_never_passes_absolute_expiry,
                extend_with_stale_version_conflicts,
                extend_missing_is_none,
                extend_expired_is_none,
                concurrent_extends_one_wins,
                delete_is_idempotent,
                delete_user_sessions_keeps_one,
                delete_user_sessions_without_keep_deletes_all,
                list_user_sessions_live_newest_first,
                put_stores_a_snapshot,
                put_never_revives_a_deleted_session,
                put_never_revives_revoked_user_sessions,
                put_keeps_the_newer_version,
                concurrent_creates_are_all_listed,
            ]
        );
    };
}

/// Expands to the `VerificationStore` conformance tests.
#[macro_export]
macro_rules! verification_store_suite {
    ($factory:path) => {
        $crate::__suite!(
            $factory,
            verification,
            [
                put_then_consume_round_trips,
                consume_is_single_use,
                consume_missing_is_none,
                consume_expired_is_none,
                consume_wrong_purpose_keeps_the_token,
                concurrent_consumers_exactly_one_wins,
                delete_verifications_supersedes_older_tokens,
            ]
        );
    };
}

/// Expands to the `UserCache` conformance tests. `cache` for a cache tier (invalidate
/// drops the entry), `authority` for the source of truth (invalidate keeps it).
#[macro_export]
macro_rules! user_cache_suite {
    ($factory:path, cache) => {
        $crate::user_cache_suite!(@tests $factory, $crate::user::Kind::Cache);
    };
    ($factory:path, authority) => {
        $crate::user_cache_suite!(@tests $factory, $crate::user::Kind::Authority);
    };
    (@tests $factory:path, $kind:expr) => {
        $crate::user_cache_suite!(@each $factory, $kind, [
            put_then_get_round_trips,
            get_missing_is_none,
            put_replaces,
            invalidate_user,
        ]);
    };
    (@each $factory:path, $kind:expr, [$($name:ident),* $(,)?]) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let clock = $crate::new_clock();
                let Some(store) = $factory(clock.clone()).await else { return };
                $crate::user::$name(&store, &clock, $kind).await;
            }
        )*
    };
}

/// Expands to the `SessionLookup` conformance tests (the store must also implement
/// `UserCache`). `cache` or `authority` as for [`user_cache_suite!`].
#[macro_export]
macro_rules! session_lookup_suite {
    ($factory:path, cache) => {
        $crate::session_lookup_suite!(@tests $factory, $crate::user::Kind::Cache);
    };
    ($factory:path, authority) => {
        $crate::session_lookup_suite!(@tests $factory, $crate::user::Kind::Authority);
    };
    (@tests $factory:path, $kind:expr) => {
        $crate::session_lookup_suite!(@each $factory, $kind, [
            lookup_missing_is_none,
            lookup_returns_the_session_and_its_user,
            lookup_without_a_known_user_gives_the_session,
            lookup_with_another_user_is_none,
            lookup_hides_expired_and_revoked_sessions,
            lookup_sees_a_replaced_profile,
            lookup_after_invalidate_user,
        ]);
    };
    (@each $factory:path, $kind:expr, [$($name:ident),* $(,)?]) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let clock = $crate::new_clock();
                let Some(store) = $factory(clock.clone()).await else { return };
                $crate::lookup::$name(&store, &clock, $kind).await;
            }
        )*
    };
}

/// Expands to the `ExpiredCleanup` conformance tests (the store must also implement
/// `SessionStore` and `VerificationStore`, and be isolated per test: it counts).
#[macro_export]
macro_rules! expired_cleanup_suite {
    ($factory:path) => {
        $crate::__suite!(
            $factory,
            cleanup,
            [delete_expired_sessions_in_batches, delete_expired_verifications_in_batches,]
        );
    };
}
