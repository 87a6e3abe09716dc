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

use std::{collections::HashMap, time::Instant};

use aws_sdk_dynamodb::{
    operation::transact_write_items::TransactWriteItemsError,
    types::{
        AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure,
        TransactWriteItem, Update,
    },
};

use super::{
    COUNT_ATTRIBUTE, DynamoStore, EXPIRES_AT_ATTRIBUTE, KEY_ATTRIBUTE, KEY_RECORD_PREFIX,
    KEY_ROUTE_ATTRIBUTE,
    errors::{THROTTLING_CODES, is_contention},
    markers::{MARKER_PREFIX, Marker, new_batch_id},
    periods::{day_attribute, month_attribute},
    records::{KEY_BACK_ATTRIBUTE, KEY_BATCH_ATTRIBUTE, invalid, num, text},
    retry::contention_backoff,
};
use crate::{
    idempotency::{KeyedOutcome, epoch_seconds},
    route::Route,
    store::{RouteOutcome, RouteWrite, StoreError},
};

/// Most attempts of one keyed commit whose transaction is cancelled by contention.
const KEYED_ATTEMPTS: u32 = 16;

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

    async fn commit_keyed_with(
        &self,
        write: &RouteWrite,
        finish: &mut Option<Marker>,
    ) -> Result<RouteOutcome, StoreError> {
        let route = write.route;
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
                if write.keyless > 0 {
                    keyless_total = self.add(route, write.keyless, write.day).await?;
                }
                break;
            }
            match self.transact(write, &open, finish.as_ref()).await? {
                Sent::Committed { total, batch } => {
                    *finish = None;
                    let r = open.len() as u64;
                    keyless_total = total - r;
                    for (place, &at) in open.iter().enumerate() {
                        outcomes[at] =
                            Some(KeyedOutcome::recorded(route, total - r + 1 + place as u64));
                    }
                    let expires_at = open
                        .iter()
                        .map(|&at| write.keyed[at].expires_at)
                        .max()
                        .unwrap_or(0);
                    self.pending.add(Marker {
                        route,
                        id: batch,
                        total: Some(total),
                        expires_at,
                        since: Instant::now(),
                    });
                    break;
                }
                Sent::Cancelled {
                    recorded_before,
                    contention,
                } => {
                    for (place, item) in recorded_before {
                        let at = open[place];
                        outcomes[at] = Some(
                            self.resolve(item, &write.keyed[at].key.record_id(), &mut batch_totals)
                                .await?,
                        );
                    }
                    open.retain(|at| outcomes[*at].is_none());
                    if contention {
                        if attempt >= KEYED_ATTEMPTS {
                            return Err(StoreError::Unavailable(format!(
                                "route {route} was held by other transactions during \
                                 {KEYED_ATTEMPTS} attempts of a keyed commit"
                            )));
                        }
                        tokio::time::sleep(contention_backoff(attempt)).await;
                        attempt += 1;
                    }
                }
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

    /// Sends one transaction of the keyless transactions and the keys at `open`, carrying off
    /// `finish` if given.
    async fn transact(
        &self,
        write: &RouteWrite,
        open: &[usize],
        finish: Option<&Marker>,
    ) -> Result<Sent, StoreError> {
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
        let sent = self
            .transactor
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match sent {
            Ok(_) => {
                let total = self
                    .read_marker(route, &batch, Some(write.day))
                    .await?
                    .ok_or_else(|| {
                        StoreError::Unavailable(format!(
                            "route {route} lost the total of keyed commit {batch}"
                        ))
                    })?;
                Ok(Sent::Committed { total, batch })
            }
            Err(err) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(canceled)) =
                    err.as_service_error()
                {
                    return self.cancelled(route, canceled.cancellation_reasons(), open.len());
                }
                if is_contention(&err) {
                    return Ok(Sent::Cancelled {
                        recorded_before: Vec::new(),
                        contention: true,
                    });
                }
                Err(self.failed("TransactWriteItems", err))
            }
        }
    }

    /// Reads why a transaction was cancelled: nothing of it was applied.
    fn cancelled(
        &self,
        route: Route,
        reasons: &[CancellationReason],
        keys: usize,
    ) -> Result<Sent, StoreError> {
        let code = |at: usize| reasons.get(at).and_then(|r| r.code()).unwrap_or("None");
        if reasons
            .iter()
            .filter_map(|r| r.code())
            .any(|c| c == "ThrottlingError" || THROTTLING_CODES.contains(&c))
        {
            return Err(StoreError::Throttled(format!(
                "DynamoDB is throttling keyed commits of route {route} on table {}",
                self.table()
            )));
        }
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
        Ok(Sent::Cancelled {
            recorded_before,
            contention,
        })
    }
}

/// What one transaction came to.
enum Sent {
    Committed {
        total: u64,
        batch: String,
    },
    /// Nothing was applied: these keys (by place among those sent) were recorded before, with
    /// their records; `contention` says another transaction held an item, so wait a little.
    Cancelled {
        recorded_before: Vec<(usize, HashMap<String, AttributeValue>)>,
        contention: bool,
    },
}
