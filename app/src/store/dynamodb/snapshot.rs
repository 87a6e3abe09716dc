//! Snapshots of the dynamodb store: export and import (see [`crate::store::SnapshotStore`]).
//!
//! - [`export`]: a parallel, consistent `Scan` of the table; each route from the one item the
//!   scan read, each key record's count worked out as a replay of the key would; put in the
//!   file's order by [`sort`], an external merge sort, so memory stays flat with the table.
//! - [`import`]: chunks of records written with `BatchWriteItem` (routes, set whole) or
//!   `UpdateItem` (routes merged, once per snapshot), key records with a conditional `PutItem`
//!   each, then the import's mark; every write is idempotent, so a resumed run may repeat a
//!   chunk; [`mark`]: the mark itself, and `is_empty`.
//!
//! Throttled calls are sent again after a pause rather than failing the whole export or
//! import ([`DynamoStore::paced`]).

mod export;
mod import;
mod mark;
mod sort;
#[cfg(test)]
mod tests;

use std::{
    future::Future,
    time::{Duration, Instant},
};

use super::{DynamoStore, retry::resend_backoff};
use crate::{
    snapshot::Record,
    store::{Consistency, ImportMark, RecordSink, SnapshotStore, StoreError},
};

/// Records an export sorts in memory before it spills them, sorted, to a temporary file. A
/// route with every day and month kept takes about 1.5 KB in memory, so this bounds the
/// buffer to about 30 MB whatever the size of the table.
pub const EXPORT_SORT_BUFFER: usize = 20_000;

/// Partition key prefix of an import's mark: `import#<snapshot id>`. No route holds `#`, and
/// exports and `is_empty` skip it.
pub const IMPORT_MARK_PREFIX: &str = "import#";

/// First pause after a throttled call, and the longest (jittered, doubling in between).
const PACE_INITIAL: Duration = Duration::from_millis(50);
const PACE_MAX: Duration = Duration::from_secs(2);
/// How long a call may go on being throttled, with no progress, before it gives up: an
/// export or import is a long job, so this is far longer than the commit timeout, and never
/// shorter than the store's operation timeout.
const PACE_PATIENCE: Duration = Duration::from_secs(60);

/// Why an export or import stopped where no SDK error says it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum SnapshotFault {
    #[error("the snapshot's reader stopped taking records")]
    SinkClosed,
    #[error("{0} comes after {1}: the export's order broke")]
    OutOfOrder(String, String),
    #[error("the item {0:?} is neither a route, a key record, a batch record nor an import mark")]
    UnknownItem(String),
    #[error("the key record {0:?} does not name a key")]
    BadRecordId(String),
}

#[async_trait::async_trait]
impl SnapshotStore for DynamoStore {
    async fn export(&self, now: u64, sink: RecordSink) -> Result<Consistency, StoreError> {
        self.export_sorted_in(now, sink, EXPORT_SORT_BUFFER).await
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.holds_nothing().await
    }

    async fn import_mark(&self, snapshot: &str) -> Result<Option<ImportMark>, StoreError> {
        self.read_import_mark(snapshot).await
    }

    async fn import_chunk(
        &self,
        records: &[Record],
        mark: &ImportMark,
        merge: bool,
    ) -> Result<(), StoreError> {
        self.import_records(records, mark, merge).await
    }
}

impl DynamoStore {
    /// Runs `call` until it is not throttled, pausing longer each time (jittered), for up to
    /// [`PACE_PATIENCE`] (or the operation timeout, if longer); other errors come back at once
    /// (the SDK has retried the transient ones).
    pub(super) async fn paced<T, F, Fut>(&self, mut call: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let started = Instant::now();
        let mut round = 0u32;
        loop {
            match call().await {
                Err(err @ StoreError::Throttled { .. }) => {
                    round += 1;
                    if started.elapsed() >= self.pace_patience() {
                        return Err(err);
                    }
                    tokio::time::sleep(resend_backoff(round, PACE_INITIAL, PACE_MAX)).await;
                }
                other => return other,
            }
        }
    }

    pub(super) fn pace_patience(&self) -> Duration {
        PACE_PATIENCE.max(self.settings.operation_timeout)
    }
}
