//! The policy's tests, over an exact in-test limiter and block list.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cache_core::{
    BlockList, BlockReason, Cidr, Clock as _, Decision, EventId, IpBlock, Limit, ManualClock,
    RateKey, RateLimitStore, SlidingLog, StoreResult, TokenHash,
};
use chrono::{DateTime, Utc};

use super::config::MINUTE;
use super::*;
use crate::error::AuthError;

/// An exact in-test limiter and block list (the real ones live in other crates).
#[derive(Default)]
struct Fake {
    logs: Mutex<HashMap<RateKey, SlidingLog>>,
    blocks: Mutex<HashMap<Cidr, IpBlock>>,
}

#[async_trait]
impl RateLimitStore for Fake {
    fn tier(&self) -> &'static str {
        "fake"
    }
    async fn acquire(
        &self,
        key: &RateKey,
        limit: &Limit,
        event: &EventId,
        now: DateTime<Utc>,
    ) -> StoreResult<Decision> {
        Ok(self.logs.lock().unwrap().entry(key.clone()).or_default().acquire(limit, event, now))
    }
    async fn release(&self, key: &RateKey, event: &EventId) -> StoreResult<()> {
        if let Some(log) = self.logs.lock().unwrap().get_mut(key) {
            log.release(event);
        }
        Ok(())
    }
    async fn reset(&self, key: &RateKey) -> StoreResult<()> {
        self.logs.lock().unwrap().remove(key);
        Ok(())
    }
}

#[async_trait]
impl BlockList for Fake {
    async fn block(&self, block: &IpBlock) -> StoreResult<()> {
        self.blocks.lock().unwrap().insert(block.net, block.clone());
        Ok(())
    }
    async fn unblock(&self, net: &Cidr) -> StoreResult<bool> {
        Ok(self.blocks.lock().unwrap().remove(net).is_some())
    }
    async fn active_blocks(&self, now: DateTime<Utc>) -> StoreResult<Vec<IpBlock>> {
        Ok(self.blocks.lock().unwrap().values().filter(|b| b.is_active(now)).cloned().collect())
    }
}

