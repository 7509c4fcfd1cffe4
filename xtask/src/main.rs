//! `cargo xtask`: project tasks (migrations, seeding, benchmarks, timing). Run
//! `cargo xtask --help`; each task lives in its own module.

mod bench;
mod capacity;
mod cleanup;
mod migrate;
mod revocation;
mod seed;
mod timing;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "tiered-auth project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Applies the embedded SQL migrations.
    Migrate(migrate::MigrateArgs),
    /// Creates verified users and sessions (bench data), or the README's demo login.
    Seed(seed::SeedArgs),
    /// Runs the janitor once with authd's configuration and prints what it removed.
    Cleanup(cleanup::CleanupArgs),
    /// Measures the hot path against its baselines (docs/benchmarks.md).
    Bench(bench::BenchArgs),
    /// Sessions, checks/s -> authd cores, Redis shards, PostgreSQL (docs/capacity.md).
    Capacity(capacity::CapacityArgs),
    /// Measures how long after a revoke on one instance another refuses the session,
    /// normally and under Redis faults (p50/p99/max; issue 13).
    RevocationLatency(revocation::RevocationArgs),
    /// Compares known and unknown addresses on register, resend and forgot (in release).
    Timing(timing::TimingArgs),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().task {
        Task::Migrate(args) => runtime()?.block_on(migrate::run(args)),
        Task::Seed(args) => runtime()?.block_on(seed::run(args)),
        Task::Bench(args) => bench::run(args),
        Task::Capacity(args) => capacity::run(args),
        Task::Cleanup(args) => runtime()?.block_on(cleanup::run(args)),
        Task::RevocationLatency(args) => revocation::run(args),
        Task::Timing(args) => timing::run(args),
    }
}

/// The runtime of the async tasks (the stores are async).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
