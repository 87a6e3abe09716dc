//! The tables of the database and what is done on them: a batch applied to any [`TablesMut`]
//! (the database's own tables in a write transaction, or a memtable over them), reads from any
//! [`Tables`], and the upkeep that deletes expired keys and the days and months that left the
//! window.

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::record::BatchRecord;
use crate::{
    calendar::Day,
    idempotency::KeyedOutcome,
    route::Route,
    store::{RouteOutcome, StoreError},
};

/// Canonical route → its row: the total, and the counts of the day and the month its last
/// transactions were on. One entry per route, so that a commit writes one entry per route
/// however many periods it counts in; a day's (month's) count moves to `DAILY` (`MONTHLY`)
/// when the route's first commit of a later day (month) comes.
pub(super) const ROUTES: TableDefinition<&str, RouteRow> = TableDefinition::new("routes");
/// (total, day number, that day's count, month number, that month's count).
pub(super) type RouteRow = (u64, i32, u64, i32, u64);
/// The layout before `ROUTES`: canonical route → total. Moved into `ROUTES` when the file is
/// opened.
const TOTALS: TableDefinition<&str, u64> = TableDefinition::new("transactions");
/// Idempotency key → (canonical route, count it answered, expiry in epoch seconds).
pub(super) const KEYS: TableDefinition<&str, (&str, u64, u64)> =
    TableDefinition::new("idempotency_keys");
/// (expiry in epoch seconds, idempotency key): the sweep's index.
pub(super) const EXPIRY: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("idempotency_expiry");
/// (day number, canonical route) → transactions that day, for days before the one in the route's
/// row. Keyed by day first, so that the days that fell out of the window are one range to
/// delete.
pub(super) const DAILY: TableDefinition<(i32, &str), u64> = TableDefinition::new("daily");
/// (month number, canonical route) → transactions that month.
pub(super) const MONTHLY: TableDefinition<(i32, &str), u64> = TableDefinition::new("monthly");

/// Creates every table, so that reads never meet a missing one, and moves totals of the
/// earlier layout into `ROUTES`.
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), redb::StorageError> {
    let table_error = |e: redb::TableError| redb::StorageError::Io(std::io::Error::other(e));
    let mut routes = txn.open_table(ROUTES).map_err(table_error)?;
    let mut totals = txn.open_table(TOTALS).map_err(table_error)?;
    let earlier: Vec<(String, u64)> = totals
        .iter()?
        .map(|entry| entry.map(|(route, total)| (route.value().to_owned(), total.value())))
        .collect::<Result<_, _>>()?;
    for (route, total) in &earlier {
        routes.insert(route.as_str(), (*total, 0, 0, 0, 0))?;
        totals.remove(route.as_str())?;
    }
    drop((routes, totals));
    let open = |result: Result<(), redb::TableError>| result.map_err(table_error);
    open(txn.open_table(KEYS).map(drop))?;
    open(txn.open_table(EXPIRY).map(drop))?;
    open(txn.open_table(DAILY).map(drop))?;
    open(txn.open_table(MONTHLY).map(drop))?;
    open(txn.open_table(JOURNAL).map(drop))?;
    Ok(())
}

/// The sequence number of the last journal record the tables hold, written in the same
/// transaction as that record's counts (or a flushed memtable's last record): the state a crash
/// rolls back to says itself which records replaying the journal must apply to it.
pub(super) const JOURNAL: TableDefinition<&str, u64> = TableDefinition::new("journal");
const APPLIED: &str = "applied";

/// The last journal record the database holds (0 if none ever was).
pub(super) fn applied_seq(db: &Database) -> Result<u64, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = match txn.open_table(JOURNAL) {
        Ok(table) => table,
        // A file from before the journal, or a new one.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(err) => return Err(unavailable(err)),
    };
    Ok(table
        .get(APPLIED)
        .map_err(unavailable)?
        .map_or(0, |v| v.value()))
}

pub(super) fn set_applied_seq(txn: &WriteTransaction, seq: u64) -> Result<(), StoreError> {
    txn.open_table(JOURNAL)
        .map_err(unavailable)?
        .insert(APPLIED, seq)
        .map_err(unavailable)?;
    Ok(())
}

/// An idempotency key's record: the route it was first used with, the count it answered, its
/// expiry (epoch seconds).
pub(super) type KeyRow = (String, u64, u64);

/// Which of a route's periods a read or write is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Periods {
    Days,
    Months,
}

