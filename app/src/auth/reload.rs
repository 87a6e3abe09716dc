//! The keys in force, re-read when the keys file changes.
//!
//! A Kubernetes Secret mounted as a volume changes in place: the kubelet writes the new
//! content to a new directory and swaps a `..data` symlink, so the file's own inode never
//! changes and watching it with inotify misses the update. The file is small, so it is simply
//! read again every [`RELOAD_INTERVAL`].
//!
//! A reload applies what the file says, so that a revocation cannot silently fail:
//! - every valid line is in force and a removed line stops working, whatever else is wrong in
//!   the file; a broken line grants nothing and is counted in
//!   `flight_counter_auth_keys_file_errors` (see [`KeyTable::parse`]);
//! - a file that cannot be read (missing, unreadable, too large) fails closed: no key is valid
//!   until it can be read again, and it counts as one error;
//! - a changed file is applied only once it has settled: read whole, then again after
//!   [`SETTLE`], until two reads agree on its bytes and on its size, time and inode. A file
//!   rewritten in place (truncated, then written) can be read half-written; applying that
//!   would turn away the keys of its missing lines. A file that never settles leaves the keys
//!   in force as they were until it does. A settled file that may still be cut short (empty,
//!   or ending in a broken line without a newline: a writer that stalled mid-write) is applied
//!   only when the next reload finds it the same, one interval later.
//!
//! At start, an unreadable file is a configuration error; a file with broken lines starts the
//! service with its valid lines, and the broken ones are logged and counted as on a reload.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;

use super::{
    Client, digest,
    keys_file::{KeyTable, KeysFileError, LineError, MAX_FILE_BYTES, may_be_cut_short},
};
use crate::telemetry::metrics as m;

/// How often the keys file is read for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// How long a changed file must stay the same before it is applied: far longer than writing a
/// keys file takes, short beside [`RELOAD_INTERVAL`].
pub const SETTLE: Duration = Duration::from_millis(50);
/// Reads of a changing file before giving up until the next interval.
const MAX_SETTLE_READS: usize = 10;
/// Broken lines logged one by one at each change; past it, one line says how many more.
const MAX_LINE_ERRORS_LOGGED: usize = 20;

/// The key table in force and where it comes from.
pub struct ApiKeys {
    path: PathBuf,
    table: ArcSwap<KeyTable>,
    /// Lines refused at the last read applied (1 for a file that could not be read): what
    /// `flight_counter_auth_keys_file_errors` shows.
    errors: AtomicUsize,
    /// What the keys in force were read from, so that an unchanged file is not applied again.
    last: Mutex<LastRead>,
}

struct LastRead {
    applied: Applied,
    /// A settled read that may be cut short, waiting to be seen again at the next reload.
    held: Option<[u8; 32]>,
    /// A file that keeps changing was logged since the last change applied.
    unsettled_logged: bool,
}

impl LastRead {
    fn new(applied: Applied) -> Mutex<Self> {
        Mutex::new(Self {
            applied,
            held: None,
            unsettled_logged: false,
        })
    }
}

/// What the keys in force came from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Applied {
    Content([u8; 32]),
    Failed(KeysFileError),
}

/// What identifies one version of the file besides its bytes: a rewrite between two reads
/// changes at least its modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
    device: u64,
}

impl Stamp {
    fn of(metadata: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        Self {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode: metadata.ino(),
            device: metadata.dev(),
        }
    }
}

/// One read of the file.
#[derive(Debug, PartialEq, Eq)]
enum Observation {
    Content {
        bytes: Vec<u8>,
        digest: [u8; 32],
        /// `None` when the file changed while it was read.
        stamp: Option<Stamp>,
    },
    Failed(KeysFileError),
}