fn abuse(config: AbuseConfig) -> (Abuse, Arc<Fake>, Arc<ManualClock>) {
    let fake = Arc::new(Fake::default());
    let clock = ManualClock::starting_now();
    let abuse = Abuse::new(config, fake.clone(), fake.clone(), clock.clone()).unwrap();
    (abuse, fake, clock)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn logins_count_failures_and_release_successes() {
    let config = AbuseConfig {
        login_per_address_account: Limit::new(3, Duration::from_secs(60)),
        ..AbuseConfig::default()
    };
    let (abuse, _, _) = abuse(config);
    let from = Some(ip("192.0.2.1"));
    // Successes never add up.
    for _ in 0..10 {
        let permits = abuse.check_login(from, "a@example.com").await.unwrap();
        abuse.release(permits).await;
    }
    for _ in 0..3 {
        abuse.check_login(from, "a@example.com").await.unwrap().keep();
    }
    match abuse.check_login(from, "a@example.com").await {
        Err(AuthError::RateLimited { limit: 3, remaining: 0, retry_after, .. }) => {
            assert_eq!(retry_after, Duration::from_secs(60));
        }
        other => panic!("{other:?}"),
    }
    // Another address, or another account, is not the pair that failed.
    abuse.check_login(Some(ip("192.0.2.2")), "a@example.com").await.unwrap().keep();
    abuse.check_login(from, "b@example.com").await.unwrap().keep();
}

#[tokio::test]
async fn a_refusal_in_one_scope_counts_in_none() {
    let config = AbuseConfig {
        login_per_account: Limit::new(100, Duration::from_secs(60)),
        login_per_address: Limit::new(2, Duration::from_secs(60)),
        ..AbuseConfig::default()
    };
    let (abuse, fake, clock) = abuse(config);
    for n in 0..5 {
        let result = abuse.check_login(Some(ip("192.0.2.1")), &format!("{n}@x.org")).await;
        assert_eq!(result.is_ok(), n < 2, "{n}");
        if let Ok(p) = result {
            p.keep();
        }
    }
    // The three refused attempts left no event in the account scope.
    let key = RateKey::new("login", "account", "4@x.org");
    assert!(fake.logs.lock().unwrap().get(&key).is_some_and(|log| {
        log.clone()
            .acquire(&Limit::new(1, Duration::from_secs(60)), &EventId::of("probe"), clock.now())
            .allowed
    }));
}

#[tokio::test]
async fn ipv6_clients_are_counted_per_64() {
    let (abuse, _, _) = abuse(AbuseConfig::default());
    assert_eq!(abuse.address_subject(ip("2001:db8:1:2:aaaa::1")).to_string(), "2001:db8:1:2::/64");
    assert_eq!(abuse.address_subject(ip("::ffff:192.0.2.9")).to_string(), "192.0.2.9/32");
    let config = AbuseConfig {
        register_per_address: Limit::new(2, Duration::from_secs(60)),
        ..AbuseConfig::default()
    };
    let (abuse, _, _) = self::abuse(config);
    for host in ["2001:db8::1", "2001:db8::2"] {
        abuse.check_address(Action::Register, ip(host)).await.unwrap().keep();
    }
    assert!(abuse.check_address(Action::Register, ip("2001:db8::ffff")).await.is_err());
    abuse.check_address(Action::Register, ip("2001:db8:0:1::1")).await.unwrap().keep();
}

fn limited_by(result: Result<Permits, AuthError>) -> u32 {
    match result {
        Err(AuthError::RateLimited { limit, .. }) => limit,
        other => panic!("not rate limited: {other:?}"),
    }
}

#[tokio::test]
async fn ipv6_networks_share_a_multiple_of_the_address_limit() {
    let config = AbuseConfig {
        register_per_address: Limit::new(2, Duration::from_secs(60)),
        ..AbuseConfig::default()
    };
    let (abuse, _, clock) = abuse(config);
    let network = |s: &str| abuse.network_subject(ip(s)).map(|n| n.to_string());
    assert_eq!(network("2001:db8:1:2:aaaa::1").as_deref(), Some("2001:db8:1::/48"));
    assert_eq!(network("192.0.2.1"), None);
    assert_eq!(network("::ffff:192.0.2.1"), None, "IPv4-mapped is IPv4");
    // A /48 admits 4 x 2: four of its /64s use it up with their own quotas...
    for subnet in 0..4 {
        for host in 1..=2 {
            let from = ip(&format!("2001:db8:1:{subnet}::{host}"));
            abuse.check_address(Action::Register, from).await.unwrap().keep();
        }
    }
    // ...so a fifth /64, its own quota untouched, is refused by the /48 (old code:
    // each of the 65,536 /64s had a full quota),
    let fifth = ip("2001:db8:1:4::1");
    assert_eq!(limited_by(abuse.check_address(Action::Register, fifth).await), 8);
    // another /48 is not affected,
    abuse.check_address(Action::Register, ip("2001:db8:2::1")).await.unwrap().keep();
    // and the window frees the /48 again (the refusal counted nowhere).
    clock.advance(chrono::Duration::seconds(60));
    abuse.check_address(Action::Register, fifth).await.unwrap().keep();
    abuse.check_address(Action::Register, fifth).await.unwrap().keep();
    assert_eq!(limited_by(abuse.check_address(Action::Register, fifth).await), 2);
}

#[tokio::test]
async fn ipv6_logins_count_per_network_too() {
    let config = AbuseConfig {
        login_per_address: Limit::new(1, Duration::from_secs(60)),
        ipv6_network_multiplier: 2,
        ..AbuseConfig::default()
    };
    let (abuse, fake, clock) = abuse(config);
    abuse.check_login(Some(ip("2001:db8:5:1::1")), "a@x.org").await.unwrap().keep();
    abuse.check_login(Some(ip("2001:db8:5:2::1")), "b@x.org").await.unwrap().keep();
    let third = abuse.check_login(Some(ip("2001:db8:5:3::1")), "c@x.org").await;
    assert_eq!(limited_by(third), 2);
    // Refused by the network, the attempt counted in no other scope.
    let key = RateKey::new("login", "account", "c@x.org");
    let probe = Limit::new(1, Duration::from_secs(60));
    assert!(fake.logs.lock().unwrap().get(&key).is_none_or(|log| {
        log.clone().acquire(&probe, &EventId::of("probe"), clock.now()).allowed
    }));
    // Lifting a block of the /48 resets its counters.
    let net: Cidr = "2001:db8:5::/48".parse().unwrap();
    abuse.unblock(&net).await.unwrap();
    abuse.check_login(Some(ip("2001:db8:5:3::1")), "c@x.org").await.unwrap().keep();
}

#[tokio::test]
async fn the_network_count_is_off_when_its_prefix_is_the_address_prefix() {
    let config = AbuseConfig {
        register_per_address: Limit::new(1, Duration::from_secs(60)),
        ipv6_network_prefix: 64,
        ..AbuseConfig::default()
    };
    let (abuse, _, _) = abuse(config);
    assert_eq!(abuse.network_subject(ip("2001:db8::1")), None);
    for subnet in 0..10 {
        let from = ip(&format!("2001:db8:0:{subnet}::1"));
        abuse.check_address(Action::Register, from).await.unwrap().keep();
    }
}

#[tokio::test]
async fn wrong_admin_tokens_are_limited_per_address_with_escalating_lockouts() {
    let (abuse, _, clock) = abuse(AbuseConfig::default());
    let from = ip("192.0.2.77");
    for _ in 0..10 {
        abuse.check_address(Action::Admin, from).await.unwrap().keep();
    }
    match abuse.check_address(Action::Admin, from).await {
        Err(AuthError::RateLimited { limit: 10, retry_after, .. }) => {
            assert_eq!(retry_after, 15 * MINUTE);
        }
        other => panic!("{other:?}"),
    }
    // Another address is not affected; a right token (released) never adds up.
    for _ in 0..20 {
        let permits = abuse.check_address(Action::Admin, ip("192.0.2.78")).await.unwrap();
        abuse.release(permits).await;
    }
    // After the lockout, ten more failures earn a longer one.
    clock.advance(chrono::Duration::minutes(15));
    for _ in 0..10 {
        abuse.check_address(Action::Admin, from).await.unwrap().keep();
    }
    match abuse.check_address(Action::Admin, from).await {
        Err(AuthError::RateLimited { retry_after, .. }) => {
            assert_eq!(retry_after, 30 * MINUTE);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn stuffing_across_accounts_blocks_the_address_until_lifted() {
    let (abuse, fake, clock) = abuse(AbuseConfig::default());
    let attacker = ip("198.51.100.7");
    // One account many times is not stuffing.
    for _ in 0..30 {
        abuse.login_failed(Some(attacker), "victim@example.com").await;
    }
    assert!(abuse.blocked(attacker).is_none());
    for n in 0..9 {
        abuse.login_failed(Some(attacker), &format!("user{n}@example.com")).await;
    }
    // Ten distinct accounts now.
    let block = abuse.blocked(attacker).expect("blocked");
    assert_eq!(block.reason, BlockReason::CredentialStuffing);
    assert_eq!(block.net.to_string(), "198.51.100.7/32");
    assert_eq!(block.expires_at, Some(clock.now() + chrono::Duration::hours(1)));
    assert!(abuse.blocked(ip("198.51.100.8")).is_none());
    assert_eq!(fake.blocks.lock().unwrap().len(), 1);
    // Lifting it also resets the detector: the next failure does not re-block.
    assert!(abuse.unblock(&block.net).await.unwrap());
    abuse.login_failed(Some(attacker), "another@example.com").await;
    assert!(abuse.blocked(attacker).is_none());
    // Blocks expire with the clock.
    abuse.block(block.net, Some(Duration::from_secs(10)), BlockReason::Manual).await.unwrap();
    assert!(abuse.blocked(attacker).is_some());
    clock.advance(chrono::Duration::seconds(10));
    assert!(abuse.blocked(attacker).is_none());
}

#[tokio::test]
async fn guessing_counts_distinct_tokens() {
    let (abuse, _, _) = abuse(AbuseConfig::default());
    let guesser = ip("203.0.113.5");
    let stale = TokenHash::from_bytes([7; 32]);
    for _ in 0..100 {
        abuse.unknown_token(Some(guesser), &stale).await;
    }
    assert!(abuse.blocked(guesser).is_none(), "one stale cookie repeated is no attack");
    for n in 0..19u8 {
        abuse.unknown_token(Some(guesser), &TokenHash::from_bytes([n + 100; 32])).await;
    }
    assert_eq!(abuse.blocked(guesser).map(|b| b.reason), Some(BlockReason::TokenGuessing));
}

#[tokio::test]
async fn the_snapshot_follows_the_shared_list() {
    let (abuse, fake, clock) = abuse(AbuseConfig::default());
    let range: Cidr = "10.0.0.0/8".parse().unwrap();
    // Another instance blocks a range: seen after a refresh.
    fake.blocks.lock().unwrap().insert(
        range,
        IpBlock {
            net: range,
            expires_at: None,
            reason: BlockReason::Manual,
            created_at: clock.now(),
        },
    );
    assert!(abuse.blocked(ip("10.1.2.3")).is_none());
    assert_eq!(abuse.refresh().await.unwrap(), 1);
    assert!(abuse.blocked(ip("10.1.2.3")).is_some());
    assert_eq!(abuse.active_blocks().await.unwrap().len(), 1);
    // The refresher stops with the last clone.
    let task = abuse.spawn_refresher(Duration::from_millis(5));
    fake.blocks.lock().unwrap().clear();
    tokio::time::timeout(Duration::from_secs(5), async {
        while abuse.blocked(ip("10.1.2.3")).is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
    drop(abuse);
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap();
}

#[test]
fn configs_are_validated() {
    assert!(AbuseConfig::default().validate().is_ok());
    for bad in [
        AbuseConfig { login_per_account: Limit::new(0, MINUTE), ..AbuseConfig::default() },
        AbuseConfig { reset_per_address: Limit::new(1, Duration::ZERO), ..AbuseConfig::default() },
        AbuseConfig {
            stuffing: Detector { threshold: 0, window: MINUTE, block_for: MINUTE },
            ..AbuseConfig::default()
        },
        AbuseConfig { ipv6_prefix: 0, ..AbuseConfig::default() },
        AbuseConfig { ipv6_network_prefix: 0, ..AbuseConfig::default() },
        AbuseConfig { ipv6_network_prefix: 65, ..AbuseConfig::default() },
        AbuseConfig { ipv6_network_multiplier: 0, ..AbuseConfig::default() },
        AbuseConfig { admin_per_address: Limit::new(0, MINUTE), ..AbuseConfig::default() },
    ] {
        assert!(matches!(bad.validate(), Err(AuthError::Config(_))), "{bad:?}");
    }
    assert_eq!(AbuseConfig::default().limit(Action::Register, Scope::Account), None);
    assert_eq!(AbuseConfig::default().limit(Action::Register, Scope::Network).unwrap().limit, 40);
    assert_eq!(AbuseConfig::default().limit(Action::Admin, Scope::Network).unwrap().limit, 40);
}
