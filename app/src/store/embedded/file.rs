//! The open store's files and the commit path through them: commits, checkpoints, and
//! reopening after a failed write.
//!
//! **Commit.** A batch is applied to a scratch memtable over what the store holds, its record is
//! appended to the journal and made durable (one sequential write and one `fdatasync`, whatever
//! the routes), and only then are its writes merged into the active memtable, where reads see
//! them. A batch that fails changes nothing.
//!
//! **Checkpoint.** Every `checkpoint_interval` while commits come (or sooner, once the journal
//! holds [`CHECKPOINT_BYTES`] or the memtable its cap), and on every readiness probe, the active
//! memtable is frozen and later records go to the other journal segment. A background flush
//! writes the frozen memtable to the database in one durable transaction that also records the
//! last journal record it holds; the segment it came from is then free to be overwritten.
//! Commits go on meanwhile.
//!
//! **Recovery** after a crash is opening the files again (see `recovery`).
//!
//! **A failed write** (a full disk, say) marks the store broken: POSTs and readiness answer
//! `503`, and the readiness probe (every 2 s) closes the files and opens them again, which
//! replays the journal, then proves a commit goes through. Once space is back, commits resume
//! without a restart.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use redb::Database;

use super::{
    CHECKPOINT_BYTES, Closed, EmbeddedSettings,
    journal::Journal,
    recovery::{OpenError, PROBE, close_database, open_and_replay, open_new_or_existing},
    tables::{ReadTables, TxnTables, set_applied_seq},
};
use crate::{
    clock::SharedClock,
    store::{
        OrUnavailable as _, RouteOutcome, StoreError,
        local::{
            memtable::{Layers, Memtable, Overlay},
            record::BatchRecord,
            rules::write_batch,
        },
    },
};

/// The memtables: the active one takes commits; the frozen one is being flushed.
#[derive(Default)]
struct Memtables {
    active: Memtable,
    frozen: Option<Arc<Memtable>>,
    /// The last journal record whose writes the active memtable holds.
    active_last_seq: u64,
    frozen_last_seq: u64,
    /// A read transaction on the database as of the last flush, under the memtables, replaced
    /// together with dropping the frozen one. Reads and commits use it rather than begin a read
    /// transaction each: beginning one waits while a flush's durable commit writes its pages,
    /// which made every commit wait for the flush. `None` while the files are being reopened.
    db: Option<Arc<ReadTables>>,
}

/// The commit path: one commit or freeze at a time.
struct Writer {
    /// `None` while the files are being opened again.
    segments: Option<[Journal; 2]>,
    /// The segment that takes the next record.
    current: usize,
    next_seq: u64,
    last_freeze: Instant,
}

/// The open store, which a failed write makes open its files again.
pub struct DatabaseFile {
    /// `None` only while it is being opened again.
    db: RwLock<Option<Arc<Database>>>,
    memtables: RwLock<Memtables>,
    writer: Mutex<Writer>,
    /// One flush at a time; held by a reopen too.
    flushing: Mutex<()>,
    path: PathBuf,
    journal_path: PathBuf,
    settings: EmbeddedSettings,
    /// A write failed: nothing is committed until the files are opened again.
    broken: AtomicBool,
    /// What time a checkpoint records in the probe table.
    clock: SharedClock,
}

/// What a read sees: the memtables and a database snapshot, together.
pub struct Snapshot<'a> {
    memtables: RwLockReadGuard<'a, Memtables>,
    tables: Arc<ReadTables>,
}

impl Snapshot<'_> {
    pub fn layers(&self) -> Layers<'_, ReadTables> {
        Layers {
            active: &self.memtables.active,
            frozen: self.memtables.frozen.as_deref(),
            db: &self.tables,
        }
    }
}

