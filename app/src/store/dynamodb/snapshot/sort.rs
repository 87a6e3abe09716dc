//! Puts an export's records in the file's order (routes ascending, then keys ascending by
//! record id) with memory that does not grow with the table: records are sorted in buffers of
//! a bounded size, each full buffer is written to an anonymous temporary file as a sorted run
//! (in the snapshot format itself, so reading a run back checks its order too), and the runs
//! are merged, k ways, into the sink. A table that fits in one buffer never touches the disk.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    fs::File,
    io::{self, BufReader, BufWriter, Seek, SeekFrom},
};

use super::SnapshotFault;
use crate::{
    snapshot::{Header, Record, SnapshotReader, SnapshotWriter},
    store::{RecordSink, StoreError},
};

/// Where a record goes in the file: every route before every key (the variants' order), routes
/// by name, keys by record id (byte order, as the reader checks).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Place {
    Route(String),
    Key(String),
}

impl Place {
    pub(super) fn of(record: &Record) -> Self {
        match record {
            Record::Route(r) => Self::Route(r.route.as_str().to_owned()),
            Record::Key(k) => Self::Key(k.key.record_id().into_owned()),
        }
    }
}

/// Records gathered so far: the buffer being filled and the runs already spilled.
pub(super) struct ExternalSort {
    limit: usize,
    buffer: Vec<Record>,
    runs: Vec<File>,
}

impl ExternalSort {
    /// Sorts in memory up to `limit` records at a time (at least one).
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            buffer: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Adds a record; once the buffer is full, spills it as a sorted run (blocking I/O, on a
    /// thread that may block).
    pub(super) async fn push(&mut self, record: Record) -> Result<(), StoreError> {
        self.buffer.push(record);
        if self.buffer.len() >= self.limit {
            let full = std::mem::take(&mut self.buffer);
            let run = tokio::task::spawn_blocking(move || spill(full))
                .await
                .map_err(|err| StoreError::unavailable("sorting the export", err))?
                .map_err(|err| {
                    StoreError::unavailable("writing a sorted run of the export to disk", err)
                })?;
            self.runs.push(run);
        }
        Ok(())
    }

    /// How many runs went to disk so far.
    pub(super) fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Sends every record to `sink`, in order.
    pub(super) async fn finish(self, sink: RecordSink) -> Result<(), StoreError> {
        let Self {
            mut buffer, runs, ..
        } = self;
        if runs.is_empty() {
            buffer.sort_unstable_by_key(Place::of);
            let mut last: Option<Place> = None;
            for record in buffer {
                in_order(&mut last, &record)?;
                sink.send(record).await.map_err(|_| closed())?;
            }
            return Ok(());
        }
        tokio::task::spawn_blocking(move || {
            let mut runs = runs;
            if !buffer.is_empty() {
                runs.push(spill(buffer).map_err(|err| {
                    StoreError::unavailable("writing a sorted run of the export to disk", err)
                })?);
            }
            merge(runs, &sink)
        })
        .await
        .map_err(|err| StoreError::unavailable("merging the export's sorted runs", err))?
    }
}

fn closed() -> StoreError {
    StoreError::unavailable("exporting a snapshot", SnapshotFault::SinkClosed)
}

/// Checks that `record` comes strictly after the one before: two records at one place, or a
/// step back, would make a file the reader refuses, so the export stops instead.
fn in_order(last: &mut Option<Place>, record: &Record) -> Result<(), StoreError> {
    let place = Place::of(record);
    if let Some(before) = last.as_ref()
        && *before >= place
    {
        return Err(StoreError::unavailable(
            "sorting the export",
            SnapshotFault::OutOfOrder(format!("{place:?}"), format!("{before:?}")),
        ));
    }
    *last = Some(place);
    Ok(())
}

/// Sorts `records` and writes them to a fresh temporary file (deleted once closed), rewound.
fn spill(mut records: Vec<Record>) -> io::Result<File> {
    records.sort_unstable_by_key(Place::of);
    let header = Header {
        id: "run".into(),
        source: "dynamodb".into(),
        taken_at: 0,
    };
    let mut writer = SnapshotWriter::new(BufWriter::new(tempfile::tempfile()?), &header)?;
    for record in &records {
        match record {
            Record::Route(route) => writer.route(route)?,
            Record::Key(key) => writer.key(key)?,
        }
    }
    let (out, _, _) = writer.finish()?;
    let mut file = out.into_inner().map_err(|err| err.into_error())?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// Merges sorted runs into `sink`, in order, holding one record per run.
fn merge(runs: Vec<File>, sink: &RecordSink) -> Result<(), StoreError> {
    let unreadable = |err| StoreError::unavailable("reading back a sorted run of the export", err);
    let mut readers = Vec::with_capacity(runs.len());
    let mut heads: Vec<Option<Record>> = Vec::with_capacity(runs.len());
    let mut heap = BinaryHeap::with_capacity(runs.len());
    for (at, run) in runs.into_iter().enumerate() {
        let mut reader = SnapshotReader::new(BufReader::new(run)).map_err(unreadable)?;
        let head = reader.next_record().map_err(unreadable)?;
        if let Some(record) = &head {
            heap.push(Reverse((Place::of(record), at)));
        }
        readers.push(reader);
        heads.push(head);
    }
    let mut last: Option<Place> = None;
    while let Some(Reverse((_, at))) = heap.pop() {
        let Some(record) = heads[at].take() else {
            continue;
        };
        in_order(&mut last, &record)?;
        sink.blocking_send(record).map_err(|_| closed())?;
        let next = readers[at].next_record().map_err(unreadable)?;
        if let Some(record) = &next {
            heap.push(Reverse((Place::of(record), at)));
        }
        heads[at] = next;
    }
    Ok(())
}
