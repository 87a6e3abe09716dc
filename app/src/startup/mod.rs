//! Builds the application once, for `main` and for the tests alike, and runs it through its
//! life: bind, become ready, serve, and on a signal stop in order: readiness down, drain,
//! last commit, background tasks stopped.
//!
//! Files: [`error`] (why it could not start, and the exit status), [`supervisor`] (every
//! background task), [`background`] (which tasks those are).

mod background;
mod error;
mod supervisor;

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use metrics_exporter_prometheus::PrometheusHandle;
use poem::{
    Server,
    listener::{Acceptor, TcpAcceptor},
};

pub use error::{CONFIG_ERROR, OpenCause, StartupError};
pub use supervisor::Supervisor;

use crate::{
    api,
    auth::{ApiKeys, AuthMode, KeysFileError},
    clock::{SharedClock, SystemClock},
    config::{Config, StoreKind},
    connection::ServiceAcceptor,
    ledger::Ledger,
    lifecycle::{Lifecycle, Phase},
    store::{DynamoStore, EmbeddedStore, MemoryStore, Store},
    telemetry,
};

/// How long shutdown waits for the background tasks to finish their rounds.
const BACKGROUND_STOP_WAIT: Duration = Duration::from_secs(2);
/// Connections the metrics listener keeps open at once: scrapers, not clients.
const METRICS_MAX_CONNECTIONS: usize = 64;

/// A bound, not yet serving, instance of the service.
pub struct Application {
    acceptor: TcpAcceptor,
    local_addr: SocketAddr,
    /// The listener of `/metrics`, when it has one of its own (`--metrics-bind`).
    metrics_listener: Option<(TcpAcceptor, SocketAddr)>,
    ledger: Arc<Ledger>,
    lifecycle: Arc<Lifecycle>,
    metrics: PrometheusHandle,
    auth: AuthMode,
    config: Config,
}

/// What an [`Application`] is built from besides its configuration: by default the store the
/// configuration names and the system clock; tests hand in a store with faults, or a clock
/// they move.
pub struct ApplicationBuilder {
    config: Config,
    store: Option<Store>,
    clock: SharedClock,
}

impl ApplicationBuilder {
    /// Serves this store instead of opening the one the configuration names.
    pub fn store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    /// Reads this clock for every date and expiry instead of the system's.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Reads the API keys, opens the store and binds the listeners.
    pub async fn build(self) -> Result<Application, StartupError> {
        let Self {
            config,
            store,
            clock,
        } = self;
        // Before the store: a configuration error must not open (and lock) it.
        let auth = auth_mode(&config)?;
        let store = match store {
            Some(store) => store,
            None => open_store(&config, Arc::clone(&clock)).await?,
        };
        let metrics = telemetry::metrics::install()?;
        telemetry::metrics::build_info(store.kind());
        let shared_store = store.shared();
        let ledger = Ledger::start(store, config.ledger.settings(), clock);
        let lifecycle = Arc::new(Lifecycle::new(Arc::clone(ledger.health()), shared_store));
        let (acceptor, local_addr) = listen(config.server.bind, "--bind")?;
        let metrics_listener = match config.server.metrics_bind {
            Some(addr) => Some(listen(addr, "--metrics-bind")?),
            None => None,
        };
        Ok(Application {
            acceptor,
            local_addr,
            metrics_listener,
            ledger,
            lifecycle,
            metrics,
            auth,
            config,
        })
    }
}

/// Reads the API keys file, if one is configured. A file that cannot be read at start is an
/// error: it never turns authentication off. A file with broken lines starts with its valid
/// ones; the broken ones are logged and counted in `flight_counter_auth_keys_file_errors`.
pub fn auth_mode(config: &Config) -> Result<AuthMode, KeysFileError> {
    let public_reads = config.auth.public_reads;
    let Some(path) = &config.auth.api_keys_file else {
        tracing::warn!(
            "authentication is off (no --api-keys-file): any client may record transactions \
             and read counts"
        );
        return Ok(AuthMode::Off);
    };
    let keys = ApiKeys::load(path)?;
    let (key_count, clients) = keys.counts();
    tracing::info!(
        path = %path.display(),
        keys = key_count,
        clients,
        refused_lines = keys.errors(),
        public_reads,
        "API keys loaded"
    );
    if key_count == 0 {
        tracing::warn!(
            path = %path.display(),
            "the API keys file lists no key: every request to the transactions API is refused"
        );
    }
    Ok(AuthMode::ApiKeys {
        keys: Arc::new(keys),
        public_reads,
    })
}

/// Opens the configured store, on `clock`.
pub async fn open_store(config: &Config, clock: SharedClock) -> Result<Store, StartupError> {
    let kind = config.store.as_str();
    let failed = |source: OpenCause| StartupError::Store { kind, source };
    Ok(match config.store {
        StoreKind::Embedded => {
            let store = EmbeddedStore::open_with(
                &config.embedded.data_dir,
                config.embedded.settings(),
                clock,
            )
            .map_err(|err| failed(err.into()))?;
            tracing::info!(path = %store.path().display(), "opened embedded store");
            Store::batch(store)
        }
        StoreKind::Memory => Store::batch(MemoryStore::with_clock(clock)),
        // Makes no call: DynamoDB may come up after the service; readiness tells.
        StoreKind::Dynamodb => Store::item(
            DynamoStore::connect(config.dynamo_settings(), clock)
                .await
                .map_err(|err| failed(err.into()))?,
        ),
    })
}

