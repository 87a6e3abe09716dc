//! Snapshots of the local stores, written once for both: what a route's record and a key's
//! record are, read out of any [`Tables`] that can also list its routes and keys in order
//! ([`Listing`]); the export's order and chunks; and an import chunk applied to any
//! [`TablesMut`]. Each store decides only how it gets one point in time to read from and one
//! transaction to write in (see `embedded::snapshot` and `memory`).
//!
//! The embedded store reads from a [`FrozenView`]: a copy of its active memtable, its frozen
//! memtable and the database read transaction under them, taken together under the memtables'
//! lock, so that the view is exactly the commits merged before that instant.

use std::{
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use super::{
    memtable::{Layers, Memtable},
    rows::{KeyRow, Periods, RouteRow, Tables, TablesMut},
    rules::read_range,
};
use crate::{
    auth::ClientName,
    calendar::{Day, Month},
    idempotency::IdempotencyKey,
    route::Route,
    snapshot::{KeyRecord, Record, RouteRecord},
    store::StoreError,
};

/// Routes (or keys) read from the tables at a time: what an export holds in memory at most,
/// besides the records waiting in its channel.
pub(in crate::store) const EXPORT_CHUNK: usize = 1_000;

/// A row or key the tables hold that no commit or import writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(in crate::store) enum BadEntry {
    #[error("{0:?} is not a route")]
    Route(String),
    #[error("{0:?} is not an idempotency record id")]
    Key(String),
}

/// Tables that can list their routes and key records in ascending order, from where the last
/// list stopped: an export reads a store of any size in chunks.
pub(in crate::store) trait Listing: Tables {
    /// Up to `limit` routes holding a row, after `after` (from the first if `None`), ascending.
    fn routes_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Up to `limit` key record ids after `after`, ascending, expired ones included.
    fn keys_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError>;
}

/// Whether the tables hold no route row and no key record.
pub(in crate::store) fn is_empty(tables: &impl Listing) -> Result<bool, StoreError> {
    Ok(tables.routes_after(None, 1)?.is_empty() && tables.keys_after(None, 1)?.is_empty())
}

/// Sends every route's record in ascending route order, then every key record unexpired at
/// `now` in ascending id order, reading `chunk` names at a time. `send` answers whether the
/// export goes on (its receiver may have gone).
pub(in crate::store) fn export(
    tables: &impl Listing,
    now: u64,
    chunk: usize,
    send: &mut impl FnMut(Record) -> bool,
) -> Result<(), StoreError> {
    let today = Day::of(UNIX_EPOCH + Duration::from_secs(now));
    let mut after: Option<String> = None;
    loop {
        let mut routes = tables.routes_after(after.as_deref(), chunk)?;
        for route in &routes {
            if let Some(record) = route_record(tables, route, today)?
                && !send(Record::Route(record))
            {
                return Ok(());
            }
        }
        if routes.len() < chunk {
            break;
        }
        after = routes.pop();
    }
    let mut after: Option<String> = None;
    loop {
        let mut ids = tables.keys_after(after.as_deref(), chunk)?;
        for id in &ids {
            if let Some(key) = tables.key(id)?
                && key.expires_at > now
                && !send(Record::Key(key_record(id, key)?))
            {
                return Ok(());
            }
        }
        if ids.len() < chunk {
            break;
        }
        after = ids.pop();
    }
    Ok(())
}