impl DatabaseFile {
    /// Opens (or creates) the database at `path` and the journal segments beside
    /// `journal_path`, replaying the journal (see `recovery`).
    pub fn open(
        path: PathBuf,
        journal_path: PathBuf,
        settings: EmbeddedSettings,
        clock: SharedClock,
    ) -> Result<Self, OpenError> {
        let opened = open_new_or_existing(&path, &journal_path, settings.page_cache_bytes())?;
        let tables = Arc::new(ReadTables::open(&opened.db)?);
        Ok(Self {
            db: RwLock::new(Some(opened.db)),
            memtables: RwLock::new(Memtables {
                db: Some(tables),
                ..Memtables::default()
            }),
            writer: Mutex::new(Writer {
                segments: Some(opened.segments),
                current: 0,
                next_seq: opened.next_seq,
                last_freeze: Instant::now(),
            }),
            flushing: Mutex::new(()),
            path,
            journal_path,
            settings,
            broken: AtomicBool::new(false),
            clock,
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
            .ok_or_else(|| StoreError::unavailable("opening a transaction", Closed::Reopening))
    }

    /// What the store holds now, for reads.
    pub fn snapshot(&self) -> Result<Snapshot<'_>, StoreError> {
        let memtables = self.memtables.read().unwrap_or_else(|p| p.into_inner());
        let tables = memtables
            .db
            .clone()
            .ok_or_else(|| StoreError::unavailable("reading", Closed::Reopening))?;
        Ok(Snapshot { memtables, tables })
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// A write failed: commits stop until [`DatabaseFile::recover`] succeeds.
    pub fn mark_broken(&self, err: &StoreError) {
        if !self.broken.swap(true, Ordering::AcqRel) {
            tracing::error!(
                path = %self.path.display(),
                error = %err.chain(),
                "a write to the store failed; it will be reopened once it can commit again"
            );
        }
    }

    /// Commits one batch (blocking: call it off the async workers). Returns its outcomes, and
    /// whether a checkpoint is due.
    pub fn commit(&self, batch: &BatchRecord) -> Result<(Vec<RouteOutcome>, bool), StoreError> {
        let mut writer = self.writer();
        self.make_room(&mut writer)?;
        let (outcomes, held) = self.commit_locked(&mut writer, batch)?;
        // Half the cap: the flush starts well before commits would have to wait for it.
        let filling = held >= self.settings.memtable_cap() / 2;
        let due = writer.segments.as_ref().is_some_and(|segments| {
            let journal = &segments[writer.current];
            filling
                || journal.len() >= CHECKPOINT_BYTES
                || (!journal.is_empty()
                    && writer.last_freeze.elapsed() >= self.settings.checkpoint_interval)
        });
        Ok((outcomes, due))
    }

    /// Keeps the active memtable under its cap: past it, waits for the flush under way, then
    /// freezes the active one for the next flush.
    fn make_room(&self, writer: &mut Writer) -> Result<(), StoreError> {
        let cap = self.settings.memtable_cap();
        if self.read_memtables().active.bytes() < cap {
            return Ok(());
        }
        self.flush()?;
        self.freeze(writer)?;
        Ok(())
    }

    fn read_memtables(&self) -> RwLockReadGuard<'_, Memtables> {
        self.memtables.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits one batch; returns its outcomes and the memory the active memtable holds after.
    fn commit_locked(
        &self,
        writer: &mut Writer,
        batch: &BatchRecord,
    ) -> Result<(Vec<RouteOutcome>, usize), StoreError> {
        let seq = writer.next_seq;
        let current = writer.current;
        let segments = writer
            .segments
            .as_mut()
            .ok_or_else(|| StoreError::unavailable("committing", Closed::Reopening))?;
        let (outcomes, writes) = {
            let snapshot = self.snapshot()?;
            let layers = snapshot.layers();
            let mut overlay = Overlay::new(&layers);
            let outcomes = write_batch(&mut overlay, batch)?;
            (outcomes, overlay.writes)
        };
        let payload = batch.encode().or_unavailable("encoding a journal record")?;
        segments[current]
            .append(seq, &payload)
            .or_unavailable("appending to the journal")?;
        writer.next_seq += 1;
        let mut memtables = self.memtables.write().unwrap_or_else(|p| p.into_inner());
        memtables.active.merge(writes);
        memtables.active_last_seq = seq;
        Ok((outcomes, memtables.active.bytes()))
    }

    /// Freezes the active memtable, if it holds records and none is frozen, and sends the
    /// records that follow to the other journal segment. Returns whether it froze.
    fn freeze(&self, writer: &mut Writer) -> Result<bool, StoreError> {
        let segments = writer
            .segments
            .as_mut()
            .ok_or_else(|| StoreError::unavailable("freezing the memtable", Closed::Reopening))?;
        if segments[writer.current].is_empty() {
            return Ok(false);
        }
        let mut memtables = self.memtables.write().unwrap_or_else(|p| p.into_inner());
        if memtables.frozen.is_some() {
            return Ok(false);
        }
        let active = std::mem::take(&mut memtables.active);
        memtables.frozen = Some(Arc::new(active));
        memtables.frozen_last_seq = memtables.active_last_seq;
        drop(memtables);
        // The other segment's records were all flushed by the last flush, which ended before
        // this freeze (nothing was frozen).
        writer.current ^= 1;
        segments[writer.current].reset();
        writer.last_freeze = Instant::now();
        Ok(true)
    }

    /// Writes the frozen memtable, if any, to the database in one durable commit (blocking).
    fn flush(&self) -> Result<(), StoreError> {
        let _flushing = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let (frozen, last_seq) = {
            let memtables = self.read_memtables();
            match &memtables.frozen {
                Some(frozen) => (Arc::clone(frozen), memtables.frozen_last_seq),
                None => return Ok(()),
            }
        };
        let started = Instant::now();
        let db = self.get()?;
        const FLUSHING: &str = "flushing the memtable to the database";
        let txn = db.begin_write().or_unavailable(FLUSHING)?;
        {
            let mut tables = TxnTables::open(&txn)?;
            frozen.flush_into(&mut tables)?;
        }
        set_applied_seq(&txn, last_seq)?;
        txn.open_table(PROBE)
            .or_unavailable(FLUSHING)?
            .insert("checkpoint", self.clock.epoch_seconds())
            .or_unavailable(FLUSHING)?;
        txn.commit().or_unavailable(FLUSHING)?;
        let flushed = Arc::new(ReadTables::open(&db)?);
        let mut memtables = self.memtables.write().unwrap_or_else(|p| p.into_inner());
        memtables.frozen = None;
        memtables.db = Some(flushed);
        drop(memtables);
        drop(frozen);
        give_back_freed_memory();
        crate::telemetry::metrics::checkpoint(started.elapsed());
        Ok(())
    }

    /// Makes every commit so far durable in the database (blocking): finishes the flush under
    /// way, freezes what came since, and flushes it.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.flush()?;
        self.freeze(&mut self.writer())?;
        self.flush()
    }

    /// Runs upkeep that deletes from the database (blocking), then lets reads see it.
    /// Everything committed goes to the database first: a memtable flushed after the upkeep
    /// would write back a day it had deleted. No flush runs meanwhile, so that the read
    /// transaction this installs is never older than the last flush's.
    pub fn upkeep<T>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.checkpoint()?;
        let _flushing = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        let db = self.get()?;
        let done = work(&db)?;
        let fresh = Arc::new(ReadTables::open(&db)?);
        self.memtables.write().unwrap_or_else(|p| p.into_inner()).db = Some(fresh);
        Ok(done)
    }

