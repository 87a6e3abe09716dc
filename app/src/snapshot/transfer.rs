//! Moving a snapshot between a store and a file: an export streams the store's records into
//! the file's writer; an import reads the file and applies it in chunks, each with a mark of
//! how far it got, so that a run that stops anywhere can be run again and end exact.

use std::io::{self, BufRead, Write};

use tokio::sync::mpsc;

use super::{FormatError, Header, Record, SnapshotReader, SnapshotWriter, delta::RecordSource};
use crate::store::{Consistency, ImportMark, SnapshotStore, StoreError};

/// Records in flight between the store and the file.
const CHANNEL_RECORDS: usize = 1024;
/// Records applied per import chunk: one transaction (local stores), or 40 batch writes
/// (DynamoDB).
pub const IMPORT_CHUNK: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Delta(#[from] super::delta::DeltaError),
    #[error("cannot write the snapshot")]
    Write(#[source] io::Error),
    #[error(
        "the store already holds counts: import into an empty store, or pass --merge to add \
         the snapshot's counts to them"
    )]
    NotEmpty,
}

/// What an export wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exported {
    pub routes: u64,
    pub keys: u64,
    pub consistency: Consistency,
}

/// Progress, for a terminal: routes and keys so far.
pub type Progress<'a> = &'a mut (dyn FnMut(u64, u64) + Send);

/// Exports `store` as of `header.taken_at` into `out`.
pub async fn export<W: Write + Send>(
    store: &dyn SnapshotStore,
    header: &Header,
    out: W,
    progress: Progress<'_>,
) -> Result<(W, Exported), TransferError> {
    let (sink, mut records) = mpsc::channel(CHANNEL_RECORDS);
    let mut writer = SnapshotWriter::new(out, header).map_err(TransferError::Write)?;
    let reading = store.export(header.taken_at, sink);
    let writing = async {
        let (mut routes, mut keys) = (0u64, 0u64);
        while let Some(record) = records.recv().await {
            match &record {
                Record::Route(_) => routes += 1,
                Record::Key(_) => keys += 1,
            }
            writer.record(&record).map_err(TransferError::Write)?;
            if (routes + keys).is_multiple_of(1000) {
                progress(routes, keys);
            }
        }
        progress(routes, keys);
        Ok::<_, TransferError>(())
    };
    let (read, written) = tokio::join!(reading, writing);
    // The store's error first: a write that failed closes the channel, and the store then
    // fails too, for that reason.
    written?;
    let consistency = read?;
    let (out, routes, keys) = writer.finish().map_err(TransferError::Write)?;
    Ok((
        out,
        Exported {
            routes,
            keys,
            consistency,
        },
    ))
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// The whole snapshot was applied now (`resumed`: continuing an earlier run that stopped).
    Applied {
        routes: u64,
        keys: u64,
        expired_keys: u64,
        resumed: bool,
    },
    /// This snapshot had already been imported into the store: nothing changed.
    AlreadyImported,
}

/// Imports the snapshot read from `input` into `store`. Keys that expired by `now` are left
/// out. Without `merge`, the store must be empty, unless this snapshot's import was begun and
/// stopped, in which case it resumes.
pub async fn import<R: BufRead>(
    store: &dyn SnapshotStore,
    input: R,
    merge: bool,
    now: u64,
    progress: Progress<'_>,
) -> Result<Imported, TransferError> {
    let mut reader = SnapshotReader::new(input)?;
    import_from(store, &mut reader, merge, now, progress).await
}

/// Imports what `since` lacks of `input` (two snapshots of one store, `since` the earlier),
/// adding it to what `store` holds: see [`Delta`](super::delta::Delta).
pub async fn import_since<R: BufRead, E: BufRead>(
    store: &dyn SnapshotStore,
    input: R,
    since: E,
    now: u64,
    progress: Progress<'_>,
) -> Result<Imported, TransferError> {
    let mut delta =
        super::delta::Delta::new(SnapshotReader::new(input)?, SnapshotReader::new(since)?)?;
    import_from(store, &mut delta, true, now, progress).await
}

/// Applies `source` to `store` in marked chunks (see [`import`]).
async fn import_from(
    store: &dyn SnapshotStore,
    reader: &mut impl RecordSource,
    merge: bool,
    now: u64,
    progress: Progress<'_>,
) -> Result<Imported, TransferError> {
    let snapshot = reader.header().id.clone();
    let earlier = store.import_mark(&snapshot).await?;
    let skip_through = match &earlier {
        Some(mark) if mark.finished => return Ok(Imported::AlreadyImported),
        Some(mark) => mark.lines_done,
        None => {
            if !merge && !store.is_empty().await? {
                return Err(TransferError::NotEmpty);
            }
            1
        }
    };
    let (mut routes, mut keys, mut expired_keys) = (0, 0, 0);
    let mut chunk = Vec::with_capacity(IMPORT_CHUNK);
    loop {
        // Every record is read and checked, applied or not, so that a file broken after the
        // point a resumed run starts from is still refused.
        let record = reader.next_record()?;
        let finished = record.is_none();
        if let Some(record) = record
            && reader.line() > skip_through
        {
            match &record {
                Record::Key(key) if key.expires_at <= now => expired_keys += 1,
                Record::Key(_) => {
                    keys += 1;
                    chunk.push(record);
                }
                Record::Route(_) => {
                    routes += 1;
                    chunk.push(record);
                }
            }
        }
        if finished || chunk.len() >= IMPORT_CHUNK {
            let mark = ImportMark {
                snapshot: snapshot.clone(),
                lines_done: reader.line(),
                finished,
            };
            store.import_chunk(&chunk, &mark, merge).await?;
            chunk.clear();
            progress(routes, keys);
        }
        if finished {
            return Ok(Imported::Applied {
                routes,
                keys,
                expired_keys,
                resumed: earlier.is_some(),
            });
        }
    }
}
