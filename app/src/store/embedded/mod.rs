//! The default store: a redb database on local disk, with a journal in front of it. A batch is
//! one write transaction on the database, committed without an fsync, and one record appended to
//! the journal and synced before it returns: a batch of any size, on any routes, costs one
//! sequential write and one `fdatasync`. Checkpoints make the database durable in the
//! background and empty the journal; after a crash the journal's later records are replayed.
//!
//! Idempotency keys live in the database, in the table `key_records` (key → route, count,
//! expiry), written in the same write transaction as the counts of their batch, plus an index by
//! expiry (`key_expiry`) from which a periodic sweep deletes expired keys in bounded chunks.
//! Memory does not grow with the keys or routes stored: the database holds at most its page
//! cache in memory, and the journal none.
//!
//! [`tables`] holds the database's tables and their rows; [`journal`] the journal's format;
//! [`recovery`] opening the files and replaying the journal; [`file`] the commit path,
//! checkpoints, and opening the files again after a failed write (a full disk), so that the
//! store recovers without a restart. The commit rules themselves are shared with the memory
//! store (`store::local`).

mod file;
mod journal;
mod recovery;
mod snapshot;
mod tables;

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redb::{ReadableDatabase, ReadableTableMetadata};

use super::{
    BatchStore, OrUnavailable as _, RouteOutcome, RouteWrite, StoreBase, StoreError,
    local::{
        catalog::list_routes,
        record::BatchRecord,
        rows::{Periods, Tables as _},
        rules::read_range,
    },
};
use crate::{
    calendar::{Day, Month},
    clock::SharedClock,
    route::{Airline, Route},
};
use file::DatabaseFile;
pub use recovery::OpenError;
use tables::{EXPIRY, KEYS, upkeep};

/// The database file, inside the configured data directory.
pub const DATABASE_FILE: &str = "flight-counter.redb";
/// The journal, beside it: two segment files, this name with `.0` and `.1` after it.
pub const JOURNAL_FILE: &str = "flight-counter.journal";

/// A checkpoint is due once the active journal segment holds this much, whatever the interval:
/// it bounds the replay after a crash.
pub const CHECKPOINT_BYTES: u64 = 16 * 1024 * 1024;
/// The store's memory by default, in MiB. With the service's own memory and 128 connections it
/// keeps the process under 64 MiB resident through the benchmark's loads on 260,000 routes
/// (`bench/run.sh`), and a pod with a 256 MiB limit keeps room for 2,048 connections. A larger
/// cache saves the store some CPU on random routes once the database outgrows the page cache
/// (docs/benchmarks.md): raise it where memory allows.
pub const DEFAULT_CACHE_MIB: u32 = 32;

/// The smallest memtable cap, whatever the cache: a few thousand routes.
const MIN_MEMTABLE_BYTES: usize = 512 * 1024;

/// How the store uses memory and the disk.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedSettings {
    /// The memory the store may hold: half for the database's page cache, half for the two
    /// memtables (active and frozen) of commits not yet flushed to it.
    pub cache_bytes: usize,
    /// Longest time between checkpoints while commits come.
    pub checkpoint_interval: Duration,
}

impl EmbeddedSettings {
    pub(super) fn page_cache_bytes(&self) -> usize {
        self.cache_bytes / 2
    }

    /// Memory (as [`Memtable::bytes`] counts it) past which the active memtable is frozen and
    /// flushed at once, and commits wait for a flush under way: each of the two memtables gets
    /// a quarter of the cache.
    ///
    /// [`Memtable::bytes`]: super::local::memtable::Memtable::bytes
    pub(super) fn memtable_cap(&self) -> usize {
        (self.cache_bytes / 4).max(MIN_MEMTABLE_BYTES)
    }
}

/// Why the store takes no commit now, where no I/O error says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Closed {
    #[error("a write failed, and the files are not open again yet")]
    Broken,
    #[error("the files are being reopened")]
    Reopening,
    #[error("reads still hold the database")]
    InUse,
}

impl Default for EmbeddedSettings {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_CACHE_MIB as usize * 1024 * 1024,
            checkpoint_interval: Duration::from_secs(1),
        }
    }
}

/// The key records and the expiry index disagree: a bug, or a file changed by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{keys} key records but {index} expiry index entries")]
pub struct IndexMismatch {
    keys: u64,
    index: u64,
}

pub struct EmbeddedStore {
    file: Arc<DatabaseFile>,
    /// A checkpoint is queued or running: one at a time.
    checkpointing: Arc<AtomicBool>,
    /// The last checkpoint started in the background: `close` waits for it, so that once
    /// `close` returns and the store is dropped, nothing holds the file any more and it can be
    /// opened again at once (by this process or another).
    background: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `data_dir`, with the default settings. Fails if another
    /// process has it open.
    pub fn open(data_dir: &Path, clock: SharedClock) -> Result<Self, OpenError> {
        Self::open_with(data_dir, EmbeddedSettings::default(), clock)
    }

