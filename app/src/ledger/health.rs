//! Whether the store takes commits: readiness reads it.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the last commit (or readiness probe) succeeded. A throttled commit says nothing
/// either way: the store is working, just asking for less.
#[derive(Debug)]
pub struct StoreHealth {
    healthy: AtomicBool,
}

impl StoreHealth {
    pub(super) fn new() -> Self {
        Self {
            healthy: AtomicBool::new(false),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn set(&self, healthy: bool) {
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            if healthy {
                tracing::info!("store is accepting commits");
            } else {
                tracing::warn!("store is failing; readiness is down until it recovers");
            }
        }
    }
}
