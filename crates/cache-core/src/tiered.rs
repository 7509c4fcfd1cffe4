//! [`Tiered`]: a faster store in front of a slower, authoritative one.
// tidy: long-file the combinator and the mockall tests that pin its semantics (two thirds of the file)
//!
//! - Reads are cache-aside: ask the front; on a miss ask the back, then backfill the
//!   front (which keeps the entry for the session's remaining life, capped by its own
//!   TTL). Concurrent misses for one key are coalesced into one lookup below.
//! - Writes go through: the back (authority) first, then the front.
//! - Deletes go through: the back first, so that a failure leaves nothing revived.
//! - A failing front is skipped, logged and counted; a failing back is the caller's
//!   error. Wrap a front in [`crate::Breaker`] to stop asking it while it is down.
//!
//! Nest it for three tiers: `Tiered<Memory, Tiered<Redis, Sql>>`.

use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use metrics::{Counter, Histogram};

use crate::coalesce::Coalescer;
use crate::error::{Conflict, StoreError, StoreResult};
use crate::model::{Purpose, Session, SessionWithUser, User, UserId, Verification};
use crate::store::{SessionLookup, SessionStore, UserCache, VerificationStore};
use crate::token::{SessionKey, TokenHash};

/// Name every `Tiered` reports as its tier.
pub const TIERED: &str = "tiered";

/// Counters of one front tier, created once so the hot path does no registry lookups.
/// (Install the metrics recorder before building stores.)
struct FrontMetrics {
    hit: Counter,
    miss: Counter,
    error: Counter,
    backfill: Counter,
}

impl FrontMetrics {
    fn new(kind: &'static str, tier: &'static str) -> Self {
        let c = |result: &'static str| metrics::counter!("tier_lookups_total", "kind" => kind, "tier" => tier, "result" => result);
        Self {
            hit: c("hit"),
            miss: c("miss"),
            error: c("error"),
            backfill: metrics::counter!("tier_backfills_total", "kind" => kind, "tier" => tier),
        }
    }
}

/// Lookups reaching the authority (the innermost back), with their latency.
struct BackMetrics {
    lookups: Option<(Counter, Histogram)>,
}

impl BackMetrics {
    fn new(kind: &'static str, tier: &'static str) -> Self {
        // A nested `Tiered` reports for itself; only count the real authority here.
        let lookups = (tier != TIERED).then(|| {
            (
                metrics::counter!("tier_lookups_total", "kind" => kind, "tier" => tier, "result" => "read"),
                metrics::histogram!("tier_lookup_seconds", "kind" => kind, "tier" => tier),
            )
        });
        Self { lookups }
    }

    async fn time<T>(&self, fut: impl Future<Output = T>) -> T {
        match &self.lookups {
            None => fut.await,
            Some((count, hist)) => {
                count.increment(1);
                let start = Instant::now();
                let out = fut.await;
                hist.record(start.elapsed().as_secs_f64());
                out
            }
        }
    }
}

/// A front store (cache) composed with a back store (the authority for this pair).
pub struct Tiered<F, B> {
    front: F,
    back: B,
    front_tier: &'static str,
    sessions_inflight: Coalescer<SessionKey, Option<Session>>,
    lookups_inflight: Coalescer<SessionKey, Option<SessionWithUser>>,
    users_inflight: Coalescer<UserId, Option<User>>,
    session_front: FrontMetrics,
    session_back: BackMetrics,
    user_front: FrontMetrics,
    user_back: BackMetrics,
    front_errors: Counter,
}

impl<F, B> Tiered<F, B> {
    /// Composes `front` (a cache) over `back`. `front_tier`/`back_tier` name the tiers in
    /// logs and metrics.
    pub fn with_names(
        front: F,
        back: B,
        front_tier: &'static str,
        back_tier: &'static str,
    ) -> Self {
        Self {
            front,
            back,
            front_tier,
            sessions_inflight: Coalescer::new(),
            lookups_inflight: Coalescer::new(),
            users_inflight: Coalescer::new(),
            session_front: FrontMetrics::new("session", front_tier),
            session_back: BackMetrics::new("session", back_tier),
            user_front: FrontMetrics::new("user", front_tier),
            user_back: BackMetrics::new("user", back_tier),
            front_errors: metrics::counter!("tier_write_errors_total", "tier" => front_tier),
        }
    }

