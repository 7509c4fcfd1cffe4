//! `cargo xtask cleanup`: one full janitor run with the service's own configuration
//! (`authd.toml` / `AUTHD_CONFIG`, `DATABASE_URL`, `REDIS_URL`, `AUTHD_*`). The same code
//! as `authd cleanup` ([`authd::cli::cleanup`]): the janitor inside `authd`, its batches
//! and Redis pipelines, repeated until the backlog is done. Prints what it removed (on
//! stderr like the other tasks; `--json` prints the report on stdout).

/// Arguments of `cargo xtask cleanup`: those of `authd cleanup`.
pub use authd::cli::CleanupArgs;

/// Runs the task.
pub async fn run(args: CleanupArgs) -> anyhow::Result<()> {
    let settings = authd::Settings::load()?;
    // The janitor's own warnings (Redis unreachable, ...) on stderr, as authd logs them.
    authd::telemetry::init_tracing(settings.log.format);
    authd::cli::cleanup(settings, &args).await
}
