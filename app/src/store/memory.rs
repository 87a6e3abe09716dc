//! A store that keeps counts in memory only: for tests and throwaway runs. Counts (and
//! idempotency keys) are lost when the process exits.
//!
//! It keeps the embedded store's rows in plain maps and commits, reads and sweeps through the
//! same rules (`store::local::rules`), so that both local stores count alike: a rule changed
//! there changes here.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Mutex,
};

use rustc_hash::FxHashMap as HashMap;

use super::{
    BatchStore, RouteOutcome, RouteWrite, StoreBase, StoreError,
    local::{
        memtable::Overlay,
        record::BatchRecord,
        rows::{KeyRow, Periods, RouteRow, Tables, TablesMut, UpkeepTables},
        rules::{housekeeping, read_range, write_batch},
    },
};
use crate::{
    calendar::{Day, Month},
    route::Route,
};

/// The tables, as maps: canonical route → row, key id → record, the expiry index, and per
/// period (first, as in the database, so that old periods are one range) route → count.
#[derive(Default)]
struct State {
    routes: HashMap<Box<str>, RouteRow>,
    keys: HashMap<Box<str>, KeyRow>,
    expiry: BTreeSet<(u64, Box<str>)>,
    daily: BTreeMap<i32, HashMap<Box<str>, u64>>,
    monthly: BTreeMap<i32, HashMap<Box<str>, u64>>,
}

impl State {
    fn history_map(&self, periods: Periods) -> &BTreeMap<i32, HashMap<Box<str>, u64>> {
        match periods {
            Periods::Days => &self.daily,
            Periods::Months => &self.monthly,
        }
    }

    fn history_map_mut(&mut self, periods: Periods) -> &mut BTreeMap<i32, HashMap<Box<str>, u64>> {
        match periods {
            Periods::Days => &mut self.daily,
            Periods::Months => &mut self.monthly,
        }
    }
}

impl Tables for State {
    fn row(&self, route: &str) -> Result<RouteRow, StoreError> {
        Ok(self.routes.get(route).copied().unwrap_or_default())
    }

    fn key(&self, id: &str) -> Result<Option<KeyRow>, StoreError> {
        Ok(self.keys.get(id).cloned())
    }

    fn history(&self, periods: Periods, period: i32, route: &str) -> Result<u64, StoreError> {
        Ok(self
            .history_map(periods)
            .get(&period)
            .and_then(|routes| routes.get(route))
            .copied()
            .unwrap_or(0))
    }
}

impl TablesMut for State {
    fn set_row(&mut self, route: &str, row: RouteRow) -> Result<(), StoreError> {
        self.routes.insert(route.into(), row);
        Ok(())
    }

    fn set_key(&mut self, id: &str, key: KeyRow) -> Result<(), StoreError> {
        self.expiry.insert((key.expires_at, id.into()));
        self.keys.insert(id.into(), key);
        Ok(())
    }

    fn remove_expiry(&mut self, expires_at: u64, id: &str) -> Result<(), StoreError> {
        self.expiry.remove(&(expires_at, id.into()));
        Ok(())
    }

    fn set_history(
        &mut self,
        periods: Periods,
        period: i32,
        route: &str,
        n: u64,
    ) -> Result<(), StoreError> {
        self.history_map_mut(periods)
            .entry(period)
            .or_default()
            .insert(route.into(), n);
        Ok(())
    }
}

impl UpkeepTables for State {
    fn expired_keys(&self, now: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        Ok(self
            .expiry
            .iter()
            .take_while(|(expires_at, _)| *expires_at <= now)
            .take(limit)
            .map(|(expires_at, id)| (*expires_at, id.to_string()))
            .collect())
    }

    fn remove_key(&mut self, expires_at: u64, id: &str) -> Result<(), StoreError> {
        self.expiry.remove(&(expires_at, id.into()));
        self.keys.remove(id);
        Ok(())
    }

