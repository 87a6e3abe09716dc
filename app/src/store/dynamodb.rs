//! Counts in a DynamoDB table, shared by every instance of the service.
//!
//! One item per route: partition key `route` (String, the canonical route) and the count in the
//! Number attribute `transactions`. A commit is one `UpdateItem` with `ADD transactions :n` on
//! one route, answered with the new total (`ReturnValues=UPDATED_NEW`): DynamoDB applies it
//! atomically on the item, so instances racing on one route never lose an update, and nothing
//! here ever reads a count to write it back. Reads are strongly consistent `GetItem`s.
//!
//! The ledger hands this store one route per commit ([`CommitMode::PerRoute`]), several routes
//! at once, so a slow or throttled route does not hold up the others.
//!
//! Credentials, region and endpoint come from the standard AWS configuration chain (environment,
//! profile, web identity, EKS Pod Identity); `--endpoint-url` points at a local server. Every
//! call has a connect timeout, a per-attempt timeout and an overall timeout no longer than the
//! commit timeout; throttling, 5xx and network errors are retried with jittered backoff inside
//! that overall timeout. An `ADD` is not idempotent, though: an `UpdateItem` whose attempt timed
//! out, lost its connection mid-flight or met a `500` may have been applied, and retrying it would
//! count its transactions twice. Those are not retried; the callers get `503`, as for any
//! commit whose outcome is unknown. Throttling, `503` and failures to connect, which leave the
//! table untouched, are.
//!
//! Keyed transactions (an `Idempotency-Key`) are committed one at a time, each in a
//! `TransactWriteItems` of two writes that succeed or fail together: a `Put` of the key record
//! (partition key `idem#<key>`: no canonical route contains `#`; attributes `target_route`,
//! `count`, `expires_at`) on condition that no unexpired record of the key exists, and an
//! `Update` that sets the counter to the count the key record holds, on condition that the
//! counter still holds the value read just before. A transaction cannot return values, so the
//! count is read first (consistent `GetItem`) and the condition makes that read part of the
//! atomic write: if anything changed the counter in between, nothing is written and the store
//! reads and tries again (bounded, with jittered backoff). If the key's condition failed, another
//! request (here or in another pod) recorded the key first, and its stored outcome is answered.
//! So a count is never stored without its key nor a key without its count, and a key is counted
//! once. Key records expire through DynamoDB TTL on `expires_at` (epoch seconds); until TTL
//! deletes one (it may take a while), the condition treats an expired record as absent. Keyless
//! POSTs keep the `ADD` path above.
//!
//! IAM actions used, all on the one table: `dynamodb:UpdateItem` (commits), `dynamodb:GetItem`
//! (reads), `dynamodb:PutItem` and `dynamodb:UpdateItem` inside `TransactWriteItems` (keyed
//! commits), `dynamodb:DescribeTable` (readiness) and, only with `--create-table`,
//! `dynamodb:CreateTable` and `dynamodb:UpdateTimeToLive`.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use aws_sdk_dynamodb::{
    Client,
    config::{
        BehaviorVersion, ConfigBag, Intercept, RuntimeComponents,
        interceptors::FinalizerInterceptorContextRef, retry::RetryConfig, timeout::TimeoutConfig,
    },
    error::{BoxError, ProvideErrorMetadata, SdkError},
    types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
        ReturnValue, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TransactWriteItem,
        Update,
    },
};

use aws_smithy_runtime_api::client::{
    interceptors::context::InterceptorContext,
    orchestrator::Metadata,
    retries::classifiers::{ClassifyRetry, RetryAction, RetryClassifierPriority},
};

use super::{CommitMode, Increment, Store, StoreError};
use crate::{
    idempotency::{KeyedIncrement, KeyedOutcome},
    route::Route,
    telemetry::metrics as m,
};

/// The partition key: the canonical route.
pub const KEY_ATTRIBUTE: &str = "route";
/// The count of a route.
pub const COUNT_ATTRIBUTE: &str = "transactions";
/// Partition key prefix of idempotency key records; no canonical route contains `#`.
pub const KEY_RECORD_PREFIX: &str = "idem#";
/// A key record's route, count and expiry (epoch seconds; the table's TTL attribute).
pub const KEY_ROUTE_ATTRIBUTE: &str = "target_route";
pub const KEY_COUNT_ATTRIBUTE: &str = "count";
pub const EXPIRES_AT_ATTRIBUTE: &str = "expires_at";
/// Most optimistic attempts of one keyed commit when the counter keeps changing under it.
const KEYED_ATTEMPTS: u32 = 32;
/// Keyed commits of one route in this process go one at a time (they would only make each
/// other's counter condition fail); routes are spread over this many locks.
const KEYED_LOCKS: usize = 64;

