//! [`Application`]: the stores, the flows and the actix-web server, built from
//! [`Settings`] and bound to a listener (port 0 picks a free one, see
//! [`Application::port`]).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use auth::{AuthService, FileMailer, Mailer, SmtpConfig, SmtpMailer, SmtpTls};
use cache_core::{SharedClock, SystemClock};
use cache_sql::SqlStore;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::app::abuse;
use crate::app::signals::StopSignals;
use crate::app::stores::{self, Backends};
use crate::cookies::CookiePolicy;
use crate::error;
use crate::http::access::{self, AccessLog};
use crate::http::http_metrics::HttpMetrics;
use crate::ops::Ops;
use crate::routes;
use crate::security::{self, AdminGuard, Security};
use crate::settings::{MailTransport, Settings, SmtpTlsMode};
use crate::telemetry;

pub use crate::app::failure::StartupFailure;

/// A built, bound, not yet running service.
pub struct Application {
    local_addr: SocketAddr,
    server: Server,
    /// The operations listener's address and server (`server.ops_listen`).
    ops_addr: Option<SocketAddr>,
    ops_server: Option<Server>,
    /// How long in-flight requests may take to finish once stopped.
    shutdown_timeout: std::time::Duration,
    /// SIGTERM, SIGINT and SIGQUIT, registered before the listener was bound.
    signals: StopSignals,
    service: AuthService,
    backends: Backends,
    ops: Ops,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("local_addr", &self.local_addr)
            .field("backends", &self.backends)
            .finish_non_exhaustive()
    }
}

/// Builds an [`Application`] with optional parts supplied by the caller instead of the
/// settings (an already connected SQL store, a mailer, a clock).
#[must_use]
pub struct ApplicationBuilder {
    settings: Settings,
    clock: SharedClock,
    sql: Option<SqlStore>,
    mailer: Option<Arc<dyn Mailer>>,
    #[cfg(feature = "test-util")]
    insecure_fast_hashing: bool,
}

impl ApplicationBuilder {
    /// Takes every expiry decision from `clock` (tests pass a `ManualClock`).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Uses this SQL store instead of connecting to `database.url` (it is still migrated
    /// when `database.migrate` is on).
    pub fn sql_store(mut self, sql: SqlStore) -> Self {
        self.sql = Some(sql);
        self
    }

    /// Sends mail through `mailer` instead of the configured transport.
    pub fn mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    /// Hashes passwords with argon2 parameters far below the production minimum, so that
    /// tests run fast. Only compiled with the `test-util` feature, never in the default
    /// build.
    #[cfg(feature = "test-util")]
    pub fn insecure_fast_hashing(mut self) -> Self {
        self.insecure_fast_hashing = true;
        self
    }

