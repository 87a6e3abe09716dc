//! Where counts live: which store, and each store's own settings.

use std::{path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

use super::{ConfigError, parse_duration};
use crate::store::{DEFAULT_CACHE_MIB, DynamoSettings, EmbeddedSettings};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// A redb file under --data-dir: durable, no cloud needed (the default).
    #[default]
    Embedded,
    /// In memory only: counts vanish on exit. For tests and throwaway runs.
    Memory,
    /// A DynamoDB table (--table), shared by every instance: for running several pods.
    Dynamodb,
}

impl StoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Embedded => "embedded",
            StoreKind::Memory => "memory",
            StoreKind::Dynamodb => "dynamodb",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Embedded store")]
pub struct EmbeddedConfig {
    /// Directory of the embedded store's database file.
    #[arg(long, env = "FLIGHT_COUNTER_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Memory of the embedded store, in MiB: half for the database's page cache, a quarter for
    /// each of the two memtables of commits not yet flushed to it.
    #[arg(long = "embedded-cache-mib", env = "FLIGHT_COUNTER_EMBEDDED_CACHE_MIB", default_value_t = DEFAULT_CACHE_MIB,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub cache_mib: u32,

    /// Longest time between checkpoints of the embedded store while commits come (a checkpoint
    /// makes its database durable and empties its journal, which bounds the replay after a
    /// crash). Shorter costs more writes; longer, a longer replay.
    #[arg(long = "embedded-checkpoint-interval", env = "FLIGHT_COUNTER_EMBEDDED_CHECKPOINT_INTERVAL",
          default_value = "1s", value_parser = parse_duration)]
    pub checkpoint_interval: Duration,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            cache_mib: DEFAULT_CACHE_MIB,
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

impl EmbeddedConfig {
    pub fn settings(&self) -> EmbeddedSettings {
        EmbeddedSettings {
            cache_bytes: self.cache_mib as usize * 1024 * 1024,
            checkpoint_interval: self.checkpoint_interval,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "DynamoDB store")]
pub struct DynamoConfig {
    /// DynamoDB table of the dynamodb store (partition key `route`, a String).
    #[arg(
        long,
        env = "FLIGHT_COUNTER_TABLE",
        default_value = "flight-transactions"
    )]
    pub table: String,

    /// DynamoDB endpoint, for a local DynamoDB-compatible server (e.g. http://127.0.0.1:4567).
    /// Unset: the AWS configuration chain decides (AWS_ENDPOINT_URL, or the region's endpoint).
    #[arg(long, env = "FLIGHT_COUNTER_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,

    /// Create the DynamoDB table when it is missing. For local development only.
    #[arg(long, env = "FLIGHT_COUNTER_CREATE_TABLE")]
    pub create_table: bool,

    /// Most DynamoDB commits (one route each) in flight at once.
    #[arg(long = "dynamodb-max-in-flight", env = "FLIGHT_COUNTER_DYNAMODB_MAX_IN_FLIGHT",
          default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_in_flight: u32,

    /// Most DynamoDB commits in flight on one route: more than one lets the next batch of a
    /// hot route travel while the previous one is still on the wire.
    #[arg(long = "dynamodb-commits-per-route", env = "FLIGHT_COUNTER_DYNAMODB_COMMITS_PER_ROUTE",
          default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub commits_per_route: u32,

    /// How long connecting to DynamoDB may take.
    #[arg(long = "dynamodb-connect-timeout", env = "FLIGHT_COUNTER_DYNAMODB_CONNECT_TIMEOUT",
          default_value = "1s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// How long one attempt of a DynamoDB call may take before it is retried (at most
    /// --commit-timeout).
    #[arg(long = "dynamodb-attempt-timeout", env = "FLIGHT_COUNTER_DYNAMODB_ATTEMPT_TIMEOUT",
          default_value = "1s", value_parser = parse_duration)]
    pub attempt_timeout: Duration,

    /// Attempts per DynamoDB call (1: no retries). Throttling, 5xx and network errors are
    /// retried with jittered backoff, always within --commit-timeout.
    #[arg(long = "dynamodb-max-attempts", env = "FLIGHT_COUNTER_DYNAMODB_MAX_ATTEMPTS",
          default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub max_attempts: u32,
}

impl Default for DynamoConfig {
    fn default() -> Self {
        Self {
            table: "flight-transactions".into(),
            endpoint_url: None,
            create_table: false,
            max_in_flight: 64,
            commits_per_route: 2,
            connect_timeout: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(1),
            max_attempts: 3,
        }
    }
}

/// DynamoDB's rule for table names.
fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl DynamoConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !valid_table_name(&self.table) {
            return Err(ConfigError::TableName(self.table.clone()));
        }
        if let Some(url) = &self.endpoint_url
            && (!(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10)
        {
            return Err(ConfigError::EndpointUrl(url.clone()));
        }
        for (flag, value) in [
            ("--dynamodb-connect-timeout", self.connect_timeout),
            ("--dynamodb-attempt-timeout", self.attempt_timeout),
        ] {
            if value.is_zero() {
                return Err(ConfigError::Zero { flag });
            }
        }
        Ok(())
    }

    /// The store's settings. Every DynamoDB call, retries included, ends within the commit
    /// timeout, so a caller's deadline is never spent waiting on a call already given up; an
    /// attempt never outlasts the commit timeout, nor a connect the attempt.
    pub fn settings(
        &self,
        commit_timeout: Duration,
        idempotency_retention: Duration,
    ) -> DynamoSettings {
        let attempt_timeout = self.attempt_timeout.min(commit_timeout);
        DynamoSettings {
            table: self.table.clone(),
            endpoint_url: self.endpoint_url.clone(),
            create_table: self.create_table,
            max_in_flight: self.max_in_flight as usize,
            commits_per_route: self.commits_per_route as usize,
            connect_timeout: self.connect_timeout.min(attempt_timeout),
            attempt_timeout,
            operation_timeout: commit_timeout,
            max_attempts: self.max_attempts,
            idempotency_retention,
        }
    }
}
