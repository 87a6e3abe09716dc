//! The database file: opening it (and cleaning up after a first start that failed), and opening
//! it again after a failed write.
//!
//! Once a write fails with an I/O error (a full disk, say), redb refuses every later write
//! ("Previous I/O error occurred. Please close and re-open the database."), and would until the
//! process restarted. So the store marks itself broken, and the readiness probe (every 2 s)
//! closes the database and opens it again, which runs redb's recovery, then proves it can
//! commit with a small durable write. Until that succeeds, readiness answers `503` and so do
//! POSTs; once space is back, commits resume without a restart.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use redb::{Builder, Database, TableDefinition};

use super::tables::{create_tables, unavailable};
use crate::{idempotency::epoch_seconds, store::StoreError};

/// The table the readiness probe writes to, proving a commit goes through.
const PROBE: TableDefinition<&str, u64> = TableDefinition::new("readiness_probe");
/// How long a reopen waits for reads and commits still holding the old database.
const REOPEN_WAIT: Duration = Duration::from_secs(2);

/// Opens (or creates) the database at `path`. A file that did not exist before and could not
/// be made a database (a full disk, say) is removed again, so that nothing is left behind to
/// block the next start. An empty file (a first start that stopped before writing anything:
/// no transaction was ever acknowledged from it) is initialised as a new store, with a warning.
pub fn open_database(path: &Path, cache_bytes: usize) -> anyhow::Result<Database> {
    let existed = match std::fs::metadata(path) {
        Ok(meta) if meta.len() == 0 => {
            tracing::warn!(
                path = %path.display(),
                "the database file is empty (a first start that did not finish?); \
                 initialising a new store in it"
            );
            false
        }
        Ok(_) => true,
        Err(_) => false,
    };
    let opened = Builder::new()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => anyhow::anyhow!(
                "database {} is already open in another process",
                path.display()
            ),
            other => anyhow::anyhow!("cannot open database {}: {other}", path.display()),
        })
        .and_then(|db| {
            let txn = db.begin_write()?;
            create_tables(&txn)?;
            txn.open_table(PROBE)?;
            txn.commit()?;
            Ok(db)
        });
    if opened.is_err() && !existed {
        // Nothing was ever committed to it; left behind, it would fail every later start.
        if let Err(err) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %err, "cannot remove the unfinished database file");
        }
    }
    opened
}

/// The open database, which a failed write makes the store open again.
pub struct DatabaseFile {
    /// `None` only while it is being opened again.
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    cache_bytes: usize,
    /// A write failed: nothing is committed until the database is opened again.
    broken: AtomicBool,
}

impl DatabaseFile {
    pub fn open(path: PathBuf, cache_bytes: usize) -> anyhow::Result<Self> {
        let db = open_database(&path, cache_bytes)?;
        Ok(Self {
            db: RwLock::new(Some(Arc::new(db))),
            path,
            cache_bytes,
            broken: AtomicBool::new(false),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database, for one transaction.
    pub fn get(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the database is being reopened".into()))
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// A write failed: commits stop until [`DatabaseFile::recover`] succeeds.
    pub fn mark_broken(&self, err: &StoreError) {
        if !self.broken.swap(true, Ordering::AcqRel) {
            tracing::error!(
                path = %self.path.display(),
                error = %err,
                "a write to the database failed; it will be reopened once it can commit again"
            );
        }
    }

    /// Opens the database again and proves it can commit (blocking: call it off the async
    /// workers). On success the store takes commits again.
    pub fn recover(&self) -> Result<(), StoreError> {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.take() {
            // Readers and a commit may still hold it; the file lock is released only when the
            // last of them lets go.
            let started = Instant::now();
            let mut old = old;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still_shared) if started.elapsed() < REOPEN_WAIT => {
                        old = still_shared;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(still_shared) => {
                        *slot = Some(still_shared);
                        return Err(StoreError::Unavailable(
                            "the database is still in use; reopening later".into(),
                        ));
                    }
                }
            }
        }
        let db = open_database(&self.path, self.cache_bytes)
            .map_err(|e| StoreError::Unavailable(format!("{e:#}")))?;
        let db = Arc::new(db);
        *slot = Some(Arc::clone(&db));
        drop(slot);
        probe_commit(&db)?;
        self.broken.store(false, Ordering::Release);
        tracing::info!(path = %self.path.display(), "the database was reopened and commits again");
        Ok(())
    }

    /// Proves a durable commit goes through now.
    pub fn probe(&self) -> Result<(), StoreError> {
        probe_commit(&*self.get()?)
    }
}

/// One small durable write: what readiness needs to know is whether a commit goes through.
fn probe_commit(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    {
        let mut table = txn.open_table(PROBE).map_err(unavailable)?;
        table.insert("last", epoch_seconds()).map_err(unavailable)?;
    }
    txn.commit().map_err(unavailable)
}