    /// Connects the stores and builds the flows, without binding a listener: what another
    /// actix-web app needs to share the stores and require sessions with
    /// [`crate::CurrentUser`] or [`crate::RequireSession`].
    pub async fn build_parts(self) -> anyhow::Result<Parts> {
        let settings = self.settings;
        // Settings built in code (other apps, tests) meet the same rules as loaded ones:
        // a transport rule broken here would put a secret on the wire in clear.
        settings.validate().context(StartupFailure::Config)?;
        let clock = self.clock;
        // Before any store exists: tiers create their metric handles at construction.
        let metrics = telemetry::metrics_handle();

        let cookie_policy = CookiePolicy::new(settings.cookie.secure);
        if cookie_policy.is_secure() {
            if settings.public_base_url().starts_with("http://") {
                tracing::warn!(
                    public_base_url = settings.public_base_url(),
                    "cookie.secure is on but public_base_url is plain http: browsers only \
                     send the session cookie over https"
                );
            }
        } else {
            tracing::warn!(
                "cookie.secure is off: the session cookie is sent over plain http and lacks \
                 the __Host- prefix; use this only for local development \
                 (AUTHD_COOKIE__SECURE=true behind https)"
            );
        }

        let sql = match self.sql {
            Some(sql) => {
                if settings.database.migrate {
                    sql.migrate()
                        .await
                        .context("database migrations failed")
                        .context(StartupFailure::Store)?;
                }
                sql
            }
            None => stores::connect_sql(&settings, clock.clone())
                .await
                .context(StartupFailure::Store)?,
        };
        let backends = stores::compose(&settings, clock.clone(), sql).await?;
        // Warms the caches (when configured) before the first request can arrive.
        let ops = Ops::start(&settings, clock.clone(), backends.tiers()).await;

        let mailer = match self.mailer {
            Some(mailer) => mailer,
            None => mailer_from(&settings).context(StartupFailure::Config)?,
        };
        let mut config = settings.auth_config();
        #[cfg(feature = "test-util")]
        let insecure = self.insecure_fast_hashing;
        #[cfg(not(feature = "test-util"))]
        let insecure = false;
        if insecure {
            config.argon2 = auth::Argon2Params::INSECURE_FOR_TESTS;
        }
        let stores = backends.stores.clone();
        let service_clock = clock.clone();
        // `AuthService::new` computes one argon2 hash: keep it off the async worker.
        let service = tokio::task::spawn_blocking(move || {
            if insecure {
                AuthService::new_insecure_for_tests(config, stores, mailer, service_clock)
            } else {
                AuthService::new(config, stores, mailer, service_clock)
            }
        })
        .await
        .context("the flows could not be built")?
        .context("invalid auth settings")?;

        // Rate limits and IP blocks: the flows count logins, resends and reset requests,
        // the HTTP guard the per-address attempts and the blocks.
        let abuse = abuse::build_abuse(&settings, &backends, clock.clone())
            .context("invalid abuse settings")
            .context(StartupFailure::Config)?;
        if let Err(e) = abuse.refresh().await {
            tracing::warn!(error = %e, "cannot read the IP block list yet; retrying in the background");
        }
        // Stops by itself once the last clone of `abuse` is dropped.
        drop(abuse.spawn_refresher(settings.abuse.block_refresh()));
        let service =
            if settings.abuse.enabled { service.with_abuse(abuse.clone()) } else { service };
        // The security event log: SQL is its authority (no cache tier), written by a
        // background task so that no flow waits for it.
        let event_log: Arc<dyn auth::EventLog> = Arc::new(backends.sql.clone());
        let service = service
            .with_events(settings.events.events_config(), event_log)
            .context("invalid events settings")
            .context(StartupFailure::Config)?;
        let security = Security::new(security::guard_config(&settings), abuse, cookie_policy);
        Ok(Parts { service, cookie_policy, backends, metrics, settings, ops, security })
    }

    /// Connects the stores, builds the flows and binds the listener.
    pub async fn build(self) -> anyhow::Result<Application> {
        let parts = self.build_parts().await?;
        let settings = &parts.settings;
        // Before the port takes connections: a stop signal from now on is queued for
        // `run_until_stopped`, never the default action that kills the process.
        let signals = StopSignals::install().context("cannot listen for stop signals")?;
        let listener = TcpListener::bind(settings.server.listen)
            .with_context(|| format!("cannot listen on {} (server.listen)", settings.server.listen))
            .context(StartupFailure::Bind)?;
        let local_addr = listener.local_addr()?;
        let server = server(settings, listener, &parts)?;
        let (ops_addr, ops_server) = match settings.server.ops_listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .with_context(|| format!("cannot listen on {addr} (server.ops_listen)"))
                    .context(StartupFailure::Bind)?;
                let ops_addr = listener.local_addr()?;
                tracing::info!(address = %ops_addr, "operations listener (/metrics) up");
                (Some(ops_addr), Some(ops_server(settings, listener, &parts)?))
            }
            None => (None, None),
        };
        tracing::info!(
            address = %local_addr,
            public_base_url = settings.public_base_url(),
            "authd listening"
        );
        let Parts { service, backends, ops, .. } = parts;
        let shutdown_timeout =
            std::time::Duration::from_secs(settings.server.shutdown_timeout_secs);
        Ok(Application {
            local_addr,
            server,
            ops_addr,
            ops_server,
            shutdown_timeout,
            signals,
            service,
            backends,
            ops,
        })
    }
}