/// What applying a batch reads.
pub(super) trait Tables {
    /// The route's row, or a new one.
    fn row(&self, route: &str) -> Result<RouteRow, StoreError>;
    fn key(&self, id: &str) -> Result<Option<KeyRow>, StoreError>;
    /// The count a route's earlier day (month) `period` holds in history.
    fn history(&self, periods: Periods, period: i32, route: &str) -> Result<u64, StoreError>;
}

/// What applying a batch writes.
pub(super) trait TablesMut: Tables {
    fn set_row(&mut self, route: &str, row: RouteRow) -> Result<(), StoreError>;
    /// Stores a key's record and its entry in the expiry index.
    fn set_key(&mut self, id: &str, key: KeyRow) -> Result<(), StoreError>;
    /// Removes an expired key's entry from the expiry index (its record is overwritten).
    fn remove_expiry(&mut self, expires_at: u64, id: &str) -> Result<(), StoreError>;
    fn set_history(
        &mut self,
        periods: Periods,
        period: i32,
        route: &str,
        n: u64,
    ) -> Result<(), StoreError>;
}

pub(super) fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// Applies one batch: every route's keyless transactions, then its keyed ones, counts, days,
/// months and keys. Depends on nothing but the tables and the record, so that a record replayed
/// from the journal comes to what it came to when it was acknowledged. On error the caller
/// discards what was written.
pub(super) fn write_batch(
    tables: &mut impl TablesMut,
    batch: &BatchRecord,
) -> Result<Vec<RouteOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(batch.writes.len());
    for write in &batch.writes {
        let route = write.route.as_str();
        let parsed = route_of(route)?;
        let day = Day::from_number(write.day)
            .ok_or_else(|| unavailable(format!("day number {} is not a day", write.day)))?;
        let row = tables.row(route)?;
        let current = row.0;
        let overflow = || StoreError::Overflow(parsed);
        let keyless_total = current.checked_add(write.keyless).ok_or_else(overflow)?;
        let mut total = keyless_total;
        let mut keyed = Vec::with_capacity(write.keyed.len());
        for k in &write.keyed {
            let id = k.id.as_str();
            // Reads see the batch's own writes: a key twice in one batch is counted once.
            if let Some((stored_route, count, expires_at)) = tables.key(id)? {
                if expires_at > k.now {
                    keyed.push(KeyedOutcome::replay(route_of(&stored_route)?, count));
                    continue;
                }
                // Expired but not swept yet: the key starts afresh.
                tables.remove_expiry(expires_at, id)?;
            }
            total = total.checked_add(1).ok_or_else(overflow)?;
            tables.set_key(id, (route.to_owned(), total, k.expires_at))?;
            keyed.push(KeyedOutcome::recorded(parsed, total));
        }
        // Each route's new total, written once however many transactions it got.
        if total != current {
            let added = total - current;
            let (held_day, day_count) = count_in_period(
                tables,
                Periods::Days,
                route,
                (row.1, row.2),
                day.number(),
                added,
            )?;
            let (held_month, month_count) = count_in_period(
                tables,
                Periods::Months,
                route,
                (row.3, row.4),
                day.month().number(),
                added,
            )?;
            tables.set_row(route, (total, held_day, day_count, held_month, month_count))?;
        }
        outcomes.push(RouteOutcome {
            keyless_total,
            keyed,
        });
    }
    Ok(outcomes)
}

fn route_of(stored: &str) -> Result<Route, StoreError> {
    Route::parse(stored).map_err(|_| unavailable(format!("a record holds {stored:?}, not a route")))
}

/// Counts `added` transactions in `period` (a day or a month number), given the period the row
/// holds and its count; returns what the row holds after. A later period moves the row's
/// count to history first; an earlier one (a clock set back) is counted in history alone.
fn count_in_period(
    tables: &mut impl TablesMut,
    periods: Periods,
    route: &str,
    (held, held_count): (i32, u64),
    period: i32,
    added: u64,
) -> Result<(i32, u64), StoreError> {
    if period == held {
        return Ok((held, held_count + added));
    }
    if period < held {
        add_to_history(tables, periods, period, route, added)?;
        return Ok((held, held_count));
    }
    if held_count > 0 {
        add_to_history(tables, periods, held, route, held_count)?;
    }
    Ok((period, added))
}

