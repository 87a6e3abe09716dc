//! The command line: serve (no subcommand: the flags of [`Config`]), or a subcommand that does
//! one job and exits.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use super::{Config, ConfigError, DynamoConfig, EmbeddedConfig, StoreKind};
use crate::auth::{ClientName, Scope};

/// Least time for one attempt, and for one call, of a snapshot's DynamoDB calls.
const BULK_ATTEMPT: Duration = Duration::from_secs(10);
const BULK_CALL: Duration = Duration::from_secs(60);

fn invalid(err: ConfigError) -> clap::Error {
    clap::Error::raw(clap::error::ErrorKind::ValueValidation, err)
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
    /// Write a snapshot of a store (every route's total, days and months, and every unexpired
    /// idempotency key) as JSON Lines, to --output or stdout. Takes the store flags of the
    /// server. An embedded store is read at one point in time; stop the service first, or use
    /// GET /admin/export on the running one.
    Export(ExportArgs),
    /// Read a snapshot (--input) into a store: an empty one, or with --merge one that already
    /// holds counts. Run it again after a failure: it resumes, and a snapshot imported twice
    /// changes nothing the second time.
    Import(ImportArgs),
}

/// Which store a subcommand works on: the server's store flags.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The store.
    #[arg(long, env = "FLIGHT_COUNTER_STORE", value_enum, default_value_t = StoreKind::Embedded)]
    pub store: StoreKind,

    #[command(flatten)]
    pub embedded: EmbeddedConfig,

    #[command(flatten)]
    pub dynamodb: DynamoConfig,
}

impl StoreArgs {
    /// A configuration that opens this store, with every other setting at its default. A
    /// snapshot's calls are bulk reads and writes (a Scan page is up to 1 MB), not a POST's
    /// commit: each DynamoDB attempt gets at least 10 s, and each call at least 60 s.
    pub fn config(&self) -> Config {
        let mut config = Config {
            store: self.store,
            embedded: self.embedded.clone(),
            dynamodb: self.dynamodb.clone(),
            ..Config::default()
        };
        config.dynamodb.attempt_timeout = config.dynamodb.attempt_timeout.max(BULK_ATTEMPT);
        config.ledger.commit_timeout = config.ledger.commit_timeout.max(BULK_CALL);
        config
    }
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Where to write the snapshot; stdout when not given.
    #[arg(long)]
    pub output: Option<PathBuf>,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// The snapshot to read (`-` for stdin).
    #[arg(long)]
    pub input: PathBuf,

    /// Add the snapshot's totals, days and months to those the store holds (each route at
    /// most once per snapshot), instead of requiring an empty store.
    #[arg(long)]
    pub merge: bool,

    /// An earlier snapshot of the same store: import only what --input holds beyond it (the
    /// transactions and keys recorded between the two), added to what the store holds. Implies
    /// --merge. The last step of moving a running service to another store.
    #[arg(long, value_name = "EARLIER_FILE")]
    pub since: Option<PathBuf>,

    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ApiKeyArgs {
    /// The client the key is for: 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit.
    #[arg(long, value_parser = ClientName::parse)]
    pub client: ClientName,

    /// What the key allows: read (read only), write (record and read) or admin (also export).
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
    /// Export a store's snapshot.
    Export(Box<ExportArgs>),
    /// Import a snapshot into a store.
    Import(Box<ImportArgs>),
}

impl Cli {
    /// Parses flags and environment. On a bad value, the error is one line saying which
    /// setting and why.
    pub fn from_args() -> Result<Invocation, clap::Error> {
        let cli = Self::try_parse()?;
        match cli.command {
            Some(Command::ApiKey(args)) => Ok(Invocation::ApiKey(args)),
            Some(Command::Export(args)) => {
                args.store.config().dynamodb.validate().map_err(invalid)?;
                Ok(Invocation::Export(Box::new(args)))
            }
            Some(Command::Import(args)) => {
                args.store.config().dynamodb.validate().map_err(invalid)?;
                Ok(Invocation::Import(Box::new(args)))
            }
            None => {
                cli.config.validate().map_err(invalid)?;
                Ok(Invocation::Serve(Box::new(cli.config)))
            }
        }
    }
}
