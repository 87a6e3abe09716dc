//! A batch as the local stores' commit rules take it and the embedded store's journal keeps
//! it: everything applying it needs, and nothing that depends on when it is applied. The clock is read once, when the batch is made (each key's `now`, the
//! batch's day), so that replaying a record after a crash gives the same counts, the same
//! days and the same key outcomes as the commit that was acknowledged.

use serde::{Deserialize, Serialize};

use crate::store::RouteWrite;

/// One commit: its routes' writes, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(in crate::store) struct BatchRecord {
    pub writes: Vec<WriteRecord>,
}

/// One route's share of a commit (see [`RouteWrite`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(in crate::store) struct WriteRecord {
    /// The canonical route.
    pub route: String,
    pub keyless: u64,
    /// The commit's UTC day, as [`crate::calendar::Day::number`].
    pub day: i32,
    pub keyed: Vec<KeyRecord>,
}

/// One keyed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(in crate::store) struct KeyRecord {
    /// The key's record id (its client's scope and the key).
    pub id: String,
    /// When it was sent (epoch seconds): a stored key that expired by then starts afresh.
    pub now: u64,
    /// When the key record this transaction writes expires (epoch seconds).
    pub expires_at: u64,
}

impl BatchRecord {
    pub fn of(batch: &[RouteWrite]) -> Self {
        Self {
            writes: batch
                .iter()
                .map(|write| WriteRecord {
                    route: write.route.as_str().to_owned(),
                    keyless: write.keyless,
                    day: write.day.number(),
                    keyed: write
                        .keyed
                        .iter()
                        .map(|k| KeyRecord {
                            id: k.key.record_id().into_owned(),
                            now: k.now,
                            expires_at: k.expires_at,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The journal's bytes for it.
    pub fn encode(&self) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_stdvec(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(bytes)
    }
}
