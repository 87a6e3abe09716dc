//! Counts in a DynamoDB table, shared by every instance of the service.
//!
//! One item per route: partition key `route` (String, the canonical route) and the count in the
//! Number attribute `transactions`. The ledger hands this store one route per commit, several
//! routes at once ([`ItemStore`]), so a slow or throttled route does not hold up the others.
//!
//! - Keyless commits ([`counter`]) are one `UpdateItem` with `ADD transactions :n`, answered with
//!   the new total: DynamoDB applies it atomically on the item, so instances racing on one route
//!   never lose an update, and nothing here ever reads a count to write it back.
//! - Commits with keyed transactions ([`keyed`]) are one `TransactWriteItems` of the route's
//!   item and up to 98 key records, with no condition on the count's value, so they go through
//!   whatever other instances add meanwhile; `docs/dynamodb.md` has the protocol and the argument
//!   for why each key is counted exactly once.
//! - A throttled write applied nothing: it comes back to the ledger as
//!   [`StoreError::Throttled`], and the ledger paces the route.
//! - [`table`] checks (or, for local development, creates) the table; [`retry`] decides which
//!   failed attempts the SDK may repeat, and counts every call; [`errors`] explains failures.
//!
//! Credentials, region and endpoint come from the standard AWS configuration chain (environment,
//! profile, web identity, EKS Pod Identity); `--endpoint-url` points at a local server. Every
//! call has a connect timeout, a per-attempt timeout and an overall timeout no longer than the
//! commit timeout.
//!
//! IAM actions used, all on the one table: `dynamodb:UpdateItem` (commits), `dynamodb:GetItem`
//! (reads), `dynamodb:PutItem` and `dynamodb:UpdateItem` inside `TransactWriteItems` (keyed
//! commits), `dynamodb:DescribeTable` (readiness) and, only with `--create-table`,
//! `dynamodb:CreateTable` and `dynamodb:UpdateTimeToLive`. Snapshots ([`snapshot`]) also use
//! `dynamodb:Scan` (export), and `dynamodb:BatchWriteItem` and `dynamodb:PutItem` on route items
//! (import, with a role of its own: see `docs/dynamodb.md`).

mod attempt;
mod counter;
mod errors;
mod keyed;
mod markers;
mod periods;
mod records;
mod retry;
mod snapshot;
mod table;

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use aws_sdk_dynamodb::{
    Client,
    config::{BehaviorVersion, retry::RetryConfig, timeout::TimeoutConfig},
    error::{ProvideErrorMetadata, SdkError},
};

use super::{ItemLimits, ItemStore, RouteOutcome, RouteWrite, StoreBase, StoreError};
use crate::{
    calendar::{Day, Month},
    clock::SharedClock,
    route::Route,
};
use errors::{Fault, explain};
use markers::PendingMarkers;
use periods::WindowUpkeep;
use retry::{CallCounter, WriteRetry};

/// The partition key: the canonical route (or a key or batch record's name).
pub const KEY_ATTRIBUTE: &str = "route";
/// The count of a route.
pub const COUNT_ATTRIBUTE: &str = "transactions";
/// Partition key prefix of idempotency key records; no canonical route contains `#`.
pub const KEY_RECORD_PREFIX: &str = "idem#";
/// Partition key prefix of batch records: the total a keyed commit left on its route.
pub const BATCH_RECORD_PREFIX: &str = "batch#";
/// A key record's route; a batch record's route too.
pub const KEY_ROUTE_ATTRIBUTE: &str = "target_route";
/// A key record's count (records written before batch commits, and finished ones); a batch
/// record's total.
pub const KEY_COUNT_ATTRIBUTE: &str = "count";
/// Expiry in epoch seconds: the table's TTL attribute.
pub const EXPIRES_AT_ATTRIBUTE: &str = "expires_at";

/// How long a confirmed `ACTIVE` table is taken on trust by readiness, as long as reads and
/// commits keep succeeding. `DescribeTable` is a control-plane call with its own, lower, rate
/// limits: every pod asking every 2 s would spend them for nothing.
const TABLE_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// How long one readiness check waits for a table being created to turn `ACTIVE`.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(1);
/// First retry backoff and its ceiling (the SDK jitters between zero and the doubled value).
const RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(25);
const RETRY_MAX_BACKOFF: Duration = Duration::from_millis(500);
/// Most items in one `TransactWriteItems`.
const MAX_TRANSACTION_ITEMS: usize = 100;
/// Keyed transactions in one commit: the transaction also holds the route's item and the
/// record that finishes the route's previous keyed commit.
pub const MAX_KEYED_PER_COMMIT: usize = MAX_TRANSACTION_ITEMS - 2;

