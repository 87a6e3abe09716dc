//! One transaction of a keyed commit: building it ([`DynamoStore::prepare`]), sending it with
//! its token until its outcome is known ([`DynamoStore::send`]), and reading why it was
//! cancelled ([`DynamoStore::cancelled`]). What the commit makes of the outcome (an applied
//! batch's total, keys recorded before) is the parent module's business.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use aws_sdk_dynamodb::{
    config::timeout::TimeoutConfig,
    types::{
        AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure,
        TransactWriteItem, Update,
    },
};

use super::super::{
    COUNT_ATTRIBUTE, DynamoStore, EXPIRES_AT_ATTRIBUTE, KEY_ATTRIBUTE, KEY_RECORD_PREFIX,
    KEY_ROUTE_ATTRIBUTE,
    attempt::{Attempt, classify},
    errors::{Fault, THROTTLING_CODES},
    markers::{MARKER_PREFIX, Marker, new_batch_id, random_u64},
    periods::{day_attribute, month_attribute},
    records::{KEY_BACK_ATTRIBUTE, KEY_BATCH_ATTRIBUTE, invalid, num, text},
    retry::{count_timed_out, resend_backoff},
};
use crate::{
    route::Route,
    store::{RouteWrite, StoreError},
};

/// Pauses before one transaction is sent again with the same token: after a lost answer (as
/// the SDK's own backoff), and after `TransactionInProgressException` (longer: the first attempt
/// is still running, or DynamoDB waits five seconds before finishing it for a retry).
const RESEND_BACKOFF: Duration = Duration::from_millis(25);
const RESEND_MAX_BACKOFF: Duration = Duration::from_millis(500);
const IN_PROGRESS_BACKOFF: Duration = Duration::from_millis(100);
const IN_PROGRESS_MAX_BACKOFF: Duration = Duration::from_secs(1);
/// An attempt is not started with less time than this left.
const MIN_ATTEMPT: Duration = Duration::from_millis(20);

/// One transaction of a keyed commit, built once: every attempt sends exactly these items with
/// exactly this token.
pub(super) struct Prepared {
    pub(super) batch: String,
    token: String,
    items: Vec<TransactWriteItem>,
}

/// What sending one transaction came to.
pub(super) enum Sent {
    /// Applied (by this attempt or an earlier one with the same token).
    Applied,
    /// Cancelled; nothing of this attempt was applied. An earlier attempt may have been, on a
    /// server that does not honour the token: the reasons tell.
    Cancelled(Vec<CancellationReason>),
    /// Another transaction held an item, and no attempt can have been applied: a new
    /// transaction, after a pause.
    Conflict,
}

/// Why sending gave up, and whether the transaction may have been applied all the same.
pub(super) struct Failed {
    pub(super) error: StoreError,
    pub(super) maybe_applied: bool,
}