    /// Closes the files and opens them again, replaying the journal, then proves a commit goes
    /// through (blocking). On success the store takes commits again.
    pub fn recover(&self) -> Result<(), StoreError> {
        let mut writer = self.writer();
        let flushing = self.flushing.lock().unwrap_or_else(|p| p.into_inner());
        // Everything the memtables hold is in the journal, which the reopen replays. Their read
        // transaction goes first: it holds the database file open. Until the reopen is done,
        // reads answer that the store is being reopened.
        *self.memtables.write().unwrap_or_else(|p| p.into_inner()) = Memtables::default();
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = slot.take()
            && let Err(still_shared) = close_database(old)
        {
            *slot = Some(still_shared);
            return Err(StoreError::unavailable(
                "reopening the store's files",
                Closed::InUse,
            ));
        }
        writer.segments = None;
        let opened = open_and_replay(
            &self.path,
            &self.journal_path,
            self.settings.page_cache_bytes(),
        )
        .map_err(|err| StoreError::unavailable("reopening the store's files", err))?;
        let tables = ReadTables::open(&opened.db)?;
        *slot = Some(opened.db);
        drop(slot);
        self.memtables.write().unwrap_or_else(|p| p.into_inner()).db = Some(Arc::new(tables));
        writer.segments = Some(opened.segments);
        writer.current = 0;
        writer.next_seq = opened.next_seq;
        writer.last_freeze = Instant::now();
        drop(flushing);
        drop(writer);
        self.probe()?;
        self.broken.store(false, Ordering::Release);
        tracing::info!(path = %self.path.display(), "the store was reopened and commits again");
        Ok(())
    }

    /// Proves a commit goes through now, and checkpoints (blocking): an empty record appended
    /// to the journal and synced, then a durable commit of the database.
    pub fn probe(&self) -> Result<(), StoreError> {
        // The commit path is held for the record alone: commits wait for no flush.
        self.commit_locked(&mut self.writer(), &BatchRecord { writes: Vec::new() })?;
        self.checkpoint()
    }
}

/// Returns the heap's free pages to the system after a flush has freed a memtable. Its keys'
/// strings and the page cache's evicted pages are small blocks from the heap, which glibc keeps
/// resident once freed; trimming once a checkpoint (about a second) keeps the resident memory
/// near what the store holds. Measured on the benchmark's loads: peak RSS 77 MiB against 89
/// with the default cache of the time (64 MiB), at no CPU cost the benchmark could tell.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's heaps to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

mod snapshot;
#[cfg(test)]
mod tests;
