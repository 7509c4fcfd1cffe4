//! IP blocks: why an address is blocked ([`BlockReason`]), one block ([`IpBlock`]), the
//! authoritative [`BlockList`] trait, and the [`BlockSet`] snapshot whose lookups cost
//! one hash probe per distinct prefix length, so the per-request check never calls a
//! store.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ipnet::{Ipv4Net, Ipv6Net};

use super::cidr::Cidr;
use crate::error::StoreResult;

/// Why an address is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockReason {
    /// Failed logins across many accounts from one address.
    CredentialStuffing,
    /// Many unknown session tokens from one address.
    TokenGuessing,
    /// An operator's decision (admin API).
    Manual,
}

impl BlockReason {
    /// Stable name, stored and used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            BlockReason::CredentialStuffing => "credential_stuffing",
            BlockReason::TokenGuessing => "token_guessing",
            BlockReason::Manual => "manual",
        }
    }

    /// Inverse of [`BlockReason::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "credential_stuffing" => Some(BlockReason::CredentialStuffing),
            "token_guessing" => Some(BlockReason::TokenGuessing),
            "manual" => Some(BlockReason::Manual),
            _ => None,
        }
    }
}

/// One blocked address or range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpBlock {
    /// What is blocked.
    pub net: Cidr,
    /// When the block ends; `None` blocks until it is lifted.
    pub expires_at: Option<DateTime<Utc>>,
    /// Why.
    pub reason: BlockReason,
    /// When it was put in place.
    pub created_at: DateTime<Utc>,
}

impl IpBlock {
    /// Whether the block holds at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|end| now < end)
    }
}

/// The authoritative list of blocked addresses and ranges (SQL, shared by instances).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait BlockList: Send + Sync {
    /// Blocks `block.net`, replacing any block of exactly that range.
    async fn block(&self, block: &IpBlock) -> StoreResult<()>;

    /// Lifts the block of exactly `net` (not of ranges containing or inside it);
    /// whether there was one.
    async fn unblock(&self, net: &Cidr) -> StoreResult<bool>;

    /// The blocks active at `now`, most recent first. May purge expired ones.
    async fn active_blocks(&self, now: DateTime<Utc>) -> StoreResult<Vec<IpBlock>>;
}

#[async_trait]
impl<T: BlockList + ?Sized> BlockList for Arc<T> {
    async fn block(&self, block: &IpBlock) -> StoreResult<()> {
        (**self).block(block).await
    }
    async fn unblock(&self, net: &Cidr) -> StoreResult<bool> {
        (**self).unblock(net).await
    }
    async fn active_blocks(&self, now: DateTime<Utc>) -> StoreResult<Vec<IpBlock>> {
        (**self).active_blocks(now).await
    }
}

/// An immutable snapshot of a block list for local lookups: one hash table per prefix
/// length present, so [`BlockSet::find`] costs one probe per distinct prefix length (a
/// handful in practice), whatever the number of blocks.
#[derive(Debug, Clone, Default)]
pub struct BlockSet {
    v4: Vec<(u8, HashMap<u32, IpBlock>)>,
    v6: Vec<(u8, HashMap<u128, IpBlock>)>,
    len: usize,
}

impl BlockSet {
    /// The snapshot of `blocks` (a later block of the same range replaces an earlier).
    pub fn new(blocks: impl IntoIterator<Item = IpBlock>) -> Self {
        let mut set = Self::default();
        for block in blocks {
            set.insert(block);
        }
        set
    }

    fn insert(&mut self, block: IpBlock) {
        let prefix = block.net.prefix();
        let replaced = match block.net.network() {
            IpAddr::V4(net) => table(&mut self.v4, prefix).insert(u32::from(net), block),
            IpAddr::V6(net) => table(&mut self.v6, prefix).insert(u128::from(net), block),
        };
        if replaced.is_none() {
            self.len += 1;
        }
    }

    /// A copy with `block` added (or replacing the block of the same range).
    pub fn with(&self, block: IpBlock) -> Self {
        let mut set = self.clone();
        set.insert(block);
        set
    }

    /// A copy without the block of exactly `net`.
    pub fn without(&self, net: &Cidr) -> Self {
        let mut set = self.clone();
        let removed = match net.network() {
            IpAddr::V4(n) => set
                .v4
                .iter_mut()
                .find(|(p, _)| *p == net.prefix())
                .and_then(|(_, t)| t.remove(&u32::from(n))),
            IpAddr::V6(n) => set
                .v6
                .iter_mut()
                .find(|(p, _)| *p == net.prefix())
                .and_then(|(_, t)| t.remove(&u128::from(n))),
        };
        if removed.is_some() {
            set.len -= 1;
        }
        set
    }

