//! A store that keeps counts in memory only: for tests and throwaway runs. Counts (and
//! idempotency keys) are lost when the process exits.

use std::sync::Mutex;

use rustc_hash::FxHashMap as HashMap;

use super::{CommitMode, Increment, Store, StoreError};
use crate::{
    idempotency::{IdempotencyKey, KeyedIncrement, KeyedOutcome},
    route::Route,
};

/// A stored key: the outcome of its first POST, and when it expires (epoch seconds).
#[derive(Debug, Clone, Copy)]
struct KeyRecord {
    route: Route,
    count: u64,
    expires_at: u64,
}

#[derive(Default)]
struct State {
    counts: HashMap<Route, u64>,
    keys: HashMap<IdempotencyKey, KeyRecord>,
}

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied batch (everything is
        // computed before anything is written), so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many key records are stored, expired or not (for tests of the sweep).
    pub fn key_records(&self) -> usize {
        self.lock().keys.len()
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
        let mut state = self.lock();
        let totals = batch
            .iter()
            .map(|inc| {
                let current = state.counts.get(&inc.route).copied().unwrap_or(0);
                current
                    .checked_add(inc.delta)
                    .ok_or(StoreError::Overflow(inc.route))
            })
            .collect::<Result<Vec<u64>, StoreError>>()?;
        for (inc, total) in batch.iter().zip(&totals) {
            state.counts.insert(inc.route, *total);
        }
        Ok(totals)
    }

    fn batches_keys(&self) -> bool {
        true
    }

    async fn apply_with_keys(
        &self,
        batch: &[Increment],
        keyed: &[KeyedIncrement],
    ) -> Result<(Vec<u64>, Vec<KeyedOutcome>), StoreError> {
        let mut state = self.lock();
        // Work on copies of what changes, and write them back only if everything fits.
        let mut counts: HashMap<Route, u64> = HashMap::default();
        let current = |counts: &HashMap<Route, u64>, state: &State, route: Route| {
            counts
                .get(&route)
                .or_else(|| state.counts.get(&route))
                .copied()
                .unwrap_or(0)
        };
        let mut totals = Vec::with_capacity(batch.len());
        for inc in batch {
            let total = current(&counts, &state, inc.route)
                .checked_add(inc.delta)
                .ok_or(StoreError::Overflow(inc.route))?;
            counts.insert(inc.route, total);
            totals.push(total);
        }
        let mut keys: HashMap<IdempotencyKey, KeyRecord> = HashMap::default();
        let mut outcomes = Vec::with_capacity(keyed.len());
        for k in keyed {
            let stored = keys
                .get(&k.key)
                .or_else(|| state.keys.get(&k.key))
                .filter(|record| record.expires_at > k.now);
            if let Some(record) = stored {
                outcomes.push(KeyedOutcome::replay(record.route, record.count));
                continue;
            }
            let total = current(&counts, &state, k.route)
                .checked_add(1)
                .ok_or(StoreError::Overflow(k.route))?;
            counts.insert(k.route, total);
            keys.insert(
                k.key.clone(),
                KeyRecord {
                    route: k.route,
                    count: total,
                    expires_at: k.expires_at,
                },
            );
            outcomes.push(KeyedOutcome::recorded(k.route, total));
        }
        state.counts.extend(counts);
        state.keys.extend(keys);
        Ok((totals, outcomes))
    }

    async fn get(&self, route: Route) -> Result<u64, StoreError> {
        Ok(self.lock().counts.get(&route).copied().unwrap_or(0))
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn sweep_expired_keys(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        let mut state = self.lock();
        let expired: Vec<IdempotencyKey> = state
            .keys
            .iter()
            .filter(|(_, record)| record.expires_at <= now)
            .map(|(key, _)| key.clone())
            .take(limit)
            .collect();
        for key in &expired {
            state.keys.remove(key);
        }
        Ok(expired.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(key: &str, route: &str, now: u64) -> KeyedIncrement {
        KeyedIncrement {
            key: IdempotencyKey::parse(key.as_bytes()).expect("key"),
            route: Route::parse(route).expect("route"),
            now,
            expires_at: now + 10,
        }
    }

    #[tokio::test]
    async fn a_key_is_counted_once_until_it_expires_and_is_swept() {
        let store = MemoryStore::new();
        let route = Route::parse("AR1").expect("route");
        let first = store
            .apply_keyed(&keyed("k1", "AR1", 100))
            .await
            .expect("ok");
        assert_eq!(first, KeyedOutcome::recorded(route, 1));
        let again = store
            .apply_keyed(&keyed("k1", "AR1", 105))
            .await
            .expect("ok");
        assert_eq!(again, KeyedOutcome::replay(route, 1));
        // Same key, other route: the stored outcome comes back, nothing is recorded.
        let other = store
            .apply_keyed(&keyed("k1", "LA1", 105))
            .await
            .expect("ok");
        assert_eq!(other, KeyedOutcome::replay(route, 1));
        assert_eq!(
            store.get(Route::parse("LA1").expect("route")).await.ok(),
            Some(0)
        );
        // Expired: a new transaction.
        let later = store
            .apply_keyed(&keyed("k1", "AR1", 110))
            .await
            .expect("ok");
        assert_eq!(later, KeyedOutcome::recorded(route, 2));
        assert_eq!(store.sweep_expired_keys(119, 10).await.ok(), Some(0));
        assert_eq!(store.sweep_expired_keys(120, 10).await.ok(), Some(1));
        assert_eq!(store.key_records(), 0);
    }

    #[tokio::test]
    async fn a_key_twice_in_one_batch_is_counted_once() {
        let store = MemoryStore::new();
        let route = Route::parse("AR1").expect("route");
        let (totals, outcomes) = store
            .apply_with_keys(
                &[Increment { route, delta: 2 }],
                &[
                    keyed("a", "AR1", 1),
                    keyed("a", "AR1", 1),
                    keyed("b", "AR1", 1),
                ],
            )
            .await
            .expect("ok");
        assert_eq!(totals, vec![2]);
        assert_eq!(
            outcomes,
            vec![
                KeyedOutcome::recorded(route, 3),
                KeyedOutcome::replay(route, 3),
                KeyedOutcome::recorded(route, 4)
            ]
        );
        assert_eq!(store.get(route).await.ok(), Some(4));
    }
}
