//! Configuration: every setting is a flag with an environment variable twin, validated once at
//! start-up. `flight-counter --help` lists them, by group; each group is a struct of its own
//! that checks itself ([`ConfigError`] says which rule a value broke), and [`Config`] holds
//! them all and checks what spans groups. Tests build a [`Config`] as a value
//! (`Config::default()` and its fields), not from argument strings.
//!
//! Files: [`server`] (listening, connections, logs), [`ledger`] (commits and keys),
//! [`stores`] (which store, and each one's settings), [`reads`] (rankings), [`access`] (keys
//! and per-client limits),
//! [`cli`] (the command line: serving, or a subcommand).

mod access;
mod cli;
mod error;
mod ledger;
mod reads;
mod server;
mod stores;
#[cfg(test)]
mod tests;

use std::time::Duration;

use clap::Parser;

pub use access::{AuthConfig, LimitsConfig};
pub use cli::{ApiKeyArgs, Cli, Command, ExportArgs, ImportArgs, Invocation, StoreArgs};
pub use error::ConfigError;
pub use ledger::LedgerConfig;
pub use reads::ReadsConfig;
pub use server::{LogConfig, ServerConfig};
pub use stores::{DynamoConfig, EmbeddedConfig, StoreKind};

use crate::{limits::ClientLimits, store::DynamoSettings};

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 500ms, 10s, 2m)"))
}

/// Counts confirmed booking transactions per flight route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Parser)]
#[command(name = "flight-counter", version, about, long_about = None, args_override_self = true)]
pub struct Config {
    #[command(flatten)]
    pub server: ServerConfig,

    #[command(flatten)]
    pub log: LogConfig,

    /// Where counts are stored.
    #[arg(long, env = "FLIGHT_COUNTER_STORE", value_enum, default_value_t = StoreKind::Embedded,
          help_heading = "Store")]
    pub store: StoreKind,

    #[command(flatten)]
    pub embedded: EmbeddedConfig,

    #[command(flatten)]
    pub dynamodb: DynamoConfig,

    #[command(flatten)]
    pub ledger: LedgerConfig,

    #[command(flatten)]
    pub reads: ReadsConfig,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub limits: LimitsConfig,
}

impl Config {
    /// Every group's own checks, then the one that spans groups: connection deadlines against
    /// the commit timeout.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.ledger.validate()?;
        self.server.validate(self.ledger.commit_timeout)?;
        self.dynamodb.validate()?;
        self.auth.validate()?;
        self.reads.validate()?;
        Ok(())
    }

    /// Settings of the dynamodb store, bounded by the commit timeout.
    pub fn dynamo_settings(&self) -> DynamoSettings {
        self.dynamodb.settings(
            self.ledger.commit_timeout,
            self.ledger.idempotency_retention,
        )
    }

    /// The per-client limits of this instance.
    pub fn client_limits(&self) -> ClientLimits {
        self.limits.client_limits(self.ledger.idempotency_retention)
    }
}
