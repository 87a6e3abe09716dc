//! Metric names, their buckets, and cheap handles to them. The one place that owns metric names.

use std::{cell::RefCell, sync::Mutex, time::Duration};

use rustc_hash::FxHashMap;

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const HTTP_REQUESTS: &str = "flight_counter_http_requests_total";
pub const HTTP_DURATION: &str = "flight_counter_http_request_duration_seconds";
pub const TRANSACTIONS_RECORDED: &str = "flight_counter_transactions_recorded_total";
pub const COMMITS: &str = "flight_counter_store_commits_total";
pub const COMMIT_DURATION: &str = "flight_counter_store_commit_duration_seconds";
pub const BATCH_SIZE: &str = "flight_counter_store_commit_batch_size";
pub const BUILD_INFO: &str = "flight_counter_build_info";
pub const DYNAMODB_CALLS: &str = "flight_counter_dynamodb_calls_total";
pub const IDEMPOTENT_REPLAYS: &str = "flight_counter_idempotent_replays_total";
pub const IDEMPOTENCY_CONFLICTS: &str = "flight_counter_idempotency_conflicts_total";
pub const IDEMPOTENCY_KEYS_SWEPT: &str = "flight_counter_idempotency_keys_swept_total";
pub const MALFORMED_REQUESTS: &str = "flight_counter_http_malformed_requests_total";
pub const CONNECTION_TIMEOUTS: &str = "flight_counter_http_connection_timeouts_total";
pub const OPEN_CONNECTIONS: &str = "flight_counter_http_open_connections";
pub const AUTH_FAILURES: &str = "flight_counter_auth_failures_total";
pub const AUTH_KEYS_FILE_ERRORS: &str = "flight_counter_auth_keys_file_errors";
pub const AUTH_KEYS_FILE_READS: &str = "flight_counter_auth_keys_file_reads_total";
pub const CLIENT_REFUSALS: &str = "flight_counter_client_requests_refused_total";

/// The reasons a request is refused by authentication: the `reason` label of [`AUTH_FAILURES`].
pub const AUTH_FAILURE_REASONS: [&str; 4] = ["missing", "malformed", "unknown", "forbidden"];
pub const CONNECTIONS_REFUSED: &str = "flight_counter_http_connections_refused_total";
pub const ACCEPT_FAILURES: &str = "flight_counter_http_accept_failures_total";
pub const CHECKPOINT_DURATION: &str = "flight_counter_store_checkpoint_duration_seconds";
pub const PACED_ROUTES: &str = "flight_counter_store_paced_routes";
pub const SLOWEST_PACE: &str = "flight_counter_store_slowest_route_pace";
pub const RANKING_PASS_SECONDS: &str = "flight_counter_ranking_pass_duration_seconds";

const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

static HANDLE: Mutex<Option<PrometheusHandle>> = Mutex::new(None);

/// Why the metrics recorder could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    #[error("cannot configure the Prometheus recorder")]
    Build(#[from] metrics_exporter_prometheus::BuildError),
    #[error("another metrics recorder is already installed")]
    AlreadyInstalled,
}

