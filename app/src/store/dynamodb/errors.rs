//! Turning a failed DynamoDB call into what the service does about it: one line saying what
//! went wrong, and whether it was throttling (nothing applied; slow down) or contention; and
//! [`Fault`], the cause of a failure that no SDK error describes (an answer this store cannot
//! use, a commit that gave up).

pub(super) use crate::telemetry::logging::error_chain;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use super::DynamoSettings;

/// Error codes DynamoDB answers when a request exceeds a rate limit; nothing was applied.
pub(super) const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
];

/// Whether a call was refused for its rate (and so applied nothing).
pub(super) fn is_throttling<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    err.code()
        .is_some_and(|code| THROTTLING_CODES.contains(&code))
}

/// Whether a write was refused because a transaction held the same item: nothing was applied,
/// and the same write may be sent again at once.
pub(super) fn is_contention<E: ProvideErrorMetadata>(err: &SdkError<E>) -> bool {
    matches!(
        err.code(),
        Some("TransactionConflictException" | "TransactionInProgressException")
    )
}

/// One line saying what went wrong with a call and, where it is clear, what to do about it.
pub(super) fn explain<E>(
    what: &str,
    table: &str,
    settings: &DynamoSettings,
    err: &SdkError<E>,
) -> String
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

/// What went wrong where no SDK error says it: an answer this store cannot use, or a commit
/// that gave up. It is the source of the [`StoreError`](crate::store::StoreError) made of it,
/// whose context names the table, the route and the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Fault {
    #[error("{0:?} is not a count")]
    NotACount(String),
    #[error("the attribute is not a number")]
    NotANumber,
    #[error("the answer holds no {0}")]
    MissingAttribute(&'static str),
    #[error("the item is not there")]
    MissingItem,
    #[error("the item is malformed")]
    MalformedItem,
    #[error("a total of {total} is below the {at_least} transactions it must hold")]
    TotalTooLow { total: u64, at_least: u64 },
    #[error("{0} keys were still unprocessed")]
    Unprocessed(usize),
    #[error("no final answer within the commit timeout")]
    OutOfTime,
    #[error("held by other transactions during {0} attempts")]
    Contended(u32),
    #[error("cancelled: {0}")]
    Cancelled(String),
    #[error("IdempotentParameterMismatchException: {0}")]
    TokenMismatch(String),
    #[error("a keyed transaction was left without an outcome")]
    NoOutcome,
    #[error("the table has another key schema")]
    KeySchema,
    #[error("the table's status is {0}")]
    TableStatus(String),
    #[error("the table does not exist")]
    NoTable,
}
