//! Configuration: every setting is a flag with an environment variable twin, validated once at
//! start-up. `flight-counter --help` lists them all.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Parser, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::{ledger::LedgerSettings, telemetry::logging::LogFormat};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// A redb file under --data-dir: durable, no cloud needed (the default).
    Embedded,
    /// In memory only: counts vanish on exit. For tests and throwaway runs.
    Memory,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Embedded => "embedded",
            StoreKind::Memory => "memory",
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 500ms, 10s, 2m)"))
}

fn parse_log_filter(s: &str) -> Result<String, String> {
    EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("{e} (use RUST_LOG syntax, e.g. info or flight_counter=debug)"))
}

/// Counts confirmed booking transactions per flight route.
#[derive(Debug, Clone, Parser)]
#[command(name = "flight-counter", version, about, long_about = None, args_override_self = true)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(long, env = "FLIGHT_COUNTER_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Where counts are stored.
    #[arg(long, env = "FLIGHT_COUNTER_STORE", value_enum, default_value_t = StoreKind::Embedded)]
    pub store: StoreKind,

    /// Directory of the embedded store's database file.
    #[arg(long, env = "FLIGHT_COUNTER_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Log format: text for a terminal, json (one object per line) for production.
    #[arg(long, env = "FLIGHT_COUNTER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in RUST_LOG syntax, e.g. info, warn or flight_counter=debug,poem=warn.
    #[arg(long, env = "RUST_LOG", default_value = "info", value_parser = parse_log_filter)]
    pub log_level: String,

    /// On SIGTERM/SIGINT, how long in-flight requests and the last commit may take before exit.
    #[arg(long, env = "FLIGHT_COUNTER_DRAIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// On SIGTERM/SIGINT, how long to keep serving with readiness down before draining, so
    /// load balancers stop sending traffic first.
    #[arg(long, env = "FLIGHT_COUNTER_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Coalesce concurrent POSTs into shared commits (true) or commit each POST alone (false).
    #[arg(long, env = "FLIGHT_COUNTER_GROUP_COMMIT", default_value_t = true, action = ArgAction::Set)]
    pub group_commit: bool,

    /// Most transactions in one commit.
    #[arg(long, env = "FLIGHT_COUNTER_MAX_BATCH", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_batch: u32,

    /// Most transactions waiting for a commit; beyond it POSTs wait to be queued.
    #[arg(long, env = "FLIGHT_COUNTER_MAX_PENDING", default_value_t = 65_536,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_pending: u32,

    /// How long a POST or GET waits for the store before answering 503.
    #[arg(long, env = "FLIGHT_COUNTER_COMMIT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub commit_timeout: Duration,

    /// Runtime worker threads (0: one per CPU; 1: a single-threaded runtime).
    #[arg(long, env = "FLIGHT_COUNTER_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
}

impl Config {
    /// Parses flags and environment. On a bad value, the error is one line saying which setting
    /// and why.
    pub fn from_args() -> Result<Self, clap::Error> {
        let config = Self::try_parse()?;
        config.validate().map_err(|message| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message)
        })?;
        Ok(config)
    }

    /// Cross-field checks that flags alone cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.commit_timeout.is_zero() {
            return Err("--commit-timeout must be greater than zero".into());
        }
        if self.max_pending < self.max_batch {
            return Err(format!(
                "--max-pending ({}) must be at least --max-batch ({})",
                self.max_pending, self.max_batch
            ));
        }
        Ok(())
    }

    pub fn ledger_settings(&self) -> LedgerSettings {
        LedgerSettings {
            group_commit: self.group_commit,
            max_batch: self.max_batch as usize,
            max_pending: self.max_pending as usize,
            commit_timeout: self.commit_timeout,
        }
    }

    /// A configuration for tests and embedding: defaults, memory store, random port.
    pub fn for_tests() -> Self {
        Self::parse_from([
            "flight-counter",
            "--bind",
            "127.0.0.1:0",
            "--store",
            "memory",
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let config = Config::parse_from(["flight-counter"]);
        assert!(config.validate().is_ok());
        assert_eq!(config.bind, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(config.store, StoreKind::Embedded);
        assert_eq!(config.drain_timeout, Duration::from_secs(10));
        assert!(config.group_commit);
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Config::try_parse_from(["x", "--bind", "nowhere"]).is_err());
        assert!(Config::try_parse_from(["x", "--store", "cloud"]).is_err());
        assert!(Config::try_parse_from(["x", "--drain-timeout", "soon"]).is_err());
        assert!(Config::try_parse_from(["x", "--max-batch", "0"]).is_err());
        assert!(Config::try_parse_from(["x", "--log-level", "[[["]).is_err());
        let config = Config::parse_from(["x", "--max-batch", "100", "--max-pending", "10"]);
        assert!(config.validate().is_err());
    }
}