/// How to reach the table and how long to wait for it.
#[derive(Debug, Clone)]
pub struct DynamoSettings {
    pub table: String,
    /// A local DynamoDB-compatible server; `None` leaves it to the AWS configuration chain.
    pub endpoint_url: Option<String>,
    /// Create the table when it is missing (local development only).
    pub create_table: bool,
    /// Most commits (one route each) in flight at once.
    pub max_in_flight: usize,
    /// Most keyless commits in flight on one route. Each is an atomic `ADD` that returns its
    /// own total, so overlapping commits on a route still hand out distinct counts.
    pub commits_per_route: usize,
    pub connect_timeout: Duration,
    /// One attempt of a call; a timed-out attempt is retried where that is safe.
    pub attempt_timeout: Duration,
    /// A whole call, retries and backoff included.
    pub operation_timeout: Duration,
    /// Attempts per call (1: no retries).
    pub max_attempts: u32,
    /// How long an idempotency key is honoured (batch records live as long as their keys).
    pub idempotency_retention: Duration,
}

/// Why the store cannot be set up (before any call to DynamoDB).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("no AWS region configured for the dynamodb store: set AWS_REGION (e.g. us-east-1)")]
    NoRegion,
}

pub struct DynamoStore {
    /// Reads, readiness and table creation: every failure the SDK deems transient is retried.
    client: Client,
    /// Keyless commits (`ADD`): retried only when the failed attempt cannot have been applied,
    /// never on throttling (the ledger paces instead).
    adder: Client,
    /// Transactions that move a keyed commit's total to its batch record (idempotent, by their
    /// client request token and condition): retried on transient failures, never on throttling.
    transactor: Client,
    /// Keyed commits' own transactions: one attempt per call; [`keyed`] sends each transaction
    /// again itself, with the same token, after sorting out what the attempt came to
    /// ([`attempt`]).
    keyed: Client,
    settings: DynamoSettings,
    /// When `DescribeTable` last found the table usable.
    table_confirmed: Mutex<Option<Instant>>,
    /// A read or commit failed since then: readiness must ask DynamoDB again.
    call_failed: AtomicBool,
    /// This instance created the table and has not yet turned TTL on for it.
    ttl_pending: AtomicBool,
    /// Keyed commits whose route item still holds their total, to be moved to batch records.
    pending: PendingMarkers,
    /// What time it is: new batch ids carry it, and markers older than a day are abandoned.
    clock: SharedClock,
    /// Days and months seen out of the window on route items, to be removed, and the routes
    /// whose window a keyless write swept today.
    window: WindowUpkeep,
}

impl DynamoStore {
    /// Loads the AWS configuration (the standard chain) and prepares a client. Makes no call:
    /// the service starts whether or not DynamoDB is reachable, and readiness tells.
    pub async fn connect(
        settings: DynamoSettings,
        clock: SharedClock,
    ) -> Result<Self, ConnectError> {
        let loader = aws_config::defaults(BehaviorVersion::latest());
        Self::connect_with(settings, loader, clock).await
    }