    /// The front (cache) store.
    pub fn front(&self) -> &F {
        &self.front
    }

    /// The back (authoritative) store.
    pub fn back(&self) -> &B {
        &self.back
    }

    /// Logs and counts a failed write to the front; the caller goes on without it.
    fn front_write_failed(&self, op: &'static str, e: &StoreError) {
        self.front_errors.increment(1);
        tracing::debug!(tier = self.front_tier, op, error = %e, "cache tier write skipped");
    }

    /// Counts a read of the front: `Ok` with a hit, else `Err(front_ok)`, where
    /// `front_ok` is false when the front failed (logged), so that no backfill follows.
    fn front_read<T>(
        &self,
        counts: &FrontMetrics,
        read: StoreResult<Option<T>>,
    ) -> Result<T, bool> {
        match read {
            Ok(Some(found)) => {
                counts.hit.increment(1);
                Ok(found)
            }
            Ok(None) => {
                counts.miss.increment(1);
                Err(true)
            }
            Err(e) => {
                counts.error.increment(1);
                tracing::debug!(tier = self.front_tier, error = %e, "cache tier read failed");
                Err(false)
            }
        }
    }
}

impl<F: SessionStore, B: SessionStore> Tiered<F, B> {
    /// Composes two session stores, naming tiers after them.
    pub fn new(front: F, back: B) -> Self {
        let (f, b) = (front.tier(), back.tier());
        Self::with_names(front, back, f, b)
    }
}

#[async_trait]
impl<F: SessionStore, B: SessionStore> SessionStore for Tiered<F, B> {
    fn tier(&self) -> &'static str {
        TIERED
    }

    async fn create(&self, session: &Session) -> StoreResult<()> {
        self.back.create(session).await?;
        if let Err(e) = self.front.put(session).await {
            self.front_write_failed("create", &e);
        }
        Ok(())
    }

    async fn get(&self, key: &SessionKey) -> StoreResult<Option<Session>> {
        let front_ok = match self.front_read(&self.session_front, self.front.get(key).await) {
            Ok(session) => return Ok(Some(session)),
            Err(front_ok) => front_ok,
        };
        self.sessions_inflight
            .run(key, || async {
                let found = self.session_back.time(self.back.get(key)).await?;
                // A front that just failed to read would likely fail (slowly) to write:
                // skip the backfill so one call never waits for two of its timeouts.
                if let Some(session) = found.as_ref().filter(|_| front_ok) {
                    match self.front.put(session).await {
                        Ok(true) => self.session_front.backfill.increment(1),
                        Ok(false) => {}
                        Err(e) => self.front_write_failed("backfill", &e),
                    }
                }
                Ok(found)
            })
            .await
    }

    async fn put(&self, session: &Session) -> StoreResult<bool> {
        let stored = self.back.put(session).await?;
        if let Err(e) = self.front.put(session).await {
            self.front_write_failed("put", &e);
        }
        Ok(stored)
    }

    async fn extend(
        &self,
        key: &SessionKey,
        expected_version: i64,
        new_expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<Session>> {
        let result = self.back.extend(key, expected_version, new_expires_at).await;
        let front = match &result {
            Ok(Some(session)) => self.front.put(session).await.map(drop),
            // Gone below, or our copy is stale: drop the front copy so the next read
            // fetches the authority's.
            Ok(None) | Err(StoreError::Conflict(Conflict::Version)) => {
                self.front.delete(key).await.map(drop)
            }
            Err(_) => Ok(()),
        };
        if let Err(e) = front {
            self.front_write_failed("extend", &e);
        }
        result
    }

    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        let deleted = self.back.delete(key).await?;
        // The back is the authority, and caches only hold what it held: when it had no
        // such session there is nothing to evict, and a made-up token must not write
        // tombstones (or publish) in the front.
        if !deleted {
            return Ok(false);
        }
        if let Err(e) = self.front.delete(key).await {
            self.front_write_failed("delete", &e);
        }
        Ok(deleted)
    }

    async fn delete_user_sessions(
        &self,
        user: UserId,
        keep: Option<TokenHash>,
    ) -> StoreResult<u64> {
        let deleted = self.back.delete_user_sessions(user, keep).await?;
        if deleted == 0 {
            return Ok(0);
        }
        if let Err(e) = self.front.delete_user_sessions(user, keep).await {
            self.front_write_failed("delete_user_sessions", &e);
        }
        Ok(deleted)
    }

    async fn list_user_sessions(&self, user: UserId) -> StoreResult<Vec<Session>> {
        // A cache may have evicted some of them: only the authority can list.
        self.back.list_user_sessions(user).await
    }
}

