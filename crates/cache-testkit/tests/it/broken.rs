//! The suite catches what it claims: a store with one deliberate defect, over the
//! correct reference store, fails the property that names the defect, with that
//! reason, while the reference passes the same property.
//!
//! - [`Defect::NeverExpires`]: `get` serves sessions past their expiry;
//! - [`Defect::Revives`]: `put` (a cache fill) ignores deletions and revocations, so a
//!   late fill brings a logged-out session back.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use cache_core::{ManualClock, Session, SessionKey, SessionStore, StoreResult, TokenHash, UserId};
use chrono::{DateTime, Utc};

use super::reference::Reference;

#[derive(Clone, Copy, Debug)]
enum Defect {
    NeverExpires,
    Revives,
}

/// The reference store with one defect.
#[derive(Clone)]
struct Broken {
    inner: Reference,
    defect: Defect,
    /// Every session ever written, for the defects that serve what they should not.
    all: Arc<std::sync::Mutex<Vec<Session>>>,
}

impl Broken {
    fn new(clock: Arc<ManualClock>, defect: Defect) -> Self {
        Self { inner: Reference::new(clock), defect, all: Arc::default() }
    }

    fn remember(&self, session: &Session) {
        if let Ok(mut all) = self.all.lock() {
            all.retain(|s| s.key != session.key);
            all.push(session.clone());
        }
    }
}

#[async_trait]
impl SessionStore for Broken {
    fn tier(&self) -> &'static str {
        "broken"
    }

    async fn create(&self, session: &Session) -> StoreResult<()> {
        self.inner.create(session).await?;
        self.remember(session);
        Ok(())
    }

    async fn get(&self, key: &SessionKey) -> StoreResult<Option<Session>> {
        match self.defect {
            // Whatever was written and not deleted, expired or not.
            Defect::NeverExpires => {
                Ok(self.all.lock().ok().and_then(|all| all.iter().find(|s| s.key == *key).cloned()))
            }
            Defect::Revives => self.inner.get(key).await,
        }
    }

    async fn put(&self, session: &Session) -> StoreResult<bool> {
        match self.defect {
            // Stores the snapshot whatever happened to the session since.
            Defect::Revives => {
                self.inner.delete(&session.key).await?;
                let _ = self.inner.create(session).await;
                self.remember(session);
                Ok(true)
            }
            Defect::NeverExpires => {
                let stored = self.inner.put(session).await?;
                if stored {
                    self.remember(session);
                }
                Ok(stored)
            }
        }
    }

    async fn extend(
        &self,
        key: &SessionKey,
        expected_version: i64,
        new_expires_at: DateTime<Utc>,
    ) -> StoreResult<Option<Session>> {
        let extended = self.inner.extend(key, expected_version, new_expires_at).await?;
        if let Some(session) = &extended {
            self.remember(session);
        }
        Ok(extended)
    }

    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        if let Ok(mut all) = self.all.lock() {
            all.retain(|s| s.key != *key);
        }
        self.inner.delete(key).await
    }

    async fn delete_user_sessions(
        &self,
        user: UserId,
        keep: Option<TokenHash>,
    ) -> StoreResult<u64> {
        if let Ok(mut all) = self.all.lock() {
            all.retain(|s| s.key.user != user || Some(s.key.hash) == keep);
        }
        self.inner.delete_user_sessions(user, keep).await
    }

    async fn list_user_sessions(&self, user: UserId) -> StoreResult<Vec<Session>> {
        self.inner.list_user_sessions(user).await
    }
}

/// Runs one property on a fresh store from `make`; `Err` carries its panic message.
async fn run<S, F, Fut>(make: impl FnOnce(Arc<ManualClock>) -> S, property: F) -> Result<(), String>
where
    S: SessionStore + Send + Sync + 'static,
    F: FnOnce(Arc<S>, Arc<ManualClock>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let clock = cache_testkit::new_clock();
    let store = Arc::new(make(clock.clone()));
    let outcome = tokio::spawn(async move { property(store, clock).await }).await;
    outcome.map_err(|e| {
        let panic = e.into_panic();
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default()
    })
}

/// Asserts that `property` passes on the reference and fails on `defect` with `reason`.
macro_rules! caught {
    ($property:ident, $defect:expr, $reason:literal) => {{
        let on_reference = run(
            |clock| Reference::new(clock),
            |store, clock| async move { cache_testkit::session::$property(&store, &clock).await },
        )
        .await;
        assert_eq!(on_reference, Ok(()), "the reference store fails {}", stringify!($property));
        let on_broken = run(
            |clock| Broken::new(clock, $defect),
            |store, clock| async move { cache_testkit::session::$property(&store, &clock).await },
        )
        .await;
        let message = on_broken
            .expect_err(concat!("the suite let a broken store pass ", stringify!($property)));
        assert!(
            message.contains($reason),
            "{} failed for another reason than {:?}: {message}",
            stringify!($property),
            $reason
        );
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_never_expires_fails_the_expiry_property() {
    caught!(
        expired_session_is_gone,
        Defect::NeverExpires,
        "a session past its sliding expiry was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_revives_deleted_sessions_fails_the_revival_property() {
    caught!(
        put_never_revives_a_deleted_session,
        Defect::Revives,
        "a cache fill stored a deleted session"
    );
}
