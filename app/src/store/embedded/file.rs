//! The store's files and the commit path through them.
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
//! **Recovery.** Opening the database rolls it back to its last durable commit, which says which
//! journal record it holds last; the segments' later records are applied again, in order, and
//! made durable in one commit. A torn record (one a crash cut short: never acknowledged) is
//! dropped with a warning. A journal whose records do not follow the database's is refused.
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
    time::{Duration, Instant},
};

use redb::{Builder, Database, TableDefinition};

use super::{
    journal::Journal,
    memtable::{Layers, Memtable, Overlay},
    record::BatchRecord,
    tables::{
        ReadTables, TxnTables, applied_seq, create_tables, set_applied_seq, unavailable,
        write_batch,
    },
};
use crate::{
    idempotency::epoch_seconds,
    store::{RouteOutcome, StoreError},
};

/// The table checkpoints and the readiness probe write to, so that no durable commit is empty.
const PROBE: TableDefinition<&str, u64> = TableDefinition::new("readiness_probe");
/// How long a reopen waits for reads still holding the old database.
const REOPEN_WAIT: Duration = Duration::from_secs(2);
/// A checkpoint is due once the active journal segment holds this much, whatever the interval:
/// it bounds the replay after a crash.
pub const CHECKPOINT_BYTES: u64 = 16 * 1024 * 1024;
/// Memory a memtable entry (a row or a key) costs, about, its map's spare room, its
/// allocations and the allocator's own overhead included. Measured, not summed: a soak of
/// keyed POSTs over a million routes held 400-480 bytes of resident memory per entry.
const MEMTABLE_ENTRY_BYTES: usize = 512;

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
    fn page_cache_bytes(&self) -> usize {
        self.cache_bytes / 2
    }

    /// Entries past which the active memtable is frozen and flushed at once, and commits wait
    /// for a flush under way: each of the two memtables gets a quarter of the memory.
    fn memtable_cap(&self) -> usize {
        (self.cache_bytes / 4 / MEMTABLE_ENTRY_BYTES).max(1024)
    }
}

/// The journal's two segment files: one takes the commits while the other's records are being
/// flushed.
pub fn segment_paths(journal_path: &Path) -> [PathBuf; 2] {
    ["0", "1"].map(|n| {
        let mut name = journal_path.as_os_str().to_owned();
        name.push(".");
        name.push(n);
        PathBuf::from(name)
    })
}

/// Opens (or creates) the database at `path`, writing nothing yet. An empty file (a first start
/// that stopped before writing anything: no transaction was ever acknowledged from it) is
/// initialised as a new store, with a warning.
fn open_database(path: &Path, cache_bytes: usize) -> anyhow::Result<Database> {
    if std::fs::metadata(path).is_ok_and(|meta| meta.len() == 0) {
        tracing::warn!(
            path = %path.display(),
            "the database file is empty (a first start that did not finish?); \
             initialising a new store in it"
        );
    }
    Builder::new()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => anyhow::anyhow!(
                "database {} is already open in another process",
                path.display()
            ),
            other => anyhow::anyhow!("cannot open database {}: {other}", path.display()),
        })
}

/// The files, open, with nothing left to replay.
struct Opened {
    db: Arc<Database>,
    segments: [Journal; 2],
    next_seq: u64,
}

