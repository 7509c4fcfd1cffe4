//! `cargo xtask migrate`: applies the embedded migrations of the database's dialect
//! through [`cache_sql::SqlStore::migrate`] (idempotent).

use anyhow::Context as _;
use cache_core::SystemClock;
use cache_sql::{SqlConfig, SqlStore};

/// The embedded default database of `authd`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/authd.db";

/// Arguments of `cargo xtask migrate`.
#[derive(clap::Args)]
pub struct MigrateArgs {
    /// Database to migrate (`postgres://...` or `sqlite://path`).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,
}

/// Connects to `url` and applies the pending migrations.
pub async fn connect_and_migrate(url: &str) -> anyhow::Result<SqlStore> {
    let store = SqlStore::connect(url, SqlConfig::default(), SystemClock::shared())
        .await
        .with_context(|| format!("cannot connect to the database ({})", scheme(url)))?;
    store.migrate().await.context("migrations failed")?;
    Ok(store)
}

/// Runs the task.
pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let store = connect_and_migrate(&args.database_url).await?;
    eprintln!("migrations applied ({})", store.backend());
    Ok(())
}

/// The URL's scheme only: URLs may carry a password and are never printed whole.
pub fn scheme(url: &str) -> &str {
    url.split_once(':').map_or("unknown", |(s, _)| s)
}