/// A route's record: its total, and the days and months of the window ending `today` that
/// count anything, read as the store's reads read them. `None` for a row that counts nothing.
pub(in crate::store) fn route_record(
    tables: &impl Tables,
    name: &str,
    today: Day,
) -> Result<Option<RouteRecord>, StoreError> {
    let route = Route::parse(name).map_err(|_| {
        StoreError::unavailable("exporting a route", BadEntry::Route(name.to_owned()))
    })?;
    let total = tables.row(route)?.total;
    if total == 0 {
        return Ok(None);
    }
    let (first_day, this_month) = (today.window_start().number(), today.month());
    let first_month = this_month.window_start().number();
    let days = read_range(tables, Periods::Days, route, first_day, today.number())?;
    let months = read_range(
        tables,
        Periods::Months,
        route,
        first_month,
        this_month.number(),
    )?;
    Ok(Some(RouteRecord {
        route,
        total,
        days: (first_day..)
            .zip(days)
            .filter(|(_, n)| *n > 0)
            .filter_map(|(number, n)| Some((Day::from_number(number)?, n)))
            .collect(),
        months: (first_month..)
            .zip(months)
            .filter(|(_, n)| *n > 0)
            .map(|(number, n)| (Month::from_number(number), n))
            .collect(),
    }))
}

/// A key's record, its id split back into the client's scope and the key (see
/// [`IdempotencyKey::record_id`]).
pub(in crate::store) fn key_record(id: &str, key: KeyRow) -> Result<KeyRecord, StoreError> {
    let bad = || StoreError::unavailable("exporting a key record", BadEntry::Key(id.to_owned()));
    let parsed = match id.split_once(' ') {
        Some((client, raw)) => IdempotencyKey::parse(raw.as_bytes())
            .map_err(|_| bad())?
            .scoped(&ClientName::parse(client).map_err(|_| bad())?),
        None => IdempotencyKey::parse(id.as_bytes()).map_err(|_| bad())?,
    };
    let route = Route::parse(&key.route).map_err(|_| {
        StoreError::unavailable("exporting a key record", BadEntry::Route(key.route.clone()))
    })?;
    Ok(KeyRecord {
        key: parsed,
        route,
        count: key.count,
        expires_at: key.expires_at,
    })
}

/// Applies one chunk of a snapshot's records; `now` (epoch seconds) says which stored keys are
/// unexpired. Without `merge` a route's total, days and months are set (the store was empty
/// when the import began, so applying a chunk again changes nothing); with it they are added.
/// A key record the store holds unexpired is kept; any other is written with its expiry index
/// entry. On error (an overflow) the caller discards what was written.
pub(in crate::store) fn apply_chunk(
    tables: &mut impl TablesMut,
    records: &[Record],
    merge: bool,
    now: u64,
) -> Result<(), StoreError> {
    for record in records {
        match record {
            Record::Route(route) => import_route(tables, route, merge)?,
            Record::Key(key) => import_key(tables, key, now)?,
        }
    }
    Ok(())
}

fn import_route(
    tables: &mut impl TablesMut,
    record: &RouteRecord,
    merge: bool,
) -> Result<(), StoreError> {
    let overflow = || StoreError::Overflow(record.route);
    let mut row = if merge {
        tables.row(record.route)?
    } else {
        RouteRow::default()
    };
    row.total = row.total.checked_add(record.total).ok_or_else(overflow)?;
    let periods = record
        .days
        .iter()
        .map(|(day, n)| (Periods::Days, day.number(), *n))
        .chain(
            record
                .months
                .iter()
                .map(|(month, n)| (Periods::Months, month.number(), *n)),
        );
    for (periods, period, n) in periods {
        add_period(tables, record.route, &mut row, (periods, period, n), merge)?;
    }
    tables.set_row(record.route, row)
}

/// Counts `n` in `period` of a route's row or history, as a commit would: the row holds the
/// latest period, history the earlier ones. Without `merge`, what history held is replaced
/// rather than added to, so that a chunk applied twice sets the same counts.
fn add_period(
    tables: &mut impl TablesMut,
    route: Route,
    row: &mut RouteRow,
    (periods, period, n): (Periods, i32, u64),
    merge: bool,
) -> Result<(), StoreError> {
    let overflow = || StoreError::Overflow(route);
    let (held, count) = match periods {
        Periods::Days => (&mut row.day, &mut row.day_count),
        Periods::Months => (&mut row.month, &mut row.month_count),
    };
    if n == 0 {
        return Ok(());
    }
    if period == *held {
        *count = count.checked_add(n).ok_or_else(overflow)?;
        return Ok(());
    }
    // An earlier period goes to history; a later one takes the row's place, and the period the
    // row held goes to history.
    let (earlier, moved) = if period < *held {
        (period, n)
    } else {
        let moved = (*held, *count);
        (*held, *count) = (period, n);
        moved
    };
    if moved == 0 {
        return Ok(());
    }
    let base = if merge {
        tables.history(periods, earlier, route)?
    } else {
        0
    };
    let n = base.checked_add(moved).ok_or_else(overflow)?;
    tables.set_history(periods, earlier, route, n)
}

