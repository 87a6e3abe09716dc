//! The journal: an append-only file of numbered records, each made durable (one positional
//! write and one `fdatasync`) before the commit it carries is answered.
//!
//! A record is a 16-byte header and its payload:
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | payload length, little-endian `u32` |
//! | 4..8 | CRC-32 of bytes 8.. of the header and of the payload |
//! | 8..16 | sequence number, little-endian `u64` |
//! | 16.. | payload |
//!
//! Sequence numbers follow one another without a gap. Reading stops at the first record that is
//! cut short, fails its checksum, claims an impossible length, or does not follow the one
//! before. That is either the tail a crash left mid-write (never acknowledged, since a record is
//! acknowledged only once its `fdatasync` returns), or bytes of older records. Everything before
//! it is kept.
//!
//! A [`Journal::reset`] (after a checkpoint) does not shrink the file: the next records overwrite
//! the old ones in place. Writing into blocks the file already has changes no metadata, so the
//! `fdatasync` flushes the record alone, without a filesystem journal commit (which would also
//! wait for other files' data). Old records left after the new ones never follow them (their
//! numbers are lower), so reading stops there.
//!
//! A failed append cuts the file back to where the last durable record ends, so a record that
//! might be half-written (or written but not synced) can never be read back in front of the
//! records that follow it.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufReader, Read},
    os::unix::fs::FileExt,
    path::Path,
};

const HEADER_BYTES: usize = 16;
/// Larger than any batch can be (4096 transactions of a few hundred bytes): a header claiming
/// more is garbage.
pub const MAX_PAYLOAD_BYTES: u32 = 64 * 1024 * 1024;

/// An open journal file, positioned after its last durable record.
pub struct Journal {
    file: File,
    /// Where the last durable record ends: the next one is written here.
    end: u64,
    /// Reused for each record, so that an append allocates nothing once warm.
    buffer: Vec<u8>,
}

/// What reading a journal found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Records read in full, checksum and sequence correct.
    pub records: u64,
    /// The sequence number of the last of them, if any.
    pub last_seq: Option<u64>,
    /// Where they end.
    pub valid_bytes: u64,
    /// What came after them, if it was not the end of the file or older records: a record cut
    /// short or failing its checksum (a crash in the middle of writing it).
    pub torn: Option<Torn>,
}

/// A record that a crash left incomplete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Torn {
    /// Its number, if its header was whole.
    pub seq: Option<u64>,
    /// Where it starts.
    pub offset: u64,
}

impl Journal {
    /// Opens (or creates) the journal at `path` and reads it from the start, handing each
    /// complete record to `apply` in order. Stops with `apply`'s first error. The file is not
    /// changed: a torn tail is overwritten by the next append.
    pub fn open<E: From<io::Error>>(
        path: &Path,
        mut apply: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(Self, Scan), E> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let scan = read_records(&file, &mut apply)?;
        let journal = Self {
            file,
            end: scan.valid_bytes,
            buffer: Vec::new(),
        };
        Ok((journal, scan))
    }

    /// Bytes of durable records since the last reset.
    pub fn len(&self) -> u64 {
        self.end
    }

    pub fn is_empty(&self) -> bool {
        self.end == 0
    }

    /// Appends `payload` as record `seq` (the one after the last) and makes it durable. On error
    /// the record is not in the journal (the file is cut back), and the next append may take
    /// the same number.
    pub fn append(&mut self, seq: u64, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|len| *len <= MAX_PAYLOAD_BYTES)
            .ok_or_else(|| io::Error::other("journal record too large"))?;
        self.buffer.clear();
        self.buffer.extend_from_slice(&len.to_le_bytes());
        self.buffer
            .extend_from_slice(&checksum(seq, payload).to_le_bytes());
        self.buffer.extend_from_slice(&seq.to_le_bytes());
        self.buffer.extend_from_slice(payload);
        let written = self
            .file
            .write_all_at(&self.buffer, self.end)
            .and_then(|()| self.file.sync_data());
        if let Err(err) = written {
            // Whatever reached the file of this record must not survive it: a later record
            // written after a complete but unsynced one would be replayed after a crash.
            let _ = self.file.set_len(self.end);
            return Err(err);
        }
        self.end += self.buffer.len() as u64;
        Ok(())
    }

    /// Empties the journal once its records are all in the database, durably: the next record
    /// is written at the start.
    pub fn reset(&mut self) {
        self.end = 0;
    }
}

/// The checksum of a record: its sequence number and payload (the length is implied by both).
fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

fn read_records<E: From<io::Error>>(
    file: &File,
    apply: &mut impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<Scan, E> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut scan = Scan {
        records: 0,
        last_seq: None,
        valid_bytes: 0,
        torn: None,
    };
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; HEADER_BYTES];
        let offset = scan.valid_bytes;
        match read_full(&mut reader, &mut header)? {
            0 => break,
            n if n < HEADER_BYTES => {
                scan.torn = Some(Torn { seq: None, offset });
                break;
            }
            _ => {}
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&header[8..16]);
        let seq = u64::from_le_bytes(seq_bytes);
        // The number a record written after the last one read would have (numbers start at 1).
        let next = match scan.last_seq {
            Some(last) => seq == last + 1,
            None => seq > 0,
        };
        if !next {
            // Older records, overwritten up to here; or zeros.
            break;
        }
        let torn = Some(Torn {
            seq: Some(seq),
            offset,
        });
        if len > MAX_PAYLOAD_BYTES {
            scan.torn = torn;
            break;
        }
        payload.resize(len as usize, 0);
        if read_full(&mut reader, &mut payload)? < payload.len() || checksum(seq, &payload) != crc {
            scan.torn = torn;
            break;
        }
        apply(seq, &payload)?;
        scan.records += 1;
        scan.last_seq = Some(seq);
        scan.valid_bytes += (HEADER_BYTES + payload.len()) as u64;
    }
    Ok(scan)
}

