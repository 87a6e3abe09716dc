//! The commit rules of the local stores, once, over any [`TablesMut`]: what a batch does to the
//! routes' totals, days and months and to the idempotency keys, what a read of a range of
//! periods adds up, and what upkeep deletes. The embedded store applies them to a memtable
//! over its database (and to the database itself when replaying the journal); the memory store
//! to its maps.

use super::{
    record::BatchRecord,
    rows::{KeyRow, Periods, RouteRow, Tables, TablesMut, UpkeepTables},
};
use crate::{
    calendar::Day,
    idempotency::KeyedOutcome,
    route::Route,
    store::{RouteOutcome, StoreError},
};

/// A record holding what no commit writes: it cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(in crate::store) enum BadRecord {
    #[error("day number {0} is not a day")]
    Day(i32),
    #[error("{0:?} is not a route")]
    Route(String),
}

/// Applies one batch: every route's keyless transactions, then its keyed ones, counts, days,
/// months and keys. Depends on nothing but the tables and the record, so that a record replayed
/// from the journal comes to what it came to when it was acknowledged. On error the caller
/// discards what was written.
pub(in crate::store) fn write_batch(
    tables: &mut impl TablesMut,
    batch: &BatchRecord,
) -> Result<Vec<RouteOutcome>, StoreError> {
    let mut outcomes = Vec::with_capacity(batch.writes.len());
    for write in &batch.writes {
        let route = route_of(&write.route)?;
        let day = Day::from_number(write.day).ok_or_else(|| {
            StoreError::unavailable("applying a batch", BadRecord::Day(write.day))
        })?;
        let row = tables.row(route)?;
        let overflow = || StoreError::Overflow(route);
        let keyless_total = row.total.checked_add(write.keyless).ok_or_else(overflow)?;
        let mut total = keyless_total;
        let mut keyed = Vec::with_capacity(write.keyed.len());
        for k in &write.keyed {
            let id = k.id.as_str();
            // Reads see the batch's own writes: a key twice in one batch is counted once.
            if let Some(stored) = tables.key(id)? {
                if stored.expires_at > k.now {
                    keyed.push(KeyedOutcome::replay(route_of(&stored.route)?, stored.count));
                    continue;
                }
                // Expired but not swept yet: the key starts afresh.
                tables.remove_expiry(stored.expires_at, id)?;
            }
            total = total.checked_add(1).ok_or_else(overflow)?;
            let key = KeyRow {
                route: route.as_str().to_owned(),
                count: total,
                expires_at: k.expires_at,
            };
            tables.set_key(id, key)?;
            keyed.push(KeyedOutcome::recorded(route, total));
        }
        // Each route's new total, written once however many transactions it got.
        if total != row.total {
            let added = total - row.total;
            let (held_day, day_count) = count_in_period(
                tables,
                Periods::Days,
                route,
                row.held(Periods::Days),
                day.number(),
                added,
            )?;
            let (held_month, month_count) = count_in_period(
                tables,
                Periods::Months,
                route,
                row.held(Periods::Months),
                day.month().number(),
                added,
            )?;
            let row = RouteRow {
                total,
                day: held_day,
                day_count,
                month: held_month,
                month_count,
            };
            tables.set_row(route, row)?;
        }
        outcomes.push(RouteOutcome {
            keyless_total,
            keyed,
        });
    }
    Ok(outcomes)
}

fn route_of(stored: &str) -> Result<Route, StoreError> {
    Route::parse(stored).map_err(|_| {
        StoreError::unavailable("applying a batch", BadRecord::Route(stored.to_owned()))
    })
}

/// Counts `added` transactions in `period` (a day or a month number), given the period the row
/// holds and its count; returns what the row holds after. A later period moves the row's
/// count to history first; an earlier one (a clock set back) is counted in history alone.
fn count_in_period(
    tables: &mut impl TablesMut,
    periods: Periods,
    route: Route,
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
    route: Route,
    n: u64,
) -> Result<(), StoreError> {
    let current = tables.history(periods, period, route)?;
    tables.set_history(periods, period, route, current.saturating_add(n))
}

/// A route's counts for each period number from `from` to `to`: the periods moved to history,
/// and the one its row holds.
pub(in crate::store) fn read_range(
    tables: &impl Tables,
    periods: Periods,
    route: Route,
    from: i32,
    to: i32,
) -> Result<Vec<u64>, StoreError> {
    let (held, held_count) = tables.row(route)?.held(periods);
    (from..=to)
        .map(|n| {
            let moved = tables.history(periods, n, route)?;
            Ok(moved + if n == held { held_count } else { 0 })
        })
        .collect()
}

/// Upkeep at `now` (epoch seconds), today being `today`: deletes up to `limit` records, keys
/// that expired at or before `now` first, then days and months that fell out of the window,
/// and returns how many it deleted.
pub(in crate::store) fn housekeeping(
    tables: &mut impl UpkeepTables,
    now: u64,
    today: Day,
    limit: usize,
) -> Result<usize, StoreError> {
    let expired = tables.expired_keys(now, limit)?;
    for (expires_at, id) in &expired {
        tables.remove_key(*expires_at, id)?;
    }
    let mut deleted = expired.len();
    for (periods, first) in [
        (Periods::Days, today.window_start().number()),
        (Periods::Months, today.month().window_start().number()),
    ] {
        let old = tables.history_before(periods, first, limit.saturating_sub(deleted))?;
        for (period, route) in &old {
            tables.remove_history(periods, *period, route)?;
        }
        deleted += old.len();
    }
    Ok(deleted)
}