impl Observation {
    fn read(path: &Path) -> Self {
        let unreadable = |err: std::io::Error| KeysFileError::Unreadable {
            path: path.to_owned(),
            reason: err.to_string(),
        };
        let read = || -> Result<(Vec<u8>, Option<Stamp>), KeysFileError> {
            let mut file = std::fs::File::open(path).map_err(unreadable)?;
            let before = file.metadata().map_err(unreadable)?;
            let mut bytes = Vec::new();
            // One byte past the limit tells a file at the limit from a larger one.
            (&mut file)
                .take(MAX_FILE_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(unreadable)?;
            if bytes.len() as u64 > MAX_FILE_BYTES {
                return Err(KeysFileError::TooLarge {
                    path: path.to_owned(),
                });
            }
            let after = file.metadata().map_err(unreadable)?;
            let (before, after) = (Stamp::of(&before), Stamp::of(&after));
            let whole = before == after && after.len == bytes.len() as u64;
            Ok((bytes, whole.then_some(after)))
        };
        match read() {
            Ok((bytes, stamp)) => Observation::Content {
                digest: digest(&bytes),
                bytes,
                stamp,
            },
            Err(err) => Observation::Failed(err),
        }
    }

    /// Whether two reads, [`SETTLE`] apart, saw the same settled file (or the same failure).
    fn agrees_with(&self, earlier: &Observation) -> bool {
        match (self, earlier) {
            (
                Observation::Content {
                    digest,
                    stamp: Some(stamp),
                    ..
                },
                Observation::Content {
                    digest: earlier_digest,
                    stamp: Some(earlier_stamp),
                    ..
                },
            ) => digest == earlier_digest && stamp == earlier_stamp,
            (Observation::Failed(err), Observation::Failed(earlier)) => err == earlier,
            _ => false,
        }
    }

    /// Whether this read shows what the keys in force came from.
    fn is_applied(&self, applied: &Applied) -> bool {
        match (self, applied) {
            (Observation::Content { digest, .. }, Applied::Content(applied)) => digest == applied,
            (Observation::Failed(err), Applied::Failed(applied)) => err == applied,
            _ => false,
        }
    }
}

/// Reads the file until two reads agree, at most [`MAX_SETTLE_READS`] times after `first`.
/// `None` when it kept changing.
fn settle(path: &Path, first: Observation, pause: impl Fn()) -> Option<Observation> {
    let mut seen = first;
    for _ in 0..MAX_SETTLE_READS {
        pause();
        let again = Observation::read(path);
        if again.agrees_with(&seen) {
            return Some(again);
        }
        seen = again;
    }
    None
}

fn log_line_errors(path: &Path, errors: &[(usize, LineError)]) {
    for (line, error) in errors.iter().take(MAX_LINE_ERRORS_LOGGED) {
        // The line number and what is wrong, never the line: it may hold a key.
        tracing::error!(
            path = %path.display(),
            line,
            error = %error,
            "API keys file line refused; it grants nothing"
        );
    }
    if errors.len() > MAX_LINE_ERRORS_LOGGED {
        tracing::error!(
            path = %path.display(),
            more = errors.len() - MAX_LINE_ERRORS_LOGGED,
            "more API keys file lines refused"
        );
    }
}

impl ApiKeys {
    /// Reads the keys file at start. A file that cannot be read is a configuration error; one
    /// with broken lines starts with its valid lines (each broken one logged and counted).
    pub fn load(path: &Path) -> Result<Self, KeysFileError> {
        let first = Observation::read(path);
        let settled = match first {
            Observation::Failed(err) => return Err(err),
            first => settle(path, first, || std::thread::sleep(SETTLE)),
        };
        // A file still being written at start: one interval later, its last read is all there
        // is to go on.
        let observation = match settled {
            Some(Observation::Content { bytes, .. }) if !may_be_cut_short(&bytes) => {
                Observation::read(path)
            }
            _ => {
                std::thread::sleep(RELOAD_INTERVAL);
                let again = Observation::read(path);
                settle(path, again, || std::thread::sleep(SETTLE))
                    .unwrap_or_else(|| Observation::read(path))
            }
        };
        let (bytes, content) = match observation {
            Observation::Content { bytes, digest, .. } => (bytes, digest),
            Observation::Failed(err) => return Err(err),
        };
        let (table, errors) = KeyTable::parse(&bytes);
        log_line_errors(path, &errors);
        Ok(Self {
            path: path.to_owned(),
            table: ArcSwap::from_pointee(table),
            errors: AtomicUsize::new(errors.len()),
            last: LastRead::new(Applied::Content(content)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The client a presented key belongs to.
    pub fn client(&self, key: &[u8]) -> Option<Arc<Client>> {
        self.table.load().client(&digest(key)).cloned()
    }

    /// Keys and clients in force.
    pub fn counts(&self) -> (usize, usize) {
        let table = self.table.load();
        (table.keys(), table.clients())
    }

    /// Lines refused at the last read applied; 1 when the file could not be read.
    pub fn errors(&self) -> usize {
        self.errors.load(Ordering::Relaxed)
    }

    /// Reads the file again and, once it has settled, puts what it says in force if it
    /// changed. Returns whether the keys in force changed. Blocks for up to about half a
    /// second while a changed file settles.
    pub fn reload(&self) -> bool {
        self.reload_with(|| std::thread::sleep(SETTLE))
    }

    fn reload_with(&self, pause: impl Fn()) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let first = Observation::read(&self.path);
        if first.is_applied(&last.applied) {
            last.held = None;
            return false;
        }
        let Some(settled) = settle(&self.path, first, pause) else {
            if !last.unsettled_logged {
                tracing::warn!(
                    path = %self.path.display(),
                    "the API keys file keeps changing; the keys in force stay until it settles"
                );
                last.unsettled_logged = true;
            }
            return false;
        };
        if settled.is_applied(&last.applied) {
            last.held = None;
            return false;
        }
        if let Observation::Content { bytes, digest, .. } = &settled
            && may_be_cut_short(bytes)
            && last.held.replace(*digest) != Some(*digest)
        {
            return false;
        }
        last.held = None;
        last.unsettled_logged = false;
        match settled {
            Observation::Content { bytes, digest, .. } => {
                let (table, errors) = KeyTable::parse(&bytes);
                tracing::info!(
                    path = %self.path.display(),
                    keys = table.keys(),
                    clients = table.clients(),
                    refused_lines = errors.len(),
                    "API keys reloaded"
                );
                log_line_errors(&self.path, &errors);
                self.table.store(Arc::new(table));
                self.set_errors(errors.len());
                last.applied = Applied::Content(digest);
            }
            Observation::Failed(err) => {
                // Fails closed: a file that was deleted may have been the only way to revoke.
                tracing::error!(
                    error = %err,
                    "API keys file cannot be read; no API key is accepted until it can"
                );
                self.table.store(Arc::new(KeyTable::default()));
                self.set_errors(1);
                last.applied = Applied::Failed(err);
            }
        }
        true
    }

    fn set_errors(&self, errors: usize) {
        self.errors.store(errors, Ordering::Relaxed);
        m::keys_file_errors(errors);
    }

    /// Publishes the refused-line count of the read at start, made before the metrics recorder
    /// existed.
    pub fn publish_errors(&self) {
        m::keys_file_errors(self.errors());
    }

    /// One reload, on a blocking thread: a file read must not stall requests on a slow volume.
    /// The supervisor runs it every [`RELOAD_INTERVAL`].
    pub async fn reload_off_thread(self: Arc<Self>) {
        if tokio::task::spawn_blocking(move || self.reload())
            .await
            .is_err()
        {
            tracing::error!("reading the API keys file failed unexpectedly");
        }
        m::keys_file_read();
    }
}

#[cfg(test)]
mod tests;