/// Fills as much of `buf` as the file has; returns how much.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_all(path: &Path) -> (Vec<(u64, Vec<u8>)>, Scan) {
        let mut seen = Vec::new();
        let (_, scan) = Journal::open::<io::Error>(path, |seq, payload| {
            seen.push((seq, payload.to_vec()));
            Ok(())
        })
        .expect("open");
        (seen, scan)
    }

    /// Opens the journal at `path` and appends `payloads` after what it holds, numbered from
    /// `first_seq`.
    fn journal_with(path: &Path, first_seq: u64, payloads: &[&[u8]]) -> Journal {
        let (mut journal, _) = Journal::open::<io::Error>(path, |_, _| Ok(())).expect("open");
        for (seq, payload) in (first_seq..).zip(payloads) {
            journal.append(seq, payload).expect("append");
        }
        journal
    }

    #[test]
    fn records_come_back_in_order_with_their_numbers() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j");
        drop(journal_with(&path, 7, &[b"one", b"", b"three"]));
        let (seen, scan) = read_all(&path);
        assert_eq!(
            seen,
            vec![(7, b"one".to_vec()), (8, vec![]), (9, b"three".to_vec())]
        );
        assert_eq!(scan.torn, None);
        assert_eq!(scan.last_seq, Some(9));
    }

    /// After a reset, new records overwrite old ones in place; what is left of the old ones
    /// after the new ones is not taken for records (their numbers do not follow), nor for a
    /// torn record.
    #[test]
    fn old_records_after_the_new_ones_are_not_read() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j");
        let mut journal = journal_with(&path, 1, &[b"first", b"second", b"third"]);
        journal.reset();
        assert!(journal.is_empty());
        journal.append(4, b"fourth").expect("append");
        drop(journal);
        let (seen, scan) = read_all(&path);
        assert_eq!(seen, vec![(4, b"fourth".to_vec())]);
        assert_eq!(scan.torn, None);
    }

    /// A record cut short after its header is reported as torn, with its number and offset.
    #[test]
    fn a_record_cut_short_is_reported_torn() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j");
        drop(journal_with(&path, 1, &[b"kept", b"cut short"]));
        let bytes = std::fs::read(&path).expect("read");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("write");
        let (seen, scan) = read_all(&path);
        assert_eq!(seen, vec![(1, b"kept".to_vec())]);
        assert_eq!(
            scan.torn,
            Some(Torn {
                seq: Some(2),
                offset: (HEADER_BYTES + 4) as u64
            })
        );
    }

    /// A failed append leaves nothing of its record behind: the next one takes its number and
    /// its place.
    #[test]
    fn a_failed_append_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j");
        let mut journal = journal_with(&path, 1, &[b"kept"]);
        let too_large = vec![0u8; MAX_PAYLOAD_BYTES as usize + 1];
        assert!(journal.append(2, &too_large).is_err());
        journal.append(2, b"next").expect("append");
        drop(journal);
        assert_eq!(
            read_all(&path).0,
            vec![(1, b"kept".to_vec()), (2, b"next".to_vec())]
        );
    }

    proptest! {
        /// Whatever a crash leaves after the last complete record (a cut-short record, then any
        /// bytes at all), every complete record is read back and nothing after them.
        #[test]
        fn a_torn_or_garbage_tail_keeps_every_complete_record(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8),
            cut in 1usize..80,
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("j");
            let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let (complete, last) = slices.split_at(slices.len() - 1);
            drop(journal_with(&path, 1, complete));
            let good = std::fs::read(&path).expect("read");
            drop(journal_with(&path, complete.len() as u64 + 1, last));
            let full = std::fs::read(&path).expect("read");
            // The last record cut short, then garbage after it.
            let cut = cut.min(full.len() - good.len() - 1);
            let mut torn = full[..good.len() + cut].to_vec();
            torn.extend_from_slice(&garbage);
            // Garbage that happens to be the missing bytes makes the record whole again.
            prop_assume!(!torn.starts_with(&full));
            std::fs::write(&path, &torn).expect("write");
            let (seen, scan) = read_all(&path);
            let expected: Vec<(u64, Vec<u8>)> = complete
                .iter()
                .enumerate()
                .map(|(i, p)| (i as u64 + 1, p.to_vec()))
                .collect();
            // Garbage that forms a valid next record by chance would need the next number and
            // a matching 32-bit checksum.
            prop_assert_eq!(seen, expected);
            prop_assert_eq!(scan.valid_bytes, good.len() as u64);
        }

        /// A flipped bit anywhere in the last record drops that record and nothing before it.
        #[test]
        fn a_flipped_bit_in_the_last_record_drops_it_alone(bit in 0usize..(8 * 26)) {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("j");
            drop(journal_with(&path, 1, &[b"kept"]));
            let kept = std::fs::read(&path).expect("read").len();
            drop(journal_with(&path, 2, &[b"flipped!!!"]));
            let mut bytes = std::fs::read(&path).expect("read");
            bytes[kept + bit / 8] ^= 1 << (bit % 8);
            std::fs::write(&path, &bytes).expect("write");
            let (seen, _) = read_all(&path);
            prop_assert_eq!(seen, vec![(1, b"kept".to_vec())]);
        }
    }
}