impl DynamoStore {
    /// Sends one transaction until its outcome is known, the same request with the same token
    /// every time, within `deadline`.
    pub(super) async fn send(
        &self,
        route: Route,
        prepared: &Prepared,
        deadline: Instant,
    ) -> Result<Sent, Failed> {
        // Whether an attempt so far may have been applied (timed out, lost its answer, met a
        // 500, or is still running).
        let mut maybe_applied = false;
        let mut attempt_timeout = self.settings.attempt_timeout;
        let mut round = 0u32;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining < MIN_ATTEMPT {
                self.note_failure();
                let context = if maybe_applied {
                    format!(
                        "the outcome of keyed commit {} of route {route} is unknown: DynamoDB \
                         gave no final answer within the commit timeout",
                        prepared.batch
                    )
                } else {
                    format!(
                        "DynamoDB took no keyed commit of route {route} within the commit timeout"
                    )
                };
                let error = StoreError::unavailable(context, Fault::OutOfTime);
                return Err(Failed {
                    error,
                    maybe_applied,
                });
            }
            round += 1;
            // Each attempt its own timeout, and the whole call no longer than that either: the
            // SDK makes one attempt, this loop the others.
            let timeout = attempt_timeout.min(remaining);
            let result = self
                .keyed
                .transact_write_items()
                .set_transact_items(Some(prepared.items.clone()))
                .client_request_token(&prepared.token)
                .customize()
                .config_override(
                    aws_sdk_dynamodb::config::Builder::default().timeout_config(
                        TimeoutConfig::builder()
                            .connect_timeout(self.settings.connect_timeout.min(timeout))
                            .operation_attempt_timeout(timeout)
                            .operation_timeout(timeout)
                            .build(),
                    ),
                )
                .send()
                .await;
            count_timed_out("TransactWriteItems", &result);
            let pause = match classify(result) {
                Attempt::Applied => return Ok(Sent::Applied),
                Attempt::Cancelled(reasons) => {
                    if !is_throttled(&reasons) {
                        return Ok(Sent::Cancelled(reasons));
                    }
                    self.throttled(route, prepared, "ThrottlingError", round, maybe_applied)?
                }
                Attempt::Throttled(code) => {
                    self.throttled(route, prepared, &code, round, maybe_applied)?
                }
                Attempt::Conflict if !maybe_applied => return Ok(Sent::Conflict),
                Attempt::Conflict => resend_backoff(round, RESEND_BACKOFF, RESEND_MAX_BACKOFF),
                Attempt::InProgress => {
                    maybe_applied = true;
                    tracing::debug!(%route, batch = %prepared.batch, round,
                        "keyed commit still in progress; sending it again with the same token");
                    resend_backoff(round, IN_PROGRESS_BACKOFF, IN_PROGRESS_MAX_BACKOFF)
                }
                Attempt::Unknown { reason, timed_out } => {
                    maybe_applied = true;
                    if timed_out {
                        // A slow server: give the next attempt longer, rather than send
                        // attempts that can never be answered in time.
                        attempt_timeout = attempt_timeout.saturating_mul(2);
                    }
                    tracing::debug!(%route, batch = %prepared.batch, round, %reason,
                        "keyed commit's outcome unknown; sending it again with the same token");
                    resend_backoff(round, RESEND_BACKOFF, RESEND_MAX_BACKOFF)
                }
                Attempt::NotSent(reason) => {
                    tracing::debug!(%route, round, %reason, "keyed commit not sent; again");
                    resend_backoff(round, RESEND_BACKOFF, RESEND_MAX_BACKOFF)
                }
                Attempt::Mismatch(message) => {
                    tracing::error!(%route, batch = %prepared.batch, token = %prepared.token,
                        %message,
                        "BUG: DynamoDB answered IdempotentParameterMismatchException: this \
                         client request token was used before with another request; the \
                         commit's callers get 503");
                    self.note_failure();
                    return Err(Failed {
                        error: StoreError::unavailable(
                            format!(
                                "DynamoDB refused keyed commit {} of route {route}: its client \
                                 request token was used before with another request \
                                 (IdempotentParameterMismatchException: {message})",
                                prepared.batch
                            ),
                            Fault::TokenMismatch(message),
                        ),
                        maybe_applied,
                    });
                }
                Attempt::Refused(err) => {
                    return Err(Failed {
                        error: self.failed("TransactWriteItems", *err),
                        maybe_applied,
                    });
                }
            };
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    /// A throttled attempt applied nothing. If no earlier one can have been applied either,
    /// the commit goes back to the ledger, which paces the route; otherwise the transaction
    /// must be sent again with its token (a new one could apply it twice), after a pause.
    fn throttled(
        &self,
        route: Route,
        prepared: &Prepared,
        code: &str,
        round: u32,
        maybe_applied: bool,
    ) -> Result<Duration, Failed> {
        if maybe_applied {
            tracing::debug!(%route, batch = %prepared.batch, round, code,
                "keyed commit throttled after an attempt of unknown outcome; same token again");
            return Ok(resend_backoff(round, RESEND_BACKOFF, RESEND_MAX_BACKOFF)
                .max(Duration::from_millis(50)));
        }
        Err(Failed {
            error: StoreError::throttled(
                format!(
                    "DynamoDB is throttling keyed commits of route {route} on table {} ({code})",
                    self.table()
                ),
                Fault::Cancelled(code.to_owned()),
            ),
            maybe_applied: false,
        })
    }

    /// Builds one transaction of the keyless transactions and the keys at `open`, carrying off
    /// `finish` if given, with a new batch id and a new client request token.
    pub(super) fn prepare(
        &self,
        write: &RouteWrite,
        open: &[usize],
        finish: Option<&Marker>,
    ) -> Result<Prepared, StoreError> {
        let route = write.route;
        let now = self.clock.epoch_seconds();
        let batch = new_batch_id(now);
        let r = open.len() as u64;
        let n = write.keyless + r;
        // Both operands of each SET are the item before the update: the marker gets the very
        // total this increment makes; the day and month move with it.
        let mut expression = "SET #marker = if_not_exists(#count, :zero) + :n, \
                              #count = if_not_exists(#count, :zero) + :n, \
                              #day = if_not_exists(#day, :zero) + :n, \
                              #month = if_not_exists(#month, :zero) + :n"
            .to_owned();
        let mut removals: Vec<String> = self.window.removals(route, write.day);
        if let Some(marker) = finish {
            removals.push(marker.attribute());
        }
        let mut update = Update::builder()
            .table_name(self.table())
            .key(KEY_ATTRIBUTE, text(route.as_str()))
            // DynamoDB numbers go far beyond 64 bits: refuse, atomically, to pass u64::MAX.
            .condition_expression("attribute_not_exists(#count) OR #count <= :limit")
            .expression_attribute_names("#count", COUNT_ATTRIBUTE)
            .expression_attribute_names("#marker", format!("{MARKER_PREFIX}{batch}"))
            .expression_attribute_values(":n", num(n))
            .expression_attribute_values(":zero", num(0))
            .expression_attribute_values(":limit", num(u64::MAX.saturating_sub(n)));
        update = update
            .expression_attribute_names("#day", day_attribute(write.day))
            .expression_attribute_names("#month", month_attribute(write.day.month()));
        if !removals.is_empty() {
            let names: Vec<String> = (0..removals.len()).map(|i| format!("#old{i}")).collect();
            expression.push_str(" REMOVE ");
            expression.push_str(&names.join(", "));
            for (name, attribute) in names.into_iter().zip(removals) {
                update = update.expression_attribute_names(name, attribute);
            }
        }
        let update = update
            .update_expression(expression)
            .build()
            .map_err(invalid)?;
        let mut items = vec![TransactWriteItem::builder().update(update).build()];
        for (place, &at) in open.iter().enumerate() {
            let keyed = &write.keyed[at];
            let put = Put::builder()
                .table_name(self.table())
                .item(
                    KEY_ATTRIBUTE,
                    text(format!("{KEY_RECORD_PREFIX}{}", keyed.key.record_id())),
                )
                .item(KEY_ROUTE_ATTRIBUTE, text(route.as_str()))
                .item(KEY_BATCH_ATTRIBUTE, text(batch.as_str()))
                .item(KEY_BACK_ATTRIBUTE, num(r - 1 - place as u64))
                .item(EXPIRES_AT_ATTRIBUTE, num(keyed.expires_at))
                .condition_expression("attribute_not_exists(#key) OR #expires <= :now")
                .expression_attribute_names("#key", KEY_ATTRIBUTE)
                .expression_attribute_names("#expires", EXPIRES_AT_ATTRIBUTE)
                .expression_attribute_values(":now", num(keyed.now))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .build()
                .map_err(invalid)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        if let Some(marker) = finish {
            items.push(
                TransactWriteItem::builder()
                    .put(self.batch_record(marker, marker.total.unwrap_or(0))?)
                    .build(),
            );
        }
        // The batch id and 64 more random bits: a token no other commit, here or in another
        // instance, will use (33 characters; DynamoDB takes up to 36).
        let token = format!("{batch}-{:016x}", random_u64());
        Ok(Prepared {
            batch,
            token,
            items,
        })
    }

    /// Reads why a transaction was cancelled (throttling is sorted out before): keys recorded
    /// before, by place among those sent, with their records as handed back; and whether
    /// another transaction held an item, so that a pause is due.
    #[allow(clippy::type_complexity)]
    pub(super) fn cancelled(
        &self,
        route: Route,
        reasons: &[CancellationReason],
        keys: usize,
    ) -> Result<(Vec<(usize, HashMap<String, AttributeValue>)>, bool), StoreError> {
        let code = |at: usize| reasons.get(at).and_then(|r| r.code()).unwrap_or("None");
        if code(0) == "ConditionalCheckFailed" {
            return Err(StoreError::Overflow(route));
        }
        // Anything but a key recorded before or a conflict will not go away by trying again.
        if let Some(other) = reasons.iter().filter_map(|r| r.code()).find(|c| {
            !matches!(
                *c,
                "None" | "ConditionalCheckFailed" | "TransactionConflict"
            )
        }) {
            return Err(StoreError::unavailable(
                format!(
                    "DynamoDB cancelled a keyed commit of route {route} on table {}: {other}",
                    self.table()
                ),
                Fault::Cancelled(other.to_owned()),
            ));
        }
        let recorded_before = (0..keys)
            .filter(|place| code(1 + place) == "ConditionalCheckFailed")
            .map(|place| {
                let item = reasons
                    .get(1 + place)
                    .and_then(|r| r.item())
                    .cloned()
                    .unwrap_or_default();
                (place, item)
            })
            .collect::<Vec<_>>();
        let contention = recorded_before.is_empty()
            || reasons
                .iter()
                .filter_map(|r| r.code())
                .any(|c| c == "TransactionConflict");
        Ok((recorded_before, contention))
    }
}

/// Whether a cancellation was for the rate of some item: nothing was applied.
fn is_throttled(reasons: &[CancellationReason]) -> bool {
    reasons
        .iter()
        .filter_map(|r| r.code())
        .any(|c| c == "ThrottlingError" || THROTTLING_CODES.contains(&c))
}
