//! The HTTP side: where the service listens, how long a connection may take, how many it
//! keeps, how it drains, which browser origins it lets in, and how it logs.

use std::{net::SocketAddr, time::Duration};

use clap::Args;
use tracing_subscriber::EnvFilter;

use super::{ConfigError, parse_duration};
use crate::{api::cors::CorsPolicy, connection::Timeouts, telemetry::logging::LogFormat};

#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "HTTP server")]
pub struct ServerConfig {
    /// Address and port to listen on.
    #[arg(long, env = "FLIGHT_COUNTER_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Serve /metrics on this address only, and not on --bind (in production, a port that no
    /// load balancer exposes). Unset: /metrics is served on --bind, beside the API.
    #[arg(long, env = "FLIGHT_COUNTER_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// On SIGTERM/SIGINT, how long in-flight requests and the last commit may take before exit.
    #[arg(long, env = "FLIGHT_COUNTER_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// On SIGTERM/SIGINT, how long to keep serving with readiness down before draining, so
    /// load balancers stop sending traffic first.
    #[arg(long, env = "FLIGHT_COUNTER_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Close a client connection after this long without a byte read or written (a client
    /// that vanished without closing would otherwise hold it forever).
    #[arg(long, env = "FLIGHT_COUNTER_IDLE_TIMEOUT", default_value = "75s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Close a client connection when a request has not been answered this long after its
    /// first byte arrived (a request sent a byte at a time is cut off with a 408).
    #[arg(long, env = "FLIGHT_COUNTER_REQUEST_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Most client connections open at once; past it, a new connection is closed as soon as it
    /// is accepted. Each costs a descriptor and, at worst (a request head held unfinished just
    /// under its bound), about 34 KiB: 2048 of them stay within 70 MiB, inside a 256 MiB pod
    /// with the store's own memory (docs/hostile-clients.md).
    #[arg(long, env = "FLIGHT_COUNTER_MAX_CONNECTIONS", default_value_t = 2048,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Browser pages on these origins (scheme://host[:port], comma-separated) may read and
    /// record; `*` alone lets pages on any origin read (never record). Unset: no cross-origin
    /// access.
    #[arg(long, env = "FLIGHT_COUNTER_CORS_ALLOW_ORIGIN", value_delimiter = ',')]
    pub cors_allow_origin: Vec<String>,

    /// Runtime worker threads (0: one per CPU; 1: a single-threaded runtime).
    #[arg(long, env = "FLIGHT_COUNTER_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_bind: None,
            drain_timeout: Duration::from_secs(10),
            shutdown_delay: Duration::ZERO,
            idle_timeout: Duration::from_secs(75),
            request_timeout: Duration::from_secs(15),
            max_connections: 2048,
            cors_allow_origin: Vec::new(),
            worker_threads: 0,
        }
    }
}

impl ServerConfig {
    /// Checks the server's own settings, and that neither connection deadline cuts off a
    /// request still waiting for its commit (it reads and writes nothing meanwhile).
    pub fn validate(&self, commit_timeout: Duration) -> Result<(), ConfigError> {
        if let Some(metrics) = self.metrics_bind
            && metrics.port() != 0
            && metrics == self.bind
        {
            return Err(ConfigError::MetricsOnApiAddress(metrics));
        }
        for (flag, value) in [
            ("--idle-timeout", self.idle_timeout),
            ("--request-timeout", self.request_timeout),
        ] {
            if value < Duration::from_secs(1) || value <= commit_timeout {
                return Err(ConfigError::DeadlineBeforeCommit {
                    flag,
                    value,
                    commit_timeout,
                });
            }
        }
        CorsPolicy::from_values(&self.cors_allow_origin)?;
        Ok(())
    }

    /// What cross-origin access `--cors-allow-origin` allows (checked by `validate`).
    pub fn cors_policy(&self) -> CorsPolicy {
        CorsPolicy::from_values(&self.cors_allow_origin).unwrap_or(CorsPolicy::Off)
    }

    /// The deadlines of every client connection.
    pub fn connection_timeouts(&self) -> Timeouts {
        Timeouts {
            idle: self.idle_timeout,
            request: self.request_timeout,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Logging")]
pub struct LogConfig {
    /// Log format: text for a terminal, json (one object per line) for production.
    #[arg(long, env = "FLIGHT_COUNTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in RUST_LOG syntax, e.g. info, warn or flight_counter=debug,poem=warn.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_parser = parse_log_filter)]
    pub log_level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Text,
            log_level: "info".into(),
        }
    }
}

fn parse_log_filter(s: &str) -> Result<String, String> {
    EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("{e} (use RUST_LOG syntax, e.g. info or flight_counter=debug)"))
}
