//! How DynamoDB calls are retried and counted.

use std::time::Duration;

use aws_sdk_dynamodb::config::{
    ConfigBag, Intercept, RuntimeComponents, interceptors::FinalizerInterceptorContextRef,
};
use aws_sdk_dynamodb::error::{BoxError, SdkError};
use aws_smithy_runtime_api::client::{
    interceptors::context::InterceptorContext,
    orchestrator::Metadata,
    retries::classifiers::{ClassifyRetry, RetryAction, RetryClassifierPriority},
};

use crate::telemetry::metrics as m;

/// Counts every attempt of every DynamoDB call (retries included), by operation and outcome:
/// the real number of requests the service sends.
#[derive(Debug)]
pub(super) struct CallCounter;

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
        let outcome = match context.response() {
            Some(response) if response.status().is_success() => "ok",
            Some(response) if response.body().bytes().is_some_and(mentions_throttling) => {
                "throttled"
            }
            _ => "error",
        };
        m::dynamodb_call(operation, outcome);
        Ok(())
    }
}

/// Counts an attempt that its timeout cut off: the SDK drops such an attempt with its
/// interceptors' last hooks, so [`CallCounter`] never sees it. Called where the store gets the
/// timeout back (a write's attempts are not retried by the SDK after a timeout, so that is each
/// one of them).
pub(super) fn count_timed_out<T, E, R>(
    operation: &'static str,
    result: &Result<T, SdkError<E, R>>,
) {
    if matches!(result, Err(SdkError::TimeoutError(_))) {
        m::dynamodb_call(operation, "error");
    }
}

/// Decides which failed write attempts the SDK may send again. Throttling is never retried
/// here: the ledger sees it, paces the route and sends the transactions again in a later, larger
/// commit. An attempt that may have been applied (it timed out, lost its connection after
/// sending, met DynamoDB's `500`, or had its answer cut short) is retried only where a repeat
/// cannot apply twice: a `TransactWriteItems` carries a client request token (the SDK fills it
/// in, the same on every attempt), an `ADD` carries nothing of the kind. (A keyed commit's
/// own transaction is not retried by the SDK at all: [`super::attempt`] sorts each attempt.) `503`s and failures to connect (nothing was
/// written) are left to the standard classifiers, which retry them.
#[derive(Debug)]
pub(super) struct WriteRetry {
    /// Whether a repeat of an attempt that may have been applied is harmless.
    pub idempotent: bool,
}

impl ClassifyRetry for WriteRetry {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(err)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        if let Some(response) = ctx.response() {
            if response.body().bytes().is_some_and(mentions_throttling) {
                return RetryAction::RetryForbidden;
            }
            // DynamoDB's 500 (InternalServerError) leaves the outcome unknown; so does an
            // answer that began with a success and was then cut short or could not be read: the
            // write was applied. Only 503 (and the 4xx the standard classifiers retry) says
            // that nothing was.
            let status = response.status();
            let maybe_applied =
                status.is_success() || (status.is_server_error() && status.as_u16() != 503);
            return if maybe_applied && !self.idempotent {
                RetryAction::RetryForbidden
            } else {
                RetryAction::NoActionIndicated
            };
        }
        if self.idempotent {
            return RetryAction::NoActionIndicated;
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
        "WriteRetry"
    }

    fn priority(&self) -> RetryClassifierPriority {
        // After the standard classifiers, so that a forbidden retry overrides theirs.
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// Whether an error answer is DynamoDB refusing a request (or a transaction's item) for its
/// rate.
fn mentions_throttling(body: &[u8]) -> bool {
    [
        &b"ProvisionedThroughputExceeded"[..],
        b"ThrottlingException",
        b"ThrottlingError",
        b"RequestLimitExceeded",
    ]
    .iter()
    .any(|needle| memchr::memmem::find(body, needle).is_some())
}

/// A short, jittered pause before attempt `attempt` (1-based) of a write that met contention
/// is sent again.
pub(super) fn contention_backoff(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let ceiling_ms = 2u64 << attempt.min(5);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    Duration::from_millis(1 + random % ceiling_ms)
}

/// A jittered pause (between half and all of `base` doubled `round - 1` times, at most
/// `ceiling`) before attempt `round + 1` of a keyed commit's transaction is sent again with the
/// same token: after a lost answer `base` is the SDK's own 25 ms; after
/// `TransactionInProgressException`, longer, so that the attempts that follow reach past the
/// five seconds after which DynamoDB finishes a stalled transaction for its next retry.
pub(super) fn resend_backoff(round: u32, base: Duration, ceiling: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let full = base
        .saturating_mul(1 << round.saturating_sub(1).min(16))
        .min(ceiling);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    full / 2 + full.mul_f64((random % 1024) as f64 / 2048.0)
}

/// Whether the HTTP client failed to establish a connection (refused, unreachable, connect
/// timeout): the request was never sent.
pub(super) fn never_connected(err: &(dyn std::error::Error + 'static)) -> bool {
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
        "BatchGetItem" => "BatchGetItem",
        "DescribeTable" => "DescribeTable",
        "CreateTable" => "CreateTable",
        "TransactWriteItems" => "TransactWriteItems",
        "UpdateTimeToLive" => "UpdateTimeToLive",
        "PutItem" => "PutItem",
        "Scan" => "Scan",
        "BatchWriteItem" => "BatchWriteItem",
        _ => "other",
    }
}
