//! Configuration: every setting is a flag with an environment variable twin, validated once at
//! start-up. `flight-counter --help` lists them, by group; each group is a struct of its own
//! that checks itself ([`ConfigError`] says which rule a value broke), and [`Config`] holds
//! them all and checks what spans groups. Tests build a [`Config`] as a value
//! (`Config::default()` and its fields), not from argument strings.
//!
//! Files: [`server`] (listening, connections, logs), [`ledger`] (commits and keys),
//! [`stores`] (which store, and each one's settings), [`access`] (keys and per-client limits).

mod access;
mod error;
mod ledger;
mod server;
mod stores;
#[cfg(test)]
mod tests;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use access::{AuthConfig, LimitsConfig};
pub use error::ConfigError;
pub use ledger::LedgerConfig;
pub use server::{LogConfig, ServerConfig};
pub use stores::{DynamoConfig, EmbeddedConfig, StoreKind};

use crate::{
    auth::{ClientName, Scope},
    limits::ClientLimits,
    store::DynamoSettings,
};

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 500ms, 10s, 2m)"))
}

/// The command line: serve (no subcommand, the flags below), or a subcommand.
#[derive(Debug, Clone, Parser)]
#[command(name = "flight-counter", version, about, long_about = None, args_override_self = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Make a new API key. Prints the key once, on stdout, and the line to add to the API keys
    /// file (its SHA-256, never the key) on stderr, so that
    /// `flight-counter api-key --client NAME --scope write 2>>api-keys` appends the line.
    ApiKey(ApiKeyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ApiKeyArgs {
    /// The client the key is for: 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit.
    #[arg(long, value_parser = ClientName::parse)]
    pub client: ClientName,

    /// What the key allows: write (record and read) or read (read only).
    #[arg(long, value_enum)]
    pub scope: Scope,
}

/// What the command line asks for.
#[derive(Debug, Clone)]
pub enum Invocation {
    /// Run the service.
    Serve(Box<Config>),
    /// Make an API key.
    ApiKey(ApiKeyArgs),
}

impl Cli {
    /// Parses flags and environment. On a bad value, the error is one line saying which
    /// setting and why.
    pub fn from_args() -> Result<Invocation, clap::Error> {
        let cli = Self::try_parse()?;
        match cli.command {
            Some(Command::ApiKey(args)) => Ok(Invocation::ApiKey(args)),
            None => {
                cli.config.validate().map_err(|err| {
                    clap::Error::raw(clap::error::ErrorKind::ValueValidation, err)
                })?;
                Ok(Invocation::Serve(Box::new(cli.config)))
            }
        }
    }
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