    /// As [`EmbeddedStore::open`], with `settings`.
    pub fn open_with(
        data_dir: &Path,
        settings: EmbeddedSettings,
        clock: SharedClock,
    ) -> Result<Self, OpenError> {
        std::fs::create_dir_all(data_dir).map_err(|source| OpenError::DataDirectory {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let file = DatabaseFile::open(
            data_dir.join(DATABASE_FILE),
            data_dir.join(JOURNAL_FILE),
            settings,
            clock,
        )?;
        Ok(Self {
            file: Arc::new(file),
            checkpointing: Arc::new(AtomicBool::new(false)),
            background: std::sync::Mutex::new(None),
        })
    }

    /// Checkpoints now: everything committed so far is made durable in the database and the
    /// journal is emptied.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        self.write(|file| file.checkpoint()).await
    }

    /// Starts a checkpoint off the async workers unless one is already on its way. Commits
    /// queue behind it; the commit that found it due has already been answered.
    fn checkpoint_in_background(&self) {
        if self.checkpointing.swap(true, Ordering::AcqRel) {
            return;
        }
        let file = Arc::clone(&self.file);
        let checkpointing = Arc::clone(&self.checkpointing);
        let handle = tokio::task::spawn_blocking(move || {
            if !file.is_broken()
                && let Err(err) = file.checkpoint()
            {
                file.mark_broken(&err);
            }
            checkpointing.store(false, Ordering::Release);
        });
        *self
            .background
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(handle);
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// How many idempotency key records the database holds, expired or not, after a checkpoint
    /// (so that it holds every one committed).
    pub async fn key_records(&self) -> Result<u64, StoreError> {
        const COUNTING: &str = "counting the key records";
        self.checkpoint().await?;
        let db = self.file.get()?;
        let txn = db.begin_read().or_unavailable(COUNTING)?;
        let keys = txn.open_table(KEYS).or_unavailable(COUNTING)?;
        let index = txn.open_table(EXPIRY).or_unavailable(COUNTING)?;
        let keys = keys.len().or_unavailable(COUNTING)?;
        let index = index.len().or_unavailable(COUNTING)?;
        if keys != index {
            return Err(StoreError::unavailable(
                COUNTING,
                IndexMismatch { keys, index },
            ));
        }
        Ok(keys)
    }

    /// Runs a blocking write off the async workers; a write that fails marks the store broken,
    /// to be opened again.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&DatabaseFile) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if self.file.is_broken() {
            return Err(StoreError::unavailable("writing", Closed::Broken));
        }
        let file = Arc::clone(&self.file);
        let result = tokio::task::spawn_blocking(move || work(&file))
            .await
            .or_unavailable("running a write")?;
        if let Err(err @ StoreError::Unavailable { .. }) = &result {
            self.file.mark_broken(err);
        }
        result
    }
}

#[async_trait::async_trait]
impl StoreBase for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn housekeeping(&self, now: u64, today: Day, limit: usize) -> Result<usize, StoreError> {
        self.write(move |file| file.upkeep(|db| upkeep(db, now, today, limit)))
            .await
    }

    async fn get(&self, route: Route) -> Result<u64, StoreError> {
        // Memtable lookups and a read transaction in the page cache: cheap enough to run inline.
        Ok(self.file.snapshot()?.layers().row(route)?.total)
    }

    /// From the view an export reads (a copy of the active memtable's names, sorted, and the
    /// database under it), in a blocking task: one page is one ranged read.
    async fn list_routes(
        &self,
        after: Option<Route>,
        airline: Option<Airline>,
        limit: usize,
    ) -> Result<Option<Vec<(Route, u64)>>, StoreError> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || {
            list_routes(&file.export_view()?, after, airline, limit).map(Some)
        })
        .await
        .or_unavailable("listing routes")?
    }

    async fn get_many(&self, routes: &[Route]) -> Result<Vec<u64>, StoreError> {
        let snapshot = self.file.snapshot()?;
        let layers = snapshot.layers();
        routes
            .iter()
            .map(|route| Ok(layers.row(*route)?.total))
            .collect()
    }

    async fn daily(&self, route: Route, from: Day, to: Day) -> Result<Vec<u64>, StoreError> {
        let snapshot = self.file.snapshot()?;
        read_range(
            &snapshot.layers(),
            Periods::Days,
            route,
            from.number(),
            to.number(),
        )
    }

    async fn monthly(&self, route: Route, from: Month, to: Month) -> Result<Vec<u64>, StoreError> {
        let snapshot = self.file.snapshot()?;
        read_range(
            &snapshot.layers(),
            Periods::Months,
            route,
            from.number(),
            to.number(),
        )
    }

    /// Whether a commit goes through now: an empty journal record and a checkpoint, or, after
    /// a failed write, opening the files again and then those.
    async fn check_ready(&self) -> Result<(), StoreError> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || {
            if file.is_broken() {
                return file.recover();
            }
            let probed = file.probe();
            if let Err(err) = &probed {
                file.mark_broken(err);
            }
            probed
        })
        .await
        .or_unavailable("checking readiness")?
    }

    /// A last checkpoint, so that the next start has no journal to replay.
    async fn close(&self) {
        let background = self
            .background
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(checkpoint) = background {
            // It holds the file until it returns; its failure marks the file broken.
            let _ = checkpoint.await;
        }
        if let Err(err) = self.checkpoint().await {
            tracing::warn!(error = %err, "the last checkpoint failed; the next start replays the journal");
        }
    }
}

#[async_trait::async_trait]
impl BatchStore for EmbeddedStore {
    async fn commit(&self, batch: &[RouteWrite]) -> Result<Vec<RouteOutcome>, StoreError> {
        let record = BatchRecord::of(batch);
        // The commit blocks on fdatasync: keep it off the async workers.
        let (outcomes, checkpoint_due) = self.write(move |file| file.commit(&record)).await?;
        if checkpoint_due {
            self.checkpoint_in_background();
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests;