/// The service's parts without its HTTP server (see [`ApplicationBuilder::build_parts`]).
pub struct Parts {
    /// The flows, over the composed stores.
    pub service: AuthService,
    /// How the session cookie is named and flagged.
    pub cookie_policy: CookiePolicy,
    /// The composed tiers (keep them alive: they own the Redis background tasks).
    pub backends: Backends,
    /// The Prometheus recorder's handle.
    pub metrics: PrometheusHandle,
    /// The settings the parts were built from.
    pub settings: Settings,
    /// Metrics middleware, analytics, janitor (its background tasks stop when dropped).
    pub ops: Ops,
    /// The HTTP guard's state: client addresses, IP blocks, CSRF, per-address limits.
    pub security: Security,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("cookie_policy", &self.cookie_policy)
            .field("backends", &self.backends)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// A builder for the optional parts.
    pub fn builder(settings: Settings) -> ApplicationBuilder {
        ApplicationBuilder {
            settings,
            clock: SystemClock::shared(),
            sql: None,
            mailer: None,
            #[cfg(feature = "test-util")]
            insecure_fast_hashing: false,
        }
    }

    /// Builds the service from `settings` with the system clock.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::builder(settings).build().await
    }

    /// Builds the service from `settings`, taking every expiry decision from `clock`.
    pub async fn build_with_clock(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        Self::builder(settings).clock(clock).build().await
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The operations listener's address (`/metrics`, detailed readiness), when on.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops_addr
    }

    /// Stops the server (gracefully with `stop(true)`) from outside; the operations
    /// listener stops after it.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The flows, for embedding and tests.
    pub fn service(&self) -> &AuthService {
        &self.service
    }

    /// The composed tiers, for health tooling and tests.
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// The operations side: analytics, janitor, warm-up report.
    pub fn ops(&self) -> &Ops {
        &self.ops
    }

    /// Serves until SIGTERM or [`Application::handle`]`.stop(true)`, then lets in-flight
    /// requests finish within `server.shutdown_timeout_secs`; SIGINT, SIGQUIT and
    /// `stop(false)` drop them (`docs/operations.md`, "Shutdown").
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let Application { server, ops_server, backends, ops, shutdown_timeout, signals, .. } = self;
        // The operations listener lives as long as the public one: metrics of the last
        // requests stay scrapable while they finish.
        let ops_server = ops_server.map(|server| {
            let handle = server.handle();
            (handle, tokio::spawn(server))
        });
        let stopper = tokio::spawn(signals.stop(server.handle()));
        let result = server.await;
        // Stopped through the handle: no signal to wait for any more.
        stopper.abort();
        if let Some((handle, task)) = ops_server {
            // Bounded: a scraper's kept-alive connection gets the shutdown timeout, and
            // nothing on this listener may hold the process after the public one stopped.
            let bound = shutdown_timeout + std::time::Duration::from_secs(1);
            if tokio::time::timeout(bound, handle.stop(true)).await.is_err() {
                tracing::warn!("the operations listener did not stop in time");
            }
            match tokio::time::timeout(bound, task).await {
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "the operations listener stopped with an error");
                }
                Err(_) => tracing::warn!("the operations listener did not stop in time"),
                Ok(_) => {}
            }
        }
        tracing::info!("authd stopped");
        // The listener and the Redis tasks stop with the stores, after the last request.
        // The analytics of the last seconds, before the stores go.
        ops.shutdown().await;
        drop(ops);
        drop(backends);
        result
    }
}

