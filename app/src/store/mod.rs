//! Where counts live. Backends know nothing of HTTP: they take per-route writes (keyless
//! transactions and keyed ones, an idempotency key each) and hand back the new totals and each
//! key's outcome. The ledger (group commit) is their only caller on the write path.
//!
//! What a backend can do is said by the trait it implements, not found out at run time:
//! - a [`BatchStore`] (a local database with one writer: `embedded`, `memory`) takes a whole
//!   batch, any number of routes, in one atomic commit;
//! - an [`ItemStore`] (a networked store with per-item atomic updates: `dynamodb`) takes one
//!   route per commit, several commits at once, and may answer [`StoreError::Throttled`].
//!
//! [`Store`] holds either, and is what the rest of the service passes around.

mod dynamodb;
mod embedded;
mod local;
mod memory;
mod snapshot;

use std::{borrow::Cow, sync::Arc};

pub use dynamodb::{
    BATCH_RECORD_PREFIX, COUNT_ATTRIBUTE, ConnectError, DynamoSettings, DynamoStore,
    EXPIRES_AT_ATTRIBUTE, KEY_ATTRIBUTE, KEY_COUNT_ATTRIBUTE, KEY_RECORD_PREFIX,
    KEY_ROUTE_ATTRIBUTE,
};
pub use embedded::{
    CHECKPOINT_BYTES, DATABASE_FILE, DEFAULT_CACHE_MIB, EmbeddedSettings, EmbeddedStore,
    JOURNAL_FILE,
};
pub use memory::MemoryStore;
pub use snapshot::{Consistency, ImportMark, RecordSink, SnapshotStore, Unsupported};

use crate::{
    calendar::{Day, Month},
    idempotency::{KeyedIncrement, KeyedOutcome},
    route::{Airline, Route},
};

/// One route's share of a commit: `keyless` transactions without a key, then the keyed ones,
/// in order, all on `day` (the UTC day of the commit: the one whose count, and whose month's,
/// they join, in the same atomic write as the route's total).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteWrite {
    pub route: Route,
    pub keyless: u64,
    pub keyed: Vec<KeyedIncrement>,
    pub day: Day,
}

impl RouteWrite {
    /// `n` transactions without a key, on `day`.
    pub fn keyless(route: Route, n: u64, day: Day) -> Self {
        Self {
            route,
            keyless: n,
            keyed: Vec::new(),
            day,
        }
    }

    /// How many transactions the write carries.
    pub fn transactions(&self) -> u64 {
        self.keyless + self.keyed.len() as u64
    }
}

/// What a [`RouteWrite`] came to. The keyless transactions were given the counts
/// `keyless_total - keyless + 1 ..= keyless_total`, in order; each keyed one has its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteOutcome {
    /// The route's total right after its keyless transactions were added.
    pub keyless_total: u64,
    pub keyed: Vec<KeyedOutcome>,
}

/// A cause kept for logs and `source()` chains; shared, so a [`StoreError`] stays `Clone` (the
/// ledger hands one failure to every caller of a batch).
pub type Cause = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store could not do what was asked. Every variant means nothing was applied.
///
/// `context` says what the store was doing; the underlying error stays reachable through
/// [`std::error::Error::source`], so a log can print the whole chain.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot commit right now (I/O failure, unreachable, timed out). Callers may
    /// retry later.
    #[error("store unavailable: {context}")]
    Unavailable {
        context: Cow<'static, str>,
        #[source]
        source: Cause,
    },
    /// The store refused the write for exceeding a rate limit, and applied nothing: the same
    /// write may be sent again, later. The ledger slows down the route and retries it.
    #[error("store throttled: {context}")]
    Throttled {
        context: Cow<'static, str>,
        #[source]
        source: Cause,
    },
    /// Adding the increment would overflow the route's 64-bit count.
    #[error("the count of route {0} would overflow")]
    Overflow(Route),
}

impl StoreError {
    /// The store failed while doing `context`, because of `source`.
    pub fn unavailable(
        context: impl Into<Cow<'static, str>>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Unavailable {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// The store refused `context` for its rate, because of `source`.
    pub fn throttled(
        context: impl Into<Cow<'static, str>>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Throttled {
            context: context.into(),
            source: Arc::new(source),
        }
    }

    /// The error and every source under it, on one line: what a log needs to say what
    /// actually failed.
    pub fn chain(&self) -> String {
        crate::telemetry::logging::error_chain(self)
    }
}

/// `?` with what the store was doing: the error becomes [`StoreError::Unavailable`] with it as
/// the source. For the local stores, whose library errors all mean the store cannot go on.
trait OrUnavailable<T> {
    fn or_unavailable(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> OrUnavailable<T> for Result<T, E> {
    fn or_unavailable(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|err| StoreError::unavailable(context, err))
    }
}

/// What every store does besides committing: reads, readiness, upkeep.
#[async_trait::async_trait]
pub trait StoreBase: SnapshotStore + Send + Sync + 'static {
    /// A short name for logs and metrics (`embedded`, `memory`, ...).
    fn kind(&self) -> &'static str;

    /// Whether every instance of the service shares this store over the network (DynamoDB)
    /// rather than each having its own (a file, memory). Readiness follows the health of a
    /// store that is local to the process only: a shared store failing fails for every pod at
    /// once, and taking them all out of the load balancer would turn its `503`s into refused
    /// connections (see `lifecycle`).
    fn shared(&self) -> bool {
        false
    }