/// Adds `n` to a route's count of an earlier period (never more than the route's total).
fn add_to_history(
    tables: &mut impl TablesMut,
    periods: Periods,
    period: i32,
    route: &str,
    n: u64,
) -> Result<(), StoreError> {
    let current = tables.history(periods, period, route)?;
    tables.set_history(periods, period, route, current.saturating_add(n))
}

/// A route's counts for each period number from `from` to `to`: the periods moved to history,
/// and the one its row holds.
pub(super) fn read_range(
    tables: &impl Tables,
    periods: Periods,
    route: Route,
    from: i32,
    to: i32,
) -> Result<Vec<u64>, StoreError> {
    let row = tables.row(route.as_str())?;
    let (held, held_count) = match periods {
        Periods::Days => (row.1, row.2),
        Periods::Months => (row.3, row.4),
    };
    (from..=to)
        .map(|n| {
            let moved = tables.history(periods, n, route.as_str())?;
            Ok(moved + if n == held { held_count } else { 0 })
        })
        .collect()
}

/// The database's tables in a read transaction.
pub(super) struct ReadTables {
    routes: redb::ReadOnlyTable<&'static str, RouteRow>,
    keys: redb::ReadOnlyTable<&'static str, (&'static str, u64, u64)>,
    daily: redb::ReadOnlyTable<(i32, &'static str), u64>,
    monthly: redb::ReadOnlyTable<(i32, &'static str), u64>,
}

impl ReadTables {
    pub(super) fn open(db: &Database) -> Result<Self, StoreError> {
        let txn = db.begin_read().map_err(unavailable)?;
        Ok(Self {
            routes: txn.open_table(ROUTES).map_err(unavailable)?,
            keys: txn.open_table(KEYS).map_err(unavailable)?,
            daily: txn.open_table(DAILY).map_err(unavailable)?,
            monthly: txn.open_table(MONTHLY).map_err(unavailable)?,
        })
    }
}

/// Reads from a struct holding the database's `routes`, `keys`, `daily` and `monthly` tables,
/// in a read transaction or a write one alike.
macro_rules! tables_from_redb {
    ($tables:ty) => {
        impl Tables for $tables {
            fn row(&self, route: &str) -> Result<RouteRow, StoreError> {
                row_in(&self.routes, route)
            }

            fn key(&self, id: &str) -> Result<Option<KeyRow>, StoreError> {
                key_in(&self.keys, id)
            }

            fn history(
                &self,
                periods: Periods,
                period: i32,
                route: &str,
            ) -> Result<u64, StoreError> {
                let table = match periods {
                    Periods::Days => &self.daily,
                    Periods::Months => &self.monthly,
                };
                history_in(table, period, route)
            }
        }
    };
}

tables_from_redb!(ReadTables);

/// The database's tables in a write transaction: what replaying the journal and flushing a
/// memtable write to.
pub(super) struct TxnTables<'txn> {
    routes: redb::Table<'txn, &'static str, RouteRow>,
    keys: redb::Table<'txn, &'static str, (&'static str, u64, u64)>,
    expiry: redb::Table<'txn, (u64, &'static str), ()>,
    daily: redb::Table<'txn, (i32, &'static str), u64>,
    monthly: redb::Table<'txn, (i32, &'static str), u64>,
}

impl<'txn> TxnTables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            routes: txn.open_table(ROUTES).map_err(unavailable)?,
            keys: txn.open_table(KEYS).map_err(unavailable)?,
            expiry: txn.open_table(EXPIRY).map_err(unavailable)?,
            daily: txn.open_table(DAILY).map_err(unavailable)?,
            monthly: txn.open_table(MONTHLY).map_err(unavailable)?,
        })
    }

    fn history_table(
        &mut self,
        periods: Periods,
    ) -> &mut redb::Table<'txn, (i32, &'static str), u64> {
        match periods {
            Periods::Days => &mut self.daily,
            Periods::Months => &mut self.monthly,
        }
    }
}

tables_from_redb!(TxnTables<'_>);

impl TablesMut for TxnTables<'_> {
    fn set_row(&mut self, route: &str, row: RouteRow) -> Result<(), StoreError> {
        self.routes.insert(route, row).map_err(unavailable)?;
        Ok(())
    }

    fn set_key(&mut self, id: &str, (route, count, expires_at): KeyRow) -> Result<(), StoreError> {
        self.keys
            .insert(id, (route.as_str(), count, expires_at))
            .map_err(unavailable)?;
        self.expiry
            .insert((expires_at, id), ())
            .map_err(unavailable)?;
        Ok(())
    }

    fn remove_expiry(&mut self, expires_at: u64, id: &str) -> Result<(), StoreError> {
        self.expiry.remove((expires_at, id)).map_err(unavailable)?;
        Ok(())
    }

    fn set_history(
        &mut self,
        periods: Periods,
        period: i32,
        route: &str,
        n: u64,
    ) -> Result<(), StoreError> {
        self.history_table(periods)
            .insert((period, route), n)
            .map_err(unavailable)?;
        Ok(())
    }
}