/// The configured mail transport.
fn mailer_from(settings: &Settings) -> anyhow::Result<Arc<dyn Mailer>> {
    let mail = &settings.mail;
    Ok(match mail.transport {
        MailTransport::File => {
            let mailer = FileMailer::new(&mail.dir)
                .with_from(&mail.from)
                .context("mail.from is not a valid address")?;
            tracing::info!(dir = %mail.dir.display(), "mail is written to files");
            Arc::new(mailer)
        }
        MailTransport::Smtp => {
            let smtp = &mail.smtp;
            let mailer = SmtpMailer::new(SmtpConfig {
                host: smtp.host.clone(),
                port: smtp.port,
                tls: match smtp.tls {
                    SmtpTlsMode::None => SmtpTls::None,
                    SmtpTlsMode::Starttls => SmtpTls::StartTls,
                    SmtpTlsMode::Tls => SmtpTls::Tls,
                },
                username: smtp.username.clone(),
                password: smtp.password.clone(),
                from: mail.from.clone(),
                timeout: std::time::Duration::from_secs(smtp.timeout_secs),
            })
            .context("invalid SMTP settings")?;
            tracing::info!(host = %smtp.host, port = smtp.port, "mail is sent over SMTP");
            Arc::new(mailer)
        }
    })
}

/// The actix-web server on `listener`.
fn server(settings: &Settings, listener: TcpListener, parts: &Parts) -> anyhow::Result<Server> {
    let service = web::Data::new(parts.service.clone());
    let policy = web::Data::new(parts.cookie_policy);
    let readiness = web::Data::new(parts.backends.readiness.clone());
    let metrics = web::Data::new(parts.metrics.clone());
    let ops = web::Data::new(parts.ops.clone());
    let http_metrics = HttpMetrics::new(Some(parts.ops.analytics().clone()));
    let admin = web::Data::new(AdminGuard::new(settings.admin.token.as_ref()));
    let security = web::Data::new(parts.security.clone());
    // Built once: the document describes this server (cookie name, password policy).
    let openapi =
        web::Data::new(routes::ops::OpenApiJson::new(&crate::openapi::document(settings)));
    let json_limit = settings.server.json_limit_bytes;
    let access_log = web::Data::new(AccessLog::new(
        settings.log.access_level,
        &settings.security.trusted_proxies,
    ));
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(service.clone())
            .app_data(policy.clone())
            .app_data(readiness.clone())
            .app_data(metrics.clone())
            .app_data(ops.clone())
            .app_data(admin.clone())
            .app_data(security.clone())
            .app_data(openapi.clone())
            .app_data(access_log.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(json_limit)
                    .content_type_required(true)
                    .error_handler(error::json_error(json_limit)),
            )
            // The pages' form posts: as large as a JSON body may be; an unreadable form
            // (not urlencoded, too large) is refused in the API's error shape.
            .app_data(web::FormConfig::default().limit(json_limit).error_handler(|e, _| {
                error::ApiError::InvalidInput(format!("the form could not be read: {e}")).into()
            }))
            .app_data(web::PathConfig::default().error_handler(error::path_error))
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            // Inside the request context, so that refusals are logged with their status
            // and the guard's lines carry the request id.
            .wrap(from_fn(security::guard))
            .wrap(from_fn(access::request_context))
            // Outermost: times everything and sees the status the client gets.
            .wrap(http_metrics.clone())
            .configure(routes::configure)
            .default_service(web::to(error::not_found))
    })
    // Signals are authd's own (`app::signals`), listened to from before the bind.
    .disable_signals()
    .shutdown_timeout(settings.server.shutdown_timeout_secs);
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    Ok(server.listen(listener)?.run())
}

/// The operations server on `listener`: metrics and detailed readiness, one worker,
/// no guard (it is not the public listener).
fn ops_server(settings: &Settings, listener: TcpListener, parts: &Parts) -> anyhow::Result<Server> {
    let readiness = web::Data::new(parts.backends.readiness.clone());
    let metrics = web::Data::new(parts.metrics.clone());
    let ops = web::Data::new(parts.ops.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(readiness.clone())
            .app_data(metrics.clone())
            .app_data(ops.clone())
            .configure(routes::configure_ops)
            .default_service(web::to(error::not_found))
    })
    .workers(1)
    // SIGTERM stops the public server, which then stops this one.
    .disable_signals()
    .shutdown_timeout(settings.server.shutdown_timeout_secs);
    Ok(server.listen(listener)?.run())
}
