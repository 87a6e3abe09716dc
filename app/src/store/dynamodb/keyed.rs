//! Keyed commits: a route's keyed transactions (and any keyless ones queued with them), up to
//! 98 keys, in one `TransactWriteItems`, with no condition on the count's value.
//!
//! The transaction holds:
//! - the route's item: `SET pending_<batch> = count + n, transactions = count + n` (both
//!   operands are the count before the update, so the item records the total this commit left,
//!   under a name of its own, in the same atomic write as the increment), on condition only that
//!   the count stays within 64 bits;
//! - one `Put` per key, `idem#<key>` with the route, the batch and the key's place from the end
//!   of the batch (`back`), on condition that no unexpired record of the key exists
//!   (`ReturnValuesOnConditionCheckFailure=ALL_OLD` hands back the record that is there);
//! - the batch record of the route's previous keyed commit (`batch#<id>`, its total), with
//!   `REMOVE pending_<id>` on the route's item: the total moves off the item in the same write.
//!
//! After it, one consistent read of the route's item gives the batch's total `T`: key `j` of `r`
//! counts `T - (r - 1 - j)`, the `n - r` keyless ones the numbers just below. Other instances'
//! `ADD`s in between change nothing of that, since the total was recorded atomically with the
//! increment. A key whose `Put` condition failed was recorded before: its outcome is read from
//! its record (the batch total from the route's item or from the batch record), and the
//! commit is sent again without it. `docs/dynamodb.md` has the argument in full.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use aws_sdk_dynamodb::{
    error::BuildError,
    operation::transact_write_items::TransactWriteItemsError,
    types::{
        AttributeValue, CancellationReason, Put, ReturnValuesOnConditionCheckFailure,
        TransactWriteItem, Update,
    },
};
use rustc_hash::FxHashMap;

use super::{
    BATCH_RECORD_PREFIX, COUNT_ATTRIBUTE, DynamoStore, EXPIRES_AT_ATTRIBUTE, KEY_ATTRIBUTE,
    KEY_COUNT_ATTRIBUTE, KEY_RECORD_PREFIX, KEY_ROUTE_ATTRIBUTE, count_value,
    errors::{THROTTLING_CODES, is_contention},
    retry::contention_backoff,
};
use crate::{
    idempotency::{KeyedOutcome, epoch_seconds},
    route::Route,
    store::{RouteOutcome, RouteWrite, StoreError},
};

/// A key record's batch id and its place from the end of that batch.
pub const KEY_BATCH_ATTRIBUTE: &str = "batch";
pub const KEY_BACK_ATTRIBUTE: &str = "back";
/// Prefix of the route item attribute that holds a keyed commit's total until it is moved to
/// its batch record; followed by the batch id (`<epoch seconds>_<random hex>`).
pub const MARKER_PREFIX: &str = "pending_";

/// Most attempts of one keyed commit whose transaction is cancelled by contention.
const KEYED_ATTEMPTS: u32 = 16;
/// A total left on a route's item this long with no keyed commit of the route to carry it
/// off is moved by the periodic upkeep.
const IDLE_MARKER_AGE: Duration = Duration::from_secs(2);
/// A total another instance left on a route's item this long ago (epoch seconds) was
/// abandoned (the instance stopped before moving it): any instance moves it.
const ABANDONED_MARKER_AGE: u64 = 600;

/// A keyed commit's total, still on its route's item.
#[derive(Debug, Clone)]
pub(super) struct Marker {
    route: Route,
    id: String,
    /// The total, when known (a commit whose read-back failed does not know it).
    total: Option<u64>,
    /// When its batch record may expire: no earlier than every key of the batch.
    expires_at: u64,
    since: Instant,
}

impl Marker {
    fn attribute(&self) -> String {
        format!("{MARKER_PREFIX}{}", self.id)
    }
}

/// Totals this instance left on route items, by route.
#[derive(Default)]
pub(super) struct PendingMarkers(Mutex<FxHashMap<Route, Vec<Marker>>>);

impl PendingMarkers {
    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<Route, Vec<Marker>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add(&self, marker: Marker) {
        let mut pending = self.lock();
        let markers = pending.entry(marker.route).or_default();
        if !markers.iter().any(|m| m.id == marker.id) {
            markers.push(marker);
        }
    }

