//! `cargo xtask migrate`: applies the embedded migrations of the database's dialect, the
//! same code as `authd migrate` ([`authd::cli::migrate`]; idempotent). Also the
//! connect-and-migrate helper of `seed` and `bench`, which take a URL of their own.

use anyhow::Context as _;
use cache_core::SystemClock;
use cache_sql::{SqlConfig, SqlStore};

/// The embedded default database of `authd`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/authd.db";

/// Arguments of `cargo xtask migrate`.
#[derive(clap::Args)]
pub struct MigrateArgs {
    /// Database to migrate (`postgres://...` or `sqlite://path`); default: `database.url`
    /// of authd's configuration (`DATABASE_URL`, `AUTHD_CONFIG`, ..., else the SQLite
    /// default).
    #[arg(long)]
    pub database_url: Option<String>,
}

/// Connects to `url` and applies the pending migrations.
pub async fn connect_and_migrate(url: &str) -> anyhow::Result<SqlStore> {
    let store = SqlStore::connect(url, SqlConfig::default(), SystemClock::shared())
        .await
        .with_context(|| format!("cannot connect to the database ({})", scheme(url)))?;
    store.migrate().await.context("migrations failed")?;
    Ok(store)
}

/// Runs the task: `authd migrate` ([`authd::cli::migrate`]) with authd's configuration.
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let mut settings = authd::Settings::load()?;
    authd::telemetry::init_tracing(settings.log.format);
    if let Some(url) = args.database_url {
        settings.database.url = url.into();
        settings.validate()?;
    }
    authd::cli::migrate(&settings).await
}

/// The URL's scheme only: URLs may carry a password and are never printed whole.
pub fn scheme(url: &str) -> &str {
    url.split_once(':').map_or("unknown", |(s, _)| s)
}
