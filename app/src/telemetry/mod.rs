//! Logs, metrics and per-request telemetry: how the service tells operators what it does.
//! Requests are labelled with the route table's templates (`api::routes`), never raw paths.

pub mod logging;
pub mod metrics;
pub mod request;