/// Opens the database, applies the journal's records it does not hold yet, makes them durable
/// and empties the journal.
fn open_and_replay(path: &Path, journal_path: &Path, cache_bytes: usize) -> anyhow::Result<Opened> {
    use anyhow::Context as _;

    let db = open_database(path, cache_bytes)?;
    let applied = applied_seq(&db).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut later: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut last_seq = applied;
    let mut segments = Vec::with_capacity(2);
    for segment in segment_paths(journal_path) {
        let (journal, scan) = Journal::open(&segment, |seq, payload| {
            if seq > applied {
                later.push((seq, payload.to_vec()));
            }
            Ok::<_, std::io::Error>(())
        })
        .with_context(|| format!("cannot read the journal {}", segment.display()))?;
        last_seq = last_seq.max(scan.last_seq.unwrap_or(0));
        if let Some(torn) = scan.torn {
            tracing::warn!(
                journal = %segment.display(),
                offset = torn.offset,
                record = torn.seq,
                "dropped a journal record that a crash cut short (it was never acknowledged)"
            );
        }
        segments.push(journal);
    }
    later.sort_unstable_by_key(|(seq, _)| *seq);
    // Checked before anything is written: a refused store is left exactly as it was.
    let mut records = Vec::with_capacity(later.len());
    for (expected, (seq, payload)) in (applied + 1..).zip(&later) {
        anyhow::ensure!(
            *seq == expected,
            "the journal {}.* goes on from record {seq}, but the database {} holds records up \
             to {} only. Refusing to open; the files are left as they are (was one of them \
             replaced?)",
            journal_path.display(),
            path.display(),
            expected - 1
        );
        records.push(BatchRecord::decode(payload).with_context(|| {
            format!("journal record {seq} has a valid checksum but cannot be read")
        })?);
    }
    // One durable commit: the tables (new ones, or an earlier layout's moved), the replay.
    let txn = db.begin_write()?;
    create_tables(&txn)?;
    txn.open_table(PROBE)?;
    {
        let mut tables = TxnTables::open(&txn).map_err(|e| anyhow::anyhow!("{e}"))?;
        for (seq, record) in (applied + 1..).zip(&records) {
            write_batch(&mut tables, record)
                .map_err(|e| anyhow::anyhow!("replaying journal record {seq}: {e}"))?;
        }
    }
    if let Some((last, _)) = later.last() {
        set_applied_seq(&txn, *last).map_err(|e| anyhow::anyhow!("{e}"))?;
        tracing::info!(
            records = later.len(),
            "replayed the journal's records since the last checkpoint"
        );
    }
    txn.commit()?;
    for segment in &mut segments {
        segment.reset();
    }
    let segments: [Journal; 2] = segments
        .try_into()
        .map_err(|_| anyhow::anyhow!("the journal has two segments"))?;
    Ok(Opened {
        db: Arc::new(db),
        segments,
        next_seq: last_seq + 1,
    })
}

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
    /// `journal_path`, replaying the journal. Files that did not exist before and could not be
    /// made a store (a full disk, say) are removed again, so that nothing is left behind to
    /// block the next start.
    pub fn open(
        path: PathBuf,
        journal_path: PathBuf,
        settings: EmbeddedSettings,
    ) -> anyhow::Result<Self> {
        let existed = std::fs::metadata(&path).is_ok_and(|meta| meta.len() > 0);
        let segments = segment_paths(&journal_path);
        let segments_existed = segments.each_ref().map(|segment| segment.exists());
        let opened = match open_and_replay(&path, &journal_path, settings.page_cache_bytes()) {
            Ok(opened) => opened,
            Err(err) => {
                if !existed {
                    // Nothing was ever committed to them; left behind, they would fail every
                    // later start.
                    remove_unfinished(&path);
                    for (segment, existed) in segments.iter().zip(segments_existed) {
                        if !existed {
                            remove_unfinished(segment);
                        }
                    }
                }
                return Err(err);
            }
        };
        let tables = Arc::new(ReadTables::open(&opened.db).map_err(|e| anyhow::anyhow!("{e}"))?);
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

    /// What the store holds now, for reads.
    pub fn snapshot(&self) -> Result<Snapshot<'_>, StoreError> {
        let memtables = self.memtables.read().unwrap_or_else(|p| p.into_inner());
        let tables = memtables.db.clone().ok_or_else(|| {
            StoreError::Unavailable("the store's files are being reopened".into())
        })?;
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
                error = %err,
                "a write to the store failed; it will be reopened once it can commit again"
            );
        }
    }

    /// Commits one batch (blocking: call it off the async workers). Returns its outcomes, and
    /// whether a checkpoint is due.
    pub fn commit(&self, batch: &BatchRecord) -> Result<(Vec<RouteOutcome>, bool), StoreError> {
        let mut writer = self.writer();
        self.make_room(&mut writer)?;
        let (outcomes, entries) = self.commit_locked(&mut writer, batch)?;
        // Half the cap: the flush starts well before commits would have to wait for it.
        let filling = entries >= self.settings.memtable_cap() / 2;
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
        if self.read_memtables().active.entries() < cap {
            return Ok(());
        }
        self.flush()?;
        self.freeze(writer)?;
        Ok(())
    }

    fn read_memtables(&self) -> RwLockReadGuard<'_, Memtables> {
        self.memtables.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits one batch; returns its outcomes and the entries the active memtable holds after.
    fn commit_locked(
        &self,
        writer: &mut Writer,
        batch: &BatchRecord,
    ) -> Result<(Vec<RouteOutcome>, usize), StoreError> {
        let seq = writer.next_seq;
        let current = writer.current;
        let segments = writer.segments.as_mut().ok_or_else(|| {
            StoreError::Unavailable("the store's files are being reopened".into())
        })?;
        let (outcomes, writes) = {
            let snapshot = self.snapshot()?;
            let layers = snapshot.layers();
            let mut overlay = Overlay::new(&layers);
            let outcomes = write_batch(&mut overlay, batch)?;
            (outcomes, overlay.writes)
        };
        let payload = batch.encode().map_err(unavailable)?;
        segments[current].append(seq, &payload).map_err(|err| {
            StoreError::Unavailable(format!("cannot append to the journal: {err}"))
        })?;
        writer.next_seq += 1;
        let mut memtables = self.memtables.write().unwrap_or_else(|p| p.into_inner());
        memtables.active.merge(writes);
        memtables.active_last_seq = seq;
        Ok((outcomes, memtables.active.entries()))
    }

    /// Freezes the active memtable, if it holds records and none is frozen, and sends the
    /// records that follow to the other journal segment. Returns whether it froze.
    fn freeze(&self, writer: &mut Writer) -> Result<bool, StoreError> {
        let segments = writer.segments.as_mut().ok_or_else(|| {
            StoreError::Unavailable("the store's files are being reopened".into())
        })?;
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
        let txn = db.begin_write().map_err(unavailable)?;
        {
            let mut tables = TxnTables::open(&txn)?;
            frozen.flush_into(&mut tables)?;
        }
        set_applied_seq(&txn, last_seq)?;
        txn.open_table(PROBE)
            .map_err(unavailable)?
            .insert("checkpoint", epoch_seconds())
            .map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        let flushed = Arc::new(ReadTables::open(&db)?);
        let mut memtables = self.memtables.write().unwrap_or_else(|p| p.into_inner());
        memtables.frozen = None;
        memtables.db = Some(flushed);
        drop(memtables);
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
        if let Some(old) = slot.take() {
            // Reads may still hold it; the file lock is released only when the last of them
            // lets go.
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
        writer.segments = None;
        let opened = open_and_replay(
            &self.path,
            &self.journal_path,
            self.settings.page_cache_bytes(),
        )
        .map_err(|e| StoreError::Unavailable(format!("{e:#}")))?;
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

fn remove_unfinished(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot remove an unfinished store file");
        }
    }
}

