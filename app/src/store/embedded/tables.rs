//! The database's tables: their definitions, the rows as redb stores them (converted to the
//! named [`RouteRow`] and [`KeyRow`] here and nowhere else, so that the rows' encoding in the
//! file is decided in one place), and the [`Tables`] traits over a read or a write transaction, through which the shared
//! commit rules (`store::local::rules`) read and write them.
//!
//! The tables read and written on every commit and flush are keyed by [`TextKey`] (a string
//! compared as its bytes) rather than redb's `&str`, which validates both sides of every
//! comparison as UTF-8. redb checks a table's key type when opening it by name, so these tables
//! have names of their own; a file whose tables still have the earlier names and `&str` keys
//! has them moved when it is opened (see [`create_tables`]).

mod listing;
mod text_key;

use redb::{
    Database, Durability, Key, ReadableDatabase, ReadableTable, TableDefinition, TableHandle,
    Value, WriteTransaction,
};

use listing::IMPORTS;
pub(super) use listing::{read_mark, write_mark};
use text_key::TextKey;

use crate::{
    calendar::Day,
    route::Route,
    store::{
        OrUnavailable as _, StoreError,
        local::{
            rows::{KeyRow, Periods, RouteRow, Tables, TablesMut, UpkeepTables},
            rules::housekeeping,
        },
    },
};

/// Canonical route → its row (see [`RouteRow`]), stored as [`StoredRow`].
pub(super) const ROUTES: TableDefinition<TextKey, StoredRow> = TableDefinition::new("route_rows");
/// A [`RouteRow`] as the file holds it: (total, day number, that day's count, month number,
/// that month's count). The type is part of the file format: redb checks it when opening.
type StoredRow = (u64, i32, u64, i32, u64);
/// Idempotency key → [`KeyRow`], stored as (canonical route, count it answered, expiry in epoch
/// seconds). The route is a value, never compared, so it stays a `&str`.
pub(super) const KEYS: TableDefinition<TextKey, StoredKey> = TableDefinition::new("key_records");
type StoredKey = (&'static str, u64, u64);
/// (expiry in epoch seconds, idempotency key): the sweep's index.
pub(super) const EXPIRY: TableDefinition<(u64, TextKey), ()> = TableDefinition::new("key_expiry");
/// (day number, canonical route) → transactions that day, for days before the one in the route's
/// row. Keyed by day first, so that the days that fell out of the window are one range to
/// delete.
const DAILY: TableDefinition<(i32, TextKey), u64> = TableDefinition::new("daily_counts");
/// (month number, canonical route) → transactions that month.
const MONTHLY: TableDefinition<(i32, TextKey), u64> = TableDefinition::new("monthly_counts");
/// The sequence number of the last journal record the tables hold, written in the same
/// transaction as that record's counts (or a flushed memtable's last record): the state a crash
/// rolls back to says itself which records replaying the journal must apply to it.
const JOURNAL: TableDefinition<&str, u64> = TableDefinition::new("journal");
const APPLIED: &str = "applied";
/// Sorts after every valid key (keys are visible ASCII, below 0x7F).
const MAX_KEY_SENTINEL: &str = "\u{7f}";

/// The tables above as earlier versions named and typed them, with `&str` keys: same rows, same
/// encoding. Moved into the tables above when the file is opened.
mod earlier {
    use redb::TableDefinition;

    use super::{StoredKey, StoredRow};

    pub(super) const ROUTES: TableDefinition<&str, StoredRow> = TableDefinition::new("routes");
    pub(super) const KEYS: TableDefinition<&str, StoredKey> =
        TableDefinition::new("idempotency_keys");
    pub(super) const EXPIRY: TableDefinition<(u64, &str), ()> =
        TableDefinition::new("idempotency_expiry");
    pub(super) const DAILY: TableDefinition<(i32, &str), u64> = TableDefinition::new("daily");
    pub(super) const MONTHLY: TableDefinition<(i32, &str), u64> = TableDefinition::new("monthly");
    /// The layout before rows: canonical route → total.
    pub(super) const TOTALS: TableDefinition<&str, u64> = TableDefinition::new("transactions");
}

fn row_from_stored((total, day, day_count, month, month_count): StoredRow) -> RouteRow {
    RouteRow {
        total,
        day,
        day_count,
        month,
        month_count,
    }
}

fn row_to_stored(row: RouteRow) -> StoredRow {
    (
        row.total,
        row.day,
        row.day_count,
        row.month,
        row.month_count,
    )
}

fn key_from_stored((route, count, expires_at): (&str, u64, u64)) -> KeyRow {
    KeyRow {
        route: route.to_owned(),
        count,
        expires_at,
    }
}

const CREATING: &str = "creating the database's tables";

/// Creates every table, so that reads never meet a missing one, and moves the tables of earlier
/// layouts (see [`earlier`]) into them, deleting the old ones: the first open after an upgrade
/// copies them once, in the same transaction as the replay that follows.
pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    let existing: Vec<String> = txn
        .list_tables()
        .or_unavailable(CREATING)?
        .map(|table| table.name().to_owned())
        .collect();
    let exists = |name: &str| existing.iter().any(|table| table == name);
    let mut moved = 0;
    if exists(earlier::ROUTES.name()) {
        moved += move_table(txn, earlier::ROUTES, ROUTES)?;
    }
    if exists(earlier::TOTALS.name()) {
        moved += move_totals(txn)?;
    }
    if exists(earlier::KEYS.name()) {
        moved += move_table(txn, earlier::KEYS, KEYS)?;
    }
    if exists(earlier::EXPIRY.name()) {
        moved += move_table(txn, earlier::EXPIRY, EXPIRY)?;
    }
    if exists(earlier::DAILY.name()) {
        moved += move_table(txn, earlier::DAILY, DAILY)?;
    }
    if exists(earlier::MONTHLY.name()) {
        moved += move_table(txn, earlier::MONTHLY, MONTHLY)?;
    }
    if moved > 0 {
        tracing::info!(
            entries = moved,
            "moved the tables of an earlier version's file to the current layout"
        );
    }
    txn.open_table(ROUTES).or_unavailable(CREATING)?;
    txn.open_table(KEYS).or_unavailable(CREATING)?;
    txn.open_table(EXPIRY).or_unavailable(CREATING)?;
    txn.open_table(DAILY).or_unavailable(CREATING)?;
    txn.open_table(MONTHLY).or_unavailable(CREATING)?;
    txn.open_table(JOURNAL).or_unavailable(CREATING)?;
    txn.open_table(IMPORTS).or_unavailable(CREATING)?;
    Ok(())
}

