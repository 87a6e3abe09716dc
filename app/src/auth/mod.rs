//! Clients and their API keys: who a caller is, and what it may do.
//!
//! Keys are random (at least 128 bits, 256 from the generator), so the keys file holds only
//! their SHA-256 digests: a fast hash is enough when the input cannot be guessed, and a leaked
//! file gives nobody a key. A presented key is hashed and its digest looked up in a map; the
//! lookup compares digests of attacker-chosen input, whose timing says nothing about any key.
//!
//! Nothing here knows HTTP: the API layer reads the `Authorization` header and asks this
//! module who the key belongs to.

mod key;
mod keys_file;
mod reload;

use std::{fmt, sync::Arc};

pub use key::{KEY_PREFIX, digest, digest_hex, generate_key};
pub use keys_file::{KeyTable, KeysFileError, LineError};
pub use reload::{ApiKeys, RELOAD_INTERVAL};

/// Longest client name.
pub const MAX_CLIENT_NAME_LEN: usize = 63;

/// What a caller is told when a client name is rejected.
pub const CLIENT_NAME_RULE: &str = "a client name is 1 to 63 lowercase letters, digits and \
     hyphens, starting with a letter or digit, e.g. booking-engine";

/// A client's name as the keys file spells it: `[a-z0-9][a-z0-9-]{0,62}`. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientName(Arc<str>);

impl ClientName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let bytes = name.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= MAX_CLIENT_NAME_LEN
            && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if valid {
            Ok(Self(Arc::from(name)))
        } else {
            Err(format!("{name:?} is not a client name; {CLIENT_NAME_RULE}"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientName({})", self.0)
    }
}

/// What a key allows. Each scope allows what the ones before it do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Scope {
    /// Read counts only.
    Read,
    /// Record transactions and read counts.
    Write,
    /// Everything a write key may do, and export the whole store (GET /admin/export).
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// A client of the keys file: its name and what its keys allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub name: ClientName,
    pub scope: Scope,
}

/// Whether requests are authenticated.
#[derive(Clone)]
pub enum AuthMode {
    /// No keys file: any client may read and write (a local run).
    Off,
    /// Requests to the transactions API need a key from the keys file.
    ApiKeys {
        keys: Arc<ApiKeys>,
        /// Reads need no key.
        public_reads: bool,
    },
}

impl AuthMode {
    /// How `/version` names the mode.
    /// The names [`AuthMode::as_str`] gives, for the OpenAPI document's enum.
    pub const NAMES: [&'static str; 2] = ["off", "api-keys"];

    pub fn as_str(&self) -> &'static str {
        match self {
            AuthMode::Off => "off",
            AuthMode::ApiKeys { .. } => "api-keys",
        }
    }
}

impl fmt::Debug for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthMode::Off => f.write_str("Off"),
            AuthMode::ApiKeys { public_reads, .. } => f
                .debug_struct("ApiKeys")
                .field("public_reads", public_reads)
                .finish_non_exhaustive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_names_follow_the_rule() {
        for good in ["a", "0", "booking-engine", "a-", &"a".repeat(63)] {
            assert!(ClientName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "Alice",
            "a_b",
            "a b",
            "é",
            &"a".repeat(64),
            "a\u{0}",
        ] {
            let err = ClientName::parse(bad).expect_err(bad);
            assert!(err.contains("client name"), "{err}");
        }
    }
}
