//! Builds the application once, for `main` and for the tests alike, and runs it through its
//! life: bind, become ready, serve, drain on a signal, commit what is pending, stop.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusHandle;
use poem::{
    Server,
    listener::{Acceptor, TcpAcceptor},
};

use crate::{
    api,
    auth::{ApiKeys, AuthMode, KeysFileError},
    clock::{SharedClock, SystemClock},
    config::{Config, StoreKind},
    connection::ServiceAcceptor,
    ledger::Ledger,
    lifecycle::{Lifecycle, Phase},
    store::{DynamoStore, EmbeddedSettings, EmbeddedStore, MemoryStore, Store},
    telemetry,
};

/// How often readiness asks the store whether it can commit.
const READINESS_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Longest time between two sweeps of expired idempotency keys (a short retention window
/// sweeps more often: every half window, but not more than ten times a second).
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How long shutdown waits for a background task to finish its round.
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

/// Reads the API keys file, if one is configured. A file that cannot be read at start is an
/// error: it never turns authentication off. A file with broken lines starts with its valid
/// ones; the broken ones are logged and counted in `flight_counter_auth_keys_file_errors`.
pub fn auth_mode(config: &Config) -> Result<AuthMode, KeysFileError> {
    let Some(path) = &config.api_keys_file else {
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
        public_reads = config.public_reads,
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
        public_reads: config.public_reads,
    })
}

/// Opens the configured store.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Ok(match config.store {
        StoreKind::Embedded => {
            let settings = EmbeddedSettings {
                cache_bytes: config.embedded_cache_mib as usize * 1024 * 1024,
                checkpoint_interval: config.embedded_checkpoint_interval,
            };
            let store = EmbeddedStore::open_with(
                &config.data_dir,
                settings,
                crate::clock::SystemClock::shared(),
            )?;
            tracing::info!(path = %store.path().display(), "opened embedded store");
            Store::batch(store)
        }
        StoreKind::Memory => Store::batch(MemoryStore::new()),
        // Makes no call: DynamoDB may come up after the service; readiness tells.
        StoreKind::Dynamodb => Store::item(
            DynamoStore::connect(
                config.dynamo_settings(),
                crate::clock::SystemClock::shared(),
            )
            .await?,
        ),
    })
}

