//! The service's background tasks, each a round on a timer under the [`Supervisor`]:
//! - readiness: asks the store whether it can commit;
//! - key sweep: deletes expired idempotency keys and days and months out of the window;
//! - keys file: reads `--api-keys-file` again and applies what changed;
//! - metrics upkeep: lets the Prometheus recorder age its histograms.

use std::{sync::Arc, time::Duration};

use metrics_exporter_prometheus::PrometheusHandle;

use super::Supervisor;
use crate::telemetry::logging::error_chain;
use crate::{
    auth::{AuthMode, RELOAD_INTERVAL},
    config::Config,
    ledger::Ledger,
};

/// How often readiness asks the store whether it can commit.
const READINESS_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Longest time between two sweeps of expired idempotency keys (a short retention window
/// sweeps more often: every half window, but not more than ten times a second).
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

pub(super) fn start(
    ledger: &Arc<Ledger>,
    auth: &AuthMode,
    metrics: &PrometheusHandle,
    config: &Config,
) -> Supervisor {
    let mut supervisor = Supervisor::new();
    // The first round of each runs at once; readiness is probed by `run_until_stopped` itself
    // before it serves.
    supervisor.every("readiness", READINESS_PROBE_INTERVAL, {
        let ledger = Arc::clone(ledger);
        move || {
            let ledger = Arc::clone(&ledger);
            async move {
                ledger.probe().await;
            }
        }
    });
    let sweep_every = (config.ledger.idempotency_retention / 2)
        .clamp(Duration::from_millis(100), MAX_SWEEP_INTERVAL);
    supervisor.every("key-sweep", sweep_every, {
        let ledger = Arc::clone(ledger);
        move || {
            let ledger = Arc::clone(&ledger);
            async move {
                match ledger.sweep_expired_keys().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(keys = n, "deleted expired idempotency keys"),
                    Err(err) => {
                        tracing::warn!(error = %error_chain(&err), "cannot delete expired idempotency keys")
                    }
                }
            }
        }
    });
    // Keys rotate without a restart: the file is read again while the service runs.
    if let AuthMode::ApiKeys { keys, .. } = auth {
        keys.publish_errors();
        supervisor.every("api-keys-reload", RELOAD_INTERVAL, {
            let keys = Arc::clone(keys);
            move || Arc::clone(&keys).reload_off_thread()
        });
    }
    supervisor.every("metrics-upkeep", METRICS_UPKEEP_INTERVAL, {
        let metrics = metrics.clone();
        move || {
            metrics.run_upkeep();
            async {}
        }
    });
    supervisor
}
