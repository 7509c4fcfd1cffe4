//! [`VerificationStore`] for [`MemoryStore`]: single-use consumption under moka's
//! per-key compute lock.

use async_trait::async_trait;
use cache_core::{Purpose, StoreResult, TokenHash, UserId, Verification, VerificationStore};
use moka::ops::compute::Op;

use crate::TIER;
use crate::entry::{Cached, Key, Value};
use crate::index::Kind;
use crate::store::MemoryStore;

#[async_trait]
impl VerificationStore for MemoryStore {
    fn tier(&self) -> &'static str {
        TIER
    }

    async fn put_verification(&self, verification: &Verification) -> StoreResult<()> {
        let inner = &self.inner;
        let now = inner.now();
        let Some(cached) =
            Cached::new(verification.clone(), now, inner.ttl, verification.expires_at)
        else {
            return Ok(()); // Already expired: nothing to keep.
        };
        let value = Value::Verification(cached);
        inner.count_insert(&value);
        inner.main.insert(Key::Verification(verification.hash), value);
        inner.index_insert(verification.user, Kind::Verification, verification.hash);
        Ok(())
    }

    async fn consume(
        &self,
        hash: &TokenHash,
        purpose: Purpose,
    ) -> StoreResult<Option<Verification>> {
        let inner = &self.inner;
        let now = inner.now();
        let mut consumed = None;
        // Concurrent computes on one key run one after the other, so exactly one
        // consumer sees the entry and removes it.
        inner.main.entry(Key::Verification(*hash)).and_compute_with(|current| {
            match current.map(moka::Entry::into_value) {
                Some(Value::Verification(cached)) if !cached.is_fresh(now) => Op::Remove,
                // Presented for another purpose: refused, and left for its own.
                Some(Value::Verification(cached)) if cached.item.purpose != purpose => Op::Nop,
                Some(Value::Verification(cached)) => {
                    consumed = Some(cached.item);
                    Op::Remove
                }
                _ => Op::Nop,
            }
        });
        Ok(consumed)
    }

    async fn delete_verifications(&self, user: UserId, purpose: Purpose) -> StoreResult<u64> {
        let inner = &self.inner;
        let now = inner.now();
        let matches = |v: &Verification| v.user == user && v.purpose == purpose;
        let taken = inner.index.take(user, Kind::Verification, |hash| {
            match inner.main.get(&Key::Verification(*hash)) {
                Some(Value::Verification(cached)) => matches(&cached.item),
                // Gone from the main cache: drop the stale index entry too.
                _ => true,
            }
        });
        let mut deleted = 0;
        for hash in taken {
            let mut removed_live = false;
            inner.main.entry(Key::Verification(hash)).and_compute_with(|current| {
                match current.map(moka::Entry::into_value) {
                    Some(Value::Verification(cached)) if matches(&cached.item) => {
                        removed_live = cached.is_fresh(now);
                        Op::Remove
                    }
                    _ => Op::Nop,
                }
            });
            deleted += u64::from(removed_live);
        }
        Ok(deleted)
    }
}
