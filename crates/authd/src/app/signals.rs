//! The stop signals of a running [`Application`](super::startup::Application): SIGTERM
//! stops it gracefully, SIGINT and SIGQUIT at once (`docs/operations.md`, "Shutdown").
//!
//! authd listens for them itself rather than through actix-server, which registers its
//! handlers only when the server is first polled, after the workers have started: a
//! SIGTERM in between (a rolling deploy that changes its mind, a busy host) found the
//! default action and killed the process, in-flight requests and all. [`StopSignals::install`]
//! runs before the listener is bound, so from the moment the port takes connections a
//! signal is queued until [`StopSignals::stop`] acts on it.

use actix_web::dev::ServerHandle;

/// The registered stop signals, not yet acted on.
#[derive(Debug)]
pub struct StopSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    quit: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Registers the handlers now (inside the runtime): from here on these signals no
    /// longer end the process by themselves.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
                quit: signal(SignalKind::quit())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// Waits for the first stop signal and stops `server` as it asks.
    pub async fn stop(mut self, server: ServerHandle) {
        let graceful = self.next().await;
        server.stop(graceful).await;
    }

    /// The first signal: `true` for a graceful stop (SIGTERM).
    #[cfg(unix)]
    async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.term.recv() => {
                tracing::info!("SIGTERM received; starting graceful shutdown");
                true
            }
            _ = self.int.recv() => {
                tracing::info!("SIGINT received; starting forced shutdown");
                false
            }
            _ = self.quit.recv() => {
                tracing::info!("SIGQUIT received; starting forced shutdown");
                false
            }
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> bool {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received; starting forced shutdown");
        } else {
            std::future::pending::<()>().await;
        }
        false
    }
}
