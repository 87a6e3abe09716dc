//! A store that keeps counts in memory only: for tests and throwaway runs. Counts are lost when
//! the process exits.

use std::sync::Mutex;

use rustc_hash::FxHashMap as HashMap;

use super::{CommitMode, Increment, Store, StoreError};
use crate::route::Route;

#[derive(Default)]
pub struct MemoryStore {
    counts: Mutex<HashMap<Route, u64>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Route, u64>> {
        // A panic while holding the lock cannot leave a half-applied batch (totals are computed
        // before anything is written), so a poisoned lock is still consistent.
        self.counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn commit_mode(&self) -> CommitMode {
        CommitMode::WholeBatch
    }

    async fn apply(&self, batch: &[Increment]) -> Result<Vec<u64>, StoreError> {
        let mut counts = self.lock();
        let totals = batch
            .iter()
            .map(|inc| {
                let current = counts.get(&inc.route).copied().unwrap_or(0);
                current
                    .checked_add(inc.delta)
                    .ok_or(StoreError::Overflow(inc.route))
            })
            .collect::<Result<Vec<u64>, StoreError>>()?;
        for (inc, total) in batch.iter().zip(&totals) {
            counts.insert(inc.route, *total);
        }
        Ok(totals)
    }

    async fn get(&self, route: Route) -> Result<u64, StoreError> {
        Ok(self.lock().get(&route).copied().unwrap_or(0))
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
