use std::io::Write as _;

use super::*;
use crate::auth::{Scope, digest_hex};

fn line(client: &str, scope: &str, key: &str) -> String {
    format!("{client} {scope} {}\n", digest_hex(key))
}

/// Replaces the file's content through a new inode, as an editor or a deploy would.
fn replace(path: &Path, content: &str) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, content).expect("write");
    std::fs::rename(&staged, path).expect("rename");
}

#[test]
fn a_reload_applies_what_the_file_says() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("api-keys");
    replace(
        &path,
        &format!(
            "{}{}",
            line("alice", "write", "old"),
            line("bob", "read", "b")
        ),
    );
    let keys = ApiKeys::load(&path).expect("valid file");
    assert_eq!(keys.client(b"old").map(|c| c.scope), Some(Scope::Write));
    assert_eq!(keys.errors(), 0);
    assert!(!keys.reload(), "unchanged");

    // The old key is removed and a broken line added: the removal holds all the same.
    replace(
        &path,
        &format!(
            "{}alice write not-a-digest\n{}",
            line("alice", "write", "new"),
            line("bob", "read", "b")
        ),
    );
    assert!(keys.reload());
    assert!(keys.client(b"old").is_none(), "the removed key is revoked");
    assert!(keys.client(b"new").is_some());
    assert!(keys.client(b"b").is_some());
    assert_eq!(keys.errors(), 1);

    // A missing file fails closed, and counts as one error.
    std::fs::remove_file(&path).expect("remove");
    assert!(keys.reload());
    assert!(keys.client(b"new").is_none(), "a missing file fails closed");
    assert_eq!((keys.counts(), keys.errors()), ((0, 0), 1));
    assert!(!keys.reload(), "still missing: nothing changes");

    replace(&path, &line("alice", "write", "new"));
    assert!(keys.reload());
    assert!(keys.client(b"new").is_some(), "back once it can be read");
    assert_eq!(keys.errors(), 0);

    // Too large fails closed too.
    replace(&path, &"#".repeat(MAX_FILE_BYTES as usize + 1));
    assert!(keys.reload());
    assert_eq!((keys.counts(), keys.errors()), ((0, 0), 1));
}

#[test]
fn a_missing_file_at_start_is_an_error_and_broken_lines_are_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = ApiKeys::load(&dir.path().join("nope"))
        .err()
        .expect("missing");
    assert!(
        matches!(missing, KeysFileError::Unreadable { .. }),
        "{missing}"
    );
    let path = dir.path().join("api-keys");
    replace(
        &path,
        &format!("\n\nalice write\n{}", line("bob", "read", "b")),
    );
    let keys = ApiKeys::load(&path).expect("starts with the valid lines");
    assert_eq!((keys.counts(), keys.errors()), ((1, 1), 1));
    assert!(keys.client(b"b").is_some());
}

/// A keys file with a write key `a` for alice and a read key `b` for bob, loaded: its
/// directory (kept alive by the caller), path, content and keys.
fn alice_and_bob() -> (tempfile::TempDir, PathBuf, String, ApiKeys) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("api-keys");
    let full = format!(
        "{}{}",
        line("alice", "write", "a"),
        line("bob", "read", "b")
    );
    replace(&path, &full);
    let keys = ApiKeys::load(&path).expect("valid file");
    (dir, path, full, keys)
}

/// A file caught half-written (here: truncated, and the rest not yet there) is not applied
/// until it settles; one that keeps changing keeps the keys in force.
#[test]
fn a_half_written_file_is_not_applied() {
    let (_dir, path, full, keys) = alice_and_bob();

    // Truncated and half of it written, in place; the writer finishes during the pause.
    std::fs::write(&path, &full[..full.len() / 2]).expect("half");
    let finished = std::cell::Cell::new(false);
    assert!(!keys.reload_with(|| {
        if !finished.replace(true) {
            std::fs::write(&path, &full).expect("the rest");
        }
    }));
    assert!(keys.client(b"b").is_some(), "bob's key was never dropped");
    assert_eq!(keys.errors(), 0);

    // Rewritten at every pause: never settles, the keys stay.
    std::fs::write(&path, &full[..full.len() / 3]).expect("partial");
    let round = std::cell::Cell::new(0u32);
    assert!(!keys.reload_with(|| {
        round.set(round.get() + 1);
        let cut = full.len() / 2 + round.get() as usize % 7;
        std::fs::write(&path, &full[..cut]).expect("partial");
    }));
    assert_eq!(round.get(), MAX_SETTLE_READS as u32);
    assert!(keys.client(b"b").is_some());
    assert!(keys.client(b"a").is_some());
}

/// A settled read that may be cut short (a writer stalled mid-write) waits a reload: an
/// empty file, or one ending in a broken line without newline, is applied only when the
/// next reload finds it the same.
#[test]
fn a_file_that_may_be_cut_short_waits_one_reload() {
    let (_dir, path, full, keys) = alice_and_bob();

    // Truncated, and the writer stalled: held, then back to whole before the next reload.
    std::fs::write(&path, "").expect("truncate");
    assert!(!keys.reload());
    assert!(keys.client(b"a").is_some());
    std::fs::write(&path, &full).expect("the rest");
    assert!(!keys.reload());
    assert!(keys.client(b"a").is_some());

    // Cut mid-line and stalled: held; the same at the next reload, it is what the file
    // says (the broken line counted).
    let cut = &full[..full.len() - 10];
    std::fs::write(&path, cut).expect("cut");
    assert!(!keys.reload());
    assert!(keys.client(b"b").is_some(), "held");
    assert!(keys.reload());
    assert!(keys.client(b"b").is_none());
    assert!(keys.client(b"a").is_some());
    assert_eq!(keys.errors(), 1);

    // Emptied on purpose: applied a reload later.
    replace(&path, "");
    assert!(!keys.reload());
    assert!(keys.reload());
    assert_eq!((keys.counts(), keys.errors()), ((0, 0), 0));
}

/// Many in-place rewrites of the same content while keys are checked: the key in force is
/// never turned away.
#[test]
fn in_place_rewrites_never_turn_a_valid_key_away() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("api-keys");
    let mut full = String::new();
    for i in 0..50 {
        full.push_str(&line(&format!("client-{i}"), "write", &format!("k{i}")));
    }
    replace(&path, &full);
    let keys = Arc::new(ApiKeys::load(&path).expect("valid file"));
    let writer = std::thread::spawn({
        let path = path.clone();
        move || {
            for _ in 0..200 {
                // Truncate, then write in two parts: readers can see any prefix.
                let mut file = std::fs::File::create(&path).expect("truncate");
                let (head, tail) = full.split_at(full.len() / 3);
                file.write_all(head.as_bytes()).expect("head");
                std::thread::sleep(Duration::from_micros(200));
                file.write_all(tail.as_bytes()).expect("tail");
                drop(file);
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
    let mut reloads = 0;
    while !writer.is_finished() {
        keys.reload();
        reloads += 1;
        assert!(keys.client(b"k49").is_some(), "the last line's key held");
        assert!(keys.client(b"k0").is_some());
    }
    writer.join().expect("writer");
    assert!(reloads > 0);
    assert_eq!(keys.errors(), 0);
    assert_eq!(keys.counts(), (50, 50));
}