impl Application {
    /// Reads the API keys, opens the configured store and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Before the store: a configuration error must not open (and lock) it.
        let auth = auth_mode(&config)?;
        let store = open_store(&config).await?;
        Self::assemble(config, store, auth, Arc::new(SystemClock)).await
    }

    /// Binds the listener around a store the caller provides (tests use this to inject faults).
    pub async fn build_with_store(config: Config, store: Store) -> anyhow::Result<Self> {
        Self::build_with_store_and_clock(config, store, Arc::new(SystemClock)).await
    }

    /// As [`Application::build_with_store`], on a clock the caller controls (tests move it
    /// across midnight).
    pub async fn build_with_store_and_clock(
        config: Config,
        store: Store,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let auth = auth_mode(&config)?;
        Self::assemble(config, store, auth, clock).await
    }

    async fn assemble(
        config: Config,
        store: Store,
        auth: AuthMode,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let metrics = telemetry::metrics::install()?;
        telemetry::metrics::build_info(store.kind());
        let shared_store = store.shared();
        let ledger = Ledger::start_with_clock(store, config.ledger_settings(), clock);
        let lifecycle = Arc::new(Lifecycle::new(Arc::clone(ledger.health()), shared_store));
        let acceptor = crate::connection::bind(config.bind)
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let local_addr = bound_address(&acceptor)?;
        let metrics_listener = match config.metrics_bind {
            Some(addr) => {
                let acceptor = crate::connection::bind(addr)
                    .with_context(|| format!("cannot listen on {addr} (--metrics-bind)"))?;
                let bound = bound_address(&acceptor)?;
                Some((acceptor, bound))
            }
            None => None,
        };
        Ok(Self {
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

    /// Serves until `shutdown` completes, then drains: readiness turns `503`, the listener
    /// closes after the shutdown delay, in-flight requests finish, and the pending batch is
    /// committed, all within the drain timeout.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
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
        // Background tasks that use the store stop between two rounds, never in the middle of
        // one, so that the store is closed once they are awaited (a restart in the same process
        // can open the file again).
        let (stop_background, background_stopped) = tokio::sync::watch::channel(false);
        let prober = tokio::spawn({
            let ledger = Arc::clone(&ledger);
            let mut stopped = background_stopped.clone();
            async move {
                let mut tick = tokio::time::interval(READINESS_PROBE_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.wait_for(|stop| *stop) => return,
                    }
                    ledger.probe().await;
                }
            }
        });
        let upkeep = tokio::spawn({
            let metrics = metrics.clone();
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    metrics.run_upkeep();
                }
            }
        });
        // Keys rotate without a restart: the file is re-read while the service runs.
        let key_watcher = match &auth {
            AuthMode::ApiKeys { keys, .. } => {
                tokio::spawn(Arc::clone(keys).watch(background_stopped.clone()))
            }
            AuthMode::Off => tokio::spawn(async {}),
        };
        let sweeper = tokio::spawn({
            let ledger = Arc::clone(&ledger);
            let every = (config.idempotency_retention / 2)
                .clamp(Duration::from_millis(100), MAX_SWEEP_INTERVAL);
            let mut stopped = background_stopped;
            async move {
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = stopped.wait_for(|stop| *stop) => return,
                    }
                    match ledger.sweep_expired_keys().await {
                        Ok(0) => {}
                        Ok(n) => tracing::debug!(keys = n, "deleted expired idempotency keys"),
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot delete expired idempotency keys")
                        }
                    }
                }
            }
        });
        ledger.probe().await;
        lifecycle.set_phase(Phase::Serving);
        tracing::info!(
            addr = %local_addr,
            store = ledger.store_kind(),
            group_commit = config.group_commit,
            auth = auth.as_str(),
            "serving; Swagger UI at http://{local_addr}/"
        );

        let drain_timeout = config.drain_timeout;
        let shutdown_delay = config.shutdown_delay;
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
                    config.connection_timeouts(),
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
        );
        let started_draining = tokio::time::Instant::now();
        let server = Server::new_with_acceptor(ServiceAcceptor::new(
            acceptor,
            config.connection_timeouts(),
            config.max_connections as usize,
        ));
        // Without CORS the endpoint is served as it is: no middleware on the hot path.
        match api::cors::middleware(&config.cors_policy()) {
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
        }
        .context("server failed")?;
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

        // Every request has been answered or cut off; commit whatever is still queued.
        let remaining = drain_timeout
            .saturating_sub(started_draining.elapsed().min(drain_timeout))
            .max(Duration::from_secs(1));
        if tokio::time::timeout(remaining, ledger.close())
            .await
            .is_err()
        {
            tracing::error!("the last commit did not finish within the drain timeout");
        }
        stop_background.send_replace(true);
        for mut task in [prober, sweeper, key_watcher] {
            match tokio::time::timeout(BACKGROUND_STOP_WAIT, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(error = %err, "a background task ended abnormally"),
                // A store call that hangs (a network store) must not hold up the exit.
                Err(_) => task.abort(),
            }
        }
        upkeep.abort();
        tracing::info!("stopped");
        Ok(())
    }
}

/// The address a listener is bound to.
fn bound_address(acceptor: &TcpAcceptor) -> anyhow::Result<SocketAddr> {
    acceptor
        .local_addr()
        .first()
        .and_then(|addr| addr.as_socket_addr().copied())
        .context("listener has no local address")
}

/// Starts listening for SIGTERM and SIGINT (Ctrl-C) at once, and returns a future that
/// resolves when either arrives. Installing the handlers before anything else is built means a
/// signal that arrives during start-up is a graceful shutdown too, not the default
/// terminate-on-signal.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("received SIGTERM"),
            _ = interrupt.recv() => tracing::info!("received SIGINT"),
        }
    })
}

#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