/// The combined read: a front hit with the user answers alone; a front hit without it
/// reads the user as `get_user` does (front, then back); a miss asks the back for both
/// in one lookup, coalesced per key, and backfills both. The user is `None` only when no
/// tier below had it at hand.
#[async_trait]
impl<F, B> SessionLookup for Tiered<F, B>
where
    F: SessionLookup + UserCache,
    B: SessionLookup + UserCache,
{
    async fn get_with_user(&self, key: &SessionKey) -> StoreResult<Option<SessionWithUser>> {
        let read = self.front.get_with_user(key).await;
        let front_ok = match self.front_read(&self.session_front, read) {
            Ok(SessionWithUser { session, user: Some(user) }) => {
                self.user_front.hit.increment(1);
                return Ok(Some(SessionWithUser { session, user: Some(user) }));
            }
            Ok(SessionWithUser { session, user: None }) => {
                // The front's own user cache first: a front that reads the session alone
                // (the provided method) may still hold the profile.
                let user = self.get_user(session.key.user).await?;
                return Ok(Some(SessionWithUser { session, user }));
            }
            Err(front_ok) => front_ok,
        };
        self.lookups_inflight
            .run(key, || async {
                let found = self.session_back.time(self.back.get_with_user(key)).await?;
                // As in `get`: no backfill into a front that just failed to read.
                if let Some(found) = found.as_ref().filter(|_| front_ok) {
                    match self.front.put(&found.session).await {
                        Ok(true) => self.session_front.backfill.increment(1),
                        Ok(false) => {}
                        Err(e) => self.front_write_failed("backfill", &e),
                    }
                    if let Some(user) = &found.user {
                        match self.front.put_user(user).await {
                            Ok(()) => self.user_front.backfill.increment(1),
                            Err(e) => self.front_write_failed("backfill_user", &e),
                        }
                    }
                }
                Ok(found)
            })
            .await
    }
}

impl<F: UserCache, B: UserCache> Tiered<F, B> {
    /// A user lookup the front could not answer: asks the back (coalesced per user) and
    /// backfills the front unless its read just failed.
    async fn user_from_back(&self, id: UserId, front_ok: bool) -> StoreResult<Option<User>> {
        self.users_inflight
            .run(&id, || async {
                let found = self.user_back.time(self.back.get_user(id)).await?;
                if let Some(user) = found.as_ref().filter(|_| front_ok) {
                    match self.front.put_user(user).await {
                        Ok(()) => self.user_front.backfill.increment(1),
                        Err(e) => self.front_write_failed("backfill_user", &e),
                    }
                }
                Ok(found)
            })
            .await
    }
}

#[async_trait]
impl<F: UserCache, B: UserCache> UserCache for Tiered<F, B> {
    fn tier(&self) -> &'static str {
        TIERED
    }

    async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
        let front_ok = match self.front_read(&self.user_front, self.front.get_user(id).await) {
            Ok(user) => return Ok(Some(user)),
            Err(front_ok) => front_ok,
        };
        self.user_from_back(id, front_ok).await
    }

    async fn put_user(&self, user: &User) -> StoreResult<()> {
        self.back.put_user(user).await?;
        if let Err(e) = self.front.put_user(user).await {
            self.front_write_failed("put_user", &e);
        }
        Ok(())
    }

    async fn invalidate_user(&self, id: UserId) -> StoreResult<()> {
        self.back.invalidate_user(id).await?;
        if let Err(e) = self.front.invalidate_user(id).await {
            self.front_write_failed("invalidate_user", &e);
        }
        Ok(())
    }
}

