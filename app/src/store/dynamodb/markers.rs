//! Where a keyed commit's total lives after the commit: first on its route's item, under
//! `p<batch>` (written atomically with the increment), then in a batch record
//! `batch#<batch>` (written atomically with the removal from the route's item). A replayed key
//! reads its batch's total from one or the other. Totals are carried off by the route's next
//! keyed commit, or by the periodic upkeep when none comes, or at shutdown; one left behind by
//! an instance that stopped before moving it is moved by any instance that reads it later.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use aws_sdk_dynamodb::{
    operation::transact_write_items::TransactWriteItemsError,
    types::{Put, TransactWriteItem, Update},
};
use rustc_hash::FxHashMap;

use super::errors::Fault;
use super::{
    BATCH_RECORD_PREFIX, DynamoStore, EXPIRES_AT_ATTRIBUTE, KEY_ATTRIBUTE, KEY_COUNT_ATTRIBUTE,
    KEY_ROUTE_ATTRIBUTE, count_value,
    records::{invalid, num, text},
};
use crate::{calendar::Day, route::Route, store::StoreError};

/// Prefix of the route item attribute that holds a keyed commit's total until it is moved to
/// its batch record; followed by the batch id: 16 hex digits, the first 8 the epoch seconds it
/// was made in (short, since the item holds it beside the route's days and months).
pub const MARKER_PREFIX: &str = "p";

/// A total left on a route's item this long with no keyed commit of the route to carry it
/// off is moved by the periodic upkeep (every minute). Long enough that a route with a keyed
/// POST a minute carries its totals off in its own commits, at no extra write; the item holds
/// a couple of totals at most meanwhile.
const IDLE_MARKER_AGE: Duration = Duration::from_secs(60);
/// A total another instance left on a route's item this long ago (epoch seconds) was
/// abandoned (the instance stopped before moving it): any instance moves it.
const ABANDONED_MARKER_AGE: u32 = 600;

/// A keyed commit's total, still on its route's item.
#[derive(Debug, Clone)]
pub(super) struct Marker {
    pub route: Route,
    pub id: String,
    /// The total, when known (a commit whose read-back failed does not know it).
    pub total: Option<u64>,
    /// When its batch record may expire: no earlier than every key of the batch.
    pub expires_at: u64,
    pub since: Instant,
}