    /// One marker of `route` whose total is known, to be carried off by the next commit.
    fn take_for(&self, route: Route) -> Option<Marker> {
        let mut pending = self.lock();
        let markers = pending.get_mut(&route)?;
        let at = markers.iter().position(|m| m.total.is_some())?;
        let marker = markers.swap_remove(at);
        if markers.is_empty() {
            pending.remove(&route);
        }
        Some(marker)
    }

    /// Markers left alone for a while (or all of them).
    fn take_idle(&self, all: bool) -> Vec<Marker> {
        let mut pending = self.lock();
        let mut idle = Vec::new();
        pending.retain(|_, markers| {
            markers.retain(|m| {
                let take = all || m.since.elapsed() >= IDLE_MARKER_AGE;
                if take {
                    idle.push(m.clone());
                }
                !take
            });
            !markers.is_empty()
        });
        idle
    }
}

/// A fresh batch id: its time in epoch seconds (to tell abandoned totals) and 64 random bits.
fn new_batch_id(now: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS once per thread and varied per instance; with a
    // sequence number and the time mixed in, two ids never meet in practice.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(SEQUENCE.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{now}_{:016x}", hasher.finish())
}

fn invalid(err: BuildError) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

fn num(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn text(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A stored key record.
enum KeyRecord {
    /// The outcome is on the record.
    Done { route: Route, count: u64 },
    /// The outcome is `total of batch - back`.
    InBatch {
        route: Route,
        batch: String,
        back: u64,
    },
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
        loop {
            if open.is_empty() {
                if write.keyless > 0 {
                    keyless_total = self.add(route, write.keyless).await?;
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
                        outcomes[at] =
                            Some(self.resolve(item, &write.keyed[at].key.record_id()).await?);
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
        let mut expression = "SET #marker = if_not_exists(#count, :zero) + :n, \
                              #count = if_not_exists(#count, :zero) + :n"
            .to_owned();
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
        if let Some(marker) = finish {
            expression.push_str(" REMOVE #finished");
            update = update.expression_attribute_names("#finished", marker.attribute());
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
                let total = self.read_marker(route, &batch).await?.ok_or_else(|| {
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

    /// The outcome of a key recorded before, from the record handed back (or read, where the
    /// server hands back none).
    async fn resolve(
        &self,
        item: HashMap<String, AttributeValue>,
        record_id: &str,
    ) -> Result<KeyedOutcome, StoreError> {
        let name = format!("{KEY_RECORD_PREFIX}{record_id}");
        let item = if item.is_empty() {
            self.read_item(&name).await?.ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "the idempotency record {name:?} was there and then gone"
                ))
            })?
        } else {
            item
        };
        match self.key_record(&item, &name)? {
            KeyRecord::Done { route, count } => Ok(KeyedOutcome::replay(route, count)),
            KeyRecord::InBatch { route, batch, back } => {
                // The route's item first: a total only leaves it together with the batch
                // record's creation, so if it is gone, the batch record is there.
                let total = match self.read_marker(route, &batch).await? {
                    Some(total) => total,
                    None => self.read_batch_record(&batch).await?,
                };
                let count = total.checked_sub(back).ok_or_else(|| {
                    StoreError::Unavailable(format!("batch {batch} holds a total below {back}"))
                })?;
                Ok(KeyedOutcome::replay(route, count))
            }
        }
    }

    fn key_record(
        &self,
        item: &HashMap<String, AttributeValue>,
        name: &str,
    ) -> Result<KeyRecord, StoreError> {
        let malformed = || {
            StoreError::Unavailable(format!(
                "DynamoDB table {} holds a malformed idempotency record {name:?}",
                self.table()
            ))
        };
        let number = |attribute: &str| {
            item.get(attribute)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok())
        };
        let route = item
            .get(KEY_ROUTE_ATTRIBUTE)
            .and_then(|v| v.as_s().ok())
            .and_then(|s| Route::parse(s).ok())
            .ok_or_else(malformed)?;
        if let Some(count) = number(KEY_COUNT_ATTRIBUTE) {
            return Ok(KeyRecord::Done { route, count });
        }
        let batch = item
            .get(KEY_BATCH_ATTRIBUTE)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(malformed)?
            .clone();
        let back = number(KEY_BACK_ATTRIBUTE).ok_or_else(malformed)?;
        Ok(KeyRecord::InBatch { route, batch, back })
    }

    async fn read_item(
        &self,
        name: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .key(KEY_ATTRIBUTE, text(name))
            .consistent_read(true)
            .send()
            .await
            .map_err(|err| self.failed("GetItem", err))?;
        Ok(out.item)
    }

    /// The total of keyed commit `batch` while it is on the route's item. Totals other
    /// instances abandoned there long ago are taken over, to be moved off.
    async fn read_marker(&self, route: Route, batch: &str) -> Result<Option<u64>, StoreError> {
        let Some(item) = self.read_item(route.as_str()).await? else {
            return Ok(None);
        };
        let now = epoch_seconds();
        let mut found = None;
        for (attribute, value) in &item {
            let Some(id) = attribute.strip_prefix(MARKER_PREFIX) else {
                continue;
            };
            let total = value
                .as_n()
                .ok()
                .map(|v| count_value(v, attribute, self.table()))
                .transpose()?;
            if id == batch {
                found = total;
                continue;
            }
            let born = id.split('_').next().and_then(|t| t.parse::<u64>().ok());
            if born.is_some_and(|born| born + ABANDONED_MARKER_AGE < now) {
                self.pending.add(Marker {
                    route,
                    id: id.to_owned(),
                    total,
                    expires_at: now.saturating_add(self.settings.idempotency_retention.as_secs()),
                    since: Instant::now() - IDLE_MARKER_AGE,
                });
            }
        }
        Ok(found)
    }

    async fn read_batch_record(&self, batch: &str) -> Result<u64, StoreError> {
        let name = format!("{BATCH_RECORD_PREFIX}{batch}");
        let item = self.read_item(&name).await?.ok_or_else(|| {
            StoreError::Unavailable(format!("the batch record {name:?} is missing"))
        })?;
        let total = item
            .get(KEY_COUNT_ATTRIBUTE)
            .and_then(|v| v.as_n().ok())
            .ok_or_else(|| {
                StoreError::Unavailable(format!("the batch record {name:?} is malformed"))
            })?;
        count_value(total, &name, self.table())
    }

    fn batch_record(&self, marker: &Marker, total: u64) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(self.table())
            .item(
                KEY_ATTRIBUTE,
                text(format!("{BATCH_RECORD_PREFIX}{}", marker.id)),
            )
            .item(KEY_ROUTE_ATTRIBUTE, text(marker.route.as_str()))
            .item(KEY_COUNT_ATTRIBUTE, num(total))
            .item(EXPIRES_AT_ATTRIBUTE, num(marker.expires_at))
            .build()
            .map_err(invalid)
    }

    /// Moves totals off route items that no keyed commit carried off: those left alone for a
    /// while, or all of them (at shutdown). Each is one transaction: the batch record, and the
    /// total removed from the route's item if it is still there.
    pub(super) async fn finish_idle_markers(&self, all: bool) {
        for marker in self.pending.take_idle(all) {
            let total = match marker.total {
                Some(total) => Some(total),
                None => self
                    .read_marker(marker.route, &marker.id)
                    .await
                    .ok()
                    .flatten(),
            };
            let Some(total) = total else {
                // Never applied, or already moved.
                continue;
            };
            let moved = self.move_marker(&marker, total).await;
            match moved {
                Ok(()) => {}
                Err(err) => {
                    tracing::debug!(route = %marker.route, batch = %marker.id, error = %err,
                        "could not move a keyed commit's total off its route yet");
                    if !all {
                        self.pending.add(marker);
                    }
                }
            }
        }
    }

    async fn move_marker(&self, marker: &Marker, total: u64) -> Result<(), StoreError> {
        let update = Update::builder()
            .table_name(self.table())
            .key(KEY_ATTRIBUTE, text(marker.route.as_str()))
            .update_expression("REMOVE #marker")
            .condition_expression("attribute_exists(#marker)")
            .expression_attribute_names("#marker", marker.attribute())
            .build()
            .map_err(invalid)?;
        let sent = self
            .transactor
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(
                TransactWriteItem::builder()
                    .put(self.batch_record(marker, total)?)
                    .build(),
            )
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            // Someone moved it already.
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(TransactWriteItemsError::TransactionCanceledException(canceled))
                        if canceled.cancellation_reasons().first().and_then(|r| r.code())
                            == Some("ConditionalCheckFailed")
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(self.failed("TransactWriteItems", err)),
        }
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