    /// The current count of one route (0 if never seen), reflecting every acknowledged commit.
    async fn get(&self, route: Route) -> Result<u64, StoreError>;

    /// The current counts of several distinct routes, in order, read consistently (one read
    /// each, unless the store can do better).
    async fn get_many(&self, routes: &[Route]) -> Result<Vec<u64>, StoreError> {
        let mut counts = Vec::with_capacity(routes.len());
        for route in routes {
            counts.push(self.get(*route).await?);
        }
        Ok(counts)
    }

    /// A route's count on each day from `from` to `to` inclusive, oldest first (0 for a day
    /// without transactions, or one no longer kept).
    async fn daily(&self, route: Route, from: Day, to: Day) -> Result<Vec<u64>, StoreError>;

    /// A route's count in each month from `from` to `to` inclusive, oldest first.
    async fn monthly(&self, route: Route, from: Month, to: Month) -> Result<Vec<u64>, StoreError>;

    /// Up to `limit` routes after `after` in route order (only `airline`'s, if given), each
    /// with its total, routes that count nothing left out. `None` from a store that cannot
    /// read its routes in order (DynamoDB spreads them by hash): the caller lists them from a
    /// scan instead.
    async fn list_routes(
        &self,
        after: Option<Route>,
        airline: Option<Airline>,
        limit: usize,
    ) -> Result<Option<Vec<(Route, u64)>>, StoreError> {
        let _ = (after, airline, limit);
        Ok(None)
    }

    /// Whether the store can take commits now (cheap; called by readiness checks).
    async fn check_ready(&self) -> Result<(), StoreError>;

    /// Periodic upkeep at `now` (epoch seconds), today being `today`: deletes up to `limit`
    /// idempotency key records that expired at or before `now`, and days and months that fell
    /// out of the window, and returns how many records it deleted (a store that expires keys
    /// itself, like DynamoDB with TTL, deletes none and may finish deferred work instead).
    async fn housekeeping(&self, now: u64, today: Day, limit: usize) -> Result<usize, StoreError> {
        let _ = (now, today, limit);
        Ok(0)
    }

    /// Finishes deferred work before the process exits (best effort).
    async fn close(&self) {}
}

/// A store that commits a whole batch, any number of routes, in one atomic transaction, one
/// commit at a time.
#[async_trait::async_trait]
pub trait BatchStore: StoreBase {
    /// Applies every write atomically and durably and returns each one's outcome, in order.
    /// Routes in a batch are distinct. A keyed transaction whose key is stored and unexpired
    /// records nothing and returns the stored outcome; otherwise it adds one to its route and
    /// stores its key with the count it produced: never a count without its key, nor a key
    /// without its count. On error nothing of the batch is applied.
    async fn commit(&self, batch: &[RouteWrite]) -> Result<Vec<RouteOutcome>, StoreError>;
}

/// How many commits an [`ItemStore`] takes at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemLimits {
    /// Commits in flight at once, all routes together.
    pub max_in_flight: usize,
    /// Keyless commits in flight at once on one route (each an atomic add that returns its own
    /// total, so overlapping ones still hand out distinct counts). A commit with keyed
    /// transactions is always alone on its route.
    pub per_route: usize,
    /// Most keyed transactions in one commit.
    pub max_keyed: usize,
}

/// A store whose atomic unit is one route's item: one commit per route, several at once.
#[async_trait::async_trait]
pub trait ItemStore: StoreBase {
    fn limits(&self) -> ItemLimits;

    /// Applies one route's write atomically and durably, with the guarantees of
    /// [`BatchStore::commit`]. On error nothing was applied ([`StoreError::Throttled`]: the same
    /// write may be sent again).
    async fn commit(&self, write: &RouteWrite) -> Result<RouteOutcome, StoreError>;
}

/// The configured backend, by what it can do.
#[derive(Clone)]
pub enum Store {
    Batch(Arc<dyn BatchStore>),
    Item(Arc<dyn ItemStore>),
}

impl Store {
    pub fn batch(store: impl BatchStore) -> Self {
        Self::Batch(Arc::new(store))
    }

    pub fn item(store: impl ItemStore) -> Self {
        Self::Item(Arc::new(store))
    }

    /// The part every store has.
    pub fn base(&self) -> &dyn StoreBase {
        match self {
            Self::Batch(store) => store.as_ref(),
            Self::Item(store) => store.as_ref(),
        }
    }

    pub fn kind(&self) -> &'static str {
        self.base().kind()
    }

    pub fn shared(&self) -> bool {
        self.base().shared()
    }
}

impl From<Arc<dyn BatchStore>> for Store {
    fn from(store: Arc<dyn BatchStore>) -> Self {
        Self::Batch(store)
    }
}

impl From<Arc<dyn ItemStore>> for Store {
    fn from(store: Arc<dyn ItemStore>) -> Self {
        Self::Item(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_keeps_its_cause_through_clones() {
        let err = StoreError::unavailable(
            "appending to the journal",
            std::io::Error::other("no space left on device"),
        )
        .clone();
        assert_eq!(
            err.to_string(),
            "store unavailable: appending to the journal"
        );
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert_eq!(cause.as_deref(), Some("no space left on device"));
        assert_eq!(
            err.chain(),
            "store unavailable: appending to the journal: no space left on device"
        );
    }
}
