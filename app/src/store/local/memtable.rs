//! Writes held in memory in front of other tables. In the embedded store, a memtable holds
//! what the journal holds and the database does not yet: the rows, keys and history counts
//! written since the last flush, read in front of the database. In both local stores, an
//! [`Overlay`] keeps one batch's writes apart until the whole batch is known to fit.
//!
//! Commits write here (after their journal record is durable), not to the database, so a commit
//! costs no B-tree work. A checkpoint freezes the active memtable (a new one takes the commits
//! that follow) and flushes the frozen one to the database in one durable transaction, sorted,
//! so that many commits' changes to one page are written once. Reads look in the active
//! memtable, then the frozen one, then the database.
//!
//! Memory is bounded: once the active memtable holds [`Memtable::bytes`] past the cap the
//! settings give, commits wait for the flush under way and freeze it (see `embedded::file`).

use rustc_hash::FxHashMap;

use super::rows::{KeyRow, Periods, RouteRow, Tables, TablesMut};
use crate::{route::Route, store::StoreError};

/// Rows, keys and history counts written since the last freeze, by value (not by increment):
/// each entry is what the database is to hold once the memtable is flushed.
#[derive(Default, Debug, Clone)]
pub(in crate::store) struct Memtable {
    /// Keyed by the route itself (inline, `Copy`): a commit allocates nothing per route.
    routes: FxHashMap<Route, RouteRow>,
    keys: FxHashMap<Box<str>, KeyRow>,
    /// Expiry index entries of expired keys used again, to remove when flushing.
    expired: Vec<(u64, Box<str>)>,
    /// Per route: the earlier days' and months' counts written.
    history: FxHashMap<Route, Vec<(Periods, i32, u64)>>,
}

/// Memory a route's row costs in a memtable, about: its slot (the route inline and the row, 56
/// bytes, and a control byte) in a map that is between 7/16 and 7/8 full, so 65 to 130 bytes.
const ROUTE_ENTRY_BYTES: usize = 128;
/// Memory an idempotency key's record costs, its map's spare room, its two strings and the
/// allocator's own overhead included. Measured, not summed: a soak of keyed POSTs over a
/// million routes held 400-480 bytes of resident memory per entry.
const KEY_ENTRY_BYTES: usize = 512;
/// A route's list of earlier days' and months' counts: its slot, and a small list (a day and a
/// month, usually).
const HISTORY_ENTRY_BYTES: usize = 192;

impl Memtable {
    /// The memory it holds, about: what the cap on it bounds. Routes' rows are counted at their
    /// own size, a quarter of a key's, so that a memtable of rows is not flushed long before
    /// it fills its share of the cache: a checkpoint rewrites the B-tree leaves its rows land
    /// in, so the more rows one carries, the less each costs.
    pub fn bytes(&self) -> usize {
        self.routes.len() * ROUTE_ENTRY_BYTES
            + self.keys.len() * KEY_ENTRY_BYTES
            + self.history.len() * HISTORY_ENTRY_BYTES
    }

    /// The routes it holds a row of, in no order.
    pub fn route_names(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(Route::as_str)
    }

    /// The key ids it holds a record of, in no order.
    pub fn key_names(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(|id| &**id)
    }

    fn row(&self, route: Route) -> Option<RouteRow> {
        self.routes.get(&route).copied()
    }

    fn key(&self, id: &str) -> Option<&KeyRow> {
        self.keys.get(id)
    }

    fn history(&self, periods: Periods, period: i32, route: Route) -> Option<u64> {
        self.history.get(&route).and_then(|counts| {
            counts
                .iter()
                .find(|(p, n, _)| *p == periods && *n == period)
                .map(|(_, _, count)| *count)
        })
    }

    fn set_history(&mut self, periods: Periods, period: i32, route: Route, count: u64) {
        let counts = self.history.entry(route).or_default();
        match counts
            .iter_mut()
            .find(|(p, n, _)| *p == periods && *n == period)
        {
            Some(entry) => entry.2 = count,
            None => counts.push((periods, period, count)),
        }
    }

    /// Takes in the writes of a later batch.
    pub fn merge(&mut self, later: Memtable) {
        self.routes.extend(later.routes);
        self.keys.extend(later.keys);
        self.expired.extend(later.expired);
        for (route, counts) in later.history {
            for (periods, period, count) in counts {
                self.set_history(periods, period, route, count);
            }
        }
    }

