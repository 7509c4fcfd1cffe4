//! `authd cleanup` / `cargo xtask cleanup`: janitor passes with the service's
//! configuration over the stores composed as `authd` composes them.

use anyhow::Context as _;
use cache_core::SharedClock;

use crate::app::failure::StartupFailure;
use crate::app::stores;
use crate::ops::{Analytics, JanitorReport, janitor_for};
use crate::settings::Settings;

/// What [`cleanup`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CleanupReport {
    /// Janitor passes run.
    pub passes: u64,
    /// Their totals (`complete` is that of the last pass).
    pub totals: JanitorReport,
}

/// One full clean-up with the service's configuration, as `cargo xtask cleanup` runs
/// it: connects the stores as `authd` does (SQL, and Redis when configured), runs janitor
/// passes until one reaches the end of the backlog (at most `max_passes`), and flushes
/// the expired-session counts into the analytics. Safe to run beside live instances.
pub async fn cleanup(
    settings: &Settings,
    clock: SharedClock,
    max_passes: u64,
) -> anyhow::Result<CleanupReport> {
    let sql = stores::connect_sql(settings, clock.clone()).await.context(StartupFailure::Store)?;
    let backends = stores::compose(settings, clock.clone(), sql).await?;
    let analytics = Analytics::new(
        settings.analytics.clone(),
        clock.clone(),
        backends.sql.clone(),
        backends.redis.clone(),
    );
    let janitor = janitor_for(settings, backends.tiers(), Some(analytics.clone()), clock);
    let mut report = CleanupReport::default();
    while report.passes < max_passes.max(1) {
        let pass = janitor.run_once().await?;
        report.passes += 1;
        let t = &mut report.totals;
        t.sessions += pass.sessions;
        t.verifications += pass.verifications;
        t.journal_rows += pass.journal_rows;
        t.unverified_accounts += pass.unverified_accounts;
        t.events += pass.events;
        t.batches += pass.batches;
        t.redis_forgotten += pass.redis_forgotten;
        t.redis_skipped += pass.redis_skipped;
        t.complete = pass.complete;
        if pass.complete {
            break;
        }
    }
    if let Err(e) = analytics.flush().await {
        tracing::warn!(error = %e, "the expired-session counts did not reach Redis");
    }
    Ok(report)
}
