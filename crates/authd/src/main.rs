//! The `authd` binary: parses the command line ([`authd::cli`]: `serve` by default,
//! `migrate`, `check-config`, `cleanup`) and runs it; the exit status tells a service
//! manager why a start failed (`docs/operations.md`).

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc instead of the system allocator: a request allocates and frees dozens of
/// small blocks on two threads, where glibc's malloc spent about 8 % of the CPU of a
/// `/v1/me` memory hit (perf; `docs/benchmarks.md`). The library crates leave the choice
/// to the binary that links them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    authd::cli::run(authd::cli::Cli::parse())
}
