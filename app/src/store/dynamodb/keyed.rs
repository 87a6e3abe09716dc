//! Keyed commits: a route's keyed transactions (and any keyless ones queued with them), up to
//! 98 keys, in one `TransactWriteItems`, with no condition on the count's value.
//!
//! The transaction holds:
//! - the route's item: `SET p<batch> = count + n, transactions = count + n` (both
//!   operands are the count before the update, so the item records the total this commit left,
//!   under a name of its own, in the same atomic write as the increment), on condition only that
//!   the count stays within 64 bits;
//! - one `Put` per key, `idem#<key>` with the route, the batch and the key's place from the end
//!   of the batch (`back`), on condition that no unexpired record of the key exists
//!   (`ReturnValuesOnConditionCheckFailure=ALL_OLD` hands back the record that is there);
//! - the batch record of the route's previous keyed commit (`batch#<id>`, its total), with
//!   `REMOVE p<id>` on the route's item: the total moves off the item in the same write.
//!
//! After it, one consistent read of the route's item gives the batch's total `T`: key `j` of `r`
//! counts `T - (r - 1 - j)`, the `n - r` keyless ones the numbers just below. Other instances'
//! `ADD`s in between change nothing of that, since the total was recorded atomically with the
//! increment. A key whose `Put` condition failed was recorded before: its outcome is read from
//! its record (the batch total from the route's item or from the batch record), and the
//! commit is sent again without it. `docs/dynamodb.md` has the argument in full.

//!
//! One transaction is built once and sent, with a client request token of its own, until its
//! outcome is known or the commit timeout is near ([`attempt`] sorts every attempt): DynamoDB
//! applies a token's transaction once. Where a server does not honour the token (the emulators,
//! or DynamoDB itself after ten minutes), a repeat of an applied transaction is cancelled,
//! since its keys are recorded now, and the records handed back name this very batch: the
//! commit was applied by an earlier attempt, and every caller in it, keyed and keyless, is
//! answered from that batch's total. Nothing of it is ever applied again.

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

use super::{
    COUNT_ATTRIBUTE, DynamoStore, EXPIRES_AT_ATTRIBUTE, KEY_ATTRIBUTE, KEY_RECORD_PREFIX,
    KEY_ROUTE_ATTRIBUTE,
    attempt::{Attempt, classify},
    errors::THROTTLING_CODES,
    markers::{MARKER_PREFIX, Marker, new_batch_id, random_u64},
    periods::{day_attribute, month_attribute},
    records::{KEY_BACK_ATTRIBUTE, KEY_BATCH_ATTRIBUTE, invalid, num, record_batch, text},
    retry::{contention_backoff, count_timed_out, resend_backoff},
};
use crate::{
    idempotency::{KeyedOutcome, epoch_seconds},
    route::Route,
    store::{RouteOutcome, RouteWrite, StoreError},
};

/// Most transactions of one keyed commit cancelled by contention.
const KEYED_ATTEMPTS: u32 = 16;
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
struct Prepared {
    batch: String,
    token: String,
    items: Vec<TransactWriteItem>,
}

/// What sending one transaction came to.
enum Sent {
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
struct Failed {
    error: StoreError,
    maybe_applied: bool,
}

impl DynamoStore {
    pub(super) async fn commit_keyed(
        &self,
        write: &RouteWrite,
    ) -> Result<RouteOutcome, StoreError> {
        let mut finish = self.pending.take_for(write.route);
        let result = self.commit_keyed_with(write, &mut finish).await;
        if let Some(marker) = finish {
            // Not carried off: next time.
            self.pending.add(marker);
        }
        result
    }

    /// How long the transactions of one keyed commit may take: the commit timeout, less the
    /// read of the total that follows them.
    fn keyed_budget(&self) -> Duration {
        let timeout = self.settings.operation_timeout;
        timeout.saturating_sub(self.settings.attempt_timeout.min(timeout / 4))
    }

