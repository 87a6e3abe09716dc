//! Snapshots of the embedded store: export and import (see [`crate::store::SnapshotStore`];
//! the rules of what a record holds are shared with the memory store in `store::local`).
//!
//! **Export: one point in time without stopping commits.** Under the memtables' lock (which
//! every commit takes to merge its writes, after its journal record is durable and before it
//! is acknowledged), the export copies the active memtable and takes the frozen memtable and
//! the database read transaction that lie under it. Those three are always consistent with each
//! other (a flush swaps the frozen memtable for a newer read transaction in one step under the
//! same lock), so together they hold exactly the commits merged before that instant: every one
//! acknowledged before the export began, and none merged after. The lock is held for the copy
//! alone, bounded by the memtable's cap (8 MiB with the default memory: 65,536 routes' rows or
//! 16,384 keys, a few milliseconds). The export then reads from that view, in chunks of
//! [`EXPORT_CHUNK`](crate::store::local::snapshot::EXPORT_CHUNK) routes ranged from the last
//! one sent in the same read transaction, in a blocking task that waits on the channel when the
//! reader is slow: memory stays flat whatever the number of routes, and commits, flushes and
//! checkpoints go on meanwhile.
//!
//! Forcing a checkpoint first and then reading one read transaction would also give one point
//! in time, but it would have to hold the commit path while a whole memtable is flushed (a
//! durable commit of up to the cap's entries), stalling commits for that long; the copy is
//! cheaper. The price of either: the read transaction pins the database's pages as they were,
//! so the file may grow while a long export runs, and a reopen after a failed write waits for
//! the export to end.
//!
//! **Import.** Each chunk is applied in one durable redb write transaction together with its
//! mark, holding the commit path after flushing every memtable (see
//! `DatabaseFile::import_chunk`): a chunk is in whole or not at all, and a resumed run that
//! skips the lines its mark says were applied cannot count any twice. Imports run offline; if
//! commits do come, they wait for the chunk and then count on top of it.

use std::sync::Arc;

use super::{EmbeddedStore, tables::read_mark};
use crate::{
    snapshot::Record,
    store::{
        Consistency, ImportMark, OrUnavailable as _, RecordSink, SnapshotStore, StoreError,
        local::snapshot::{EXPORT_CHUNK, export, is_empty},
    },
};

#[async_trait::async_trait]
impl SnapshotStore for EmbeddedStore {
    async fn export(&self, now: u64, sink: RecordSink) -> Result<Consistency, StoreError> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || {
            let view = file.export_view()?;
            // A closed receiver ends the export early: whoever closed it knows why.
            export(&view, now, EXPORT_CHUNK, &mut |record| {
                sink.blocking_send(record).is_ok()
            })
        })
        .await
        .or_unavailable("running an export")??;
        Ok(Consistency::PointInTime)
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || is_empty(&file.export_view()?))
            .await
            .or_unavailable("reading whether the store is empty")?
    }

    async fn import_mark(&self, snapshot: &str) -> Result<Option<ImportMark>, StoreError> {
        // Marks are written to the database directly, durably: a new read transaction sees them.
        read_mark(&*self.file.get()?, snapshot)
    }

    async fn import_chunk(
        &self,
        records: &[Record],
        mark: &ImportMark,
        merge: bool,
    ) -> Result<(), StoreError> {
        let (records, mark) = (records.to_vec(), mark.clone());
        self.write(move |file| file.import_chunk(&records, &mark, merge))
            .await
    }
}

#[cfg(test)]
mod tests;