    /// Writes everything it holds to other tables (the database's, in a flush; the memory
    /// store's, once a batch fits), in key order.
    pub fn flush_into(&self, tables: &mut impl TablesMut) -> Result<(), StoreError> {
        let mut routes: Vec<_> = self.routes.iter().collect();
        routes.sort_unstable_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        for (route, row) in routes {
            tables.set_row(*route, *row)?;
        }
        // Removals first: a key used again after it expired has its new entry written below.
        for (expires_at, id) in &self.expired {
            tables.remove_expiry(*expires_at, id)?;
        }
        let mut keys: Vec<_> = self.keys.iter().collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (id, key) in keys {
            tables.set_key(id, key.clone())?;
        }
        for (route, counts) in &self.history {
            for (periods, period, count) in counts {
                tables.set_history(*periods, *period, *route, *count)?;
            }
        }
        Ok(())
    }
}

/// Everything a read sees, newest first: the active memtable, the frozen one being flushed,
/// then the database.
pub(in crate::store) struct Layers<'a, D> {
    pub active: &'a Memtable,
    pub frozen: Option<&'a Memtable>,
    pub db: &'a D,
}

impl<D: Tables> Tables for Layers<'_, D> {
    fn row(&self, route: Route) -> Result<RouteRow, StoreError> {
        match self
            .active
            .row(route)
            .or_else(|| self.frozen.and_then(|m| m.row(route)))
        {
            Some(row) => Ok(row),
            None => self.db.row(route),
        }
    }

    fn key(&self, id: &str) -> Result<Option<KeyRow>, StoreError> {
        match self
            .active
            .key(id)
            .or_else(|| self.frozen.and_then(|m| m.key(id)))
        {
            Some(key) => Ok(Some(key.clone())),
            None => self.db.key(id),
        }
    }

    fn history(&self, periods: Periods, period: i32, route: Route) -> Result<u64, StoreError> {
        match self
            .active
            .history(periods, period, route)
            .or_else(|| self.frozen.and_then(|m| m.history(periods, period, route)))
        {
            Some(count) => Ok(count),
            None => self.db.history(periods, period, route),
        }
    }
}

/// One batch's writes, kept apart until its journal record is durable, over what it reads.
pub(in crate::store) struct Overlay<'a, T> {
    pub writes: Memtable,
    under: &'a T,
}

impl<'a, T: Tables> Overlay<'a, T> {
    pub fn new(under: &'a T) -> Self {
        Self {
            writes: Memtable::default(),
            under,
        }
    }
}

impl<T: Tables> Tables for Overlay<'_, T> {
    fn row(&self, route: Route) -> Result<RouteRow, StoreError> {
        match self.writes.row(route) {
            Some(row) => Ok(row),
            None => self.under.row(route),
        }
    }

    fn key(&self, id: &str) -> Result<Option<KeyRow>, StoreError> {
        match self.writes.key(id) {
            Some(key) => Ok(Some(key.clone())),
            None => self.under.key(id),
        }
    }

    fn history(&self, periods: Periods, period: i32, route: Route) -> Result<u64, StoreError> {
        match self.writes.history(periods, period, route) {
            Some(count) => Ok(count),
            None => self.under.history(periods, period, route),
        }
    }
}

impl<T: Tables> TablesMut for Overlay<'_, T> {
    fn set_row(&mut self, route: Route, row: RouteRow) -> Result<(), StoreError> {
        self.writes.routes.insert(route, row);
        Ok(())
    }

    fn set_key(&mut self, id: &str, key: KeyRow) -> Result<(), StoreError> {
        self.writes.keys.insert(id.into(), key);
        Ok(())
    }

    fn remove_expiry(&mut self, expires_at: u64, id: &str) -> Result<(), StoreError> {
        self.writes.expired.push((expires_at, id.into()));
        Ok(())
    }

    fn set_history(
        &mut self,
        periods: Periods,
        period: i32,
        route: Route,
        n: u64,
    ) -> Result<(), StoreError> {
        self.writes.set_history(periods, period, route, n);
        Ok(())
    }
}
