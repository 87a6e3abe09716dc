//! What one attempt of a keyed commit's `TransactWriteItems` came to.
//!
//! A keyed commit sends one transaction, with a client request token of its own, as many times
//! as it takes (within the commit timeout): DynamoDB applies a token's transaction at most once
//! within ten minutes, and answers a repeat with the first outcome. So every attempt is sorted
//! by one question: could it, or an earlier attempt with the same token, have been applied?
//!
//! | answer | applied by this attempt | then |
//! |---|---|---|
//! | `200` | yes | read the batch's total |
//! | `TransactionCanceledException` | no | read the reasons (a key recorded by an earlier attempt of this very batch means it was applied) |
//! | throttled (`ProvisionedThroughputExceeded`, `ThrottlingError` reasons, ...) | no | back to the ledger to be paced, unless an earlier attempt may have been applied: then the same token again |
//! | `TransactionConflictException` | no | a new transaction after a pause, unless an earlier attempt may have been applied |
//! | `TransactionInProgressException` | an earlier attempt is still running | the same token again, after a pause |
//! | no answer within the attempt timeout, connection lost after sending, `5xx`, an answer cut short | unknown | the same token again, with a longer attempt timeout after a timeout |
//! | connection refused (nothing sent) | no | the same token again |
//! | `IdempotentParameterMismatchException` | no | a bug of this service: logged as an error, the callers get `503` |
//! | anything else (missing table, access denied, a malformed request) | no | the callers get `503` |

