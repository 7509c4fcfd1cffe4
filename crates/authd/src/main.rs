//! The `authd` binary: parses the command line ([`authd::cli`]: `serve` by default,
//! `migrate`, `check-config`, `cleanup`) and runs it; the exit status tells a service
//! manager why a start failed (`docs/operations.md`).

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    authd::cli::run(authd::cli::Cli::parse())
}
