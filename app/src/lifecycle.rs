//! Where the process is in its life (starting, serving, draining) and what readiness answers.
//!
//! Readiness answers one question for the load balancer: should this pod get traffic rather
//! than another one? So it reports only what differs between pods:
//!
//! - starting and draining, always;
//! - the store's health only when the store is local to the process (the embedded file, or
//!   memory): a pod whose disk or file fails is worse than its peers, and taking it out is right.
//!
//! A shared store (DynamoDB) fails for every pod at once. Were readiness to follow it, every
//! pod would turn unready together, the load balancer's targets and the Service's endpoints
//! would empty out, and clients would get refused connections or resets instead of the
//! service's JSON `503` with `Retry-After`: a dependency failure turned into a total outage,
//! which also lasts longer than the dependency's (the health checks have to pass again before
//! traffic returns). So on DynamoDB the pods stay ready, every request that needs the store is
//! answered `503 store_unavailable`, and the failure shows in the metrics
//! (`flight_counter_store_commits_total{outcome="error"}`,
//! `flight_counter_dynamodb_calls_total{outcome="error"}`, the `503`s of
//! `flight_counter_http_requests_total`), where alerts watch it.

use std::sync::{
    Arc,
    atomic::{AtomicU8, Ordering},
};

use crate::ledger::StoreHealth;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Serving = 1,
    Draining = 2,
}

/// Why the instance is not ready, as told by `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    Starting,
    Draining,
    StoreUnavailable,
}

impl NotReady {
    /// Every reason, for the OpenAPI document's enum.
    pub const ALL: [NotReady; 3] = [
        NotReady::Starting,
        NotReady::Draining,
        NotReady::StoreUnavailable,
    ];

    pub fn code(self) -> &'static str {
        match self {
            NotReady::Starting => "starting",
            NotReady::Draining => "draining",
            NotReady::StoreUnavailable => "store_unavailable",
        }
    }
}

pub struct Lifecycle {
    phase: AtomicU8,
    store: Arc<StoreHealth>,
    /// Whether readiness follows the store's health: true for a store local to the process,
    /// false for one shared by every pod (see the module documentation).
    store_gates_readiness: bool,
}

impl Lifecycle {
    /// `shared_store`: the store is shared by every instance (DynamoDB), so its health stays
    /// out of readiness.
    pub fn new(store: Arc<StoreHealth>, shared_store: bool) -> Self {
        Self {
            phase: AtomicU8::new(Phase::Starting as u8),
            store,
            store_gates_readiness: !shared_store,
        }
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Serving,
            _ => Phase::Draining,
        }
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// Ready means: serving, not draining, and, for a store local to the process, the store
    /// took its last commit or probe.
    pub fn readiness(&self) -> Result<(), NotReady> {
        match self.phase() {
            Phase::Starting => Err(NotReady::Starting),
            Phase::Draining => Err(NotReady::Draining),
            Phase::Serving if self.store_gates_readiness && !self.store.is_healthy() => {
                Err(NotReady::StoreUnavailable)
            }
            Phase::Serving => Ok(()),
        }
    }
}
