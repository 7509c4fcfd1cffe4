//! `cargo xtask cleanup`: one full janitor run with the service's own configuration
//! (`authd.toml` / `AUTHD_CONFIG`, `DATABASE_URL`, `REDIS_URL`, `AUTHD_*`), through
//! [`authd::ops::cleanup`]: the same code, batches and Redis pipelines as the janitor
//! inside `authd`, repeated until the backlog is done. Prints what it removed (on
//! stderr like the other tasks; `--json` prints the report on stdout).

use std::io::Write as _;

use anyhow::Context as _;
use cache_core::SystemClock;

/// Arguments of `cargo xtask cleanup`.
#[derive(clap::Args)]
pub struct CleanupArgs {
    /// Rows per delete statement (default: `janitor.batch_size` of the configuration).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Stop after this many janitor passes even if expired rows remain.
    #[arg(long, default_value_t = 1_000)]
    pub max_passes: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the task.
pub async fn run(args: CleanupArgs) -> anyhow::Result<()> {
    let mut settings = authd::Settings::load()?;
    // The janitor's own warnings (Redis unreachable, ...) on stderr, as authd logs them.
    authd::telemetry::init_tracing(settings.log.format);
    if let Some(batch_size) = args.batch_size {
        settings.janitor.batch_size = batch_size;
        settings.validate()?;
    }
    let report = authd::ops::cleanup(&settings, SystemClock::shared(), args.max_passes)
        .await
        .context("the clean-up failed")?;
    let t = report.totals;
    if args.json {
        // The report is the output, for scripts: stdout.
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        eprintln!(
            "removed {} expired sessions ({} Redis index entries dropped), {} expired \
             verifications, {} revocation journal rows, {} expired unverified accounts, in \
             {} statements over {} pass(es){}",
            t.sessions,
            t.redis_forgotten,
            t.verifications,
            t.journal_rows,
            t.unverified_accounts,
            t.batches,
            report.passes,
            if t.complete { "" } else { "; expired rows remain (raise --max-passes)" },
        );
    }
    Ok(())
}
