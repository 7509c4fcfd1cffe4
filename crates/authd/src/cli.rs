//! The `authd` command line (clap): `serve` (the default), `migrate`, `check-config`,
//! `cleanup`, `--version`, `--help`. The binary's `main` only parses and calls [`run`];
//! `cargo xtask migrate` and `cargo xtask cleanup` call [`migrate`] and [`cleanup`], so
//! the development tasks and the operator's commands are the same code.
//!
//! Nothing is read, created or connected before the command is known: `--help` and
//! `--version` touch nothing, `check-config` reads the configuration only (no `./data`,
//! no connection). Failures end the process with the documented exit statuses
//! (`docs/operations.md`, "Command line and exit codes"; [`StartupFailure`]).

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use cache_core::SystemClock;
use clap::{Parser, Subcommand};

use crate::app::startup::{Application, StartupFailure};
use crate::settings::Settings;

/// `authd`: session authentication as a service.
#[derive(Debug, Parser)]
#[command(
    name = "authd",
    version,
    about = "Session authentication as a service (tiered-auth)",
    long_about = "Session authentication as a service (tiered-auth).\n\n\
        Settings come from built-in defaults, the TOML file named by AUTHD_CONFIG (else \
        ./authd.toml when present), DATABASE_URL / REDIS_URL and AUTHD_* variables; see \
        docs/configuration.md. Without a command, `serve` runs.",
    after_help = "Exit status: 0 success, 1 other failure, 2 usage error, 69 SQL store \
        unavailable at start, 71 cannot bind a listener, 78 invalid configuration."
)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The commands of `authd`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serves HTTP until SIGTERM/SIGINT (the default): connects the stores, runs the
    /// migrations when `database.migrate` is on, binds `server.listen` and
    /// `server.ops_listen`.
    Serve,
    /// Applies the embedded SQL migrations to `database.url` (idempotent) and exits.
    Migrate,
    /// Loads every configuration layer, validates it and prints the effective settings
    /// as TOML with secrets redacted; exits non-zero naming the key at fault. Connects
    /// to nothing and creates nothing.
    CheckConfig,
    /// Runs the janitor with this configuration until the backlog of expired rows is
    /// done (safe beside running instances) and prints what it removed.
    Cleanup(CleanupArgs),
}

/// Arguments of `authd cleanup` (and `cargo xtask cleanup`).
#[derive(Debug, Clone, clap::Args)]
pub struct CleanupArgs {
    /// Rows per delete statement (default: `janitor.batch_size` of the configuration).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Stop after this many janitor passes even if expired rows remain.
    #[arg(long, default_value_t = 1_000)]
    pub max_passes: u64,
    /// Print the report as JSON on stdout (else a summary on stderr).
    #[arg(long)]
    pub json: bool,
}

/// A command's failure and the exit status it ends the process with.
#[derive(Debug)]
pub struct Failure {
    /// The exit status (see [`StartupFailure::exit_code`]; 1 for anything else).
    pub code: u8,
    /// What went wrong.
    pub error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        let code = StartupFailure::of(&error).map_or(1, StartupFailure::exit_code);
        Self { code, error }
    }
}

/// Runs the parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => load().and_then(|settings| print_settings(&settings)),
        command => runtime().map_err(Failure::from).and_then(|rt| rt.block_on(run_async(command))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            // Once logging is set up (the format is a setting), the error is a log line
            // like the others, JSON included; before, plain text on stderr.
            if tracing::dispatcher::has_been_set() {
                tracing::error!(exit_code = code, "{error:#}");
            } else {
                eprintln!("authd: {error:#}");
            }
            ExitCode::from(code)
        }
    }
}

/// The runtime of the async commands (the stores and the server are async).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn run_async(command: Command) -> Result<(), Failure> {
    let settings = load()?;
    crate::telemetry::init_tracing(settings.log.format);
    match command {
        Command::Serve => {
            Application::build(settings).await?.run_until_stopped().await.context("serving")?;
        }
        Command::Migrate => migrate(&settings).await?,
        Command::Cleanup(args) => cleanup(settings, &args).await?,
        // `run` prints them without a runtime; the same output here.
        Command::CheckConfig => print_settings(&settings)?,
    }
    Ok(())
}

/// Every configuration layer, validated; an error is a configuration error (exit 78).
fn load() -> Result<Settings, Failure> {
    Settings::load().map_err(|error| Failure { code: StartupFailure::Config.exit_code(), error })
}

/// `authd check-config`: prints the effective settings, secrets redacted, on stdout.
fn print_settings(settings: &Settings) -> Result<(), Failure> {
    let toml = settings.to_redacted_toml()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "# authd {}: effective settings, secrets redacted", env!("CARGO_PKG_VERSION"))
        .and_then(|()| write!(out, "{toml}"))
        .context("cannot write to stdout")?;
    Ok(())
}

/// `authd migrate` / `cargo xtask migrate`: connects to `database.url` and applies the
/// pending migrations, whatever `database.migrate` says.
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let store = crate::app::stores::connect_sql_with(settings, SystemClock::shared(), true)
        .await
        .context(StartupFailure::Store)?;
    tracing::info!(backend = %store.backend(), "migrations applied");
    Ok(())
}

/// `authd cleanup` / `cargo xtask cleanup`: janitor passes with `settings` (and
/// `args.batch_size` over `janitor.batch_size`) until the backlog is done, through
/// [`crate::app::cleanup::cleanup`]; prints the report.
pub async fn cleanup(mut settings: Settings, args: &CleanupArgs) -> anyhow::Result<()> {
    if let Some(batch_size) = args.batch_size {
        settings.janitor.batch_size = batch_size;
        settings.validate().context(StartupFailure::Config)?;
    }
    let report = crate::app::cleanup::cleanup(&settings, SystemClock::shared(), args.max_passes)
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