#[cfg(test)]
mod tests {
    //! What a crash leaves: the files as they are when the process stops without a checkpoint
    //! (dropping the store here writes nothing more than a SIGKILL would let it write).
    use super::*;
    use crate::store::embedded::{DATABASE_FILE, JOURNAL_FILE, record::WriteRecord};

    const NEVER: Duration = Duration::from_secs(3600);

    fn try_open(dir: &Path) -> anyhow::Result<DatabaseFile> {
        DatabaseFile::open(
            dir.join(DATABASE_FILE),
            dir.join(JOURNAL_FILE),
            EmbeddedSettings {
                cache_bytes: 4 << 20,
                checkpoint_interval: NEVER,
            },
        )
    }

    fn open(dir: &Path) -> DatabaseFile {
        try_open(dir).expect("open")
    }

    fn batch(routes: &[&str]) -> BatchRecord {
        BatchRecord {
            writes: routes
                .iter()
                .map(|route| WriteRecord {
                    route: (*route).to_owned(),
                    keyless: 1,
                    day: 2_500,
                    keyed: Vec::new(),
                })
                .collect(),
        }
    }

    fn count(file: &DatabaseFile, route: &str) -> u64 {
        use crate::store::embedded::tables::Tables as _;
        file.snapshot()
            .expect("snapshot")
            .layers()
            .row(route)
            .expect("row")
            .0
    }

    fn segment(dir: &Path, n: usize) -> PathBuf {
        segment_paths(&dir.join(JOURNAL_FILE))[n].clone()
    }