/// How long a confirmed `ACTIVE` table is taken on trust by readiness, as long as reads and
/// commits keep succeeding. `DescribeTable` is a control-plane call with its own, lower, rate
/// limits: every pod asking every 2 s would spend them for nothing.
const TABLE_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// How long one readiness check waits for a table being created to turn `ACTIVE`.
const TABLE_ACTIVE_WAIT: Duration = Duration::from_secs(1);
/// First retry backoff and its ceiling (the SDK jitters between zero and the doubled value).
const RETRY_INITIAL_BACKOFF: Duration = Duration::from_millis(25);
const RETRY_MAX_BACKOFF: Duration = Duration::from_millis(500);

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
    /// Most of those on one route. Each is an atomic `ADD` that returns its own total, so
    /// overlapping commits on a route still hand out distinct counts.
    pub commits_per_route: usize,
    pub connect_timeout: Duration,
    /// One attempt of a call; a timed-out attempt is retried.
    pub attempt_timeout: Duration,
    /// A whole call, retries and backoff included.
    pub operation_timeout: Duration,
    /// Attempts per call (1: no retries).
    pub max_attempts: u32,
}

pub struct DynamoStore {
    /// Reads, readiness and table creation: every failure the SDK deems transient is retried.
    client: Client,
    /// Commits: retried only when the failed attempt cannot have been applied.
    writer: Client,
    settings: DynamoSettings,
    /// When `DescribeTable` last found the table usable.
    table_confirmed: Mutex<Option<Instant>>,
    /// A read or commit failed since then: readiness must ask DynamoDB again.
    call_failed: AtomicBool,
    /// This instance created the table and has not yet turned TTL on for it.
    ttl_pending: AtomicBool,
    keyed_locks: Vec<tokio::sync::Mutex<()>>,
}

impl DynamoStore {
    /// Loads the AWS configuration (the standard chain) and prepares a client. Makes no call:
    /// the service starts whether or not DynamoDB is reachable, and readiness tells.
    pub async fn connect(settings: DynamoSettings) -> anyhow::Result<Self> {
        let loader = aws_config::defaults(BehaviorVersion::latest());
        Self::connect_with(settings, loader).await
    }

    /// As [`DynamoStore::connect`], from a configuration loader the caller has adjusted (tests
    /// pin region and credentials this way).
    pub async fn connect_with(
        settings: DynamoSettings,
        mut loader: aws_config::ConfigLoader,
    ) -> anyhow::Result<Self> {
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
            anyhow::bail!(
                "no AWS region configured for the dynamodb store: set AWS_REGION (e.g. us-east-1)"
            );
        };
        tracing::info!(
            table = %settings.table,
            region = %region,
            endpoint = sdk.endpoint_url().unwrap_or("(regional)"),
            create_table = settings.create_table,
            "using DynamoDB"
        );
        let config = aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(CallCounter);
        let writer = config.clone().retry_classifier(NoAmbiguousRetry).build();
        Ok(Self {
            client: Client::from_conf(config.build()),
            writer: Client::from_conf(writer),
            settings,
            table_confirmed: Mutex::new(None),
            call_failed: AtomicBool::new(false),
            ttl_pending: AtomicBool::new(false),
            keyed_locks: (0..KEYED_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        })
    }