/// Installs the Prometheus recorder once per process and returns the handle that renders it.
pub fn install() -> Result<PrometheusHandle, RecorderError> {
    let mut installed = HANDLE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(COMMIT_DURATION.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(CHECKPOINT_DURATION.into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(RANKING_PASS_SECONDS.into()), LATENCY_BUCKETS)?
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        return Err(RecorderError::AlreadyInstalled);
    }
    describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by method, route template, status and client"
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency, by method, route template, status and client"
    );
    describe_counter!(
        AUTH_FAILURES,
        "Requests refused by authentication, by reason (missing, malformed, unknown, forbidden)"
    );
    // Every reason from the start, so that a rate over them is defined before the first refusal.
    for reason in AUTH_FAILURE_REASONS {
        counter!(AUTH_FAILURES, "reason" => reason).absolute(0);
    }
    describe_gauge!(
        AUTH_KEYS_FILE_ERRORS,
        "Lines of the API keys file refused at its last read (each grants nothing); 1 when the \
         file cannot be read (then no key is accepted); 0 without a keys file"
    );
    gauge!(AUTH_KEYS_FILE_ERRORS).set(0.0);
    describe_counter!(
        AUTH_KEYS_FILE_READS,
        "Reloads of the API keys file (one a second with --api-keys-file): a reload that stops \
         shows here first"
    );
    describe_counter!(
        CLIENT_REFUSALS,
        "Requests refused by a per-client limit of this instance, by client and reason \
         (rate_limited: --client-rate-limit; key_quota: --client-max-idempotency-keys)"
    );
    describe_counter!(TRANSACTIONS_RECORDED, "Transactions durably recorded");
    describe_counter!(
        COMMITS,
        "Store commits, by outcome (ok, error, throttled: refused for its rate, retried)"
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Client connections closed as soon as accepted, by reason (max_connections)"
    );
    describe_counter!(
        ACCEPT_FAILURES,
        "Failed accepts of client connections, by reason (process_descriptor_limit, \
         system_descriptor_limit, memory); each is followed by a pause"
    );
    describe_gauge!(
        PACED_ROUTES,
        "Routes whose commits are paced because the store throttled them"
    );
    describe_gauge!(
        SLOWEST_PACE,
        "Commits per second allowed to the most throttled route (0 when none is paced)"
    );
    describe_histogram!(COMMIT_DURATION, Unit::Seconds, "Time a store commit took");
    describe_histogram!(
        RANKING_PASS_SECONDS,
        Unit::Seconds,
        "Time one pass over the whole store took to build the rankings of GET /top-routes \
         (and, on DynamoDB, the list of routes): at most one per --rankings-refresh."
    );
    describe_histogram!(
        CHECKPOINT_DURATION,
        Unit::Seconds,
        "Time a checkpoint of the embedded store took (making its database durable and \
         emptying its journal)"
    );
    describe_histogram!(
        BATCH_SIZE,
        "Transactions per store commit (group commit batch size)"
    );
    describe_counter!(
        DYNAMODB_CALLS,
        "DynamoDB requests sent (every attempt, retries included), by operation and outcome \
         (ok, throttled, error)"
    );
    describe_counter!(
        IDEMPOTENT_REPLAYS,
        "POSTs answered with the stored outcome of their Idempotency-Key (nothing recorded)"
    );
    describe_counter!(
        IDEMPOTENCY_CONFLICTS,
        "POSTs refused with 422: their Idempotency-Key was first used with another route"
    );
    describe_counter!(
        IDEMPOTENCY_KEYS_SWEPT,
        "Expired idempotency keys deleted by the periodic sweep (embedded and memory stores)"
    );
    describe_counter!(
        MALFORMED_REQUESTS,
        "Requests refused before routing because they are not valid HTTP/1.1, by status"
    );
    describe_counter!(
        CONNECTION_TIMEOUTS,
        "Client connections closed past a deadline, by deadline (idle, request)"
    );
    describe_gauge!(
        OPEN_CONNECTIONS,
        "Client connections open now (accepted and not yet closed)"
    );
    gauge!(OPEN_CONNECTIONS).set(0.0);
    describe_gauge!(
        BUILD_INFO,
        "Always 1; labels carry the version and the store in use"
    );
}

/// Publishes the build info gauge.
pub fn build_info(store: &'static str) {
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "store" => store).set(1.0);
}

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Committed; `recorded` of its transactions were counted (the others were replays of
    /// idempotency keys).
    Ok {
        recorded: u64,
    },
    Failed,
    /// The store refused it for its rate and applied nothing; its transactions are retried.
    Throttled,
}

/// Records one finished commit of `transactions` transactions.
pub fn commit_finished(elapsed: Duration, transactions: u64, outcome: CommitOutcome) {
    struct Handles {
        ok: Counter,
        failed: Counter,
        throttled: Counter,
        duration: Histogram,
        batch: Histogram,
        recorded: Counter,
    }
    thread_local! {
        static HANDLES: Handles = Handles {
            ok: counter!(COMMITS, "outcome" => "ok"),
            failed: counter!(COMMITS, "outcome" => "error"),
            throttled: counter!(COMMITS, "outcome" => "throttled"),
            duration: histogram!(COMMIT_DURATION),
            batch: histogram!(BATCH_SIZE),
            recorded: counter!(TRANSACTIONS_RECORDED),
        };
    }
    HANDLES.with(|h| {
        h.duration.record(elapsed);
        h.batch.record(transactions as f64);
        match outcome {
            CommitOutcome::Ok { recorded } => {
                h.ok.increment(1);
                h.recorded.increment(recorded);
            }
            CommitOutcome::Failed => h.failed.increment(1),
            CommitOutcome::Throttled => h.throttled.increment(1),
        }
    });
}

/// How many routes are paced because the store throttled them, and the slowest pace
/// (commits per second; 0 when none is paced).
pub fn checkpoint(elapsed: Duration) {
    histogram!(CHECKPOINT_DURATION).record(elapsed.as_secs_f64());
}