    /// As [`DynamoStore::connect`], from a configuration loader the caller has adjusted (tests
    /// pin region and credentials this way).
    pub async fn connect_with(
        settings: DynamoSettings,
        mut loader: aws_config::ConfigLoader,
        clock: SharedClock,
    ) -> Result<Self, ConnectError> {
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(settings.connect_timeout)
                    .operation_attempt_timeout(settings.attempt_timeout)
                    .operation_timeout(settings.operation_timeout)
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(settings.max_attempts)
                    .with_initial_backoff(RETRY_INITIAL_BACKOFF)
                    .with_max_backoff(RETRY_MAX_BACKOFF),
            )
            .load()
            .await;
        let Some(region) = sdk.region() else {
            return Err(ConnectError::NoRegion);
        };
        tracing::info!(
            table = %settings.table,
            region = %region,
            endpoint = sdk.endpoint_url().unwrap_or("(regional)"),
            create_table = settings.create_table,
            "using DynamoDB"
        );
        let config = aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(CallCounter);
        let adder = config
            .clone()
            .retry_classifier(WriteRetry { idempotent: false })
            .build();
        let transactor = config
            .clone()
            .retry_classifier(WriteRetry { idempotent: true })
            .build();
        let keyed = config.clone().retry_config(RetryConfig::disabled()).build();
        Ok(Self {
            client: Client::from_conf(config.build()),
            adder: Client::from_conf(adder),
            transactor: Client::from_conf(transactor),
            keyed: Client::from_conf(keyed),
            settings,
            table_confirmed: Mutex::new(None),
            call_failed: AtomicBool::new(false),
            ttl_pending: AtomicBool::new(false),
            pending: PendingMarkers::default(),
            clock,
            window: WindowUpkeep::default(),
        })
    }

    /// The SDK client, configured as the store uses it.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn table(&self) -> &str {
        &self.settings.table
    }

    /// Turns a failed call into a one-line reason, and notes it for readiness. Throttling is
    /// not a failure of the store: it says so, and readiness is left alone.
    fn failed<E>(&self, what: &str, err: SdkError<E>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let reason = explain(what, self.table(), &self.settings, &err);
        if errors::is_throttling(&err) {
            return StoreError::throttled(reason, err);
        }
        self.call_failed.store(true, Ordering::Relaxed);
        StoreError::unavailable(reason, err)
    }

    /// A call failed without an error of the SDK's to explain it: readiness asks again.
    fn note_failure(&self) {
        self.call_failed.store(true, Ordering::Relaxed);
    }

    fn confirmed_recently(&self) -> bool {
        let confirmed = *self
            .table_confirmed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        !self.call_failed.load(Ordering::Relaxed)
            && confirmed.is_some_and(|at| at.elapsed() < TABLE_CHECK_INTERVAL)
    }

    fn confirm(&self) {
        // Cleared before the time is set: a call failing in between only costs a check.
        self.call_failed.store(false, Ordering::Relaxed);
        *self
            .table_confirmed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Instant::now());
    }
}

/// Parses a stored count.
fn count_value(value: &str, what: &str, table: &str) -> Result<u64, StoreError> {
    value.parse::<u64>().map_err(|_| {
        StoreError::unavailable(
            format!("DynamoDB table {table} holds {value:?} for {what}, not a count"),
            Fault::NotACount(value.to_owned()),
        )
    })
}

#[async_trait::async_trait]
impl StoreBase for DynamoStore {
    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    fn shared(&self) -> bool {
        true
    }

    async fn get(&self, route: Route) -> Result<u64, StoreError> {
        self.read_count(route).await
    }

    async fn get_many(&self, routes: &[Route]) -> Result<Vec<u64>, StoreError> {
        self.read_counts(routes).await
    }

    async fn daily(&self, route: Route, from: Day, to: Day) -> Result<Vec<u64>, StoreError> {
        let names: Vec<String> = (from.number()..=to.number())
            .filter_map(Day::from_number)
            .map(periods::day_attribute)
            .collect();
        self.read_periods(route, &names).await
    }

    async fn monthly(&self, route: Route, from: Month, to: Month) -> Result<Vec<u64>, StoreError> {
        let names: Vec<String> = (from.number()..=to.number())
            .map(|n| periods::month_attribute(Month::from_number(n)))
            .collect();
        self.read_periods(route, &names).await
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        self.table_ready().await
    }

    /// Key records expire through DynamoDB TTL; what is left to do is moving the totals of
    /// finished keyed commits off their route items ([`keyed`]), for routes that had no keyed
    /// commit since to carry it.
    async fn housekeeping(
        &self,
        _now: u64,
        _today: Day,
        _limit: usize,
    ) -> Result<usize, StoreError> {
        self.finish_idle_markers(false).await;
        Ok(0)
    }

    async fn close(&self) {
        self.finish_idle_markers(true).await;
    }
}

#[async_trait::async_trait]
impl ItemStore for DynamoStore {
    fn limits(&self) -> ItemLimits {
        ItemLimits {
            max_in_flight: self.settings.max_in_flight,
            per_route: self.settings.commits_per_route,
            max_keyed: MAX_KEYED_PER_COMMIT,
        }
    }

    async fn commit(&self, write: &RouteWrite) -> Result<RouteOutcome, StoreError> {
        if write.keyed.is_empty() {
            let total = self.add(write.route, write.keyless, write.day).await?;
            return Ok(RouteOutcome {
                keyless_total: total,
                keyed: Vec::new(),
            });
        }
        self.commit_keyed(write).await
    }
}
