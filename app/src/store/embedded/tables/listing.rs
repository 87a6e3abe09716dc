//! What a snapshot needs of the database besides the commit rules' reads: its routes and key
//! records listed in order from where the last chunk stopped, and the table of import marks.

use std::ops::Bound;

use redb::{Database, ReadableDatabase, TableDefinition, WriteTransaction};

use super::{OPENING, READING, ReadTables, TextKey, WRITING};
use crate::store::{
    OrUnavailable as _, StoreError, local::snapshot::Listing, snapshot::ImportMark,
};

/// Snapshot id → (lines of its file applied, whether its end line was reached): how far the
/// import of each snapshot has come, written in the transaction of the chunk it marks. Created
/// when the file is opened, so that files of earlier versions get it too.
pub(in crate::store::embedded) const IMPORTS: TableDefinition<&str, (u64, bool)> =
    TableDefinition::new("imports");

/// The names of up to `limit` entries of `table` after `after`, ascending.
fn names_after<V: redb::Value + 'static>(
    table: &redb::ReadOnlyTable<TextKey, V>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
    table
        .range::<&str>((lower, Bound::Unbounded))
        .or_unavailable(READING)?
        .take(limit)
        .map(|entry| entry.map(|(name, _)| name.value().to_owned()))
        .collect::<Result<_, _>>()
        .or_unavailable(READING)
}

impl Listing for ReadTables {
    fn routes_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        names_after(&self.routes, after, limit)
    }

    fn keys_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        names_after(&self.keys, after, limit)
    }
}

/// The mark of the import of `snapshot`, if one was begun.
pub(in crate::store::embedded) fn read_mark(
    db: &Database,
    snapshot: &str,
) -> Result<Option<ImportMark>, StoreError> {
    let txn = db.begin_read().or_unavailable(OPENING)?;
    let table = match txn.open_table(IMPORTS) {
        Ok(table) => table,
        // Not created yet: no import was ever begun.
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(err) => return Err(StoreError::unavailable(OPENING, err)),
    };
    Ok(table.get(snapshot).or_unavailable(READING)?.map(|v| {
        let (lines_done, finished) = v.value();
        ImportMark {
            snapshot: snapshot.to_owned(),
            lines_done,
            finished,
        }
    }))
}

/// Records `mark` in the transaction that applies the chunk it marks.
pub(in crate::store::embedded) fn write_mark(
    txn: &WriteTransaction,
    mark: &ImportMark,
) -> Result<(), StoreError> {
    txn.open_table(IMPORTS)
        .or_unavailable(OPENING)?
        .insert(mark.snapshot.as_str(), (mark.lines_done, mark.finished))
        .or_unavailable(WRITING)?;
    Ok(())
}