/// Binds one listener and reads back the address it got (useful with port 0).
fn listen(addr: SocketAddr, flag: &'static str) -> Result<(TcpAcceptor, SocketAddr), StartupError> {
    let failed = |source| StartupError::Listen { addr, flag, source };
    let acceptor = crate::connection::bind(addr).map_err(failed)?;
    let bound = acceptor
        .local_addr()
        .first()
        .and_then(|addr| addr.as_socket_addr().copied())
        .ok_or_else(|| {
            failed(std::io::Error::other(
                "the listener reports no local address",
            ))
        })?;
    Ok((acceptor, bound))
}

impl Application {
    /// The one way to build the service: `Application::builder(config).build()` in `main`,
    /// with `.store(..)` or `.clock(..)` in tests that need to inject either.
    pub fn builder(config: Config) -> ApplicationBuilder {
        ApplicationBuilder {
            config,
            store: None,
            clock: SystemClock::shared(),
        }
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of the metrics listener, when `--metrics-bind` gave it one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().map(|(_, addr)| *addr)
    }

    pub fn lifecycle(&self) -> Arc<Lifecycle> {
        Arc::clone(&self.lifecycle)
    }

    /// Serves until `shutdown` completes, then stops in order: readiness turns `503`, the
    /// listener closes after the shutdown delay, in-flight requests finish, the pending batch
    /// is committed (all within the drain timeout), and the background tasks stop.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let Self {
            acceptor,
            local_addr,
            metrics_listener,
            ledger,
            lifecycle,
            metrics,
            auth,
            config,
        } = self;

        // The service serves even when the store is not reachable yet; readiness tells.
        let supervisor = background::start(&ledger, &auth, &metrics, &config);
        ledger.probe().await;
        lifecycle.set_phase(Phase::Serving);
        tracing::info!(
            addr = %local_addr,
            store = ledger.store_kind(),
            group_commit = config.ledger.group_commit,
            auth = auth.as_str(),
            background_tasks = supervisor.len(),
            "serving; Swagger UI at http://{local_addr}/"
        );

        let drain_timeout = config.server.drain_timeout;
        let shutdown_delay = config.server.shutdown_delay;
        let signal = {
            let lifecycle = Arc::clone(&lifecycle);
            async move {
                shutdown.await;
                lifecycle.set_phase(Phase::Draining);
                tracing::info!(
                    ?drain_timeout,
                    ?shutdown_delay,
                    "shutting down: readiness is down"
                );
                tokio::time::sleep(shutdown_delay).await;
            }
        };
        // The metrics listener outlives the API's drain, so that the last scrapes see it; it
        // stops once the API server has.
        let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
        let (api_metrics, metrics_server) = match metrics_listener {
            Some((metrics_acceptor, metrics_addr)) => {
                tracing::info!(addr = %metrics_addr, "serving /metrics on its own listener");
                let server = Server::new_with_acceptor(ServiceAcceptor::new(
                    metrics_acceptor,
                    config.server.connection_timeouts(),
                    METRICS_MAX_CONNECTIONS,
                ))
                .run_with_graceful_shutdown(
                    api::metrics_app(metrics),
                    async move {
                        let _ = metrics_stopped.await;
                    },
                    Some(Duration::from_secs(1)),
                );
                (None, Some(tokio::spawn(server)))
            }
            None => (Some(metrics), None),
        };
        let app = api::app(
            Arc::clone(&ledger),
            Arc::clone(&lifecycle),
            api_metrics,
            auth,
            config.client_limits(),
            config.reads.rankings_refresh,
        );
        let started_draining = tokio::time::Instant::now();
        let server = Server::new_with_acceptor(ServiceAcceptor::new(
            acceptor,
            config.server.connection_timeouts(),
            config.server.max_connections as usize,
        ));
        // Without CORS the endpoint is served as it is: no middleware on the hot path.
        let served = match api::cors::middleware(&config.server.cors_policy()) {
            Some(cors) => {
                server
                    .run_with_graceful_shutdown(
                        api::cors::around(app, cors),
                        signal,
                        Some(drain_timeout),
                    )
                    .await
            }
            None => {
                server
                    .run_with_graceful_shutdown(app, signal, Some(drain_timeout))
                    .await
            }
        };
        let _ = stop_metrics.send(());
        if let Some(server) = metrics_server {
            match tokio::time::timeout(BACKGROUND_STOP_WAIT, server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(err))) => tracing::error!(error = %err, "the metrics listener failed"),
                Ok(Err(err)) => {
                    tracing::error!(error = %err, "the metrics listener ended abnormally")
                }
                Err(_) => tracing::warn!("the metrics listener did not stop in time"),
            }
        }

        // Every request has been answered or cut off; commit whatever is still queued, even
        // when the server failed.
        let remaining = drain_timeout
            .saturating_sub(started_draining.elapsed().min(drain_timeout))
            .max(Duration::from_secs(1));
        if tokio::time::timeout(remaining, ledger.close())
            .await
            .is_err()
        {
            tracing::error!("the last commit did not finish within the drain timeout");
        }
        supervisor.stop(BACKGROUND_STOP_WAIT).await;
        served.map_err(StartupError::Serve)?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Starts listening for SIGTERM and SIGINT (Ctrl-C) at once, and returns a future that
/// resolves when either arrives. Installing the handlers before anything else is built means a
/// signal that arrives during start-up is a graceful shutdown too, not the default
/// terminate-on-signal.
#[cfg(unix)]
pub fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, StartupError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).map_err(StartupError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(StartupError::Signals)?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
        }
    })
}

#[cfg(not(unix))]
pub fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, StartupError> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
