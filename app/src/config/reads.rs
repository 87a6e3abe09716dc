//! What the reads beyond one route cost: how often the rankings are rebuilt.

use std::time::Duration;

use clap::Args;

use super::{ConfigError, parse_duration};

#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(next_help_heading = "Rankings")]
pub struct ReadsConfig {
    /// How long the rankings of GET /top-routes (and, on DynamoDB, the names GET /transactions
    /// lists) are served from memory before the next pass over the whole store: at most one
    /// pass per interval per instance (on DynamoDB, a consistent Scan of the table).
    #[arg(long, env = "FLIGHT_COUNTER_RANKINGS_REFRESH", default_value = "60s", value_parser = parse_duration)]
    pub rankings_refresh: Duration,
}

impl Default for ReadsConfig {
    fn default() -> Self {
        Self {
            rankings_refresh: Duration::from_secs(60),
        }
    }
}

impl ReadsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.rankings_refresh < Duration::from_secs(1) {
            return Err(ConfigError::UnderASecond {
                flag: "--rankings-refresh",
            });
        }
        Ok(())
    }
}
