//! Who may call the API and how much each client may ask of one instance.

use std::{path::PathBuf, time::Duration};

use clap::Args;

use super::ConfigError;
use crate::limits::{ClientLimits, ClientRates, KeyQuota, RateLimit};

#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
#[command(next_help_heading = "Authentication")]
pub struct AuthConfig {
    /// File of API keys, one `<client> <scope> <sha256-hex-of-key>` per line (make keys with
    /// the api-key subcommand). With it, recording needs a write key and reading a read or
    /// write key, sent as `Authorization: Bearer <key>`; the file is re-read when it changes.
    /// Without it, any client may read and write.
    #[arg(long, env = "FLIGHT_COUNTER_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,

    /// With --api-keys-file, let anyone read counts without a key (recording still needs one).
    #[arg(long, env = "FLIGHT_COUNTER_PUBLIC_READS")]
    pub public_reads: bool,
}

impl AuthConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.public_reads && self.api_keys_file.is_none() {
            return Err(ConfigError::PublicReadsWithoutKeys);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Per-client limits")]
pub struct LimitsConfig {
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
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            client_rate_limit: None,
            client_max_idempotency_keys: 100_000,
        }
    }
}

impl LimitsConfig {
    /// The per-client limits of this instance; a key counts against its client's quota for as
    /// long as it is retained.
    pub fn client_limits(&self, idempotency_retention: Duration) -> ClientLimits {
        ClientLimits {
            rates: self.client_rate_limit.map(ClientRates::new),
            keys: (self.client_max_idempotency_keys > 0)
                .then(|| KeyQuota::new(self.client_max_idempotency_keys, idempotency_retention)),
        }
    }
}
