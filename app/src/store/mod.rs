//! Where counts live. Backends know nothing of HTTP: they take a batch of per-route increments
//! and hand back the new totals, and record keyed transactions (idempotency keys) atomically with
//! their counts. The ledger (group commit) is their only caller on the write path.

mod dynamodb;
mod embedded;
mod memory;

use std::sync::Arc;

pub use dynamodb::{
    COUNT_ATTRIBUTE, DynamoSettings, DynamoStore, EXPIRES_AT_ATTRIBUTE, KEY_ATTRIBUTE,
    KEY_COUNT_ATTRIBUTE, KEY_RECORD_PREFIX, KEY_ROUTE_ATTRIBUTE,
};
pub use embedded::{DATABASE_FILE, EmbeddedStore};
pub use memory::MemoryStore;

use crate::{
    idempotency::{KeyedIncrement, KeyedOutcome},
    route::Route,
};

/// One route's share of a batch: how many transactions to add to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Increment {
    pub route: Route,
    pub delta: u64,
}

/// How a backend wants batches handed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Everything pending goes into one atomic commit, one commit at a time (a local database
    /// with a single writer: one transaction and one fsync per batch).
    WholeBatch,
    /// Each route is committed on its own, up to `max_in_flight` commits at once and up to
    /// `per_route` of them on one route (a networked store with per-item atomic updates, where
    /// a slow route must not hold up the others, and where a second commit on a hot route can
    /// travel while the first is still on the wire).
    PerRoute {
        max_in_flight: usize,
        per_route: usize,
    },
}

/// Why a store could not do what was asked. Every variant means nothing was applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot commit right now (I/O failure, unreachable, throttled, timed out).
    /// Callers may retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Adding the increment would overflow the route's 64-bit count.
    #[error("the count of route {0} would overflow")]
    Overflow(Route),
}

/// A durable home for per-route counts.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and metrics (`embedded`, `memory`, ...).
    fn kind(&self) -> &'static str;

    /// How the ledger should group increments for this store.
    fn commit_mode(&self) -> CommitMode;

    /// Adds every increment atomically and durably, returning each route's new total in the same
    /// order. Routes in a batch are distinct. On error nothing of the batch is applied.
    async fn apply(&self, batch: &[Increment]) -> Result<Vec<u64>, StoreError>;

    /// The current count of one route (0 if never seen), reflecting every acknowledged commit.
    async fn get(&self, route: Route) -> Result<u64, StoreError>;

    /// Whether the store can take commits now (cheap; called by readiness checks).
    async fn check_ready(&self) -> Result<(), StoreError>;

    /// Whether [`Store::apply_with_keys`] takes whole batches with keyed transactions in them
    /// (a local database). Otherwise the ledger commits keyed transactions one at a time through
    /// [`Store::apply_keyed`].
    fn batches_keys(&self) -> bool {
        false
    }

    /// As [`Store::apply`], plus keyed transactions, all in one atomic commit: the keyless
    /// increments first (their totals are returned as by `apply`), then each keyed transaction
    /// in order. A keyed transaction whose key is stored and unexpired records nothing and
    /// returns the stored outcome; otherwise it adds one to its route and stores its key with
    /// the count it produced. Never a count without its key, nor a key without its count.
    async fn apply_with_keys(
        &self,
        batch: &[Increment],
        keyed: &[KeyedIncrement],
    ) -> Result<(Vec<u64>, Vec<KeyedOutcome>), StoreError> {
        let _ = (batch, keyed);
        Err(StoreError::Unavailable(format!(
            "the {} store does not take keyed batches",
            self.kind()
        )))
    }

    /// One keyed transaction in a commit of its own (see [`Store::apply_with_keys`]).
    async fn apply_keyed(&self, keyed: &KeyedIncrement) -> Result<KeyedOutcome, StoreError> {
        let (_, outcomes) = self
            .apply_with_keys(&[], std::slice::from_ref(keyed))
            .await?;
        outcomes
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Unavailable("store returned no outcome".into()))
    }

    /// Deletes up to `limit` key records that expired at or before `now` (epoch seconds) and
    /// returns how many it deleted. Stores that expire keys on their own (DynamoDB TTL) do
    /// nothing here.
    async fn sweep_expired_keys(&self, now: u64, limit: usize) -> Result<usize, StoreError> {
        let _ = (now, limit);
        Ok(0)
    }
}

/// A shared handle to whichever backend was configured.
pub type SharedStore = Arc<dyn Store>;