pub fn pacing(paced_routes: usize, slowest: f64) {
    gauge!(PACED_ROUTES).set(paced_routes as f64);
    gauge!(SLOWEST_PACE).set(slowest);
}

/// Records one answered HTTP request. Handles are cached per thread: looking a labelled metric
/// up in the registry hashes its labels, which costs more than the rest of a hot request.
/// `client` is a name from the keys file or `anonymous`, a set the keys file bounds.
pub fn request_finished(
    method: &'static str,
    path: &'static str,
    status: u16,
    client: &str,
    elapsed: Duration,
) {
    type Key = (&'static str, &'static str, u16);
    type ByClient = FxHashMap<Box<str>, (Counter, Histogram)>;
    thread_local! {
        static HANDLES: RefCell<FxHashMap<Key, ByClient>> = RefCell::new(FxHashMap::default());
    }
    HANDLES.with(|cache| {
        let mut cache = cache.borrow_mut();
        let by_client = cache.entry((method, path, status)).or_default();
        // Looked up by `&str`: the common case allocates nothing.
        if !by_client.contains_key(client) {
            let labels = [
                ("method", method.to_owned()),
                ("path", path.to_owned()),
                ("status", status.to_string()),
                ("client", client.to_owned()),
            ];
            by_client.insert(
                client.into(),
                (
                    counter!(HTTP_REQUESTS, &labels),
                    histogram!(HTTP_DURATION, &labels),
                ),
            );
        }
        if let Some((count, duration)) = by_client.get(client) {
            count.increment(1);
            duration.record(elapsed);
        }
    });
}

/// A request refused by authentication, for one of [`AUTH_FAILURE_REASONS`].
pub fn auth_failure(reason: &'static str) {
    counter!(AUTH_FAILURES, "reason" => reason).increment(1);
}

/// Lines of the API keys file refused at its last read (1: the file cannot be read).
pub fn keys_file_errors(errors: usize) {
    gauge!(AUTH_KEYS_FILE_ERRORS).set(errors as f64);
}

/// One reload of the API keys file finished, whatever it found.
pub fn keys_file_read() {
    counter!(AUTH_KEYS_FILE_READS).increment(1);
}

/// A request of `client` (a name from the keys file, or `anonymous`) refused by a per-client
/// limit: `rate_limited` or `key_quota`.
pub fn client_refused(client: &str, reason: &'static str) {
    counter!(CLIENT_REFUSALS, "client" => client.to_owned(), "reason" => reason).increment(1);
}

/// Records one attempt of a DynamoDB call.
/// `outcome` is `ok`, `throttled` or `error`.
pub fn dynamodb_call(operation: &'static str, outcome: &'static str) {
    type Key = (&'static str, &'static str);
    thread_local! {
        static HANDLES: RefCell<FxHashMap<Key, Counter>> = RefCell::new(FxHashMap::default());
    }
    HANDLES.with(|cache| {
        cache
            .borrow_mut()
            .entry((operation, outcome))
            .or_insert_with(
                || counter!(DYNAMODB_CALLS, "operation" => operation, "outcome" => outcome),
            )
            .increment(1);
    });
}

/// A keyed POST answered with its stored outcome.
pub fn idempotent_replay() {
    counter!(IDEMPOTENT_REPLAYS).increment(1);
}

/// A keyed POST refused because its key belongs to another route.
pub fn idempotency_conflict() {
    counter!(IDEMPOTENCY_CONFLICTS).increment(1);
}

/// Expired keys deleted by one sweep.
pub fn keys_swept(n: u64) {
    counter!(IDEMPOTENCY_KEYS_SWEPT).increment(n);
}

/// A request refused by the HTTP parser (no endpoint saw it).
pub fn malformed_request(status: u16) {
    counter!(MALFORMED_REQUESTS, "status" => status.to_string()).increment(1);
}

/// How many client connections are open.
pub fn open_connections(open: usize) {
    gauge!(OPEN_CONNECTIONS).set(open as f64);
}

/// A client connection closed as soon as it was accepted.
pub fn connection_refused(reason: &'static str) {
    counter!(CONNECTIONS_REFUSED, "reason" => reason).increment(1);
}

/// An accept that failed for want of a resource.
pub fn accept_failed(reason: &'static str) {
    counter!(ACCEPT_FAILURES, "reason" => reason).increment(1);
}

/// A client connection closed past its `idle` or `request` deadline.
pub fn connection_timed_out(deadline: &'static str) {
    counter!(CONNECTION_TIMEOUTS, "deadline" => deadline).increment(1);
}
