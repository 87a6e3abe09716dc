//! How transactions are committed: group commit, batch and queue bounds, the one deadline of
//! every write, and how long an idempotency key is honoured.

use std::time::Duration;

use clap::{ArgAction, Args};

use super::{ConfigError, parse_duration};
use crate::ledger::LedgerSettings;

/// Longest idempotency retention accepted.
const MAX_IDEMPOTENCY_RETENTION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Commits")]
pub struct LedgerConfig {
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
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            group_commit: true,
            max_batch: 4096,
            max_pending: 65_536,
            commit_timeout: Duration::from_secs(8),
            idempotency_retention: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl LedgerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.commit_timeout.is_zero() {
            return Err(ConfigError::Zero {
                flag: "--commit-timeout",
            });
        }
        if self.max_pending < self.max_batch {
            return Err(ConfigError::PendingBelowBatch {
                pending: self.max_pending,
                batch: self.max_batch,
            });
        }
        if self.idempotency_retention < Duration::from_secs(1)
            || self.idempotency_retention > MAX_IDEMPOTENCY_RETENTION
        {
            return Err(ConfigError::Retention(self.idempotency_retention));
        }
        Ok(())
    }

    pub fn settings(&self) -> LedgerSettings {
        LedgerSettings {
            group_commit: self.group_commit,
            max_batch: self.max_batch as usize,
            max_pending: self.max_pending as usize,
            commit_timeout: self.commit_timeout,
            idempotency_retention: self.idempotency_retention,
        }
    }
}
