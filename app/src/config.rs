//! Configuration: every setting is a flag with an environment variable twin, validated once at
//! start-up. `flight-counter --help` lists them all.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use crate::{
    auth::{ClientName, Scope},
    connection::Timeouts,
    ledger::LedgerSettings,
    limits::{ClientLimits, ClientRates, KeyQuota, RateLimit},
    store::DynamoSettings,
    telemetry::logging::LogFormat,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// A redb file under --data-dir: durable, no cloud needed (the default).
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

/// Longest idempotency retention accepted.
const MAX_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 500ms, 10s, 2m)"))
}

/// DynamoDB's rule for table names.
fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn parse_log_filter(s: &str) -> Result<String, String> {
    EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| format!("{e} (use RUST_LOG syntax, e.g. info or flight_counter=debug)"))
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
                cli.config.validate().map_err(|message| {
                    clap::Error::raw(clap::error::ErrorKind::ValueValidation, message)
                })?;
                Ok(Invocation::Serve(Box::new(cli.config)))
            }
        }
    }
}

/// Counts confirmed booking transactions per flight route.
#[derive(Debug, Clone, Parser)]
#[command(name = "flight-counter", version, about, long_about = None, args_override_self = true)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(long, env = "FLIGHT_COUNTER_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Serve /metrics on this address only, and not on --bind (in production, a port that no
    /// load balancer exposes). Unset: /metrics is served on --bind, beside the API.
    #[arg(long, env = "FLIGHT_COUNTER_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

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

    /// Page cache of the embedded store, in MiB (memory the store may use for pages it read).
    #[arg(long, env = "FLIGHT_COUNTER_EMBEDDED_CACHE_MIB", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub embedded_cache_mib: u32,

    /// Longest time between checkpoints of the embedded store while commits come (a checkpoint
    /// makes its database durable and empties its journal, which bounds the replay after a
    /// crash). Shorter costs more writes; longer, a longer replay.
    #[arg(long, env = "FLIGHT_COUNTER_EMBEDDED_CHECKPOINT_INTERVAL", default_value = "1s",
          value_parser = parse_duration)]
    pub embedded_checkpoint_interval: Duration,

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

    /// How long a POST or GET waits for the store before answering 503. 8 s by default: long
    /// enough for a DynamoDB transaction to be sent again after the five seconds DynamoDB takes
    /// to finish one whose first attempt stalled (as AWS advises for TransactWriteItems).
    #[arg(long, env = "FLIGHT_COUNTER_COMMIT_TIMEOUT", default_value = "8s", value_parser = parse_duration)]
    pub commit_timeout: Duration,

    /// How long an Idempotency-Key is honoured after its first POST: a retry within it is
    /// answered with the stored outcome and not counted again. Expired keys are deleted.
    #[arg(long, env = "FLIGHT_COUNTER_IDEMPOTENCY_RETENTION", default_value = "24h", value_parser = parse_duration)]
    pub idempotency_retention: Duration,

    /// File of API keys, one `<client> <scope> <sha256-hex-of-key>` per line (make keys with
    /// the api-key subcommand). With it, recording needs a write key and reading a read or
    /// write key, sent as `Authorization: Bearer <key>`; the file is re-read when it changes.
    /// Without it, any client may read and write.
    #[arg(long, env = "FLIGHT_COUNTER_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// With --api-keys-file, let anyone read counts without a key (recording still needs one).
    #[arg(long, env = "FLIGHT_COUNTER_PUBLIC_READS")]
    pub public_reads: bool,

    /// Requests each client may make to this instance, as a token bucket: <n>/s or <n>/m,
    /// optionally with a burst (default: one period's requests), e.g. 200/s,burst=400. A
    /// request to the transactions API takes one token, a multi-route read one per route;
    /// past the limit it is answered 429 with Retry-After. Requests without a key share one
    /// bucket. Unset: no limit.
    #[arg(long, env = "FLIGHT_COUNTER_CLIENT_RATE_LIMIT", value_parser = RateLimit::parse)]
    pub client_rate_limit: Option<RateLimit>,

    /// Most idempotency keys each client may create through this instance within
    /// --idempotency-retention (about 24 bytes of memory each); past it, a POST with a new
    /// key is answered 429, while replays of known keys are still answered. 0: no cap.
    #[arg(long, env = "FLIGHT_COUNTER_CLIENT_MAX_IDEMPOTENCY_KEYS", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    pub client_max_idempotency_keys: u64,

    /// Browser pages on these origins (scheme://host[:port], comma-separated) may read and
    /// record; `*` alone lets pages on any origin read (never record). Unset: no cross-origin
    /// access.
    #[arg(long, env = "FLIGHT_COUNTER_CORS_ALLOW_ORIGIN", value_delimiter = ',')]
    pub cors_allow_origin: Vec<String>,

    /// Runtime worker threads (0: one per CPU; 1: a single-threaded runtime).
    #[arg(long, env = "FLIGHT_COUNTER_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,

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
    #[arg(long, env = "FLIGHT_COUNTER_DYNAMODB_MAX_IN_FLIGHT", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub dynamodb_max_in_flight: u32,

    /// Most DynamoDB commits in flight on one route: more than one lets the next batch of a
    /// hot route travel while the previous one is still on the wire.
    #[arg(long, env = "FLIGHT_COUNTER_DYNAMODB_COMMITS_PER_ROUTE", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    pub dynamodb_commits_per_route: u32,

    /// How long connecting to DynamoDB may take.
    #[arg(long, env = "FLIGHT_COUNTER_DYNAMODB_CONNECT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub dynamodb_connect_timeout: Duration,

    /// How long one attempt of a DynamoDB call may take before it is retried (at most
    /// --commit-timeout).
    #[arg(long, env = "FLIGHT_COUNTER_DYNAMODB_ATTEMPT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub dynamodb_attempt_timeout: Duration,

    /// Attempts per DynamoDB call (1: no retries). Throttling, 5xx and network errors are
    /// retried with jittered backoff, always within --commit-timeout.
    #[arg(long, env = "FLIGHT_COUNTER_DYNAMODB_MAX_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=10))]
    pub dynamodb_max_attempts: u32,
}

