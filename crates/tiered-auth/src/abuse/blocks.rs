//! Blocks: the shared block list, and this instance's snapshot of it that answers the
//! per-request check without calling a store, refreshed in the background.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use cache_core::{BlockReason, BlockSet, Cidr, IpBlock, RateKey};

use super::{Abuse, Action, Inner, Scope};
use crate::error::{AuthError, Chain};

impl Abuse {
    pub(super) fn snapshot(&self) -> Arc<BlockSet> {
        self.inner.snapshot.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_snapshot(&self, set: BlockSet) {
        *self.inner.snapshot.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
    }

    /// The active block covering `ip`, from the local snapshot: no store is called.
    pub fn blocked(&self, ip: IpAddr) -> Option<IpBlock> {
        let now = self.now();
        self.inner.snapshot.read().unwrap_or_else(PoisonError::into_inner).find(ip, now).cloned()
    }

    /// Blocks `net` for `ttl` (`None`: until lifted), in the shared list and at once in
    /// this instance's snapshot (other instances see it within a refresh).
    pub async fn block(
        &self,
        net: Cidr,
        ttl: Option<Duration>,
        reason: BlockReason,
    ) -> Result<IpBlock, AuthError> {
        let now = self.now();
        let expires_at = match ttl {
            Some(ttl) => Some(now + chrono::Duration::from_std(ttl).map_err(AuthError::internal)?),
            None => None,
        };
        let block = IpBlock { net, expires_at, reason, created_at: now };
        self.inner.blocks.block(&block).await?;
        self.inner.changes.fetch_add(1, Ordering::SeqCst);
        let set = self.snapshot().with(block.clone());
        self.set_snapshot(set);
        metrics::counter!("ip_blocks_total", "reason" => reason.as_str()).increment(1);
        Ok(block)
    }

    /// Lifts the block of exactly `net`; whether there was one. When `net` is one
    /// address subject (an IPv4 address, an IPv6 /64), its per-address counters and
    /// detectors are reset too, so that the address starts afresh; when it is one IPv6
    /// network subject (a /48), that network's counters are.
    pub async fn unblock(&self, net: &Cidr) -> Result<bool, AuthError> {
        let existed = self.inner.blocks.unblock(net).await?;
        self.inner.changes.fetch_add(1, Ordering::SeqCst);
        let set = self.snapshot().without(net);
        self.set_snapshot(set);
        const ACTIONS: [Action; 6] = [
            Action::Login,
            Action::Register,
            Action::ResendVerification,
            Action::ForgotPassword,
            Action::ResetPassword,
            Action::Admin,
        ];
        let subject = net.to_string();
        let mut keys: Vec<RateKey> = Vec::new();
        if self.address_subject(net.network()) == *net {
            keys.extend(
                ACTIONS.iter().map(|a| RateKey::new(a.as_str(), Scope::Address.as_str(), &subject)),
            );
            for detector in ["stuffing", "guessing"] {
                keys.push(RateKey::new(detector, Scope::Address.as_str(), &subject));
            }
        } else if self.network_subject(net.network()) == Some(*net) {
            keys.extend(
                ACTIONS.iter().map(|a| RateKey::new(a.as_str(), Scope::Network.as_str(), &subject)),
            );
        }
        for key in keys {
            if let Err(e) = self.inner.limiter.reset(&key).await {
                tracing::warn!(error = %Chain(&e), "could not reset a rate-limit key");
            }
        }
        Ok(existed)
    }

    /// The blocks active now, from the shared list.
    pub async fn active_blocks(&self) -> Result<Vec<IpBlock>, AuthError> {
        Ok(self.inner.blocks.active_blocks(self.now()).await?)
    }

    /// Reloads the snapshot from the shared list; returns how many blocks it holds.
    pub async fn refresh(&self) -> Result<usize, AuthError> {
        let before = self.inner.changes.load(Ordering::SeqCst);
        let blocks = self.inner.blocks.active_blocks(self.now()).await?;
        let set = BlockSet::new(blocks);
        let len = set.len();
        // A local change since the read started is newer than what was read; the next
        // refresh picks both up.
        if self.inner.changes.load(Ordering::SeqCst) == before {
            self.set_snapshot(set);
        }
        Ok(len)
    }

    /// Refreshes the snapshot every `every` in a background task, which ends when the
    /// last clone of this `Abuse` is dropped. Failures are logged; the last snapshot
    /// stays in force meanwhile.
    pub fn spawn_refresher(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                let abuse = Abuse { inner };
                match abuse.refresh().await {
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!("IP block list readable again");
                    }
                    Ok(_) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %Chain(&e), "cannot refresh the IP block list; keeping the last one");
                    }
                    Err(_) => {}
                }
            }
        })
    }
}
