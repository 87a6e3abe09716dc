//! Opening the store's files: the database rolled back to its last durable commit, which says
//! which journal record it holds last; the journal segments' later records applied again, in
//! order, and made durable in one commit. A torn record (one a crash cut short: never
//! acknowledged) is dropped with a warning. A journal whose records do not follow the
//! database's is refused, and the files are left as they were. Files that a first start
//! created and could not make a store are removed again, so that they do not block the next
//! start.
//!
//! The same opening serves a store broken by a failed write (see `file`), when it reopens.

use std::{
    io,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use redb::{Builder, Database, TableDefinition};

use super::{
    journal::Journal,
    tables::{TxnTables, applied_seq, create_tables, set_applied_seq},
};
use crate::store::{
    OrUnavailable as _, StoreError,
    local::{record::BatchRecord, rules::write_batch},
};

/// The table checkpoints and the readiness probe write to, so that no durable commit is empty.
pub(super) const PROBE: TableDefinition<&str, u64> = TableDefinition::new("readiness_probe");

/// Why the store's files cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create data directory {}", path.display())]
    DataDirectory {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("database {} is already open in another process", path.display())]
    AlreadyOpen {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("cannot open database {}", path.display())]
    Database {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("cannot read the journal {}", path.display())]
    Journal {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the journal {}.* goes on from record {seq}, but the database {} holds records up to \
         {held} only. Refusing to open; the files are left as they are (was one of them \
         replaced?)",
        journal.display(),
        database.display()
    )]
    JournalAhead {
        journal: PathBuf,
        database: PathBuf,
        seq: u64,
        held: u64,
    },
    #[error("journal record {seq} has a valid checksum but cannot be read")]
    Unreadable {
        seq: u64,
        #[source]
        source: postcard::Error,
    },
    #[error("replaying journal record {seq}")]
    Replay {
        seq: u64,
        #[source]
        source: StoreError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The journal's two segment files: one takes the commits while the other's records are being
/// flushed.
pub(super) fn segment_paths(journal_path: &Path) -> [PathBuf; 2] {
    ["0", "1"].map(|n| {
        let mut name = journal_path.as_os_str().to_owned();
        name.push(".");
        name.push(n);
        PathBuf::from(name)
    })
}

/// The files, open, with nothing left to replay.
pub(super) struct Opened {
    pub db: Arc<Database>,
    pub segments: [Journal; 2],
    pub next_seq: u64,
}

/// Opens (or creates) the database at `path` and the journal segments beside `journal_path`,
/// replaying the journal. Files that did not exist before and could not be made a store (a full
/// disk, say) are removed again.
pub(super) fn open_new_or_existing(
    path: &Path,
    journal_path: &Path,
    cache_bytes: usize,
) -> Result<Opened, OpenError> {
    let existed = std::fs::metadata(path).is_ok_and(|meta| meta.len() > 0);
    let segments = segment_paths(journal_path);
    let segments_existed = segments.each_ref().map(|segment| segment.exists());
    open_and_replay(path, journal_path, cache_bytes).inspect_err(|_| {
        if !existed {
            // Nothing was ever committed to them; left behind, they would fail every later
            // start.
            remove_unfinished(path);
            for (segment, existed) in segments.iter().zip(segments_existed) {
                if !existed {
                    remove_unfinished(segment);
                }
            }
        }
    })
}

/// Opens (or creates) the database at `path`, writing nothing yet. An empty file (a first start
/// that stopped before writing anything: no transaction was ever acknowledged from it) is
/// initialised as a new store, with a warning.
fn open_database(path: &Path, cache_bytes: usize) -> Result<Database, OpenError> {
    if std::fs::metadata(path).is_ok_and(|meta| meta.len() == 0) {
        tracing::warn!(
            path = %path.display(),
            "the database file is empty (a first start that did not finish?); \
             initialising a new store in it"
        );
    }
    let path_buf = path.to_path_buf();
    Builder::new()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|source| match source {
            redb::DatabaseError::DatabaseAlreadyOpen => OpenError::AlreadyOpen {
                path: path_buf,
                source,
            },
            source => OpenError::Database {
                path: path_buf,
                source,
            },
        })
}

