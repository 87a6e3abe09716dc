//! The tables of the store's file and the transactions on them: one batch in one write
//! transaction, reads in read transactions, and the upkeep that deletes expired keys and the
//! days and months that left the window.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::{
    calendar::Day,
    idempotency::KeyedOutcome,
    route::Route,
    store::{RouteOutcome, RouteWrite, StoreError},
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
    Ok(())
}

/// Reads `(table, route)`'s row, or a new one.
fn row_of(
    table: &impl ReadableTable<&'static str, RouteRow>,
    route: &str,
) -> Result<RouteRow, StoreError> {
    Ok(table
        .get(route)
        .map_err(unavailable)?
        .map(|v| v.value())
        .unwrap_or((0, 0, 0, 0, 0)))
}
pub(super) fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// One batch: every route's keyless transactions, then its keyed ones, counts and keys in one
/// write transaction and one fsync.
pub(super) fn commit_batch(
    db: &Database,
    batch: &[RouteWrite],
) -> Result<Vec<RouteOutcome>, StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    let outcomes = write_batch(&txn, batch)?;
    // Returning early above drops the transaction, which aborts it: nothing half-applied.
    txn.commit().map_err(unavailable)?;
    Ok(outcomes)
}

fn write_batch(
    txn: &WriteTransaction,
    batch: &[RouteWrite],
) -> Result<Vec<RouteOutcome>, StoreError> {
    let mut routes = txn.open_table(ROUTES).map_err(unavailable)?;
    let mut keys = txn.open_table(KEYS).map_err(unavailable)?;
    let mut expiry = txn.open_table(EXPIRY).map_err(unavailable)?;
    let mut daily = txn.open_table(DAILY).map_err(unavailable)?;
    let mut monthly = txn.open_table(MONTHLY).map_err(unavailable)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for write in batch {
        let row = row_of(&routes, write.route.as_str())?;
        let current = row.0;
        let keyless_total = current
            .checked_add(write.keyless)
            .ok_or(StoreError::Overflow(write.route))?;
        let mut total = keyless_total;
        let mut keyed = Vec::with_capacity(write.keyed.len());
        for k in &write.keyed {
            let id = k.key.record_id();
            let key = id.as_ref();
            // Reads see this transaction's own writes: a key twice in one batch is counted once.
            let stored = keys.get(key).map_err(unavailable)?.map(|guard| {
                let (route, count, expires_at) = guard.value();
                (route.to_owned(), count, expires_at)
            });
            if let Some((route, count, expires_at)) = stored {
                if expires_at > k.now {
                    let route = Route::parse(&route).map_err(|_| {
                        unavailable(format!(
                            "idempotency key record holds {route:?}, not a route"
                        ))
                    })?;
                    keyed.push(KeyedOutcome::replay(route, count));
                    continue;
                }
                // Expired but not swept yet: the key starts afresh.
                expiry.remove((expires_at, key)).map_err(unavailable)?;
            }
            total = total.checked_add(1).ok_or(StoreError::Overflow(k.route))?;
            keys.insert(key, (k.route.as_str(), total, k.expires_at))
                .map_err(unavailable)?;
            expiry
                .insert((k.expires_at, key), ())
                .map_err(unavailable)?;
            keyed.push(KeyedOutcome::recorded(k.route, total));
        }
        // Each route's new total, written once however many transactions it got.
        if total != current {
            let route = write.route.as_str();
            let added = total - current;
            let (day, day_count) =
                count_in_period(&mut daily, route, (row.1, row.2), write.day.number(), added)?;
            let (month, month_count) = count_in_period(
                &mut monthly,
                route,
                (row.3, row.4),
                write.day.month().number(),
                added,
            )?;
            routes
                .insert(route, (total, day, day_count, month, month_count))
                .map_err(unavailable)?;
        }
        outcomes.push(RouteOutcome {
            keyless_total,
            keyed,
        });
    }
    Ok(outcomes)
}

/// Counts `added` transactions in `period` (a day or a month number), given the period the row
/// holds and its count; returns what the row holds after. A later period moves the row's
/// count to `history` first; an earlier one (a clock set back) is counted in `history` alone.
fn count_in_period(
    history: &mut redb::Table<(i32, &str), u64>,
    route: &str,
    (held, held_count): (i32, u64),
    period: i32,
    added: u64,
) -> Result<(i32, u64), StoreError> {
    if period == held {
        return Ok((held, held_count + added));
    }
    if period < held {
        add_to(history, (period, route), added)?;
        return Ok((held, held_count));
    }
    if held_count > 0 {
        add_to(history, (held, route), held_count)?;
    }
    Ok((period, added))
}

/// Adds `n` to the count under `key` (a day's or a month's, never more than the route's total).
fn add_to(
    table: &mut redb::Table<(i32, &str), u64>,
    key: (i32, &str),
    n: u64,
) -> Result<(), StoreError> {
    let current = table.get(key).map_err(unavailable)?.map(|v| v.value());
    table
        .insert(key, current.unwrap_or(0).saturating_add(n))
        .map_err(unavailable)?;
    Ok(())
}

/// Which of a route's periods a read is about.
#[derive(Clone, Copy)]
pub(super) enum Periods {
    Days,
    Months,
}

/// A route's counts for each period number from `from` to `to`, in one read snapshot: the
/// periods moved to history, and the one its row holds.
pub(super) fn read_range(
    db: &Database,
    periods: Periods,
    route: Route,
    from: i32,
    to: i32,
) -> Result<Vec<u64>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let history = txn
        .open_table(match periods {
            Periods::Days => DAILY,
            Periods::Months => MONTHLY,
        })
        .map_err(unavailable)?;
    let row = row_of(
        &txn.open_table(ROUTES).map_err(unavailable)?,
        route.as_str(),
    )?;
    let (held, held_count) = match periods {
        Periods::Days => (row.1, row.2),
        Periods::Months => (row.3, row.4),
    };
    (from..=to)
        .map(|n| {
            let moved = history
                .get((n, route.as_str()))
                .map_err(unavailable)?
                .map(|v| v.value())
                .unwrap_or(0);
            Ok(moved + if n == held { held_count } else { 0 })
        })
        .collect()
}

/// Deletes up to `limit` days and months that fell out of the window, in one write transaction.
pub(super) fn forget_old_periods(
    db: &Database,
    today: Day,
    limit: usize,
) -> Result<usize, StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
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
    if forgotten == 0 {
        txn.abort().map_err(unavailable)?;
    } else {
        txn.commit().map_err(unavailable)?;
    }
    Ok(forgotten)
}

/// Deletes up to `limit` keys that expired at or before `now`, in one write transaction.
pub(super) fn sweep(db: &Database, now: u64, limit: usize) -> Result<usize, StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
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
    if swept == 0 {
        txn.abort().map_err(unavailable)?;
    } else {
        txn.commit().map_err(unavailable)?;
    }
    Ok(swept)
}

/// Sorts after every valid key (keys are visible ASCII, below 0x7F).
const MAX_KEY_SENTINEL: &str = "\u{7f}";

pub(super) fn read_count(db: &Database, route: Route) -> Result<u64, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(ROUTES).map_err(unavailable)?;
    Ok(row_of(&table, route.as_str())?.0)
}
