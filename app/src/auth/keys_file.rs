//! The keys file: one key per line, `<client> <scope> <sha256-hex-of-key>`.
//!
//! ```text
//! # client        scope  sha256 of the key
//! booking-engine  write  3f2a...e1
//! booking-engine  write  9c41...07   # the next key, during a rotation
//! dashboards      read   77d0...5b
//! ```
//!
//! Fields are separated by spaces or tabs; `#` starts a comment, blank lines are ignored. A
//! client may have several keys (lines), all with the same scope.
//!
//! Every line stands on its own: a line that is wrong grants nothing and is reported, and the
//! others are in force. So a file that removes a key always revokes it, whatever else is wrong
//! in it. Where lines contradict each other, the narrower reading wins: a client given both
//! scopes keeps only its `read` lines, and a key listed for two clients belongs to neither.
//!
//! Errors never repeat what a line holds, only its number and what is wrong with it: a key
//! pasted into the wrong column must not end up in the logs.

use std::{
    collections::{HashMap, hash_map::Entry},
    path::PathBuf,
    sync::Arc,
};

use super::{CLIENT_NAME_RULE, Client, ClientName, Scope};

/// The largest keys file read: far more than any real list of keys, and a bound on what a
/// wrong path (a log file, a device) can make the service read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The keys in force: each key's digest to its client.
#[derive(Debug, Default)]
pub struct KeyTable {
    by_digest: HashMap<[u8; 32], Arc<Client>>,
    clients: usize,
}

/// Why one line of the file is refused. None of these carries text from the line itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("expected `<client> <scope> <sha256-hex-of-key>`, found {0} field(s)")]
    FieldCount(usize),
    #[error("the first field is not a client name; {CLIENT_NAME_RULE}")]
    ClientName,
    #[error(
        "the second field is not a scope; the scope is `read` (GET only), `write` (POST and GET) \
         or `admin` (also GET /admin/export)"
    )]
    Scope,
    #[error(
        "the third field is not a key's digest: it must be the key's SHA-256 as 64 lowercase hex \
         digits (the file never holds a key; `flight-counter api-key` prints the line to add)"
    )]
    Digest,
    #[error(
        "client {client} has scope {scope} here but {lower} on line {lower_line}; a client has \
         one scope, so its lines of a wider scope grant nothing until the file agrees"
    )]
    ScopeConflict {
        client: String,
        scope: &'static str,
        lower: &'static str,
        lower_line: usize,
    },
    #[error("this key is already listed on line {0}")]
    DuplicateKey(usize),
    #[error(
        "this key is also listed on line {0} for another client; a key belongs to one client, \
         so it grants nothing until the file agrees"
    )]
    SharedKey(usize),
    #[error("the line is not UTF-8 text")]
    NotText,
}

/// Why a keys file cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeysFileError {
    #[error("cannot read the API keys file {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("the API keys file {path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
}

/// A line that parsed on its own: it may still contradict another line.
struct KeyLine {
    line: usize,
    client: ClientName,
    scope: Scope,
    digest: [u8; 32],
}

fn parse_digest(hex_digest: &str) -> Option<[u8; 32]> {
    let lowercase_hex = hex_digest.len() == 64
        && hex_digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !lowercase_hex {
        return None;
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest).ok()?;
    Some(digest)
}

/// One line on its own: `None` for a blank or comment line.
fn parse_line(raw_line: &[u8], number: usize) -> Result<Option<KeyLine>, LineError> {
    let line = std::str::from_utf8(raw_line).map_err(|_| LineError::NotText)?;
    let content = line.split('#').next().unwrap_or_default();
    let fields: Vec<&str> = content
        .split([' ', '\t', '\r'])
        .filter(|field| !field.is_empty())
        .collect();
    let (name, scope, hex_digest) = match fields[..] {
        [] => return Ok(None),
        [name, scope, hex_digest] => (name, scope, hex_digest),
        _ => return Err(LineError::FieldCount(fields.len())),
    };
    // The parse errors of the fields name the field, never its text.
    let client = ClientName::parse(name).map_err(|_| LineError::ClientName)?;
    let scope = Scope::parse(scope).ok_or(LineError::Scope)?;
    let digest = parse_digest(hex_digest).ok_or(LineError::Digest)?;
    Ok(Some(KeyLine {
        line: number,
        client,
        scope,
        digest,
    }))
}

