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

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use super::{Client, ClientName, Scope};

/// The largest keys file read: far more than any real list of keys, and a bound on what a
/// wrong path (a log file, a device) can make the service read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The keys in force: each key's digest to its client.
#[derive(Debug, Default)]
pub struct KeyTable {
    by_digest: HashMap<[u8; 32], Arc<Client>>,
    clients: usize,
}

/// Why one line of the file is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("expected `<client> <scope> <sha256-hex-of-key>`, found {0} field(s)")]
    FieldCount(usize),
    #[error("{0}")]
    ClientName(String),
    #[error("unknown scope {0:?}; the scope is `write` (POST and GET) or `read` (GET only)")]
    Scope(String),
    #[error(
        "the key's digest must be its SHA-256 as 64 lowercase hex digits (the file never holds \
         a key; `flight-counter api-key` prints the line to add)"
    )]
    Digest,
    #[error(
        "client {client} has scope {scope} here but {earlier} on line {earlier_line}; a client has one scope"
    )]
    ScopeConflict {
        client: String,
        scope: &'static str,
        earlier: &'static str,
        earlier_line: usize,
    },
    #[error("this key is already listed on line {0}")]
    DuplicateKey(usize),
    #[error("the line is not UTF-8 text")]
    NotText,
}

/// Why a keys file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysFileError {
    #[error("cannot read the API keys file {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("the API keys file {path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("the API keys file {path}, line {line}: {error}")]
    Line {
        path: PathBuf,
        line: usize,
        error: LineError,
    },
}

