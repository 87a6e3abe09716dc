//! What a crash leaves: the files as they are when the process stops without a checkpoint
//! (dropping the store here writes nothing more than a SIGKILL would let it write).
use std::time::Duration;

use super::*;
use crate::{
    clock::SystemClock,
    route::Route,
    store::{
        embedded::{DATABASE_FILE, JOURNAL_FILE, recovery::segment_paths},
        local::{record::WriteRecord, rows::Tables as _},
    },
};

const NEVER: Duration = Duration::from_secs(3600);

fn try_open(dir: &Path) -> Result<DatabaseFile, OpenError> {
    DatabaseFile::open(
        dir.join(DATABASE_FILE),
        dir.join(JOURNAL_FILE),
        EmbeddedSettings {
            cache_bytes: 4 << 20,
            checkpoint_interval: NEVER,
        },
        SystemClock::shared(),
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
    file.snapshot()
        .expect("snapshot")
        .layers()
        .row(Route::parse(route).expect("a route"))
        .expect("row")
        .total
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
    // Three times as many routes as the cap holds rows of.
    let rows = cap / 128;
    let routes: Vec<String> = (0..rows * 3)
        .map(|i| format!("{}{}{}", letter(i), letter(i / 26), i / 676 + 1))
        .collect();
    for chunk in routes.chunks(100) {
        let names: Vec<&str> = chunk.iter().map(String::as_str).collect();
        file.commit(&batch(&names)).expect("commit");
        assert!(file.read_memtables().active.bytes() <= cap + 100 * 128);
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
        let (mut j, _) = Journal::open::<std::io::Error>(&dir.path().join("other"), |_, _| Ok(()))
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
