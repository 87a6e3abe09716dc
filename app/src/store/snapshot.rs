//! What a store gives to a snapshot and takes from one (the file itself is
//! [`crate::snapshot`]). Every store exports its routes in ascending order and its unexpired
//! key records in ascending order of record id, and imports a snapshot in chunks, each applied
//! together with a mark of how far the import has come, so that an import killed half-way and
//! run again ends exact, and a second import of the same snapshot changes nothing.

use tokio::sync::mpsc;

use super::StoreError;
use crate::snapshot::Record;

/// Where an export sends its records, in the file's order. A closed receiver stops the export.
pub type RecordSink = mpsc::Sender<Record>;

/// How far the import of one snapshot has come, as the target store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportMark {
    /// The snapshot's id (its header's).
    pub snapshot: String,
    /// Lines of the file applied, the header included: a run that resumes skips them.
    pub lines_done: u64,
    /// The end line was reached: importing the snapshot again changes nothing.
    pub finished: bool,
}

/// What an export promises about the moment it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// One point in time: every commit acknowledged before the export began is in it, none
    /// that began after (the local stores).
    PointInTime,
    /// Each route from one item read, each key record as it was when read: every commit
    /// acknowledged before the export began is in it, commits during it may or may not be, and
    /// a route's days and months always agree with its own total (DynamoDB, by Scan).
    PerItem,
}

/// A store that cannot take part in snapshots (test doubles).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("this store cannot export or import snapshots")]
pub struct Unsupported;

#[async_trait::async_trait]
pub trait SnapshotStore: Send + Sync {
    /// Sends every route (total, kept days and months) in ascending route order, then every
    /// key record unexpired at `now` in ascending order of its record id, to `sink`.
    async fn export(&self, now: u64, sink: RecordSink) -> Result<Consistency, StoreError> {
        let _ = (now, sink);
        Err(StoreError::unavailable("exporting a snapshot", Unsupported))
    }

    /// Whether the store holds no route and no key record (an import goes into an empty
    /// store unless told to merge).
    async fn is_empty(&self) -> Result<bool, StoreError> {
        Err(StoreError::unavailable("importing a snapshot", Unsupported))
    }

    /// The mark of the import of snapshot `snapshot`, if one was begun here.
    async fn import_mark(&self, snapshot: &str) -> Result<Option<ImportMark>, StoreError> {
        let _ = snapshot;
        Err(StoreError::unavailable("importing a snapshot", Unsupported))
    }

    /// Applies `records` and records `mark`. Either both are applied or neither is (local
    /// stores: one transaction), or the records may be applied again harmlessly by the run
    /// that resumes (DynamoDB: each write is idempotent on its own). With `merge`, a route's
    /// total, days and months are added to what the store holds, at most once per snapshot;
    /// without it, they are set (the store was empty when the import began). A key record the
    /// store already holds, unexpired, is kept as it is.
    async fn import_chunk(
        &self,
        records: &[Record],
        mark: &ImportMark,
        merge: bool,
    ) -> Result<(), StoreError> {
        let _ = (records, mark, merge);
        Err(StoreError::unavailable("importing a snapshot", Unsupported))
    }
}
