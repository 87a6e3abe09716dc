//! The commit path's part in snapshots: the instant an export reads, and an import chunk's
//! transaction (see `embedded::snapshot` for why they are taken this way).

use std::sync::Arc;

use super::DatabaseFile;
use crate::{
    snapshot::Record,
    store::{
        OrUnavailable as _, StoreError,
        embedded::{
            Closed,
            tables::{ReadTables, TxnTables, write_mark},
        },
        local::snapshot::{FrozenView, apply_chunk},
        snapshot::ImportMark,
    },
};

impl DatabaseFile {
    /// What the store holds now, to export: the active memtable copied, the frozen one and the
    /// database read transaction under them shared, all taken under the memtables' lock, so
    /// that the view holds exactly the commits merged into the active memtable before it. The
    /// lock is held for the copy alone (the active memtable is bounded by its cap).
    pub fn export_view(&self) -> Result<FrozenView<ReadTables>, StoreError> {
        let (active, frozen, db) = {
            let memtables = self.read_memtables();
            let db = memtables
                .db
                .clone()
                .ok_or_else(|| StoreError::unavailable("exporting", Closed::Reopening))?;
            (memtables.active.clone(), memtables.frozen.clone(), db)
        };
        Ok(FrozenView::new(active, frozen, db))
    }

    /// Applies one import chunk and its mark in one durable write transaction (blocking).
    ///
    /// The commit path is held throughout: everything committed before is flushed to the
    /// database first (so that no memtable flushed later writes an older row back over the
    /// chunk's), and no commit runs until the chunk is in the database and reads see it. An
    /// import runs with the service stopped, so holding commits for a chunk costs nothing there.
    pub fn import_chunk(
        &self,
        records: &[Record],
        mark: &ImportMark,
        merge: bool,
    ) -> Result<(), StoreError> {
        const IMPORTING: &str = "importing a snapshot chunk";
        let mut writer = self.writer();
        self.flush()?;
        self.freeze(&mut writer)?;
        self.flush()?;
        let _flushing = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let db = self.get()?;
        // Default durability: the chunk and its mark are on disk when this returns.
        let txn = db.begin_write().or_unavailable(IMPORTING)?;
        {
            let mut tables = TxnTables::open(&txn)?;
            // On an error the transaction is dropped, which aborts it: nothing is applied.
            apply_chunk(&mut tables, records, merge, self.clock.epoch_seconds())?;
        }
        write_mark(&txn, mark)?;
        txn.commit().or_unavailable(IMPORTING)?;
        let fresh = Arc::new(ReadTables::open(&db)?);
        self.memtables.write().unwrap_or_else(|p| p.into_inner()).db = Some(fresh);
        Ok(())
    }
}