impl KeysFileError {
    /// The line at fault, if the file was read.
    pub fn line(&self) -> Option<usize> {
        match self {
            KeysFileError::Line { line, .. } => Some(*line),
            _ => None,
        }
    }
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

impl KeyTable {
    /// Parses the file's bytes. The error names the first line at fault (1-based).
    pub fn parse(bytes: &[u8]) -> Result<Self, (usize, LineError)> {
        let mut by_digest: HashMap<[u8; 32], (Arc<Client>, usize)> = HashMap::new();
        // Each client's scope and the line that first gave it.
        let mut scopes: HashMap<ClientName, (Scope, usize)> = HashMap::new();
        for (index, raw_line) in bytes.split(|b| *b == b'\n').enumerate() {
            let number = index + 1;
            let line = std::str::from_utf8(raw_line).map_err(|_| (number, LineError::NotText))?;
            let content = line.split('#').next().unwrap_or_default();
            let fields: Vec<&str> = content
                .split([' ', '\t', '\r'])
                .filter(|field| !field.is_empty())
                .collect();
            let (name, scope, hex_digest) = match fields[..] {
                [] => continue,
                [name, scope, hex_digest] => (name, scope, hex_digest),
                _ => return Err((number, LineError::FieldCount(fields.len()))),
            };
            let name =
                ClientName::parse(name).map_err(|err| (number, LineError::ClientName(err)))?;
            let scope =
                Scope::parse(scope).ok_or_else(|| (number, LineError::Scope(scope.to_owned())))?;
            let digest = parse_digest(hex_digest).ok_or((number, LineError::Digest))?;
            match scopes.get(&name) {
                Some((earlier, earlier_line)) if *earlier != scope => {
                    return Err((
                        number,
                        LineError::ScopeConflict {
                            client: name.to_string(),
                            scope: scope.as_str(),
                            earlier: earlier.as_str(),
                            earlier_line: *earlier_line,
                        },
                    ));
                }
                Some(_) => {}
                None => {
                    scopes.insert(name.clone(), (scope, number));
                }
            }
            if let Some((_, first)) = by_digest.get(&digest) {
                return Err((number, LineError::DuplicateKey(*first)));
            }
            by_digest.insert(digest, (Arc::new(Client { name, scope }), number));
        }
        Ok(Self {
            by_digest: by_digest
                .into_iter()
                .map(|(digest, (client, _))| (digest, client))
                .collect(),
            clients: scopes.len(),
        })
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
mod tests {
    use super::*;
    use crate::auth::digest_hex;

    fn line_error(text: &str) -> (usize, LineError) {
        KeyTable::parse(text.as_bytes()).expect_err(text)
    }

    #[test]
    fn a_file_maps_each_keys_digest_to_its_client() {
        let text = format!(
            "# the booking engine, two keys while rotating\n\
             \n\
             booking-engine write {}\n\
             booking-engine\twrite\t{}   # next key\n\
             \x20 dashboards   read {}\r\n",
            digest_hex("key-1"),
            digest_hex("key-2"),
            digest_hex("key-3"),
        );
        let table = KeyTable::parse(text.as_bytes()).expect("valid");
        assert_eq!((table.keys(), table.clients()), (3, 2));
        let client = |key: &str| {
            table
                .client(&crate::auth::digest(key.as_bytes()))
                .map(|c| (c.name.to_string(), c.scope))
        };
        assert_eq!(
            client("key-1"),
            Some(("booking-engine".into(), Scope::Write))
        );
        assert_eq!(
            client("key-2"),
            Some(("booking-engine".into(), Scope::Write))
        );
        assert_eq!(client("key-3"), Some(("dashboards".into(), Scope::Read)));
        assert_eq!(client("key-4"), None);
        let empty = KeyTable::parse(b"# nobody yet\n\n").expect("valid");
        assert_eq!((empty.keys(), empty.clients()), (0, 0));
    }

    #[test]
    fn every_error_names_its_line() {
        let good = digest_hex("k");
        let other = digest_hex("other");
        assert_eq!(
            line_error(&format!("# c\nalice write {good} extra\n")),
            (2, LineError::FieldCount(4))
        );
        assert_eq!(
            line_error("\n\nalice write\n"),
            (3, LineError::FieldCount(2))
        );
        assert!(matches!(
            line_error(&format!("Alice write {good}")),
            (1, LineError::ClientName(message)) if message.contains("client name")
        ));
        assert_eq!(
            line_error(&format!("alice admin {good}")),
            (1, LineError::Scope("admin".into()))
        );
        assert_eq!(
            line_error(&format!("alice write {}", good.to_uppercase())),
            (1, LineError::Digest)
        );
        assert_eq!(
            line_error(&format!("alice write {}", &good[1..])),
            (1, LineError::Digest)
        );
        assert_eq!(
            line_error("alice write fck_not-a-digest-but-a-key"),
            (1, LineError::Digest)
        );
        assert_eq!(
            line_error(&format!(
                "alice write {good}\nbob read {other}\nalice read {}",
                digest_hex("x")
            )),
            (
                3,
                LineError::ScopeConflict {
                    client: "alice".into(),
                    scope: "read",
                    earlier: "write",
                    earlier_line: 1
                }
            )
        );
        assert_eq!(
            line_error(&format!("alice write {good}\n\nbob write {good}")),
            (3, LineError::DuplicateKey(1))
        );
        assert_eq!(
            line_error(&format!("alice write {good}\nbob write caf\u{e9}")),
            (2, LineError::Digest)
        );
        let mut bytes = format!("alice write {good}\n").into_bytes();
        bytes.extend_from_slice(b"bob write \xff\xfe\n");
        assert_eq!(
            KeyTable::parse(&bytes).expect_err("not UTF-8"),
            (2, LineError::NotText)
        );
    }

    #[test]
    fn errors_read_as_one_line_naming_the_file_and_line() {
        let error = KeysFileError::Line {
            path: PathBuf::from("/etc/flight-counter/api-keys"),
            line: 7,
            error: LineError::Scope("admin".into()),
        };
        let text = error.to_string();
        assert!(
            text.starts_with(
                "the API keys file /etc/flight-counter/api-keys, line 7: unknown scope"
            ),
            "{text}"
        );
        assert_eq!(error.line(), Some(7));
        assert_eq!(text.lines().count(), 1);
    }
}
