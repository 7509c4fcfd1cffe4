//! [`MemoryBlockList`]: a [`BlockList`] held in process, for tests and for single-instance
//! embeddings without a SQL store. Deployments keep blocks in SQL, which every instance
//! shares and which survives restarts.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use cache_core::{BlockList, Cidr, IpBlock, StoreResult};
use chrono::{DateTime, Utc};
use parking_lot::Mutex;

/// Blocked addresses and ranges in memory. Cheap to clone; clones share the list.
#[derive(Clone, Default)]
pub struct MemoryBlockList {
    blocks: Arc<Mutex<HashMap<Cidr, IpBlock>>>,
}

impl MemoryBlockList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl BlockList for MemoryBlockList {
    async fn block(&self, block: &IpBlock) -> StoreResult<()> {
        self.blocks.lock().insert(block.net, block.clone());
        Ok(())
    }

    async fn unblock(&self, net: &Cidr) -> StoreResult<bool> {
        Ok(self.blocks.lock().remove(net).is_some())
    }

    async fn active_blocks(&self, now: DateTime<Utc>) -> StoreResult<Vec<IpBlock>> {
        let mut blocks = self.blocks.lock();
        blocks.retain(|_, b| b.is_active(now));
        let mut active: Vec<IpBlock> = blocks.values().cloned().collect();
        active.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.net.cmp(&b.net)));
        Ok(active)
    }
}

#[cfg(test)]
mod tests {
    use cache_core::BlockReason;
    use cache_core::ManualClock;
    use cache_core::clock::Clock as _;

    use super::*;

    #[tokio::test]
    async fn blocks_replace_expire_and_lift() {
        let clock = ManualClock::starting_now();
        let list = MemoryBlockList::new();
        let now = clock.now();
        let block = |net: &str, secs: Option<i64>| IpBlock {
            net: net.parse().unwrap(),
            expires_at: secs.map(|s| now + chrono::Duration::seconds(s)),
            reason: BlockReason::Manual,
            created_at: now,
        };
        list.block(&block("192.0.2.1", Some(10))).await.unwrap();
        list.block(&block("192.0.2.1", Some(20))).await.unwrap();
        list.block(&block("10.0.0.0/8", None)).await.unwrap();
        assert_eq!(list.active_blocks(now).await.unwrap().len(), 2);
        let later = now + chrono::Duration::seconds(15);
        assert_eq!(list.active_blocks(later).await.unwrap().len(), 2);
        let much_later = now + chrono::Duration::seconds(25);
        let left = list.active_blocks(much_later).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].net.to_string(), "10.0.0.0/8");
        assert!(list.unblock(&"10.0.0.0/8".parse().unwrap()).await.unwrap());
        assert!(!list.unblock(&"10.0.0.0/8".parse().unwrap()).await.unwrap());
        assert!(list.active_blocks(now).await.unwrap().is_empty());
    }
}