    async fn commit_keyed_with(
        &self,
        write: &RouteWrite,
        finish: &mut Option<Marker>,
    ) -> Result<RouteOutcome, StoreError> {
        let route = write.route;
        let deadline = Instant::now() + self.keyed_budget();
        let mut outcomes: Vec<Option<KeyedOutcome>> = vec![None; write.keyed.len()];
        // A key twice in one write is one transaction: later copies get the first's outcome.
        let mut first_copy: HashMap<String, usize> = HashMap::new();
        let mut copies: Vec<(usize, usize)> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        for (at, keyed) in write.keyed.iter().enumerate() {
            match first_copy.entry(keyed.key.record_id().into_owned()) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    copies.push((at, *first.get()))
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(at);
                    open.push(at);
                }
            }
        }
        let mut keyless_total = 0;
        let mut attempt = 1;
        // Totals of the batches that keys recorded before belong to, read once each.
        let mut batch_totals: HashMap<String, u64> = HashMap::new();
        loop {
            if open.is_empty() {
                // Every key was recorded by other commits, and no transaction of this one was
                // applied: the keyless transactions alone.
                if write.keyless > 0 {
                    keyless_total = self.add(route, write.keyless, write.day).await?;
                }
                break;
            }
            let prepared = self.prepare(write, &open, finish.as_ref())?;
            let expires_at = open
                .iter()
                .map(|&at| write.keyed[at].expires_at)
                .max()
                .unwrap_or(0);
            // Until its outcome is known, the batch's total may be on the route's item: noted,
            // so that the upkeep finds and moves it if this commit gives up without knowing.
            self.pending.add(Marker {
                route,
                id: prepared.batch.clone(),
                total: None,
                expires_at,
                since: Instant::now(),
            });
            let applied = match self.send(route, &prepared, deadline).await {
                Err(Failed {
                    error,
                    maybe_applied,
                }) => {
                    if !maybe_applied {
                        self.pending.forget(route, &prepared.batch);
                    }
                    return Err(error);
                }
                Ok(Sent::Applied) => true,
                Ok(Sent::Conflict) => {
                    self.pending.forget(route, &prepared.batch);
                    self.contention_pause(route, &mut attempt).await?;
                    continue;
                }
                Ok(Sent::Cancelled(reasons)) => {
                    let (recorded_before, contention) =
                        self.cancelled(route, &reasons, open.len())?;
                    let mut records = Vec::with_capacity(recorded_before.len());
                    for (place, item) in recorded_before {
                        let at = open[place];
                        let record_id = write.keyed[at].key.record_id().into_owned();
                        let item = self.key_record_item(item, &record_id).await?;
                        records.push((at, record_id, item));
                    }
                    if records
                        .iter()
                        .any(|(_, _, item)| record_batch(item) == Some(prepared.batch.as_str()))
                    {
                        // The keys were recorded by this very transaction: an earlier attempt
                        // was applied, and the server ran the repeat as a new transaction.
                        tracing::info!(%route, batch = %prepared.batch,
                            "a keyed commit was applied by an earlier attempt of its transaction; \
                             answered from its total");
                        true
                    } else {
                        self.pending.forget(route, &prepared.batch);
                        self.prefetch_batch_totals(
                            records.iter().map(|(_, _, item)| item),
                            &mut batch_totals,
                        )
                        .await?;
                        for (at, record_id, item) in records {
                            outcomes[at] =
                                Some(self.resolve(item, &record_id, &mut batch_totals).await?);
                        }
                        open.retain(|at| outcomes[*at].is_none());
                        if contention {
                            self.contention_pause(route, &mut attempt).await?;
                        }
                        false
                    }
                }
            };
            if applied {
                *finish = None;
                let total = self.applied_total(route, &prepared.batch, write).await?;
                let r = open.len() as u64;
                // A total below the batch's own size is not one this commit could have made.
                keyless_total = total
                    .checked_sub(write.keyless + r)
                    .map(|before| before + write.keyless)
                    .ok_or_else(|| {
                        StoreError::Unavailable(format!(
                            "route {route} holds a total of {total} for keyed commit {}, below \
                             its {} transactions",
                            prepared.batch,
                            write.keyless + r
                        ))
                    })?;
                for (place, &at) in open.iter().enumerate() {
                    outcomes[at] =
                        Some(KeyedOutcome::recorded(route, total - r + 1 + place as u64));
                }
                self.pending.add(Marker {
                    route,
                    id: prepared.batch,
                    total: Some(total),
                    expires_at,
                    since: Instant::now(),
                });
                break;
            }
        }
        for (at, first) in copies {
            outcomes[at] = outcomes[first].map(|o| KeyedOutcome::replay(o.route, o.count));
        }
        let keyed = outcomes
            .into_iter()
            .map(|o| o.ok_or_else(|| StoreError::Unavailable("a key has no outcome".into())))
            .collect::<Result<_, _>>()?;
        Ok(RouteOutcome {
            keyless_total,
            keyed,
        })
    }

    /// The total an applied transaction left, read consistently: from the route's item, where
    /// it was written, or from its batch record if it has been moved since.
    async fn applied_total(
        &self,
        route: Route,
        batch: &str,
        write: &RouteWrite,
    ) -> Result<u64, StoreError> {
        if let Some(total) = self.read_marker(route, batch, Some(write.day)).await? {
            return Ok(total);
        }
        self.read_batch_record(batch).await.map_err(|err| {
            StoreError::Unavailable(format!(
                "route {route} lost the total of keyed commit {batch}: {err}"
            ))
        })
    }

    /// A jittered pause before a new transaction, after one was cancelled by contention.
    async fn contention_pause(&self, route: Route, attempt: &mut u32) -> Result<(), StoreError> {
        if *attempt >= KEYED_ATTEMPTS {
            return Err(StoreError::Unavailable(format!(
                "route {route} was held by other transactions during {KEYED_ATTEMPTS} attempts \
                 of a keyed commit"
            )));
        }
        tokio::time::sleep(contention_backoff(*attempt)).await;
        *attempt += 1;
        Ok(())
    }

    /// Sends one transaction until its outcome is known, the same request with the same token
    /// every time, within `deadline`.
    async fn send(
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
                let error = StoreError::Unavailable(if maybe_applied {
                    format!(
                        "the outcome of keyed commit {} of route {route} is unknown: DynamoDB \
                         gave no final answer within the commit timeout",
                        prepared.batch
                    )
                } else {
                    format!(
                        "DynamoDB took no keyed commit of route {route} within the commit timeout"
                    )
                });
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
                        error: StoreError::Unavailable(format!(
                            "DynamoDB refused keyed commit {} of route {route}: its client \
                             request token was used before with another request \
                             (IdempotentParameterMismatchException: {message})",
                            prepared.batch
                        )),
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
            error: StoreError::Throttled(format!(
                "DynamoDB is throttling keyed commits of route {route} on table {} ({code})",
                self.table()
            )),
            maybe_applied: false,
        })
    }

    /// Builds one transaction of the keyless transactions and the keys at `open`, carrying off
    /// `finish` if given, with a new batch id and a new client request token.
    fn prepare(
        &self,
        write: &RouteWrite,
        open: &[usize],
        finish: Option<&Marker>,
    ) -> Result<Prepared, StoreError> {
        let route = write.route;
        let now = epoch_seconds();
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
    fn cancelled(
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
            return Err(StoreError::Unavailable(format!(
                "DynamoDB cancelled a keyed commit of route {route} on table {}: {other}",
                self.table()
            )));
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