    /// The SDK client, configured as the store uses it.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn table(&self) -> &str {
        &self.settings.table
    }

    /// Turns a failed call into a one-line reason, and notes it for readiness.
    fn failed<E>(&self, what: &str, err: SdkError<E>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.call_failed.store(true, Ordering::Relaxed);
        StoreError::Unavailable(explain(what, self.table(), &self.settings, &err))
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

    /// Asks DynamoDB for the table's state: `Ok(None)` when usable, `Ok(Some(status))` when it
    /// exists but cannot take writes yet.
    async fn describe(&self) -> Result<Option<TableStatus>, DescribeError> {
        let out = self
            .client
            .describe_table()
            .table_name(self.table())
            .send()
            .await
            .map_err(|err| {
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception())
                {
                    DescribeError::Missing
                } else {
                    DescribeError::Failed(self.failed("DescribeTable", err))
                }
            })?;
        let table = out.table();
        let key = table
            .map(|t| t.key_schema())
            .unwrap_or_default()
            .iter()
            .map(|k| (k.attribute_name(), k.key_type().clone()))
            .collect::<Vec<_>>();
        let key_is_string = table
            .map(|t| t.attribute_definitions())
            .unwrap_or_default()
            .iter()
            .any(|a| {
                a.attribute_name() == KEY_ATTRIBUTE && *a.attribute_type() == ScalarAttributeType::S
            });
        if key != [(KEY_ATTRIBUTE, KeyType::Hash)] || !key_is_string {
            return Err(DescribeError::Failed(StoreError::Unavailable(format!(
                "DynamoDB table {} does not have the expected key: it must have the partition \
                 key {KEY_ATTRIBUTE} (String) and no sort key",
                self.table()
            ))));
        }
        match table.and_then(|t| t.table_status()) {
            // UPDATING (e.g. a capacity change) still takes reads and writes.
            Some(TableStatus::Active | TableStatus::Updating) => Ok(None),
            Some(other) => Ok(Some(other.clone())),
            None => Ok(Some(TableStatus::from("UNKNOWN"))),
        }
    }

    async fn create(&self) -> Result<(), StoreError> {
        let created = self
            .client
            .create_table()
            .table_name(self.table())
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(KEY_ATTRIBUTE)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(KEY_ATTRIBUTE)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {
                tracing::info!(
                    table = self.table(),
                    "created DynamoDB table (--create-table)"
                );
                self.ttl_pending.store(true, Ordering::Relaxed);
                Ok(())
            }
            // Another instance created it first.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(self.failed("CreateTable", err)),
        }
    }

    /// Waits a little for a table that is being created to become usable.
    async fn wait_until_active(&self) -> Result<(), StoreError> {
        let started = Instant::now();
        loop {
            let status = match self.describe().await {
                Ok(None) => return Ok(()),
                Ok(Some(status)) => status,
                Err(DescribeError::Missing) => TableStatus::Creating,
                Err(DescribeError::Failed(err)) => return Err(err),
            };
            if started.elapsed() >= TABLE_ACTIVE_WAIT {
                return Err(StoreError::Unavailable(format!(
                    "DynamoDB table {} is {}, not yet ACTIVE",
                    self.table(),
                    status.as_str()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl DynamoStore {
    /// Turns on TTL on `expires_at` for a table this instance created, so that expired key
    /// records are deleted. Servers without TTL (dynalite) are tolerated: the service works the
    /// same, and an expired key is treated as absent whether or not it was deleted yet.
    async fn enable_ttl(&self) {
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(EXPIRES_AT_ATTRIBUTE)
            .build();
        let spec = match spec {
            Ok(spec) => spec,
            Err(err) => {
                tracing::warn!(error = %err, "cannot describe the TTL setting");
                return;
            }
        };
        match self
            .client
            .update_time_to_live()
            .table_name(self.table())
            .time_to_live_specification(spec)
            .send()
            .await
        {
            Ok(_) => tracing::info!(
                table = self.table(),
                attribute = EXPIRES_AT_ATTRIBUTE,
                "turned on TTL for idempotency keys (--create-table)"
            ),
            Err(err) => tracing::info!(
                table = self.table(),
                error = %error_chain(&err),
                "the DynamoDB server did not turn on TTL; expired idempotency keys will be \
                 ignored but not deleted"
            ),
        }
    }

    /// The stored, unexpired outcome of a key, if any.
    async fn stored_key(&self, record: &str, now: u64) -> Result<Option<KeyedOutcome>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .key(KEY_ATTRIBUTE, AttributeValue::S(record.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| self.failed("GetItem", err))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let number = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok())
        };
        let route = item
            .get(KEY_ROUTE_ATTRIBUTE)
            .and_then(|v| v.as_s().ok())
            .and_then(|s| Route::parse(s).ok());
        match (
            route,
            number(KEY_COUNT_ATTRIBUTE),
            number(EXPIRES_AT_ATTRIBUTE),
        ) {
            (Some(route), Some(count), Some(expires_at)) => {
                Ok((expires_at > now).then(|| KeyedOutcome::replay(route, count)))
            }
            _ => Err(StoreError::Unavailable(format!(
                "DynamoDB table {} holds a malformed idempotency record {record:?}",
                self.table()
            ))),
        }
    }

    /// One optimistic attempt: the key record and the counter, from `current` to `next`,
    /// written together or not at all. `Ok(false)`: a condition failed (or the transaction
    /// conflicted with another), nothing was written.
    async fn transact_keyed(
        &self,
        keyed: &KeyedIncrement,
        record: &str,
        current: u64,
        next: u64,
    ) -> Result<bool, StoreError> {
        let invalid =
            |e: aws_sdk_dynamodb::error::BuildError| StoreError::Unavailable(e.to_string());
        let put = Put::builder()
            .table_name(self.table())
            .item(KEY_ATTRIBUTE, AttributeValue::S(record.to_owned()))
            .item(
                KEY_ROUTE_ATTRIBUTE,
                AttributeValue::S(keyed.route.as_str().to_owned()),
            )
            .item(KEY_COUNT_ATTRIBUTE, AttributeValue::N(next.to_string()))
            .item(
                EXPIRES_AT_ATTRIBUTE,
                AttributeValue::N(keyed.expires_at.to_string()),
            )
            .condition_expression("attribute_not_exists(#key) OR #expires <= :now")
            .expression_attribute_names("#key", KEY_ATTRIBUTE)
            .expression_attribute_names("#expires", EXPIRES_AT_ATTRIBUTE)
            .expression_attribute_values(":now", AttributeValue::N(keyed.now.to_string()))
            .build()
            .map_err(invalid)?;
        let mut update = Update::builder()
            .table_name(self.table())
            .key(
                KEY_ATTRIBUTE,
                AttributeValue::S(keyed.route.as_str().to_owned()),
            )
            .update_expression("SET #count = :next")
            .expression_attribute_names("#count", COUNT_ATTRIBUTE)
            .expression_attribute_values(":next", AttributeValue::N(next.to_string()));
        update = if current == 0 {
            update.condition_expression("attribute_not_exists(#count)")
        } else {
            update
                .condition_expression("#count = :current")
                .expression_attribute_values(":current", AttributeValue::N(current.to_string()))
        };
        let update = update.build().map_err(invalid)?;
        // Retries inside the SDK are safe here: the call carries a client request token (filled
        // in by the SDK, the same on every attempt), and an attempt that was applied makes a
        // repeat of it fail its conditions anyway.
        let sent = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(err)
                if err.as_service_error().is_some_and(|e| {
                    e.is_transaction_canceled_exception()
                        || e.is_transaction_in_progress_exception()
                }) =>
            {
                Ok(false)
            }
            Err(err) => Err(self.failed("TransactWriteItems", err)),
        }
    }
}

/// A short, jittered pause before optimistic attempt `attempt` (1-based) is retried.
fn contention_backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let ceiling_ms = 2u64 << attempt.min(5);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(1 + random % ceiling_ms)
}

enum DescribeError {
    Missing,
    Failed(StoreError),
}

fn count_value(value: &str, route: Route, table: &str) -> Result<u64, StoreError> {
    value.parse::<u64>().map_err(|_| {
        StoreError::Unavailable(format!(
            "DynamoDB table {table} holds {value:?} for route {route}, not a count"
        ))
    })
}

#[async_trait::async_trait]
impl Store for DynamoStore {
    fn kind(&self) -> &'static str {
        "dynamodb"
    }

    fn commit_mode(&self) -> CommitMode {
        CommitMode::PerRoute {
            max_in_flight: self.settings.max_in_flight,
            per_route: self.settings.commits_per_route,
        }
    }

    async fn apply(&self, batch: &[Increment]) -> Result<Vec<u64>, StoreError> {
        // One UpdateItem is atomic on one item only; the ledger never hands this store more.
        let [increment] = batch else {
            return Err(StoreError::Unavailable(format!(
                "the dynamodb store commits one route at a time, was given {}",
                batch.len()
            )));
        };
        let Increment { route, delta } = *increment;
        let updated = self
            .writer
            .update_item()
            .table_name(self.table())
            .key(KEY_ATTRIBUTE, AttributeValue::S(route.as_str().to_owned()))
            .update_expression("ADD #count :delta")
            // DynamoDB numbers go far beyond 64 bits: refuse, atomically, to pass u64::MAX.
            .condition_expression("attribute_not_exists(#count) OR #count <= :limit")
            .expression_attribute_names("#count", COUNT_ATTRIBUTE)
            .expression_attribute_values(":delta", AttributeValue::N(delta.to_string()))
            .expression_attribute_values(
                ":limit",
                AttributeValue::N((u64::MAX - delta).to_string()),
            )
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await;
        let out = match updated {
            Ok(out) => out,
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                return Err(StoreError::Overflow(route));
            }
            Err(err) => return Err(self.failed("UpdateItem", err)),
        };
        // Only the attribute asked for: some servers return the key in UPDATED_NEW as well.
        let total = out
            .attributes()
            .and_then(|item| item.get(COUNT_ATTRIBUTE))
            .and_then(|value| value.as_n().ok())
            .ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "DynamoDB returned no {COUNT_ATTRIBUTE} for route {route} after UpdateItem"
                ))
            })?;
        Ok(vec![count_value(total, route, self.table())?])
    }

    async fn apply_keyed(&self, keyed: &KeyedIncrement) -> Result<KeyedOutcome, StoreError> {
        let record = format!("{KEY_RECORD_PREFIX}{}", keyed.key.record_id());
        let lock = {
            use std::hash::{BuildHasher, BuildHasherDefault};
            let hash = BuildHasherDefault::<rustc_hash::FxHasher>::default().hash_one(keyed.route);
            &self.keyed_locks[(hash as usize) % self.keyed_locks.len()]
        };
        let _turn = lock.lock().await;
        for attempt in 1..=KEYED_ATTEMPTS {
            // A retry of a key already recorded costs one read, no write.
            if attempt > 1 {
                if let Some(stored) = self.stored_key(&record, keyed.now).await? {
                    return Ok(stored);
                }
            }
            let current = self.get(keyed.route).await?;
            let next = current
                .checked_add(1)
                .ok_or(StoreError::Overflow(keyed.route))?;
            if self.transact_keyed(keyed, &record, current, next).await? {
                return Ok(KeyedOutcome::recorded(keyed.route, next));
            }
            if attempt > 1 {
                tokio::time::sleep(contention_backoff(attempt)).await;
            }
        }
        Err(StoreError::Unavailable(format!(
            "route {} kept changing during {KEYED_ATTEMPTS} attempts of a keyed commit",
            keyed.route
        )))
    }

    async fn get(&self, route: Route) -> Result<u64, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .key(KEY_ATTRIBUTE, AttributeValue::S(route.as_str().to_owned()))
            .consistent_read(true)
            .projection_expression("#count")
            .expression_attribute_names("#count", COUNT_ATTRIBUTE)
            .send()
            .await
            .map_err(|err| self.failed("GetItem", err))?;
        match out.item().and_then(|item| item.get(COUNT_ATTRIBUTE)) {
            None => Ok(0),
            Some(value) => match value.as_n() {
                Ok(n) => count_value(n, route, self.table()),
                Err(_) => Err(StoreError::Unavailable(format!(
                    "DynamoDB table {} holds a non-number {COUNT_ATTRIBUTE} for route {route}",
                    self.table()
                ))),
            },
        }
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        if self.confirmed_recently() {
            return Ok(());
        }
        let result = match self.describe().await {
            Ok(None) => Ok(()),
            Ok(Some(TableStatus::Creating)) => self.wait_until_active().await,
            Ok(Some(status)) => Err(StoreError::Unavailable(format!(
                "DynamoDB table {} is {}, not ACTIVE",
                self.table(),
                status.as_str()
            ))),
            Err(DescribeError::Missing) if self.settings.create_table => {
                self.create().await?;
                self.wait_until_active().await
            }
            Err(DescribeError::Missing) => Err(StoreError::Unavailable(format!(
                "DynamoDB table {} does not exist in this account and region (create it with \
                 the Terraform dynamodb root, or pass --create-table for local development)",
                self.table()
            ))),
            Err(DescribeError::Failed(err)) => Err(err),
        };
        if result.is_ok() {
            self.confirm();
            if self.ttl_pending.swap(false, Ordering::Relaxed) {
                self.enable_ttl().await;
            }
        }
        result
    }
}