use aws_sdk_dynamodb::{
    error::{ProvideErrorMetadata, SdkError},
    operation::transact_write_items::TransactWriteItemsError,
    types::CancellationReason,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use super::{
    errors::{THROTTLING_CODES, error_chain},
    retry::never_connected,
};

/// How one attempt ended.
#[derive(Debug)]
pub(super) enum Attempt {
    /// DynamoDB applied it (or, with the same token, an earlier attempt).
    Applied,
    /// Cancelled as a whole; nothing of this attempt was applied.
    Cancelled(Vec<CancellationReason>),
    /// Refused for its rate; nothing of this attempt was applied.
    Throttled(String),
    /// Another transaction held one of its items; nothing of this attempt was applied.
    Conflict,
    /// An earlier attempt with the same token is still running.
    InProgress,
    /// It may or may not have been applied. `timed_out`: no answer within the attempt timeout.
    Unknown { reason: String, timed_out: bool },
    /// It never left this process (the connection could not be made).
    NotSent(String),
    /// The token was used before with another request: nothing of this attempt was applied,
    /// and the service has a bug.
    Mismatch(String),
    /// Refused for a reason that trying again will not change; nothing was applied.
    Refused(Box<SdkError<TransactWriteItemsError, HttpResponse>>),
}

/// Sorts the result of one attempt.
pub(super) fn classify<T>(
    result: Result<T, SdkError<TransactWriteItemsError, HttpResponse>>,
) -> Attempt {
    let err = match result {
        Ok(_) => return Attempt::Applied,
        Err(err) => err,
    };
    match &err {
        SdkError::TimeoutError(_) => {
            return Attempt::Unknown {
                reason: format!(
                    "no answer within the attempt timeout ({})",
                    error_chain(&err)
                ),
                timed_out: true,
            };
        }
        SdkError::DispatchFailure(failure) => {
            let reason = error_chain(&err);
            if failure
                .as_connector_error()
                .is_some_and(|connector| never_connected(connector))
            {
                return Attempt::NotSent(reason);
            }
            return Attempt::Unknown {
                timed_out: failure.is_timeout(),
                reason: format!("connection lost after sending ({reason})"),
            };
        }
        SdkError::ResponseError(_) => {
            return Attempt::Unknown {
                reason: format!(
                    "the answer was cut short or unreadable ({})",
                    error_chain(&err)
                ),
                timed_out: false,
            };
        }
        _ => {}
    }
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
            return Attempt::Cancelled(cancelled.cancellation_reasons().to_vec());
        }
        Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
            return Attempt::InProgress;
        }
        Some(TransactWriteItemsError::IdempotentParameterMismatchException(e)) => {
            return Attempt::Mismatch(e.message().unwrap_or("").to_owned());
        }
        Some(TransactWriteItemsError::ProvisionedThroughputExceededException(_)) => {
            return Attempt::Throttled("ProvisionedThroughputExceededException".into());
        }
        Some(TransactWriteItemsError::RequestLimitExceeded(_)) => {
            return Attempt::Throttled("RequestLimitExceeded".into());
        }
        _ => {}
    }
    let code = err.code().unwrap_or("");
    if THROTTLING_CODES.contains(&code) {
        return Attempt::Throttled(code.to_owned());
    }
    match code {
        "TransactionInProgressException" => return Attempt::InProgress,
        "TransactionConflictException" => return Attempt::Conflict,
        "IdempotentParameterMismatchException" => {
            return Attempt::Mismatch(err.message().unwrap_or("").to_owned());
        }
        _ => {}
    }
    let status = err.raw_response().map(|raw| raw.status().as_u16());
    if status.is_some_and(|s| s >= 500) || code == "InternalServerError" {
        return Attempt::Unknown {
            reason: format!(
                "DynamoDB answered {} ({})",
                status.unwrap_or(500),
                error_chain(&err)
            ),
            timed_out: false,
        };
    }
    Attempt::Refused(Box::new(err))
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::error::{
        IdempotentParameterMismatchException, InternalServerError,
        ProvisionedThroughputExceededException, TransactionCanceledException,
        TransactionInProgressException,
    };
    use aws_smithy_runtime_api::{client::result::ConnectorError, http::StatusCode};

    use super::*;

    fn raw(status: u16) -> HttpResponse {
        HttpResponse::new(
            StatusCode::try_from(status).expect("a status code"),
            "{}".into(),
        )
    }

    fn service(err: TransactWriteItemsError, status: u16) -> Attempt {
        classify::<()>(Err(SdkError::service_error(err, raw(status))))
    }

    #[test]
    fn every_answer_is_sorted_by_whether_it_may_have_been_applied() {
        assert!(matches!(classify(Ok::<(), _>(())), Attempt::Applied));
        let cancelled = TransactionCanceledException::builder()
            .cancellation_reasons(
                CancellationReason::builder()
                    .code("ConditionalCheckFailed")
                    .build(),
            )
            .build();
        assert!(matches!(
            service(TransactWriteItemsError::TransactionCanceledException(cancelled), 400),
            Attempt::Cancelled(reasons) if reasons.len() == 1
        ));
        assert!(matches!(
            service(
                TransactWriteItemsError::TransactionInProgressException(
                    TransactionInProgressException::builder().build()
                ),
                400
            ),
            Attempt::InProgress
        ));
        assert!(matches!(
            service(
                TransactWriteItemsError::IdempotentParameterMismatchException(
                    IdempotentParameterMismatchException::builder()
                        .message("reused")
                        .build()
                ),
                400
            ),
            Attempt::Mismatch(message) if message == "reused"
        ));
        assert!(matches!(
            service(
                TransactWriteItemsError::ProvisionedThroughputExceededException(
                    ProvisionedThroughputExceededException::builder()
                        .message("slow down")
                        .build()
                ),
                400
            ),
            Attempt::Throttled(_)
        ));
        // DynamoDB's 500 leaves the outcome unknown: the same token again.
        assert!(matches!(
            service(
                TransactWriteItemsError::InternalServerError(
                    InternalServerError::builder().message("oops").build()
                ),
                500
            ),
            Attempt::Unknown {
                timed_out: false,
                ..
            }
        ));
    }

    #[test]
    fn lost_answers_leave_the_outcome_unknown() {
        let timed_out = classify::<()>(Err(SdkError::timeout_error("attempt timeout")));
        assert!(matches!(
            timed_out,
            Attempt::Unknown {
                timed_out: true,
                ..
            }
        ));
        let reset = classify::<()>(Err(SdkError::dispatch_failure(ConnectorError::io(
            Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        ))));
        assert!(
            matches!(
                reset,
                Attempt::Unknown {
                    timed_out: false,
                    ..
                }
            ),
            "{reset:?}"
        );
        let cut = classify::<()>(Err(SdkError::response_error("body cut short", raw(200))));
        assert!(
            matches!(
                cut,
                Attempt::Unknown {
                    timed_out: false,
                    ..
                }
            ),
            "{cut:?}"
        );
    }
}