    fn history_before(
        &self,
        periods: Periods,
        first: i32,
        limit: usize,
    ) -> Result<Vec<(i32, String)>, StoreError> {
        let mut old = Vec::new();
        for (period, routes) in self.history_map(periods).range(..first) {
            // Sorted like the database's (period, route) keys, so that a limit takes the same.
            let mut names: Vec<&str> = routes.keys().map(|route| &**route).collect();
            names.sort_unstable();
            old.extend(names.into_iter().map(|route| (*period, route.to_owned())));
            if old.len() >= limit {
                break;
            }
        }
        old.truncate(limit);
        Ok(old)
    }

    fn remove_history(
        &mut self,
        periods: Periods,
        period: i32,
        route: &str,
    ) -> Result<(), StoreError> {
        let map = self.history_map_mut(periods);
        if let Some(routes) = map.get_mut(&period) {
            routes.remove(route);
            if routes.is_empty() {
                map.remove(&period);
            }
        }
        Ok(())
    }
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
        // A panic while holding the lock cannot leave a half-applied batch (a batch is applied
        // to an overlay first, and written to the maps only once it all fits), so a poisoned
        // lock is still consistent.
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
        Ok(self.lock().row(route.as_str())?.total)
    }

    async fn get_many(&self, routes: &[Route]) -> Result<Vec<u64>, StoreError> {
        let state = self.lock();
        routes
            .iter()
            .map(|route| Ok(state.row(route.as_str())?.total))
            .collect()
    }

    async fn daily(&self, route: Route, from: Day, to: Day) -> Result<Vec<u64>, StoreError> {
        read_range(
            &*self.lock(),
            Periods::Days,
            route,
            from.number(),
            to.number(),
        )
    }

    async fn monthly(&self, route: Route, from: Month, to: Month) -> Result<Vec<u64>, StoreError> {
        read_range(
            &*self.lock(),
            Periods::Months,
            route,
            from.number(),
            to.number(),
        )
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn housekeeping(&self, now: u64, today: Day, limit: usize) -> Result<usize, StoreError> {
        housekeeping(&mut *self.lock(), now, today, limit)
    }
}

#[async_trait::async_trait]
impl BatchStore for MemoryStore {
    async fn commit(&self, batch: &[RouteWrite]) -> Result<Vec<RouteOutcome>, StoreError> {
        let record = BatchRecord::of(batch);
        let mut state = self.lock();
        // Applied to an overlay first: a batch that fails (an overflow) changes nothing.
        let (outcomes, writes) = {
            let mut overlay = Overlay::new(&*state);
            let outcomes = write_batch(&mut overlay, &record)?;
            (outcomes, overlay.writes)
        };
        writes.flush_into(&mut *state)?;
        Ok(outcomes)
    }
}

/// Snapshots of the memory store.
#[async_trait::async_trait]
impl crate::store::SnapshotStore for MemoryStore {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::{IdempotencyKey, KeyedIncrement, KeyedOutcome};

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

    /// Upkeep goes through the shared rules: days that left the window are deleted, and count
    /// in the limit like keys.
    #[tokio::test]
    async fn days_out_of_the_window_are_deleted() {
        let store = MemoryStore::new();
        let route = Route::parse("AR1").expect("route");
        let old = Day::parse("2026-01-01").expect("day");
        for day in [old, today()] {
            store
                .commit(&[RouteWrite::keyless(route, 2, day)])
                .await
                .expect("ok");
        }
        assert_eq!(store.daily(route, old, old).await.ok(), Some(vec![2]));
        assert_eq!(store.housekeeping(0, today(), 10).await.ok(), Some(1));
        assert_eq!(store.daily(route, old, old).await.ok(), Some(vec![0]));
        assert_eq!(
            store.daily(route, today(), today()).await.ok(),
            Some(vec![2])
        );
        assert_eq!(store.get(route).await.ok(), Some(4));
    }
}
