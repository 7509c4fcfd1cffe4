//! The `authd` binary: loads [`authd::Settings`], sets up logging, builds the
//! [`authd::Application`] and serves until SIGTERM/SIGINT.

use authd::{Application, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    authd::telemetry::init_tracing(settings.log.format);
    Application::build(settings).await?.run_until_stopped().await?;
    Ok(())
}
