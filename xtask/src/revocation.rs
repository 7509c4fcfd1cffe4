//! `cargo xtask revocation-latency`: how long after a revoke on instance A instance B
//! refuses the session, in normal operation (200 trials) and with Redis frozen, killed,
//! absent, or A dying between its SQL commit and its Redis write (50 trials each by
//! default): p50, p99 and max per case (issue 13, F4).
//!
//! The measurement needs two in-process `authd` instances built with the `test-util`
//! hooks (fast hashing, the failpoint), which the default build must never have; so it
//! lives in authd's test `revocation_latency_figures` (ignored by default) and this task
//! runs it through cargo, alone and with its output shown. Its services are those of the
//! tests: `DATABASE_URL` (PostgreSQL, else a SQLite file) and a `redis-server` on `PATH`.

use std::process::Command;

use anyhow::{Context as _, bail};
use clap::Args;

/// Options of `cargo xtask revocation-latency`.
#[derive(Debug, Args)]
pub struct RevocationArgs {
    /// Trials per fault case (normal operation always runs at least 200).
    #[arg(long, default_value_t = 50)]
    trials: usize,
    /// Build and run in release mode (slower to build, closer to production).
    #[arg(long)]
    release: bool,
}

/// Runs the measurement and lets it print its table.
pub fn run(args: RevocationArgs) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut command = Command::new(cargo);
    command.args(["test", "-p", "authd", "--test", "revocation"]);
    if args.release {
        command.arg("--release");
    }
    command
        .args(["--", "--ignored", "--exact", "revocation_latency_figures", "--nocapture"])
        .env("TRIALS", args.trials.to_string());
    let status = command.status().context("cannot run cargo")?;
    if !status.success() {
        bail!("the revocation latency measurement failed ({status})");
    }
    Ok(())
}