impl Marker {
    pub fn attribute(&self) -> String {
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

    /// Notes a marker; one noted before with its total unknown gets the total now known.
    pub fn add(&self, marker: Marker) {
        let mut pending = self.lock();
        let markers = pending.entry(marker.route).or_default();
        match markers.iter_mut().find(|m| m.id == marker.id) {
            Some(noted) => {
                if noted.total.is_none() && marker.total.is_some() {
                    *noted = marker;
                }
            }
            None => markers.push(marker),
        }
    }

    /// Forgets a marker that was never written (its transaction is known not to have been
    /// applied).
    pub fn forget(&self, route: Route, id: &str) {
        let mut pending = self.lock();
        if let Some(markers) = pending.get_mut(&route) {
            markers.retain(|m| m.id != id);
            if markers.is_empty() {
                pending.remove(&route);
            }
        }
    }

    /// One marker of `route` whose total is known, to be carried off by the next commit.
    pub fn take_for(&self, route: Route) -> Option<Marker> {
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

/// A fresh batch id: its time in epoch seconds (to tell abandoned totals) and 32 random bits.
pub(super) fn new_batch_id(now: u64) -> String {
    // The low 32 bits of the time: they tell the age of a marker for 136 years at a stretch.
    format!("{:08x}{:08x}", now as u32, random_u64() as u32)
}

/// 64 bits no other call, here or in another instance, will return in practice.
pub(super) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS once per thread and varied per instance; with a
    // sequence number and the time mixed in, two values never meet in practice.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(SEQUENCE.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}

/// The batch id of a marker attribute, if the name is one.
pub(super) fn marker_id(attribute: &str) -> Option<&str> {
    attribute
        .strip_prefix(MARKER_PREFIX)
        .filter(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl DynamoStore {
    /// The total of keyed commit `batch` while it is on the route's item. Totals other
    /// instances abandoned there long ago are taken over, to be moved off; read right after a
    /// commit on `written_on`, the item also shows the periods that fell out of the window.
    pub(super) async fn read_marker(
        &self,
        route: Route,
        batch: &str,
        written_on: Option<Day>,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self.read_markers(route, written_on).await?.remove(batch))
    }

    /// Every keyed commit total on the route's item, by batch, in one consistent read (as
    /// [`DynamoStore::read_marker`]).
    pub(super) async fn read_markers(
        &self,
        route: Route,
        written_on: Option<Day>,
    ) -> Result<FxHashMap<String, u64>, StoreError> {
        let mut totals = FxHashMap::default();
        let Some(item) = self.read_item(route.as_str()).await? else {
            return Ok(totals);
        };
        if let Some(day) = written_on {
            self.window.observe(route, day, &item);
        }
        let now = self.clock.epoch_seconds();
        for (attribute, value) in &item {
            let Some(id) = marker_id(attribute) else {
                continue;
            };
            let total = value
                .as_n()
                .ok()
                .map(|v| count_value(v, attribute, self.table()))
                .transpose()?;
            if let Some(total) = total {
                totals.insert(id.to_owned(), total);
            }
            let born = u32::from_str_radix(&id[..8], 16).ok();
            // Compared on 32 bits, as they were written.
            if born.is_some_and(|born| (now as u32).wrapping_sub(born) > ABANDONED_MARKER_AGE) {
                self.pending.add(Marker {
                    route,
                    id: id.to_owned(),
                    total,
                    expires_at: now.saturating_add(self.settings.idempotency_retention.as_secs()),
                    since: Instant::now() - IDLE_MARKER_AGE,
                });
            }
        }
        Ok(totals)
    }

    /// The totals of several keyed commits of `route`, as [`DynamoStore::batch_total`] finds
    /// them, with one read of the route's item and the batch records of those moved off it
    /// read at once.
    pub(super) async fn batch_totals(
        &self,
        route: Route,
        batches: &[String],
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let on_item = self.read_markers(route, None).await?;
        let mut totals = Vec::with_capacity(batches.len());
        let mut moved = Vec::new();
        for batch in batches {
            match on_item.get(batch) {
                Some(total) => totals.push((batch.clone(), *total)),
                None => moved.push(batch.clone()),
            }
        }
        let records =
            futures_util::future::join_all(moved.iter().map(|batch| self.read_batch_record(batch)))
                .await;
        for (batch, total) in moved.into_iter().zip(records) {
            totals.push((batch, total?));
        }
        Ok(totals)
    }

    /// The total of keyed commit `batch` of `route`, wherever it is: on the route's item, or,
    /// once moved, in its batch record. The item first: a total only leaves it together with
    /// the batch record's creation, so if it is gone, the batch record is there.
    pub(super) async fn batch_total(&self, route: Route, batch: &str) -> Result<u64, StoreError> {
        match self.read_marker(route, batch, None).await? {
            Some(total) => Ok(total),
            None => self.read_batch_record(batch).await,
        }
    }

    pub(super) async fn read_batch_record(&self, batch: &str) -> Result<u64, StoreError> {
        let name = format!("{BATCH_RECORD_PREFIX}{batch}");
        let item = self.read_item(&name).await?.ok_or_else(|| {
            StoreError::unavailable(
                format!("the batch record {name:?} is missing"),
                Fault::MissingItem,
            )
        })?;
        let total = item
            .get(KEY_COUNT_ATTRIBUTE)
            .and_then(|v| v.as_n().ok())
            .ok_or_else(|| {
                StoreError::unavailable(
                    format!("the batch record {name:?} is malformed"),
                    Fault::MalformedItem,
                )
            })?;
        count_value(total, &name, self.table())
    }

    pub(super) fn batch_record(&self, marker: &Marker, total: u64) -> Result<Put, StoreError> {
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
                    .read_marker(marker.route, &marker.id, None)
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
