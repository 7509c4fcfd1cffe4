//! Automatic blocks: the credential-stuffing and token-guessing detectors, each a
//! count of distinct subjects per address that blocks the address at its threshold.

use std::net::IpAddr;

use cache_core::{BlockReason, EventId, Limit, RateKey, TokenHash};

use super::{Abuse, Detector, Scope};
use crate::error::Chain;

impl Abuse {
    /// Records a failed login for `account` from `ip`; blocks the address when it has
    /// now failed for `stuffing.threshold` distinct accounts within the window.
    pub async fn login_failed(&self, ip: Option<IpAddr>, account: &str) {
        if let Some(ip) = ip {
            let detector = self.inner.config.stuffing;
            self.detect(ip, "stuffing", detector, account, BlockReason::CredentialStuffing).await;
        }
    }

    /// Records a well-formed session token from `ip` that matches no session; blocks
    /// the address when it has now sent `guessing.threshold` distinct ones within the
    /// window. A client repeating one stale cookie counts once.
    pub async fn unknown_token(&self, ip: Option<IpAddr>, token: &TokenHash) {
        if let Some(ip) = ip {
            let detector = self.inner.config.guessing;
            let subject = token.to_hex();
            self.detect(ip, "guessing", detector, &subject, BlockReason::TokenGuessing).await;
        }
    }

    async fn detect(
        &self,
        ip: IpAddr,
        name: &str,
        detector: Detector,
        subject: &str,
        reason: BlockReason,
    ) {
        let address = self.address_subject(ip);
        let key = RateKey::new(name, Scope::Address.as_str(), &address.to_string());
        // Admits threshold - 1 distinct subjects: the next distinct one is the trigger.
        let limit = Limit::new(detector.threshold - 1, detector.window);
        let event = EventId::of(subject);
        match self.inner.limiter.acquire(&key, &limit, &event, self.now()).await {
            Ok(decision) if decision.allowed => {}
            Ok(_) => {
                if self.blocked(ip).is_none() {
                    tracing::warn!(
                        net = %address,
                        reason = reason.as_str(),
                        threshold = detector.threshold,
                        "blocking an address"
                    );
                    if let Err(e) = self.block(address, Some(detector.block_for), reason).await {
                        tracing::error!(net = %address, error = %e, "could not block an address");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %Chain(&e), "abuse detector unavailable"),
        }
    }
}
