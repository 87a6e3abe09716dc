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
    BatchStore, ImportMark, RouteOutcome, RouteWrite, StoreBase, StoreError,
    local::{
        catalog::list_routes,
        memtable::Overlay,
        record::BatchRecord,
        rows::{KeyRow, Periods, RouteRow, Tables, TablesMut, UpkeepTables},
        rules::{housekeeping, read_range, write_batch},
    },
};
use crate::{
    calendar::{Day, Month},
    clock::{SharedClock, SystemClock},
    route::{Airline, Route},
};

/// The tables, as maps: canonical route → row, key id → record, the expiry index, and per
/// period (first, as in the database, so that old periods are one range) route → count.
#[derive(Default)]
struct State {
    routes: HashMap<Route, RouteRow>,
    keys: HashMap<Box<str>, KeyRow>,
    expiry: BTreeSet<(u64, Box<str>)>,
    daily: BTreeMap<i32, HashMap<Box<str>, u64>>,
    monthly: BTreeMap<i32, HashMap<Box<str>, u64>>,
    /// Snapshot id → how far its import came (see [`crate::store::ImportMark`]).
    imports: HashMap<Box<str>, ImportMark>,
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
    fn row(&self, route: Route) -> Result<RouteRow, StoreError> {
        Ok(self.routes.get(&route).copied().unwrap_or_default())
    }

    fn key(&self, id: &str) -> Result<Option<KeyRow>, StoreError> {
        Ok(self.keys.get(id).cloned())
    }

    fn history(&self, periods: Periods, period: i32, route: Route) -> Result<u64, StoreError> {
        Ok(self
            .history_map(periods)
            .get(&period)
            .and_then(|routes| routes.get(route.as_str()))
            .copied()
            .unwrap_or(0))
    }
}

impl TablesMut for State {
    fn set_row(&mut self, route: Route, row: RouteRow) -> Result<(), StoreError> {
        self.routes.insert(route, row);
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
        route: Route,
        n: u64,
    ) -> Result<(), StoreError> {
        self.history_map_mut(periods)
            .entry(period)
            .or_default()
            .insert(route.as_str().into(), n);
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

pub struct MemoryStore {
    state: Mutex<State>,
    /// What time it is for an import (which stored keys are unexpired); commits are given it.
    clock: SharedClock,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_clock(SystemClock::shared())
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_clock(clock: SharedClock) -> Self {
        Self {
            state: Mutex::default(),
            clock,
        }
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
        Ok(self.lock().row(route)?.total)
    }

    async fn get_many(&self, routes: &[Route]) -> Result<Vec<u64>, StoreError> {
        let state = self.lock();
        routes
            .iter()
            .map(|route| Ok(state.row(*route)?.total))
            .collect()
    }

    async fn list_routes(
        &self,
        after: Option<Route>,
        airline: Option<Airline>,
        limit: usize,
    ) -> Result<Option<Vec<(Route, u64)>>, StoreError> {
        list_routes(&*self.lock(), after, airline, limit).map(Some)
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

mod snapshot;
#[cfg(test)]
mod tests;