/// Opens the database, applies the journal's records it does not hold yet, makes them durable
/// and empties the journal.
pub(super) fn open_and_replay(
    path: &Path,
    journal_path: &Path,
    cache_bytes: usize,
) -> Result<Opened, OpenError> {
    const REPLAYING: &str = "replaying the journal into the database";
    let db = open_database(path, cache_bytes)?;
    let applied = applied_seq(&db)?;
    let mut later: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut last_seq = applied;
    let mut open_segment = |segment: PathBuf| -> Result<Journal, OpenError> {
        let (journal, scan) = Journal::open(&segment, |seq, payload| {
            if seq > applied {
                later.push((seq, payload.to_vec()));
            }
            Ok::<_, io::Error>(())
        })
        .map_err(|source| OpenError::Journal {
            path: segment.clone(),
            source,
        })?;
        last_seq = last_seq.max(scan.last_seq.unwrap_or(0));
        if let Some(torn) = scan.torn {
            tracing::warn!(
                journal = %segment.display(),
                offset = torn.offset,
                record = torn.seq,
                "dropped a journal record that a crash cut short (it was never acknowledged)"
            );
        }
        Ok(journal)
    };
    let [first, second] = segment_paths(journal_path);
    let mut segments = [open_segment(first)?, open_segment(second)?];
    later.sort_unstable_by_key(|(seq, _)| *seq);
    // Checked before anything is written: a refused store is left exactly as it was.
    let mut records = Vec::with_capacity(later.len());
    for (expected, (seq, payload)) in (applied + 1..).zip(&later) {
        if *seq != expected {
            return Err(OpenError::JournalAhead {
                journal: journal_path.to_path_buf(),
                database: path.to_path_buf(),
                seq: *seq,
                held: expected - 1,
            });
        }
        let record = BatchRecord::decode(payload)
            .map_err(|source| OpenError::Unreadable { seq: *seq, source })?;
        records.push(record);
    }
    // One durable commit: the tables (new ones, or an earlier layout's moved), the replay.
    let txn = db.begin_write().or_unavailable(REPLAYING)?;
    create_tables(&txn)?;
    txn.open_table(PROBE).or_unavailable(REPLAYING)?;
    {
        let mut tables = TxnTables::open(&txn)?;
        for (seq, record) in (applied + 1..).zip(&records) {
            write_batch(&mut tables, record).map_err(|source| OpenError::Replay { seq, source })?;
        }
    }
    if let Some((last, _)) = later.last() {
        set_applied_seq(&txn, *last)?;
        tracing::info!(
            records = later.len(),
            "replayed the journal's records since the last checkpoint"
        );
    }
    txn.commit().or_unavailable(REPLAYING)?;
    for segment in &mut segments {
        segment.reset();
    }
    Ok(Opened {
        db: Arc::new(db),
        segments,
        next_seq: last_seq + 1,
    })
}

/// How long a reopen waits for reads still holding the old database.
const REOPEN_WAIT: Duration = Duration::from_secs(2);

/// Closes the database before its files are opened again. Reads may still hold it, and its
/// file lock is released only when the last of them lets go: waits for them a little, and
/// hands it back if they hold on.
pub(super) fn close_database(db: Arc<Database>) -> Result<(), Arc<Database>> {
    let started = Instant::now();
    let mut db = db;
    loop {
        match Arc::try_unwrap(db) {
            Ok(db) => {
                drop(db);
                return Ok(());
            }
            Err(still_shared) if started.elapsed() < REOPEN_WAIT => {
                db = still_shared;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(still_shared) => return Err(still_shared),
        }
    }
}

fn remove_unfinished(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot remove an unfinished store file");
        }
    }
}
