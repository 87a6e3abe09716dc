//! The keys in force, re-read when the keys file changes.
//!
//! A Kubernetes Secret mounted as a volume changes in place: the kubelet writes the new
//! content to a new directory and swaps a `..data` symlink, so the file's own inode never
//! changes and watching it with inotify misses the update. The file is small, so it is simply
//! read again every [`RELOAD_INTERVAL`] and parsed when its bytes differ from the last read.
//! A file that cannot be read or parsed leaves the keys in force as they were: a bad file
//! never turns authentication off.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::ArcSwap;

use super::{
    Client, digest,
    keys_file::{KeyTable, KeysFileError, MAX_FILE_BYTES},
};

/// How often the keys file is read for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The key table in force and where it comes from.
pub struct ApiKeys {
    path: PathBuf,
    table: ArcSwap<KeyTable>,
    /// The last bytes read, and the last problem logged, so that an unchanged file is not
    /// parsed again and a lasting problem is logged once, not every second.
    last: Mutex<LastRead>,
}

#[derive(Default)]
struct LastRead {
    content: Option<[u8; 32]>,
    problem: Option<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, KeysFileError> {
    use std::io::Read as _;
    let unreadable = |err: std::io::Error| KeysFileError::Unreadable {
        path: path.to_owned(),
        reason: err.to_string(),
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    // One byte past the limit tells a file at the limit from a larger one.
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(KeysFileError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

fn parse(path: &Path, bytes: &[u8]) -> Result<KeyTable, KeysFileError> {
    KeyTable::parse(bytes).map_err(|(line, error)| KeysFileError::Line {
        path: path.to_owned(),
        line,
        error,
    })
}

impl ApiKeys {
    /// Reads the keys file at start. A missing or bad file is a configuration error.
    pub fn load(path: &Path) -> Result<Self, KeysFileError> {
        let bytes = read(path)?;
        let table = parse(path, &bytes)?;
        Ok(Self {
            path: path.to_owned(),
            table: ArcSwap::from_pointee(table),
            last: Mutex::new(LastRead {
                content: Some(digest(&bytes)),
                problem: None,
            }),
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

    /// Reads the file again and puts its keys in force if it changed and parses. Returns
    /// whether the keys changed.
    pub fn reload(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let outcome = read(&self.path).and_then(|bytes| {
            let content = digest(&bytes);
            if last.content == Some(content) {
                return Ok(None);
            }
            parse(&self.path, &bytes).map(|table| Some((content, table)))
        });
        match outcome {
            Ok(None) => {
                last.problem = None;
                false
            }
            Ok(Some((content, table))) => {
                tracing::info!(
                    path = %self.path.display(),
                    keys = table.keys(),
                    clients = table.clients(),
                    "API keys reloaded"
                );
                self.table.store(Arc::new(table));
                last.content = Some(content);
                last.problem = None;
                true
            }
            Err(err) => {
                let problem = err.to_string();
                if last.problem.as_deref() != Some(problem.as_str()) {
                    tracing::error!(
                        error = %problem,
                        line = err.line(),
                        "API keys file not reloaded; the keys in force are unchanged"
                    );
                    last.problem = Some(problem);
                }
                false
            }
        }
    }

    /// Re-reads the file every [`RELOAD_INTERVAL`] until `stopped` turns true.
    pub async fn watch(self: Arc<Self>, mut stopped: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(RELOAD_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
            // A file read: off the async threads, as a slow volume must not stall requests.
            let keys = Arc::clone(&self);
            if tokio::task::spawn_blocking(move || keys.reload())
                .await
                .is_err()
            {
                tracing::error!("reading the API keys file failed unexpectedly");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Scope, digest_hex};

    #[test]
    fn a_changed_file_replaces_the_keys_and_a_bad_one_keeps_them() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("api-keys");
        std::fs::write(&path, format!("alice write {}\n", digest_hex("old"))).expect("write");
        let keys = ApiKeys::load(&path).expect("valid file");
        assert_eq!(keys.client(b"old").map(|c| c.scope), Some(Scope::Write));
        assert!(!keys.reload(), "unchanged");

        std::fs::write(&path, format!("alice write {}\n", digest_hex("new"))).expect("write");
        assert!(keys.reload());
        assert!(keys.client(b"old").is_none());
        assert!(keys.client(b"new").is_some());

        std::fs::write(&path, "alice write not-a-digest\n").expect("write");
        assert!(!keys.reload());
        assert!(keys.client(b"new").is_some(), "a bad file keeps the keys");
        std::fs::remove_file(&path).expect("remove");
        assert!(!keys.reload());
        assert!(
            keys.client(b"new").is_some(),
            "a missing file keeps the keys"
        );
    }

    #[test]
    fn a_missing_or_bad_file_at_start_is_an_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = ApiKeys::load(&dir.path().join("nope"))
            .err()
            .expect("missing");
        assert!(
            matches!(missing, KeysFileError::Unreadable { .. }),
            "{missing}"
        );
        let path = dir.path().join("api-keys");
        std::fs::write(&path, "\n\nalice write\n").expect("write");
        let bad = ApiKeys::load(&path).err().expect("bad");
        assert_eq!(bad.line(), Some(3), "{bad}");
    }
}
