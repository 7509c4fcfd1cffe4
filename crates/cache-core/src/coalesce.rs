//! Request coalescing: N concurrent misses for one key cause one lookup below.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::error::{StoreError, StoreResult};

/// The result a leader shares with its followers. The error is shared by reference and
/// re-wrapped per follower, keeping its kind.
type Shared<V> = Option<Result<V, Arc<StoreError>>>;

/// Runs at most one lookup per key at a time; concurrent callers for the same key wait
/// for the leader's result instead of asking the slower tier themselves.
pub(crate) struct Coalescer<K, V> {
    inflight: Mutex<HashMap<K, watch::Receiver<Shared<V>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> Coalescer<K, V> {
    pub(crate) fn new() -> Self {
        Self { inflight: Mutex::new(HashMap::new()) }
    }

    /// Runs `lookup` for `key` unless a lookup for it is already running, in which case
    /// waits for that one's result. A leader that is cancelled hands the work to a waiter.
    pub(crate) async fn run<F, Fut>(&self, key: &K, lookup: F) -> StoreResult<V>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = StoreResult<V>>,
    {
        loop {
            let role = {
                let mut map = self.inflight.lock();
                match map.get(key) {
                    Some(rx) => Err(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        map.insert(key.clone(), rx.clone());
                        Ok((tx, rx))
                    }
                }
            };
            match role {
                Ok((tx, own)) => {
                    let _guard = Remove { map: &self.inflight, key, own };
                    let result = lookup().await;
                    let shared = match &result {
                        Ok(v) => Ok(v.clone()),
                        Err(e) => Err(Arc::new(share(e))),
                    };
                    tx.send_replace(Some(shared));
                    return result;
                }
                Err(mut rx) => {
                    loop {
                        if let Some(done) = rx.borrow_and_update().clone() {
                            return done.map_err(|e| share(&e));
                        }
                        if rx.changed().await.is_err() {
                            break; // The leader was cancelled: try to lead.
                        }
                    }
                    if let Some(done) = rx.borrow().clone() {
                        return done.map_err(|e| share(&e));
                    }
                }
            }
        }
    }
}

/// Removes the leader's entry when it finishes or is dropped.
struct Remove<'a, K: Eq + Hash, V> {
    map: &'a Mutex<HashMap<K, watch::Receiver<Shared<V>>>>,
    key: &'a K,
    own: watch::Receiver<Shared<V>>,
}

impl<K: Eq + Hash, V> Drop for Remove<'_, K, V> {
    fn drop(&mut self) {
        let mut map = self.map.lock();
        if map.get(self.key).is_some_and(|rx| self.own.same_channel(rx)) {
            map.remove(self.key);
        }
    }
}

/// A copy of `e` with the same kind, for a follower.
fn share(e: &StoreError) -> StoreError {
    #[derive(Debug, thiserror::Error)]
    #[error("{0} (shared by a coalesced lookup)")]
    struct SharedError(String);
    let source = || Box::new(SharedError(e.to_string()));
    match e {
        StoreError::Unavailable(_) => StoreError::Unavailable(source()),
        StoreError::Timeout(_) => StoreError::Timeout(source()),
        StoreError::Corrupt(_) => StoreError::Corrupt(source()),
        StoreError::Conflict(c) => StoreError::Conflict(*c),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    // Paused time on one thread: the clock only moves once every task is waiting, so all
    // 100 callers have joined before the lookup's (virtual) 50 ms are over, however
    // loaded the machine.
    #[tokio::test(start_paused = true)]
    async fn concurrent_lookups_share_one_call() {
        let coalescer = Arc::new(Coalescer::<u32, u32>::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (coalescer, calls) = (coalescer.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                coalescer
                    .run(&7, || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(42)
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), 42);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(coalescer.inflight.lock().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_shared_with_their_kind() {
        let coalescer = Arc::new(Coalescer::<u32, u32>::new());
        let a = coalescer.run(&1, || async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Err(StoreError::timeout("slow"))
        });
        let b = coalescer.run(&1, || async { Ok(1) });
        let (a, b) = tokio::join!(a, b);
        assert!(matches!(a, Err(StoreError::Timeout(_))));
        assert!(matches!(b, Err(StoreError::Timeout(_))));
    }
}