/// Copies every entry of `old` into `new`, whose key type encodes the same values the same way
/// (a string key as its UTF-8 bytes), then deletes `old`. Returns how many entries it copied.
/// Entries go in key order, so every insert appends to the new B-tree's last leaf; no list of
/// them is held in memory.
fn move_table<K: Key + 'static, N: Key + 'static, V: Value + 'static>(
    txn: &WriteTransaction,
    old: TableDefinition<K, V>,
    new: TableDefinition<N, V>,
) -> Result<u64, StoreError> {
    let mut to = txn.open_table(new).or_unavailable(CREATING)?;
    let from = txn.open_table(old).or_unavailable(CREATING)?;
    let mut copied = 0;
    for entry in from.iter().or_unavailable(CREATING)? {
        let (key, value) = entry.or_unavailable(CREATING)?;
        let key = key.value();
        let encoded = K::as_bytes(&key);
        to.insert(N::from_bytes(encoded.as_ref()), value.value())
            .or_unavailable(CREATING)?;
        copied += 1;
    }
    drop(from);
    txn.delete_table(old).or_unavailable(CREATING)?;
    Ok(copied)
}

/// Copies the totals of the layout before rows into `ROUTES`, each a row with no day or month
/// yet, then deletes their table. A route already in `ROUTES` gets the total's row, as when the
/// totals were moved into the earlier routes table.
fn move_totals(txn: &WriteTransaction) -> Result<u64, StoreError> {
    let mut routes = txn.open_table(ROUTES).or_unavailable(CREATING)?;
    let totals = txn.open_table(earlier::TOTALS).or_unavailable(CREATING)?;
    let mut copied = 0;
    for entry in totals.iter().or_unavailable(CREATING)? {
        let (route, total) = entry.or_unavailable(CREATING)?;
        let row = row_to_stored(RouteRow::total_only(total.value()));
        routes.insert(route.value(), row).or_unavailable(CREATING)?;
        copied += 1;
    }
    drop(totals);
    txn.delete_table(earlier::TOTALS).or_unavailable(CREATING)?;
    Ok(copied)
}

