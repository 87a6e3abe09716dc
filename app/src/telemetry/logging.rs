//! Log output: human-readable text for a terminal, one JSON object per line for production.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber. `filter` uses `RUST_LOG` syntax (e.g. `info`,
/// `flight_counter=debug,poem=warn`) and has already been validated.
pub fn init(format: LogFormat, filter: EnvFilter) {
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Text => registry.with(fmt::layer().with_target(false)).try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_span_list(false),
            )
            .try_init(),
    };
    // Only fails if a subscriber is already installed (tests building several apps).
    drop(result);
}
