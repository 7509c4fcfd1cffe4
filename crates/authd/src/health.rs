//! Readiness: each tier's state, probed on demand for `GET /health/ready`.
//!
//! SQL is the authority: when it is down the service is `unavailable` (503). A cache tier
//! that is down (Redis unreachable, its circuit breaker open) only makes it `degraded`
//! (200): requests are then served from the remaining tiers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, join_all};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How long one probe may take before its tier is reported down.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One tier's state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TierReport {
    /// `up` or `down`.
    #[schema(example = "up")]
    pub status: String,
    /// Round trip of the probe (a ping), when the tier has one.
    pub latency_ms: Option<f64>,
    /// Tier-specific facts: backend, pool state, breaker state, entries, error kind.
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl TierReport {
    /// A tier that answered.
    pub fn up() -> Self {
        Self { status: "up".to_owned(), latency_ms: None, details: serde_json::Map::new() }
    }

    /// A tier that did not answer, with a short reason (never a connection string).
    pub fn down(reason: &str) -> Self {
        let mut report =
            Self { status: "down".to_owned(), latency_ms: None, details: serde_json::Map::new() };
        report.detail("error", reason);
        report
    }

    /// Adds a detail.
    pub fn detail(&mut self, key: &str, value: impl Into<serde_json::Value>) -> &mut Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// Whether the tier is usable.
    pub fn is_up(&self) -> bool {
        self.status == "up"
    }
}

/// The body of `GET /health/ready`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadyReport {
    /// `ok`, `degraded` (a cache tier is down) or `unavailable` (SQL is down).
    #[schema(example = "ok")]
    pub status: String,
    /// Each configured tier by name (`sql`, `redis`, `memory`).
    pub tiers: BTreeMap<String, TierReport>,
}

/// Something that can report a tier's state.
pub trait Probe: Send + Sync {
    /// The tier's name in the report.
    fn name(&self) -> &'static str;
    /// Whether the service is unavailable without this tier.
    fn required(&self) -> bool;
    /// Checks the tier (the caller bounds it with [`PROBE_TIMEOUT`]).
    fn check(&self) -> BoxFuture<'_, TierReport>;
}

/// The probes of the configured tiers.
#[derive(Clone, Default)]
pub struct Readiness {
    probes: Vec<Arc<dyn Probe>>,
}

impl Readiness {
    /// No tiers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tier.
    pub fn with(mut self, probe: Arc<dyn Probe>) -> Self {
        self.probes.push(probe);
        self
    }

    /// Probes every tier concurrently, each within [`PROBE_TIMEOUT`].
    pub async fn report(&self) -> ReadyReport {
        let results = join_all(self.probes.iter().map(|probe| async move {
            let start = Instant::now();
            let mut report = match tokio::time::timeout(PROBE_TIMEOUT, probe.check()).await {
                Ok(report) => report,
                Err(_) => TierReport::down("timeout"),
            };
            if report.latency_ms.is_none() {
                report.latency_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
            }
            (probe.name(), probe.required(), report)
        }))
        .await;
        let mut status = "ok";
        let mut tiers = BTreeMap::new();
        for (name, required, report) in results {
            if !report.is_up() {
                if required {
                    status = "unavailable";
                } else if status == "ok" {
                    status = "degraded";
                }
            }
            tiers.insert(name.to_owned(), report);
        }
        ReadyReport { status: status.to_owned(), tiers }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    struct Fixed(&'static str, bool, bool);

    impl Probe for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        fn required(&self) -> bool {
            self.1
        }
        fn check(&self) -> BoxFuture<'_, TierReport> {
            let up = self.2;
            async move { if up { TierReport::up() } else { TierReport::down("unavailable") } }
                .boxed()
        }
    }

    #[tokio::test]
    async fn status_follows_the_tiers() {
        let r = |sql, redis| {
            Readiness::new()
                .with(Arc::new(Fixed("sql", true, sql)))
                .with(Arc::new(Fixed("redis", false, redis)))
        };
        assert_eq!(r(true, true).report().await.status, "ok");
        assert_eq!(r(true, false).report().await.status, "degraded");
        assert_eq!(r(false, true).report().await.status, "unavailable");
        assert_eq!(r(false, false).report().await.status, "unavailable");
        let report = r(true, false).report().await;
        assert_eq!(report.tiers["redis"].status, "down");
        assert!(report.tiers["sql"].latency_ms.is_some());
    }
}