/// Whether the file's bytes may be a file caught half-written: empty, or ending in a line
/// with no newline that is refused (a key line cut short). Such a read is applied only once
/// it is seen again a reload later.
pub fn may_be_cut_short(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return true;
    }
    if bytes.ends_with(b"\n") {
        return false;
    }
    let start = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    parse_line(&bytes[start..], 0).is_err()
}

impl KeyTable {
    /// Parses the file's bytes: the keys of every line that holds, and why each other line was
    /// refused (1-based line numbers, in order).
    pub fn parse(bytes: &[u8]) -> (Self, Vec<(usize, LineError)>) {
        let mut errors = Vec::new();
        let mut entries = Vec::new();
        for (index, raw_line) in bytes.split(|b| *b == b'\n').enumerate() {
            match parse_line(raw_line, index + 1) {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => {}
                Err(error) => errors.push((index + 1, error)),
            }
        }
        // A client given several scopes keeps the lines of its narrowest one (failing safe):
        // the first of them is named in the errors of its other lines.
        let mut narrowest: HashMap<ClientName, (Scope, usize)> = HashMap::new();
        for entry in &entries {
            narrowest
                .entry(entry.client.clone())
                .and_modify(|(scope, line)| {
                    if entry.scope < *scope {
                        (*scope, *line) = (entry.scope, entry.line);
                    }
                })
                .or_insert((entry.scope, entry.line));
        }
        entries.retain(|entry| match narrowest.get(&entry.client) {
            Some((lower, lower_line)) if entry.scope > *lower => {
                errors.push((
                    entry.line,
                    LineError::ScopeConflict {
                        client: entry.client.to_string(),
                        scope: entry.scope.as_str(),
                        lower: lower.as_str(),
                        lower_line: *lower_line,
                    },
                ));
                false
            }
            _ => true,
        });
        // A key listed twice for one client is kept once; a key listed for two clients is
        // nobody's, as the file does not say whose it is.
        let mut by_digest: HashMap<[u8; 32], (Arc<Client>, usize)> = HashMap::new();
        // Each shared key's first line for another client than its first line's.
        let mut shared: HashMap<[u8; 32], usize> = HashMap::new();
        for entry in entries {
            match by_digest.entry(entry.digest) {
                Entry::Vacant(slot) => {
                    slot.insert((
                        Arc::new(Client {
                            name: entry.client,
                            scope: entry.scope,
                        }),
                        entry.line,
                    ));
                }
                Entry::Occupied(first) if first.get().0.name == entry.client => {
                    errors.push((entry.line, LineError::DuplicateKey(first.get().1)));
                }
                Entry::Occupied(first) => {
                    errors.push((entry.line, LineError::SharedKey(first.get().1)));
                    shared.entry(entry.digest).or_insert(entry.line);
                }
            }
        }
        for (digest, other_line) in shared {
            if let Some((_, line)) = by_digest.remove(&digest) {
                errors.push((line, LineError::SharedKey(other_line)));
            }
        }
        errors.sort_by_key(|(line, _)| *line);
        let mut clients: Vec<&ClientName> = by_digest.values().map(|(c, _)| &c.name).collect();
        clients.sort();
        clients.dedup();
        let clients = clients.len();
        (
            Self {
                by_digest: by_digest
                    .into_iter()
                    .map(|(digest, (client, _))| (digest, client))
                    .collect(),
                clients,
            },
            errors,
        )
    }

    /// The client a key's digest belongs to.
    pub fn client(&self, digest: &[u8; 32]) -> Option<&Arc<Client>> {
        self.by_digest.get(digest)
    }

    pub fn keys(&self) -> usize {
        self.by_digest.len()
    }

    pub fn clients(&self) -> usize {
        self.clients
    }
}

#[cfg(test)]
mod tests;
