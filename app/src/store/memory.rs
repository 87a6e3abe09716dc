//! A store that keeps counts in memory only: for tests and throwaway runs. Counts (and
//! idempotency keys) are lost when the process exits.

use std::sync::Mutex;

use rustc_hash::FxHashMap as HashMap;

use super::{BatchStore, RouteOutcome, RouteWrite, StoreBase, StoreError};
use crate::{
    calendar::{Day, Month},
    idempotency::{IdempotencyKey, KeyedOutcome},
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
    /// (route, day number) and (route, month number) → count.
    days: HashMap<(Route, i32), u64>,
    months: HashMap<(Route, i32), u64>,
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
impl StoreBase for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, route: Route) -> Result<u64, StoreError> {
        Ok(self.lock().counts.get(&route).copied().unwrap_or(0))
    }

    async fn get_many(&self, routes: &[Route]) -> Result<Vec<u64>, StoreError> {
        let state = self.lock();
        Ok(routes
            .iter()
            .map(|r| state.counts.get(r).copied().unwrap_or(0))
            .collect())
    }

    async fn daily(&self, route: Route, from: Day, to: Day) -> Result<Vec<u64>, StoreError> {
        let state = self.lock();
        Ok((from.number()..=to.number())
            .map(|day| state.days.get(&(route, day)).copied().unwrap_or(0))
            .collect())
    }

    async fn monthly(&self, route: Route, from: Month, to: Month) -> Result<Vec<u64>, StoreError> {
        let state = self.lock();
        Ok((from.number()..=to.number())
            .map(|month| state.months.get(&(route, month)).copied().unwrap_or(0))
            .collect())
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn housekeeping(&self, now: u64, today: Day, limit: usize) -> Result<usize, StoreError> {
        let mut state = self.lock();
        let first_day = today.window_start().number();
        let first_month = today.month().window_start().number();
        state.days.retain(|(_, day), _| *day >= first_day);
        state.months.retain(|(_, month), _| *month >= first_month);
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

#[async_trait::async_trait]
impl BatchStore for MemoryStore {
    async fn commit(&self, batch: &[RouteWrite]) -> Result<Vec<RouteOutcome>, StoreError> {
        let mut state = self.lock();
        // Work on copies of what changes, and write them back only if everything fits.
        let mut counts: HashMap<Route, u64> = HashMap::default();
        let mut keys: HashMap<IdempotencyKey, KeyRecord> = HashMap::default();
        let mut days: HashMap<(Route, i32), u64> = HashMap::default();
        let mut months: HashMap<(Route, i32), u64> = HashMap::default();
        let mut outcomes = Vec::with_capacity(batch.len());
        for write in batch {
            let current = counts
                .get(&write.route)
                .or_else(|| state.counts.get(&write.route))
                .copied()
                .unwrap_or(0);
            let keyless_total = current
                .checked_add(write.keyless)
                .ok_or(StoreError::Overflow(write.route))?;
            let mut total = keyless_total;
            let mut keyed = Vec::with_capacity(write.keyed.len());
            for k in &write.keyed {
                let stored = keys
                    .get(&k.key)
                    .or_else(|| state.keys.get(&k.key))
                    .filter(|record| record.expires_at > k.now);
                if let Some(record) = stored {
                    keyed.push(KeyedOutcome::replay(record.route, record.count));
                    continue;
                }
                total = total.checked_add(1).ok_or(StoreError::Overflow(k.route))?;
                keys.insert(
                    k.key.clone(),
                    KeyRecord {
                        route: k.route,
                        count: total,
                        expires_at: k.expires_at,
                    },
                );
                keyed.push(KeyedOutcome::recorded(k.route, total));
            }
            counts.insert(write.route, total);
            let added = total - current;
            if added > 0 {
                *days
                    .entry((write.route, write.day.number()))
                    .or_insert_with(|| {
                        state
                            .days
                            .get(&(write.route, write.day.number()))
                            .copied()
                            .unwrap_or(0)
                    }) += added;
                let month = write.day.month().number();
                *months.entry((write.route, month)).or_insert_with(|| {
                    state
                        .months
                        .get(&(write.route, month))
                        .copied()
                        .unwrap_or(0)
                }) += added;
            }
            outcomes.push(RouteOutcome {
                keyless_total,
                keyed,
            });
        }
        state.counts.extend(counts);
        state.keys.extend(keys);
        state.days.extend(days);
        state.months.extend(months);
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::KeyedIncrement;

    fn today() -> Day {
        Day::parse("2026-11-21").expect("day")
    }

    fn keyed(key: &str, route: &str, now: u64) -> KeyedIncrement {
        KeyedIncrement {
            key: IdempotencyKey::parse(key.as_bytes()).expect("key"),
            route: Route::parse(route).expect("route"),
            now,
            expires_at: now + 10,
        }
    }

    async fn one_keyed(store: &MemoryStore, k: KeyedIncrement) -> KeyedOutcome {
        let write = RouteWrite {
            route: k.route,
            keyless: 0,
            keyed: vec![k],
            day: today(),
        };
        let mut outcomes = store.commit(&[write]).await.expect("ok");
        outcomes.remove(0).keyed.remove(0)
    }

    #[tokio::test]
    async fn a_key_is_counted_once_until_it_expires_and_is_swept() {
        let store = MemoryStore::new();
        let route = Route::parse("AR1").expect("route");
        let first = one_keyed(&store, keyed("k1", "AR1", 100)).await;
        assert_eq!(first, KeyedOutcome::recorded(route, 1));
        let again = one_keyed(&store, keyed("k1", "AR1", 105)).await;
        assert_eq!(again, KeyedOutcome::replay(route, 1));
        // Same key, other route: the stored outcome comes back, nothing is recorded.
        let other = one_keyed(&store, keyed("k1", "LA1", 105)).await;
        assert_eq!(other, KeyedOutcome::replay(route, 1));
        assert_eq!(
            store.get(Route::parse("LA1").expect("route")).await.ok(),
            Some(0)
        );
        // Expired: a new transaction.
        let later = one_keyed(&store, keyed("k1", "AR1", 110)).await;
        assert_eq!(later, KeyedOutcome::recorded(route, 2));
        assert_eq!(store.housekeeping(119, today(), 10).await.ok(), Some(0));
        assert_eq!(store.housekeeping(120, today(), 10).await.ok(), Some(1));
        assert_eq!(store.key_records(), 0);
    }

    #[tokio::test]
    async fn a_key_twice_in_one_batch_is_counted_once() {
        let store = MemoryStore::new();
        let route = Route::parse("AR1").expect("route");
        let outcomes = store
            .commit(&[RouteWrite {
                route,
                keyless: 2,
                keyed: vec![
                    keyed("a", "AR1", 1),
                    keyed("a", "AR1", 1),
                    keyed("b", "AR1", 1),
                ],
                day: today(),
            }])
            .await
            .expect("ok");
        assert_eq!(
            outcomes,
            vec![RouteOutcome {
                keyless_total: 2,
                keyed: vec![
                    KeyedOutcome::recorded(route, 3),
                    KeyedOutcome::replay(route, 3),
                    KeyedOutcome::recorded(route, 4)
                ]
            }]
        );
        assert_eq!(store.get(route).await.ok(), Some(4));
    }

    #[tokio::test]
    async fn an_overflow_anywhere_in_the_batch_applies_nothing() {
        let store = MemoryStore::new();
        let (a, b) = (
            Route::parse("AR1").expect("route"),
            Route::parse("LA1").expect("route"),
        );
        store
            .commit(&[RouteWrite::keyless(b, u64::MAX, today())])
            .await
            .expect("ok");
        let failed = store
            .commit(&[
                RouteWrite::keyless(a, 5, today()),
                RouteWrite::keyless(b, 1, today()),
            ])
            .await;
        assert!(matches!(failed, Err(StoreError::Overflow(r)) if r == b));
        assert_eq!(store.get(a).await.ok(), Some(0));
        assert_eq!(store.get(b).await.ok(), Some(u64::MAX));
    }
}