fn import_key(tables: &mut impl TablesMut, record: &KeyRecord, now: u64) -> Result<(), StoreError> {
    let id = record.key.record_id();
    if let Some(stored) = tables.key(&id)? {
        if stored.expires_at > now {
            return Ok(());
        }
        // Expired but not swept yet: its index entry goes with it.
        tables.remove_expiry(stored.expires_at, &id)?;
    }
    let key = KeyRow {
        route: record.route.as_str().to_owned(),
        count: record.count,
        expires_at: record.expires_at,
    };
    tables.set_key(&id, key)
}

/// What the embedded store held at one instant: a copy of its active memtable, its frozen one,
/// and the database read transaction under them, with the memtables' routes and keys sorted
/// once so that each chunk merges them with the database's in order.
pub(in crate::store) struct FrozenView<D> {
    active: Memtable,
    frozen: Option<Arc<Memtable>>,
    db: Arc<D>,
    routes: Vec<Box<str>>,
    keys: Vec<Box<str>>,
}

impl<D: Tables> FrozenView<D> {
    pub fn new(active: Memtable, frozen: Option<Arc<Memtable>>, db: Arc<D>) -> Self {
        let sorted = |names: &mut dyn Iterator<Item = &str>| {
            let mut names: Vec<Box<str>> = names.map(Box::from).collect();
            names.sort_unstable();
            names.dedup();
            names
        };
        let memtables = || std::iter::once(&active).chain(frozen.as_deref());
        let routes = sorted(&mut memtables().flat_map(Memtable::route_names));
        let keys = sorted(&mut memtables().flat_map(Memtable::key_names));
        Self {
            active,
            frozen,
            db,
            routes,
            keys,
        }
    }

    fn layers(&self) -> Layers<'_, D> {
        Layers {
            active: &self.active,
            frozen: self.frozen.as_deref(),
            db: &self.db,
        }
    }
}

impl<D: Tables> Tables for FrozenView<D> {
    fn row(&self, route: Route) -> Result<RouteRow, StoreError> {
        self.layers().row(route)
    }

    fn key(&self, id: &str) -> Result<Option<KeyRow>, StoreError> {
        self.layers().key(id)
    }

    fn history(&self, periods: Periods, period: i32, route: Route) -> Result<u64, StoreError> {
        self.layers().history(periods, period, route)
    }
}

impl<D: Listing> Listing for FrozenView<D> {
    fn routes_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        let db = self.db.routes_after(after, limit)?;
        Ok(merge_sorted(db, &self.routes, after, limit))
    }

    fn keys_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        let db = self.db.keys_after(after, limit)?;
        Ok(merge_sorted(db, &self.keys, after, limit))
    }
}

/// The first `limit` names after `after` of two ascending lists, without repeats: they are
/// among the first `limit` of each.
fn merge_sorted(
    db: Vec<String>,
    memtables: &[Box<str>],
    after: Option<&str>,
    limit: usize,
) -> Vec<String> {
    let start = after.map_or(0, |after| memtables.partition_point(|n| &**n <= after));
    let end = start.saturating_add(limit).min(memtables.len());
    let mut names: Vec<String> = db;
    names.extend(memtables[start..end].iter().map(|n| n.to_string()));
    names.sort_unstable();
    names.dedup();
    names.truncate(limit);
    names
}

#[cfg(test)]
pub(in crate::store) mod contract;
#[cfg(test)]
mod tests;