#[async_trait]
impl<F: VerificationStore, B: VerificationStore> VerificationStore for Tiered<F, B> {
    fn tier(&self) -> &'static str {
        TIERED
    }

    async fn put_verification(&self, verification: &Verification) -> StoreResult<()> {
        self.back.put_verification(verification).await?;
        if let Err(e) = self.front.put_verification(verification).await {
            self.front_write_failed("put_verification", &e);
        }
        Ok(())
    }

    async fn consume(
        &self,
        hash: &TokenHash,
        purpose: Purpose,
    ) -> StoreResult<Option<Verification>> {
        // Single use is decided by the authority alone; the front copy is only dropped.
        let consumed = self.back.consume(hash, purpose).await?;
        if consumed.is_some()
            && let Err(e) = self.front.consume(hash, purpose).await
        {
            self.front_write_failed("consume", &e);
        }
        Ok(consumed)
    }

    async fn delete_verifications(&self, user: UserId, purpose: Purpose) -> StoreResult<u64> {
        let deleted = self.back.delete_verifications(user, purpose).await?;
        if let Err(e) = self.front.delete_verifications(user, purpose).await {
            self.front_write_failed("delete_verifications", &e);
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    //! mockall tests pinning the tiered semantics: which tier is asked, what is
    //! backfilled, and what happens when a tier errors.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration as StdDuration;

    use chrono::Duration;
    use mockall::Sequence;
    use mockall::predicate::eq;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::store::MockSessionStore;
    use crate::token::Secret;

    fn session() -> Session {
        let now = ManualClock::starting_now().now();
        Session {
            key: SessionKey {
                user: UserId::new(11).unwrap(),
                hash: Secret::generate().unwrap().hash(),
            },
            created_at: now,
            renewed_at: now,
            expires_at: now + Duration::hours(1),
            absolute_expires_at: now + Duration::days(1),
            user_agent: None,
            ip: None,
            version: 0,
        }
    }

    fn mocks() -> (MockSessionStore, MockSessionStore) {
        let mut front = MockSessionStore::new();
        front.expect_tier().return_const("front");
        let mut back = MockSessionStore::new();
        back.expect_tier().return_const("back");
        (front, back)
    }

    #[tokio::test]
    async fn a_front_hit_never_asks_the_back() {
        let s = session();
        let (mut front, mut back) = mocks();
        let hit = s.clone();
        front.expect_get().times(1).returning(move |_| Ok(Some(hit.clone())));
        back.expect_get().never();
        front.expect_put().never();
        let tiered = Tiered::new(front, back);
        assert_eq!(tiered.get(&s.key).await.unwrap(), Some(s));
    }

    #[tokio::test]
    async fn a_miss_asks_the_back_and_backfills_the_front() {
        let s = session();
        let (mut front, mut back) = mocks();
        front.expect_get().times(1).returning(|_| Ok(None));
        let found = s.clone();
        back.expect_get().with(eq(s.key)).times(1).returning(move |_| Ok(Some(found.clone())));
        front.expect_put().with(eq(s.clone())).times(1).returning(|_| Ok(true));
        let tiered = Tiered::new(front, back);
        assert_eq!(tiered.get(&s.key).await.unwrap(), Some(s));
    }

    #[tokio::test]
    async fn a_miss_everywhere_backfills_nothing() {
        let s = session();
        let (mut front, mut back) = mocks();
        front.expect_get().returning(|_| Ok(None));
        back.expect_get().times(1).returning(|_| Ok(None));
        front.expect_put().never();
        assert_eq!(Tiered::new(front, back).get(&s.key).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_front_error_falls_through_to_the_back() {
        let s = session();
        let (mut front, mut back) = mocks();
        front.expect_get().returning(|_| Err(StoreError::unavailable("redis down")));
        let found = s.clone();
        back.expect_get().times(1).returning(move |_| Ok(Some(found.clone())));
        // No backfill into a tier that just failed: it would cost another timeout.
        front.expect_put().never();
        assert_eq!(Tiered::new(front, back).get(&s.key).await.unwrap(), Some(s));
    }

    #[tokio::test]
    async fn an_authority_error_is_returned() {
        let s = session();
        let (mut front, mut back) = mocks();
        front.expect_get().returning(|_| Ok(None));
        back.expect_get().returning(|_| Err(StoreError::timeout("sql slow")));
        front.expect_put().never();
        let result = Tiered::new(front, back).get(&s.key).await;
        assert!(matches!(result, Err(StoreError::Timeout(_))), "{result:?}");
    }

    #[tokio::test]
    async fn deletes_reach_the_authority_first() {
        let s = session();
        let (mut front, mut back) = mocks();
        let mut seq = Sequence::new();
        back.expect_delete().with(eq(s.key)).times(1).in_sequence(&mut seq).returning(|_| Ok(true));
        front
            .expect_delete()
            .with(eq(s.key))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(true));
        let user = s.key.user;
        back.expect_delete_user_sessions()
            .with(eq(user), eq(None))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Ok(3));
        front
            .expect_delete_user_sessions()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _| Err(StoreError::unavailable("redis down")));
        let tiered = Tiered::new(front, back);
        assert!(tiered.delete(&s.key).await.unwrap());
        // A failing cache does not fail the revocation; the authority's count is returned.
        assert_eq!(tiered.delete_user_sessions(user, None).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_failed_authority_delete_leaves_the_front_alone() {
        let s = session();
        let (mut front, mut back) = mocks();
        back.expect_delete().returning(|_| Err(StoreError::unavailable("sql down")));
        front.expect_delete().never();
        assert!(Tiered::new(front, back).delete(&s.key).await.is_err());
    }

    #[tokio::test]
    async fn deleting_what_the_authority_never_had_writes_nothing_in_the_front() {
        let s = session();
        let (mut front, mut back) = mocks();
        back.expect_delete().times(1).returning(|_| Ok(false));
        back.expect_delete_user_sessions().times(1).returning(|_, _| Ok(0));
        front.expect_delete().never();
        front.expect_delete_user_sessions().never();
        let tiered = Tiered::new(front, back);
        assert!(!tiered.delete(&s.key).await.unwrap());
        assert_eq!(tiered.delete_user_sessions(s.key.user, None).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn writes_go_to_the_authority_first_then_the_front() {
        let s = session();
        let (mut front, mut back) = mocks();
        let mut seq = Sequence::new();
        back.expect_create().times(1).in_sequence(&mut seq).returning(|_| Ok(()));
        front
            .expect_put()
            .with(eq(s.clone()))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Err(StoreError::unavailable("redis down")));
        Tiered::new(front, back).create(&s).await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_authority_write_skips_the_front() {
        let s = session();
        let (mut front, mut back) = mocks();
        back.expect_create().returning(|_| Err(StoreError::Conflict(Conflict::Exists)));
        front.expect_put().never();
        let result = Tiered::new(front, back).create(&s).await;
        assert!(matches!(result, Err(StoreError::Conflict(Conflict::Exists))));
    }

    #[tokio::test]
    async fn extend_refreshes_or_evicts_the_front_copy() {
        let s = session();
        let extended = s.extended(s.expires_at + Duration::hours(1), s.created_at);
        let (mut front, mut back) = mocks();
        let mut seq = Sequence::new();
        let out = extended.clone();
        back.expect_extend()
            .times(1)
            .in_sequence(&mut seq)
            .returning(move |_, _, _| Ok(Some(out.clone())));
        front
            .expect_put()
            .with(eq(extended.clone()))
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_| Ok(true));
        back.expect_extend()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _| Err(StoreError::Conflict(Conflict::Version)));
        front.expect_delete().times(1).in_sequence(&mut seq).returning(|_| Ok(true));
        let tiered = Tiered::new(front, back);
        assert_eq!(tiered.extend(&s.key, 0, extended.expires_at).await.unwrap(), Some(extended));
        let lost = tiered.extend(&s.key, 0, s.expires_at).await;
        assert!(matches!(lost, Err(StoreError::Conflict(Conflict::Version))));
    }

    #[tokio::test]
    async fn listing_asks_only_the_authority() {
        let s = session();
        let (mut front, mut back) = mocks();
        front.expect_list_user_sessions().never();
        let listed = vec![s.clone()];
        back.expect_list_user_sessions().times(1).returning(move |_| Ok(listed.clone()));
        assert_eq!(Tiered::new(front, back).list_user_sessions(s.key.user).await.unwrap(), vec![s]);
    }

    /// A back store that counts lookups and takes a while to answer.
    struct SlowBack {
        session: Session,
        /// What the combined read and `get_user` answer for the user.
        user: Option<User>,
        lookups: AtomicUsize,
    }

    #[async_trait]
    impl SessionStore for SlowBack {
        fn tier(&self) -> &'static str {
            "slow"
        }
        async fn create(&self, _: &Session) -> StoreResult<()> {
            Ok(())
        }
        async fn get(&self, _: &SessionKey) -> StoreResult<Option<Session>> {
            self.lookups.fetch_add(1, Ordering::SeqCst);
            // Virtual time (the tests pause the clock): it passes only once all 1,000
            // callers wait, so they all arrive while the lookup is in flight.
            tokio::time::sleep(StdDuration::from_millis(300)).await;
            Ok(Some(self.session.clone()))
        }
        async fn put(&self, _: &Session) -> StoreResult<bool> {
            Ok(false)
        }
        async fn extend(
            &self,
            _: &SessionKey,
            _: i64,
            _: DateTime<Utc>,
        ) -> StoreResult<Option<Session>> {
            Ok(None)
        }
        async fn delete(&self, _: &SessionKey) -> StoreResult<bool> {
            Ok(false)
        }
        async fn delete_user_sessions(&self, _: UserId, _: Option<TokenHash>) -> StoreResult<u64> {
            Ok(0)
        }
        async fn list_user_sessions(&self, _: UserId) -> StoreResult<Vec<Session>> {
            Ok(vec![])
        }
    }

    // Paused time on one thread: the clock only moves once every task waits, so all 1,000
    // callers arrive while the (virtual) 300 ms lookup is in flight, however loaded the
    // machine.
    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_make_one_lookup_below() {
        let s = session();
        let mut front = MockSessionStore::new();
        front.expect_tier().return_const("front");
        front.expect_get().returning(|_| Ok(None));
        front.expect_put().times(1).returning(|_| Ok(true));
        let back = SlowBack { session: s.clone(), user: None, lookups: AtomicUsize::new(0) };
        let tiered = Arc::new(Tiered::new(front, back));
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (tiered, key) = (tiered.clone(), s.key);
                tokio::spawn(async move { tiered.get(&key).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), Some(s.clone()));
        }
        assert_eq!(tiered.back().lookups.load(Ordering::SeqCst), 1);
    }

    #[async_trait]
    impl UserCache for SlowBack {
        fn tier(&self) -> &'static str {
            "slow"
        }
        async fn get_user(&self, _: UserId) -> StoreResult<Option<User>> {
            Ok(self.user.clone())
        }
        async fn put_user(&self, _: &User) -> StoreResult<()> {
            Ok(())
        }
        async fn invalidate_user(&self, _: UserId) -> StoreResult<()> {
            Ok(())
        }
    }

    #[async_trait]
    impl SessionLookup for SlowBack {
        async fn get_with_user(&self, key: &SessionKey) -> StoreResult<Option<SessionWithUser>> {
            let session = self.get(key).await?;
            Ok(session.map(|session| SessionWithUser { session, user: self.user.clone() }))
        }
    }

    /// A front cache: two maps.
    #[derive(Default)]
    struct MapFront {
        sessions: parking_lot::Mutex<std::collections::HashMap<SessionKey, Session>>,
        users: parking_lot::Mutex<std::collections::HashMap<UserId, User>>,
    }

    #[async_trait]
    impl SessionStore for MapFront {
        fn tier(&self) -> &'static str {
            "map"
        }
        async fn create(&self, s: &Session) -> StoreResult<()> {
            self.put(s).await.map(drop)
        }
        async fn get(&self, key: &SessionKey) -> StoreResult<Option<Session>> {
            Ok(self.sessions.lock().get(key).cloned())
        }
        async fn put(&self, s: &Session) -> StoreResult<bool> {
            self.sessions.lock().insert(s.key, s.clone());
            Ok(true)
        }
        async fn extend(
            &self,
            _: &SessionKey,
            _: i64,
            _: DateTime<Utc>,
        ) -> StoreResult<Option<Session>> {
            Ok(None)
        }
        async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
            Ok(self.sessions.lock().remove(key).is_some())
        }
        async fn delete_user_sessions(&self, _: UserId, _: Option<TokenHash>) -> StoreResult<u64> {
            Ok(0)
        }
        async fn list_user_sessions(&self, _: UserId) -> StoreResult<Vec<Session>> {
            Ok(vec![])
        }
    }

    #[async_trait]
    impl UserCache for MapFront {
        fn tier(&self) -> &'static str {
            "map"
        }
        async fn get_user(&self, id: UserId) -> StoreResult<Option<User>> {
            Ok(self.users.lock().get(&id).cloned())
        }
        async fn put_user(&self, user: &User) -> StoreResult<()> {
            self.users.lock().insert(user.id, user.clone());
            Ok(())
        }
        async fn invalidate_user(&self, id: UserId) -> StoreResult<()> {
            self.users.lock().remove(&id);
            Ok(())
        }
    }

    #[async_trait]
    impl SessionLookup for MapFront {
        async fn get_with_user(&self, key: &SessionKey) -> StoreResult<Option<SessionWithUser>> {
            let Some(session) = self.sessions.lock().get(key).cloned() else { return Ok(None) };
            Ok(Some(SessionWithUser { session, user: self.users.lock().get(&key.user).cloned() }))
        }
    }

    fn user_of(s: &Session) -> User {
        User {
            id: s.key.user,
            name: "Ada".to_owned(),
            email: "ada@example.com".to_owned(),
            email_verified: true,
            created_at: s.created_at,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_combined_misses_make_one_lookup_below_and_backfill_both() {
        let s = session();
        let user = user_of(&s);
        let back =
            SlowBack { session: s.clone(), user: Some(user.clone()), lookups: AtomicUsize::new(0) };
        let tiered = Arc::new(Tiered::new(MapFront::default(), back));
        let expected = SessionWithUser { session: s.clone(), user: Some(user.clone()) };
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (tiered, key) = (tiered.clone(), s.key);
                tokio::spawn(async move { tiered.get_with_user(&key).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), Some(expected.clone()));
        }
        assert_eq!(tiered.back().lookups.load(Ordering::SeqCst), 1);
        // Both were backfilled: the next read is a front hit for both.
        assert_eq!(tiered.front().get_with_user(&s.key).await.unwrap(), Some(expected.clone()));
        assert_eq!(tiered.get_with_user(&s.key).await.unwrap(), Some(expected));
        assert_eq!(tiered.back().lookups.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_front_session_without_its_user_asks_the_back_for_the_user_only() {
        let s = session();
        let user = user_of(&s);
        let back =
            SlowBack { session: s.clone(), user: Some(user.clone()), lookups: AtomicUsize::new(0) };
        let front = MapFront::default();
        front.put(&s).await.unwrap();
        let tiered = Tiered::new(front, back);
        assert_eq!(
            tiered.get_with_user(&s.key).await.unwrap(),
            Some(SessionWithUser { session: s.clone(), user: Some(user.clone()) })
        );
        // No session lookup below; the user was backfilled.
        assert_eq!(tiered.back().lookups.load(Ordering::SeqCst), 0);
        assert_eq!(tiered.front().users.lock().get(&s.key.user), Some(&user));
    }

    #[tokio::test]
    async fn a_back_session_without_a_user_backfills_the_session_alone() {
        let s = session();
        let back = SlowBack { session: s.clone(), user: None, lookups: AtomicUsize::new(0) };
        let tiered = Tiered::new(MapFront::default(), back);
        assert_eq!(
            tiered.get_with_user(&s.key).await.unwrap(),
            Some(SessionWithUser::alone(s.clone()))
        );
        assert!(tiered.front().users.lock().is_empty());
        assert_eq!(tiered.front().sessions.lock().get(&s.key), Some(&s));
    }
}