/// The last journal record the database holds (0 if none ever was).
pub(super) fn applied_seq(db: &Database) -> Result<u64, StoreError> {
    const READING: &str = "reading the last journal record the database holds";
    let txn = db.begin_read().or_unavailable(READING)?;
    let table = match txn.open_table(JOURNAL) {
        Ok(table) => table,
        // A file from before the journal, or a new one.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(err) => return Err(StoreError::unavailable(READING, err)),
    };
    Ok(table
        .get(APPLIED)
        .or_unavailable(READING)?
        .map_or(0, |v| v.value()))
}

pub(super) fn set_applied_seq(txn: &WriteTransaction, seq: u64) -> Result<(), StoreError> {
    const WRITING: &str = "writing the last journal record the database holds";
    txn.open_table(JOURNAL)
        .or_unavailable(WRITING)?
        .insert(APPLIED, seq)
        .or_unavailable(WRITING)?;
    Ok(())
}

const OPENING: &str = "opening the database's tables";
const READING: &str = "reading the database";
const WRITING: &str = "writing to the database";

/// The database's tables in a read transaction.
pub(super) struct ReadTables {
    routes: redb::ReadOnlyTable<TextKey, StoredRow>,
    keys: redb::ReadOnlyTable<TextKey, StoredKey>,
    daily: redb::ReadOnlyTable<(i32, TextKey), u64>,
    monthly: redb::ReadOnlyTable<(i32, TextKey), u64>,
}

impl ReadTables {
    pub(super) fn open(db: &Database) -> Result<Self, StoreError> {
        let txn = db.begin_read().or_unavailable(OPENING)?;
        Ok(Self {
            routes: txn.open_table(ROUTES).or_unavailable(OPENING)?,
            keys: txn.open_table(KEYS).or_unavailable(OPENING)?,
            daily: txn.open_table(DAILY).or_unavailable(OPENING)?,
            monthly: txn.open_table(MONTHLY).or_unavailable(OPENING)?,
        })
    }
}

/// Reads from a struct holding the database's `routes`, `keys`, `daily` and `monthly` tables,
/// in a read transaction or a write one alike.
macro_rules! tables_from_redb {
    ($tables:ty) => {
        impl Tables for $tables {
            fn row(&self, route: Route) -> Result<RouteRow, StoreError> {
                Ok(self
                    .routes
                    .get(route.as_str())
                    .or_unavailable(READING)?
                    .map_or_else(RouteRow::default, |v| row_from_stored(v.value())))
            }

            fn key(&self, id: &str) -> Result<Option<KeyRow>, StoreError> {
                Ok(self
                    .keys
                    .get(id)
                    .or_unavailable(READING)?
                    .map(|v| key_from_stored(v.value())))
            }

            fn history(
                &self,
                periods: Periods,
                period: i32,
                route: Route,
            ) -> Result<u64, StoreError> {
                let table = match periods {
                    Periods::Days => &self.daily,
                    Periods::Months => &self.monthly,
                };
                Ok(table
                    .get((period, route.as_str()))
                    .or_unavailable(READING)?
                    .map_or(0, |v| v.value()))
            }
        }
    };
}

tables_from_redb!(ReadTables);

/// The database's tables in a write transaction: what replaying the journal, flushing a
/// memtable and upkeep write to.
pub(super) struct TxnTables<'txn> {
    routes: redb::Table<'txn, TextKey, StoredRow>,
    keys: redb::Table<'txn, TextKey, StoredKey>,
    expiry: redb::Table<'txn, (u64, TextKey), ()>,
    daily: redb::Table<'txn, (i32, TextKey), u64>,
    monthly: redb::Table<'txn, (i32, TextKey), u64>,
}

impl<'txn> TxnTables<'txn> {
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, StoreError> {
        Ok(Self {
            routes: txn.open_table(ROUTES).or_unavailable(OPENING)?,
            keys: txn.open_table(KEYS).or_unavailable(OPENING)?,
            expiry: txn.open_table(EXPIRY).or_unavailable(OPENING)?,
            daily: txn.open_table(DAILY).or_unavailable(OPENING)?,
            monthly: txn.open_table(MONTHLY).or_unavailable(OPENING)?,
        })
    }

