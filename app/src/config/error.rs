//! Why a configuration is refused: one variant per rule, each naming the flags involved, so
//! `main` prints one line that says which setting and why, and tests match on the rule.

use std::{net::SocketAddr, time::Duration};

use humantime::format_duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{flag} must be greater than zero")]
    Zero { flag: &'static str },
    #[error("{flag} must be at least one second")]
    UnderASecond { flag: &'static str },
    #[error(
        "--metrics-bind ({0}) must differ from --bind; leave it unset to serve /metrics on --bind"
    )]
    MetricsOnApiAddress(SocketAddr),
    /// A connection deadline that would cut off a request still waiting for its commit.
    #[error(
        "{flag} ({}) must be at least 1s and longer than --commit-timeout ({})",
        format_duration(*.value),
        format_duration(*.commit_timeout)
    )]
    DeadlineBeforeCommit {
        flag: &'static str,
        value: Duration,
        commit_timeout: Duration,
    },
    #[error("--max-pending ({pending}) must be at least --max-batch ({batch})")]
    PendingBelowBatch { pending: u32, batch: u32 },
    #[error("--idempotency-retention must be between 1s and 365d, not {}", format_duration(*.0))]
    Retention(Duration),
    #[error("--table {0:?} is not a DynamoDB table name (3 to 255 letters, digits, _ . -)")]
    TableName(String),
    #[error("--endpoint-url {0:?} must be an http:// or https:// URL")]
    EndpointUrl(String),
    #[error(transparent)]
    Cors(#[from] crate::api::cors::InvalidOrigin),
    #[error("--public-reads needs --api-keys-file (without keys, every read is public)")]
    PublicReadsWithoutKeys,
}
