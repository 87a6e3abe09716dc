//! The rows the local stores keep, named, and the traits through which the commit rules read
//! and write them, whatever holds them (redb tables, a memtable, plain maps).

use crate::{route::Route, store::StoreError};

/// A route's row: its total, and the counts of the day and the month its last transactions
/// were on. One entry per route, so that a commit writes one entry per route however many
/// periods it counts in; the day's (month's) count moves to history when the route's first
/// commit of a later day (month) comes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(in crate::store) struct RouteRow {
    pub total: u64,
    /// The day the row counts in, as [`crate::calendar::Day::number`] (0: none yet).
    pub day: i32,
    pub day_count: u64,
    /// The month the row counts in, as [`crate::calendar::Month::number`] (0: none yet).
    pub month: i32,
    pub month_count: u64,
}

impl RouteRow {
    /// A row of the layout before days and months: a total alone.
    pub fn total_only(total: u64) -> Self {
        Self {
            total,
            ..Self::default()
        }
    }

    /// The period of `periods` the row holds, and its count.
    pub fn held(&self, periods: Periods) -> (i32, u64) {
        match periods {
            Periods::Days => (self.day, self.day_count),
            Periods::Months => (self.month, self.month_count),
        }
    }
}

/// An idempotency key's record: the route it was first used with, the count it answered, its
/// expiry (epoch seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::store) struct KeyRow {
    /// The canonical route.
    pub route: String,
    pub count: u64,
    pub expires_at: u64,
}

/// Which of a route's periods a read or write is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(in crate::store) enum Periods {
    Days,
    Months,
}

/// What applying a batch reads.
pub(in crate::store) trait Tables {
    /// The route's row, or a new one.
    fn row(&self, route: Route) -> Result<RouteRow, StoreError>;
    fn key(&self, id: &str) -> Result<Option<KeyRow>, StoreError>;
    /// The count a route's earlier day (month) `period` holds in history.
    fn history(&self, periods: Periods, period: i32, route: Route) -> Result<u64, StoreError>;
}

/// What applying a batch writes.
pub(in crate::store) trait TablesMut: Tables {
    fn set_row(&mut self, route: Route, row: RouteRow) -> Result<(), StoreError>;
    /// Stores a key's record and its entry in the expiry index.
    fn set_key(&mut self, id: &str, key: KeyRow) -> Result<(), StoreError>;
    /// Removes an expired key's entry from the expiry index (its record is overwritten).
    fn remove_expiry(&mut self, expires_at: u64, id: &str) -> Result<(), StoreError>;
    fn set_history(
        &mut self,
        periods: Periods,
        period: i32,
        route: Route,
        n: u64,
    ) -> Result<(), StoreError>;
}

/// What upkeep finds and deletes: expired keys, and history that left the window.
pub(in crate::store) trait UpkeepTables: TablesMut {
    /// Up to `limit` entries of the expiry index at or before `now`, soonest first.
    fn expired_keys(&self, now: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError>;
    /// Deletes a key's record and its entry in the expiry index.
    fn remove_key(&mut self, expires_at: u64, id: &str) -> Result<(), StoreError>;
    /// Up to `limit` history entries (period, route) of periods before `first`, oldest first.
    fn history_before(
        &self,
        periods: Periods,
        first: i32,
        limit: usize,
    ) -> Result<Vec<(i32, String)>, StoreError>;
    fn remove_history(
        &mut self,
        periods: Periods,
        period: i32,
        route: &str,
    ) -> Result<(), StoreError>;
}
