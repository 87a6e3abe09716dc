//! Where the process is in its life (starting, serving, draining) and what readiness answers.

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
}

impl Lifecycle {
    pub fn new(store: Arc<StoreHealth>) -> Self {
        Self {
            phase: AtomicU8::new(Phase::Starting as u8),
            store,
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

    /// Ready means: serving, not draining, and the store took its last commit or probe.
    pub fn readiness(&self) -> Result<(), NotReady> {
        match self.phase() {
            Phase::Starting => Err(NotReady::Starting),
            Phase::Draining => Err(NotReady::Draining),
            Phase::Serving if !self.store.is_healthy() => Err(NotReady::StoreUnavailable),
            Phase::Serving => Ok(()),
        }
    }
}