impl Config {
    /// Cross-field checks that flags alone cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.commit_timeout.is_zero() {
            return Err("--commit-timeout must be greater than zero".into());
        }
        if let Some(metrics) = self.metrics_bind
            && metrics.port() != 0
            && metrics == self.bind
        {
            return Err(format!(
                "--metrics-bind ({metrics}) must differ from --bind; leave it unset to serve \
                 /metrics on --bind"
            ));
        }
        // A request waiting on the store reads and writes nothing: neither connection deadline
        // may cut it off before the commit timeout answers it.
        for (flag, value) in [
            ("--idle-timeout", self.idle_timeout),
            ("--request-timeout", self.request_timeout),
        ] {
            if value < Duration::from_secs(1) || value <= self.commit_timeout {
                return Err(format!(
                    "{flag} ({}) must be at least 1s and longer than --commit-timeout ({})",
                    humantime::format_duration(value),
                    humantime::format_duration(self.commit_timeout)
                ));
            }
        }
        if self.max_pending < self.max_batch {
            return Err(format!(
                "--max-pending ({}) must be at least --max-batch ({})",
                self.max_pending, self.max_batch
            ));
        }
        if !valid_table_name(&self.table) {
            return Err(format!(
                "--table {:?} is not a DynamoDB table name (3 to 255 letters, digits, _ . -)",
                self.table
            ));
        }
        if let Some(url) = &self.endpoint_url
            && (!(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10)
        {
            return Err(format!(
                "--endpoint-url {url:?} must be an http:// or https:// URL"
            ));
        }
        if self.idempotency_retention < Duration::from_secs(1)
            || self.idempotency_retention > MAX_IDEMPOTENCY_RETENTION
        {
            return Err(format!(
                "--idempotency-retention must be between 1s and 365d, not {}",
                humantime::format_duration(self.idempotency_retention)
            ));
        }
        crate::api::cors::CorsPolicy::from_values(&self.cors_allow_origin)?;
        if self.public_reads && self.api_keys_file.is_none() {
            return Err(
                "--public-reads needs --api-keys-file (without keys, every read is public)".into(),
            );
        }
        if self.dynamodb_connect_timeout.is_zero() || self.dynamodb_attempt_timeout.is_zero() {
            return Err("--dynamodb-connect-timeout and --dynamodb-attempt-timeout must be greater than zero".into());
        }
        Ok(())
    }

    /// What cross-origin access `--cors-allow-origin` allows (checked by [`Config::validate`]).
    pub fn cors_policy(&self) -> crate::api::cors::CorsPolicy {
        crate::api::cors::CorsPolicy::from_values(&self.cors_allow_origin)
            .unwrap_or(crate::api::cors::CorsPolicy::Off)
    }

    /// The deadlines of every client connection.
    pub fn connection_timeouts(&self) -> Timeouts {
        Timeouts {
            idle: self.idle_timeout,
            request: self.request_timeout,
        }
    }

    /// Settings of the dynamodb store. Every DynamoDB call, retries included, ends within the
    /// commit timeout, so a caller's deadline is never spent waiting on a call already given up;
    /// an attempt never outlasts the commit timeout, nor a connect the attempt.
    pub fn dynamo_settings(&self) -> DynamoSettings {
        let attempt_timeout = self.dynamodb_attempt_timeout.min(self.commit_timeout);
        DynamoSettings {
            table: self.table.clone(),
            endpoint_url: self.endpoint_url.clone(),
            create_table: self.create_table,
            max_in_flight: self.dynamodb_max_in_flight as usize,
            commits_per_route: self.dynamodb_commits_per_route as usize,
            connect_timeout: self.dynamodb_connect_timeout.min(attempt_timeout),
            attempt_timeout,
            operation_timeout: self.commit_timeout,
            max_attempts: self.dynamodb_max_attempts,
            idempotency_retention: self.idempotency_retention,
        }
    }

    /// The per-client limits of this instance.
    pub fn client_limits(&self) -> ClientLimits {
        ClientLimits {
            rates: self.client_rate_limit.map(ClientRates::new),
            keys: (self.client_max_idempotency_keys > 0).then(|| {
                KeyQuota::new(self.client_max_idempotency_keys, self.idempotency_retention)
            }),
        }
    }

    pub fn ledger_settings(&self) -> LedgerSettings {
        LedgerSettings {
            group_commit: self.group_commit,
            max_batch: self.max_batch as usize,
            max_pending: self.max_pending as usize,
            commit_timeout: self.commit_timeout,
            idempotency_retention: self.idempotency_retention,
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
        assert_eq!(
            config.idempotency_retention,
            Duration::from_secs(24 * 60 * 60)
        );
        assert_eq!(config.table, "flight-transactions");
        assert!(!config.create_table);
        assert_eq!(config.endpoint_url, None);
        let dynamo = config.dynamo_settings();
        assert_eq!(dynamo.operation_timeout, config.commit_timeout);
        assert!(dynamo.attempt_timeout <= dynamo.operation_timeout);
    }

    #[test]
    fn dynamodb_settings_are_checked() {
        let valid = |args: &[&str]| {
            let mut all = vec!["x", "--store", "dynamodb"];
            all.extend_from_slice(args);
            Config::try_parse_from(all)
                .map(|c| c.validate().is_ok())
                .unwrap_or(false)
        };
        assert!(valid(&["--table", "counts.v2", "--create-table"]));
        assert!(valid(&["--endpoint-url", "http://127.0.0.1:4567"]));
        assert!(!valid(&["--table", "ab"]));
        assert!(!valid(&["--table", "bad/name"]));
        assert!(!valid(&["--endpoint-url", "127.0.0.1:4567"]));
        assert!(!valid(&["--dynamodb-max-in-flight", "0"]));
        assert!(!valid(&["--dynamodb-max-attempts", "0"]));
        assert!(!valid(&["--dynamodb-attempt-timeout", "0s"]));
        // Per-attempt timeouts are capped by the commit timeout, whatever their own setting.
        let config = Config::parse_from(["x", "--commit-timeout", "300ms"]);
        assert!(config.validate().is_ok());
        let dynamo = config.dynamo_settings();
        assert_eq!(dynamo.attempt_timeout, Duration::from_millis(300));
        assert_eq!(dynamo.connect_timeout, Duration::from_millis(300));
        let config = Config::parse_from(["x", "--create-table"]);
        assert!(config.create_table);
    }

    #[test]
    fn the_api_key_subcommand_and_serving_flags_parse() {
        let cli = Cli::parse_from([
            "x",
            "api-key",
            "--client",
            "booking-engine",
            "--scope",
            "read",
        ]);
        match cli.command {
            Some(Command::ApiKey(args)) => {
                assert_eq!(args.client.as_str(), "booking-engine");
                assert_eq!(args.scope, Scope::Read);
            }
            None => panic!("no subcommand"),
        }
        assert!(
            Cli::try_parse_from(["x", "api-key", "--client", "Bad_Name", "--scope", "read"])
                .is_err()
        );
        assert!(
            Cli::try_parse_from(["x", "api-key", "--client", "a", "--scope", "admin"]).is_err()
        );
        assert!(Cli::try_parse_from(["x", "api-key", "--scope", "write"]).is_err());
        let cli = Cli::parse_from(["x", "--api-keys-file", "/keys", "--public-reads"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.config.api_keys_file, Some(PathBuf::from("/keys")));
        assert!(cli.config.public_reads);
        assert!(cli.config.validate().is_ok());
        let config = Config::parse_from(["x", "--public-reads"]);
        assert!(config.validate().is_err(), "public reads without keys");
    }

    #[test]
    fn client_limits_parse_and_default_to_a_key_cap_only() {
        let config = Config::parse_from(["x"]);
        assert_eq!(config.client_rate_limit, None);
        assert_eq!(config.client_max_idempotency_keys, 100_000);
        let limits = config.client_limits();
        assert!(limits.rates.is_none());
        assert_eq!(limits.keys.map(|k| k.max()), Some(100_000));
        let config = Config::parse_from([
            "x",
            "--client-rate-limit",
            "200/s,burst=400",
            "--client-max-idempotency-keys",
            "0",
        ]);
        assert_eq!(
            config.client_rate_limit.map(|r| r.to_string()).as_deref(),
            Some("200/s,burst=400")
        );
        let limits = config.client_limits();
        assert_eq!(limits.rates.map(|r| r.limit().burst()), Some(400));
        assert!(limits.keys.is_none(), "0 turns the cap off");
        let err = Config::try_parse_from(["x", "--client-rate-limit", "200/h"])
            .expect_err("unknown period")
            .to_string();
        assert!(
            err.contains("--client-rate-limit") && err.contains("e.g. 200/s"),
            "{err}"
        );
        assert!(Config::try_parse_from(["x", "--client-max-idempotency-keys", "-1"]).is_err());
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
        for flag in ["--idle-timeout", "--request-timeout"] {
            for (value, commit, ok) in [
                ("500ms", "100ms", false),
                ("5s", "5s", false),
                ("10s", "30s", false),
                ("6s", "5s", true),
            ] {
                let config = Config::parse_from(["x", flag, value, "--commit-timeout", commit]);
                assert_eq!(config.validate().is_ok(), ok, "{flag} {value} {commit}");
            }
        }
        for (retention, ok) in [
            ("0s", false),
            ("500ms", false),
            ("1s", true),
            ("366d", false),
        ] {
            let config = Config::parse_from(["x", "--idempotency-retention", retention]);
            assert_eq!(config.validate().is_ok(), ok, "{retention}");
        }
    }
}