    /// The block active at `now` that covers `addr`, if any (the most specific first).
    pub fn find(&self, addr: IpAddr, now: DateTime<Utc>) -> Option<&IpBlock> {
        match addr.to_canonical() {
            IpAddr::V4(a) => self.v4.iter().find_map(|(prefix, table)| {
                Ipv4Net::new(a, *prefix)
                    .ok()
                    .and_then(|n| table.get(&u32::from(n.network())))
                    .filter(|b| b.is_active(now))
            }),
            IpAddr::V6(a) => self.v6.iter().find_map(|(prefix, table)| {
                Ipv6Net::new(a, *prefix)
                    .ok()
                    .and_then(|n| table.get(&u128::from(n.network())))
                    .filter(|b| b.is_active(now))
            }),
        }
    }

    /// Number of blocks in the snapshot (active or not).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the snapshot holds no block.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every block in the snapshot.
    pub fn iter(&self) -> impl Iterator<Item = &IpBlock> {
        self.v4
            .iter()
            .flat_map(|(_, t)| t.values())
            .chain(self.v6.iter().flat_map(|(_, t)| t.values()))
    }
}

/// The table of `prefix`, created when missing; tables are kept longest prefix first.
fn table<K>(tables: &mut Vec<(u8, HashMap<K, IpBlock>)>, prefix: u8) -> &mut HashMap<K, IpBlock> {
    let i = match tables.iter().position(|(p, _)| *p <= prefix) {
        Some(i) if tables[i].0 == prefix => i,
        Some(i) => {
            tables.insert(i, (prefix, HashMap::new()));
            i
        }
        None => {
            tables.push((prefix, HashMap::new()));
            tables.len() - 1
        }
    };
    &mut tables[i].1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abuse::testing::{secs, t0};

    fn block(net: &str, expires_at: Option<DateTime<Utc>>) -> IpBlock {
        IpBlock {
            net: net.parse().unwrap(),
            expires_at,
            reason: BlockReason::Manual,
            created_at: t0(),
        }
    }

    #[test]
    fn block_sets_find_covering_active_blocks() {
        let set = BlockSet::new([
            block("192.0.2.7", None),
            block("198.51.100.0/24", Some(t0() + secs(60))),
            block("10.0.0.0/8", Some(t0() - secs(1))),
            block("10.1.0.0/16", None),
            block("2001:db8::/32", None),
        ]);
        assert_eq!(set.len(), 5);
        let find = |ip: &str, at| set.find(ip.parse().unwrap(), at).map(|b| b.net.to_string());
        assert_eq!(find("192.0.2.7", t0()), Some("192.0.2.7/32".into()));
        assert_eq!(find("::ffff:192.0.2.7", t0()), Some("192.0.2.7/32".into()));
        assert_eq!(find("192.0.2.8", t0()), None);
        assert_eq!(find("198.51.100.200", t0()), Some("198.51.100.0/24".into()));
        assert_eq!(find("198.51.100.200", t0() + secs(60)), None);
        // The /8 has expired; the /16 inside it still holds.
        assert_eq!(find("10.2.0.1", t0()), None);
        assert_eq!(find("10.1.0.1", t0()), Some("10.1.0.0/16".into()));
        assert_eq!(find("2001:db8:ffff::1", t0()), Some("2001:db8::/32".into()));
        let smaller = set.without(&"10.1.0.0/16".parse().unwrap());
        assert_eq!(smaller.len(), 4);
        assert!(smaller.find("10.1.0.1".parse().unwrap(), t0()).is_none());
        let bigger = smaller.with(block("10.1.0.0/16", None));
        assert_eq!(bigger.len(), 5);
        assert_eq!(bigger.with(block("10.1.0.0/16", None)).len(), 5);
        assert_eq!(bigger.iter().count(), 5);
        assert!(BlockSet::default().is_empty());
    }

    #[test]
    fn block_reasons_round_trip() {
        for r in [BlockReason::CredentialStuffing, BlockReason::TokenGuessing, BlockReason::Manual]
        {
            assert_eq!(BlockReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(BlockReason::parse("other"), None);
    }
}