    #[test]
    fn a_crash_keeps_every_commit_and_a_torn_last_record_is_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let file = open(dir.path());
        for _ in 0..10 {
            file.commit(&batch(&["AR1", "AR2"])).expect("commit");
        }
        drop(file);
        let reopened = open(dir.path());
        assert_eq!((count(&reopened, "AR1"), count(&reopened, "AR2")), (10, 10));
        for _ in 0..5 {
            reopened.commit(&batch(&["AR1"])).expect("commit");
        }
        drop(reopened);
        // The last record cut short, and garbage after it: the crash came mid-write. (The
        // file goes on after the records with older ones, which they overwrote in part.)
        let path = segment(dir.path(), 0);
        let (_, scan) = Journal::open::<std::io::Error>(&path, |_, _| Ok(())).expect("journal");
        assert_eq!(scan.records, 5);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.truncate(scan.valid_bytes as usize - 3);
        bytes.extend_from_slice(b"\x07garbage after a torn record");
        std::fs::write(&path, &bytes).expect("write");
        let reopened = open(dir.path());
        assert_eq!(count(&reopened, "AR1"), 14);
        // Numbering goes on after the dropped record; the next start reads it all back.
        reopened.commit(&batch(&["AR1"])).expect("commit");
        drop(reopened);
        assert_eq!(count(&open(dir.path()), "AR1"), 15);
    }

    /// A checkpoint stopped after the freeze, before its flush committed: the frozen records
    /// are in one segment, the later ones in the other, and both are replayed in order.
    #[test]
    fn a_crash_in_the_middle_of_a_checkpoint_loses_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let file = open(dir.path());
        file.commit(&batch(&["LA1"])).expect("commit");
        file.checkpoint().expect("checkpoint");
        for _ in 0..3 {
            file.commit(&batch(&["LA1", "LA2"])).expect("commit");
        }
        assert!(file.freeze(&mut file.writer()).expect("freeze"));
        for _ in 0..2 {
            file.commit(&batch(&["LA2"])).expect("commit");
        }
        assert_eq!((count(&file, "LA1"), count(&file, "LA2")), (4, 5));
        drop(file);
        let reopened = open(dir.path());
        assert_eq!((count(&reopened, "LA1"), count(&reopened, "LA2")), (4, 5));
    }

    /// A flush that committed, its segment not yet overwritten: its records are in the
    /// database and are not applied twice.
    #[test]
    fn records_already_flushed_are_not_applied_twice() {
        let dir = tempfile::tempdir().expect("dir");
        let file = open(dir.path());
        for _ in 0..4 {
            file.commit(&batch(&["BA1"])).expect("commit");
        }
        assert!(file.freeze(&mut file.writer()).expect("freeze"));
        file.commit(&batch(&["BA1"])).expect("commit");
        file.flush().expect("flush");
        drop(file);
        let reopened = open(dir.path());
        assert_eq!(count(&reopened, "BA1"), 5);
    }

    /// Commits go on past the memtable's cap: they wait for the flush and freeze again.
    #[test]
    fn the_memtable_stays_under_its_cap() {
        let dir = tempfile::tempdir().expect("dir");
        let file = open(dir.path());
        let cap = file.settings.memtable_cap();
        let letter = |n: usize| char::from(b'A' + (n % 26) as u8);
        let routes: Vec<String> = (0..cap * 3)
            .map(|i| format!("{}{}{}", letter(i), letter(i / 26), i / 676 + 1))
            .collect();
        for chunk in routes.chunks(100) {
            let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
            file.commit(&batch(&names)).expect("commit");
            assert!(file.read_memtables().active.entries() <= cap + 100);
        }
        drop(file);
        let reopened = open(dir.path());
        assert!(routes.iter().all(|route| count(&reopened, route) == 1));
    }

    /// A journal whose records do not follow the database's (one of them replaced) is refused:
    /// nothing of it is applied, and it is left as it was.
    #[test]
    fn a_journal_that_does_not_follow_the_database_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let file = open(dir.path());
        for _ in 0..3 {
            file.commit(&batch(&["AR1"])).expect("commit");
        }
        drop(file);
        let fresh = open(dir.path());
        fresh.checkpoint().expect("checkpoint");
        for _ in 0..5 {
            fresh.commit(&batch(&["AR1"])).expect("commit");
        }
        fresh.checkpoint().expect("checkpoint");
        drop(fresh);
        // The older journal, whose numbers the new database has gone past and then some.
        let mut far_ahead = Vec::new();
        {
            let (mut j, _) =
                Journal::open::<std::io::Error>(&dir.path().join("other"), |_, _| Ok(()))
                    .expect("journal");
            j.append(40, &batch(&["AR1"]).encode().expect("encode"))
                .expect("append");
        }
        far_ahead.extend(std::fs::read(dir.path().join("other")).expect("read"));
        std::fs::write(segment(dir.path(), 1), &far_ahead).expect("write");
        let err = try_open(dir.path()).err().expect("refused");
        assert!(format!("{err:#}").contains("records up to"), "{err:#}");
        assert!(
            std::fs::read(segment(dir.path(), 1)).expect("read") == far_ahead,
            "the journal changed"
        );
        // Nothing was applied: with the stray segment moved away, the store holds what it did.
        std::fs::remove_file(segment(dir.path(), 1)).expect("remove");
        assert_eq!(count(&open(dir.path()), "AR1"), 8);
    }
}
