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

/// Canonical route → number of transactions.
pub(super) const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("transactions");
/// Idempotency key → (canonical route, count it answered, expiry in epoch seconds).
pub(super) const KEYS: TableDefinition<&str, (&str, u64, u64)> =
    TableDefinition::new("idempotency_keys");
/// (expiry in epoch seconds, idempotency key): the sweep's index.
pub(super) const EXPIRY: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("idempotency_expiry");
/// (day number, canonical route) → transactions that day. Keyed by day first, so that the days
/// that fell out of the window are one range to delete.
pub(super) const DAILY: TableDefinition<(i32, &str), u64> = TableDefinition::new("daily");
/// (month number, canonical route) → transactions that month.
pub(super) const MONTHLY: TableDefinition<(i32, &str), u64> = TableDefinition::new("monthly");

/// Creates every table, so that reads never meet a missing one.
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), redb::TableError> {
    txn.open_table(COUNTS)?;
    txn.open_table(KEYS)?;
    txn.open_table(EXPIRY)?;
    txn.open_table(DAILY)?;
    txn.open_table(MONTHLY)?;
    Ok(())
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
    let mut counts = txn.open_table(COUNTS).map_err(unavailable)?;
    let mut keys = txn.open_table(KEYS).map_err(unavailable)?;
    let mut expiry = txn.open_table(EXPIRY).map_err(unavailable)?;
    let mut daily = txn.open_table(DAILY).map_err(unavailable)?;
    let mut monthly = txn.open_table(MONTHLY).map_err(unavailable)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for write in batch {
        let current = counts
            .get(write.route.as_str())
            .map_err(unavailable)?
            .map(|v| v.value())
            .unwrap_or(0);
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
            counts.insert(route, total).map_err(unavailable)?;
            let added = total - current;
            add_to(&mut daily, (write.day.number(), route), added)?;
            add_to(&mut monthly, (write.day.month().number(), route), added)?;
        }
        outcomes.push(RouteOutcome {
            keyless_total,
            keyed,
        });
    }
    Ok(outcomes)
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

/// Counts under `(number, route)` for each number from `from` to `to`, in one read snapshot.
pub(super) fn read_range(
    db: &Database,
    table: TableDefinition<(i32, &str), u64>,
    route: Route,
    from: i32,
    to: i32,
) -> Result<Vec<u64>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(table).map_err(unavailable)?;
    (from..=to)
        .map(|n| {
            Ok(table
                .get((n, route.as_str()))
                .map_err(unavailable)?
                .map(|v| v.value())
                .unwrap_or(0))
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
    let table = txn.open_table(COUNTS).map_err(unavailable)?;
    let count = table.get(route.as_str()).map_err(unavailable)?;
    Ok(count.map(|v| v.value()).unwrap_or(0))
}