/// One line saying what went wrong with a call and, where it is clear, what to do about it.
fn explain<E>(what: &str, table: &str, settings: &DynamoSettings, err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = error_chain(err);
    if let Some(code) = err.code() {
        let message = err.message().unwrap_or("");
        return match code {
            "ResourceNotFoundException" => format!(
                "DynamoDB table {table} does not exist in this account and region ({what}: {message})"
            ),
            "AccessDeniedException" => format!(
                "access denied to DynamoDB table {table}: the service's role needs \
                 dynamodb:{what} on it ({message})"
            ),
            "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "MissingAuthenticationTokenException"
            | "ExpiredTokenException" => format!(
                "DynamoDB rejected the credentials ({code}: {message}); check the AWS credentials \
                 the service runs with"
            ),
            "ProvisionedThroughputExceededException"
            | "ThrottlingException"
            | "RequestLimitExceeded" => {
                format!("DynamoDB is throttling {what} on table {table} ({code})")
            }
            _ => format!("DynamoDB {what} on table {table} failed: {code}: {message}"),
        };
    }
    match err {
        SdkError::TimeoutError(_) => format!(
            "DynamoDB {what} on table {table} got no answer within {:?} (attempts of at most {:?})",
            settings.operation_timeout, settings.attempt_timeout
        ),
        _ if detail.contains("credential") => format!(
            "no AWS credentials for DynamoDB: {detail} (set them through the AWS configuration \
             chain: environment, profile, web identity or EKS Pod Identity)"
        ),
        SdkError::DispatchFailure(_) => format!(
            "cannot reach DynamoDB at {} for {what}: {detail}",
            settings
                .endpoint_url
                .as_deref()
                .unwrap_or("its regional endpoint")
        ),
        _ => format!("DynamoDB {what} on table {table} failed: {detail}"),
    }
}