    fn history_table(&mut self, periods: Periods) -> &mut redb::Table<'txn, (i32, TextKey), u64> {
        match periods {
            Periods::Days => &mut self.daily,
            Periods::Months => &mut self.monthly,
        }
    }
}

tables_from_redb!(TxnTables<'_>);

impl TablesMut for TxnTables<'_> {
    fn set_row(&mut self, route: Route, row: RouteRow) -> Result<(), StoreError> {
        self.routes
            .insert(route.as_str(), row_to_stored(row))
            .or_unavailable(WRITING)?;
        Ok(())
    }

    fn set_key(&mut self, id: &str, key: KeyRow) -> Result<(), StoreError> {
        self.keys
            .insert(id, (key.route.as_str(), key.count, key.expires_at))
            .or_unavailable(WRITING)?;
        self.expiry
            .insert((key.expires_at, id), ())
            .or_unavailable(WRITING)?;
        Ok(())
    }

    fn remove_expiry(&mut self, expires_at: u64, id: &str) -> Result<(), StoreError> {
        self.expiry
            .remove((expires_at, id))
            .or_unavailable(WRITING)?;
        Ok(())
    }

    fn set_history(
        &mut self,
        periods: Periods,
        period: i32,
        route: Route,
        n: u64,
    ) -> Result<(), StoreError> {
        self.history_table(periods)
            .insert((period, route.as_str()), n)
            .or_unavailable(WRITING)?;
        Ok(())
    }
}

impl UpkeepTables for TxnTables<'_> {
    fn expired_keys(&self, now: u64, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        self.expiry
            .range((0, "")..=(now, MAX_KEY_SENTINEL))
            .or_unavailable(READING)?
            .take(limit)
            .map(|entry| {
                entry.map(|(k, _)| {
                    let (at, key) = k.value();
                    (at, key.to_owned())
                })
            })
            .collect::<Result<_, _>>()
            .or_unavailable(READING)
    }

    fn remove_key(&mut self, expires_at: u64, id: &str) -> Result<(), StoreError> {
        self.expiry
            .remove((expires_at, id))
            .or_unavailable(WRITING)?;
        self.keys.remove(id).or_unavailable(WRITING)?;
        Ok(())
    }

    fn history_before(
        &self,
        periods: Periods,
        first: i32,
        limit: usize,
    ) -> Result<Vec<(i32, String)>, StoreError> {
        let table = match periods {
            Periods::Days => &self.daily,
            Periods::Months => &self.monthly,
        };
        table
            .range((i32::MIN, "")..(first, ""))
            .or_unavailable(READING)?
            .take(limit)
            .map(|entry| {
                entry.map(|(k, _)| {
                    let (n, route) = k.value();
                    (n, route.to_owned())
                })
            })
            .collect::<Result<_, _>>()
            .or_unavailable(READING)
    }

    fn remove_history(
        &mut self,
        periods: Periods,
        period: i32,
        route: &str,
    ) -> Result<(), StoreError> {
        self.history_table(periods)
            .remove((period, route))
            .or_unavailable(WRITING)?;
        Ok(())
    }
}

/// Runs upkeep (see [`housekeeping`]) in one write transaction, which the journal does not
/// carry: made durable by the next checkpoint, and done again after a crash that lost it (what
/// it deletes is never read). Returns how many entries it deleted.
pub(super) fn upkeep(
    db: &Database,
    now: u64,
    today: Day,
    limit: usize,
) -> Result<usize, StoreError> {
    const UPKEEP: &str = "deleting expired keys and periods out of the window";
    let mut txn = db.begin_write().or_unavailable(UPKEEP)?;
    txn.set_durability(Durability::None)
        .or_unavailable(UPKEEP)?;
    let deleted = {
        let mut tables = TxnTables::open(&txn)?;
        housekeeping(&mut tables, now, today, limit)?
    };
    if deleted == 0 {
        txn.abort().or_unavailable(UPKEEP)?;
    } else {
        txn.commit().or_unavailable(UPKEEP)?;
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests;