fn row_in(
    table: &impl ReadableTable<&'static str, RouteRow>,
    route: &str,
) -> Result<RouteRow, StoreError> {
    Ok(table
        .get(route)
        .map_err(unavailable)?
        .map(|v| v.value())
        .unwrap_or((0, 0, 0, 0, 0)))
}

fn key_in(
    table: &impl ReadableTable<&'static str, (&'static str, u64, u64)>,
    id: &str,
) -> Result<Option<KeyRow>, StoreError> {
    Ok(table.get(id).map_err(unavailable)?.map(|guard| {
        let (route, count, expires_at) = guard.value();
        (route.to_owned(), count, expires_at)
    }))
}

fn history_in(
    table: &impl ReadableTable<(i32, &'static str), u64>,
    period: i32,
    route: &str,
) -> Result<u64, StoreError> {
    Ok(table
        .get((period, route))
        .map_err(unavailable)?
        .map_or(0, |v| v.value()))
}

/// A write transaction for upkeep, which the journal does not carry: made durable by the next
/// checkpoint, and done again after a crash that lost it (what it deletes is never read).
fn upkeep_transaction(db: &Database) -> Result<WriteTransaction, StoreError> {
    let mut txn = db.begin_write().map_err(unavailable)?;
    txn.set_durability(Durability::None).map_err(unavailable)?;
    Ok(txn)
}

/// Commits an upkeep transaction that deleted `deleted` entries (or drops it, if none), and
/// returns that number.
fn finish_upkeep(txn: WriteTransaction, deleted: usize) -> Result<usize, StoreError> {
    if deleted == 0 {
        txn.abort().map_err(unavailable)?;
    } else {
        txn.commit().map_err(unavailable)?;
    }
    Ok(deleted)
}

/// Deletes up to `limit` days and months that fell out of the window, in one write transaction.
pub(super) fn forget_old_periods(
    db: &Database,
    today: Day,
    limit: usize,
) -> Result<usize, StoreError> {
    let txn = upkeep_transaction(db)?;
    let mut forgotten = 0;
    for (table, first) in [
        (DAILY, today.window_start().number()),
        (MONTHLY, today.month().window_start().number()),
    ] {
        let mut table = txn.open_table(table).map_err(unavailable)?;
        let old: Vec<(i32, String)> = table
            .range((i32::MIN, "")..(first, ""))
            .map_err(unavailable)?
            .take(limit - forgotten)
            .map(|entry| {
                entry.map(|(k, _)| {
                    let (n, route) = k.value();
                    (n, route.to_owned())
                })
            })
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        for (n, route) in &old {
            table.remove((*n, route.as_str())).map_err(unavailable)?;
        }
        forgotten += old.len();
    }
    finish_upkeep(txn, forgotten)
}

/// Deletes up to `limit` keys that expired at or before `now`, in one write transaction.
pub(super) fn sweep(db: &Database, now: u64, limit: usize) -> Result<usize, StoreError> {
    let txn = upkeep_transaction(db)?;
    let swept;
    {
        let mut keys = txn.open_table(KEYS).map_err(unavailable)?;
        let mut expiry = txn.open_table(EXPIRY).map_err(unavailable)?;
        let doomed: Vec<(u64, String)> = expiry
            .range((0, "")..=(now, MAX_KEY_SENTINEL))
            .map_err(unavailable)?
            .take(limit)
            .map(|entry| {
                entry.map(|(k, _)| {
                    let (at, key) = k.value();
                    (at, key.to_owned())
                })
            })
            .collect::<Result<_, _>>()
            .map_err(unavailable)?;
        for (at, key) in &doomed {
            expiry.remove((*at, key.as_str())).map_err(unavailable)?;
            keys.remove(key.as_str()).map_err(unavailable)?;
        }
        swept = doomed.len();
    }
    finish_upkeep(txn, swept)
}

/// Sorts after every valid key (keys are visible ASCII, below 0x7F).
const MAX_KEY_SENTINEL: &str = "\u{7f}";