/// An error and its sources on one line, each said once.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string().replace(['\n', '\r'], " ");
        if !text.is_empty() && !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// Counts every attempt of every DynamoDB call (retries included), by operation and outcome:
/// the real number of requests the service sends.
#[derive(Debug)]
struct CallCounter;

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map(|metadata| operation_label(metadata.name()))
            .unwrap_or("other");
        let ok = context.response().is_some_and(|r| r.status().is_success());
        m::dynamodb_call(operation, ok);
        Ok(())
    }
}

/// Forbids retrying an attempt that may have been applied: for an `ADD`, a retry of an attempt
/// that landed but whose answer was lost counts its transactions twice. Throttling errors and
/// `503`s (refused before anything was written) and failures to connect (nothing was sent) are
/// left to the standard classifiers, which retry them.
#[derive(Debug)]
struct NoAmbiguousRetry;

impl ClassifyRetry for NoAmbiguousRetry {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(err)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        if let Some(response) = ctx.response() {
            // DynamoDB's 500 (InternalServerError) leaves the outcome unknown.
            return if response.status().as_u16() == 500 {
                RetryAction::RetryForbidden
            } else {
                RetryAction::NoActionIndicated
            };
        }
        if err.is_timeout_error() {
            // The attempt timed out, possibly after DynamoDB applied it.
            return RetryAction::RetryForbidden;
        }
        match err.as_connector_error() {
            Some(connector) if never_connected(connector) => RetryAction::NoActionIndicated,
            Some(_) => RetryAction::RetryForbidden,
            None => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "NoAmbiguousRetry"
    }

    fn priority(&self) -> RetryClassifierPriority {
        // After the standard classifiers, so that a forbidden retry overrides theirs.
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// Whether the HTTP client failed to establish a connection (refused, unreachable, connect
/// timeout): the request was never sent.
fn never_connected(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<hyper_util::client::legacy::Error>()
            .is_some_and(|e| e.is_connect())
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Operation names as static labels (metric labels must not come from the network unbounded).
fn operation_label(name: &str) -> &'static str {
    match name {
        "UpdateItem" => "UpdateItem",
        "GetItem" => "GetItem",
        "DescribeTable" => "DescribeTable",
        "CreateTable" => "CreateTable",
        "TransactWriteItems" => "TransactWriteItems",
        "UpdateTimeToLive" => "UpdateTimeToLive",
        _ => "other",
    }
}
