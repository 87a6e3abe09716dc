//! Export: every route item and every unexpired key record of the table, read by a parallel,
//! consistent `Scan` and sorted into the file's order.
//!
//! A route's record is made of the one item the scan read: its total and its days and months
//! come from the same read, so they always agree. A key record's count is worked out the way a
//! replay of the key works it out ([`DynamoStore::resolve`]): from the record, or from its
//! batch's total, read consistently from the route's item or the batch record.

use std::{collections::HashMap, time::UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::future::try_join_all;
use tokio::sync::mpsc;

use super::{IMPORT_MARK_PREFIX, SnapshotFault, sort::ExternalSort};
use crate::{
    auth::ClientName,
    calendar::Day,
    idempotency::IdempotencyKey,
    route::Route,
    snapshot::{KeyRecord, Record, RouteRecord},
    store::{
        Consistency, RecordSink, StoreError,
        dynamodb::{
            BATCH_RECORD_PREFIX, COUNT_ATTRIBUTE, DynamoStore, EXPIRES_AT_ATTRIBUTE, KEY_ATTRIBUTE,
            KEY_RECORD_PREFIX, count_value, errors::Fault, periods::kept_periods,
        },
    },
};

/// Segments of the parallel scan: each its own sequence of pages, read at once.
const SCAN_SEGMENTS: i32 = 4;
/// Items per page of each segment. DynamoDB's own cap is 1 MB a page, a few thousand short
/// routes, which the SDK holds parsed (every attribute a string and a value) while the page is
/// sorted out: four segments of such pages took the export's peak memory past 64 MiB on
/// 100,000 routes. Smaller pages cost more requests, not more read units (a page's units are
/// its bytes, rounded up to 4 KB once); much smaller ones slow down emulators that walk the
/// table from its start for every page.
const SCAN_PAGE_ITEMS: i32 = 1000;
/// Records on their way from the scanning segments to the sort.
const SORT_QUEUE: usize = 1024;
/// Batch totals remembered between pages of a segment (a batch's keys usually sit on one
/// page or the next); forgotten past this, to keep memory flat.
const MAX_REMEMBERED_BATCHES: usize = 10_000;

/// What an item of the table is, to an export.
pub(super) enum Item {
    Route(Route),
    /// A key record, with its record id.
    Key(String),
    /// Batch records and import marks: not exported.
    Other,
}

/// Sorts out an item by its partition key. A key with `#` and an unknown prefix is some other
/// kind of record (never a route: no route holds `#`); a key without one must be a route.
pub(super) fn item_kind(name: &str) -> Result<Item, StoreError> {
    if let Some(id) = name.strip_prefix(KEY_RECORD_PREFIX) {
        return Ok(Item::Key(id.to_owned()));
    }
    if name.starts_with(BATCH_RECORD_PREFIX) || name.starts_with(IMPORT_MARK_PREFIX) {
        return Ok(Item::Other);
    }
    match Route::parse(name) {
        Ok(route) if route.as_str() == name => Ok(Item::Route(route)),
        _ if name.contains('#') => Ok(Item::Other),
        _ => Err(StoreError::unavailable(
            "exporting a snapshot",
            SnapshotFault::UnknownItem(name.to_owned()),
        )),
    }
}

/// The key a record id names: `<client> <key>` in a client's scope, the bare key in the shared
/// scope ([`IdempotencyKey::record_id`] the other way round).
pub(super) fn key_of_record_id(id: &str) -> Result<IdempotencyKey, StoreError> {
    let bad = || {
        StoreError::unavailable(
            "exporting a snapshot",
            SnapshotFault::BadRecordId(id.to_owned()),
        )
    };
    match id.split_once(' ') {
        None => IdempotencyKey::parse(id.as_bytes()).map_err(|_| bad()),
        Some((client, key)) => {
            let client = ClientName::parse(client).map_err(|_| bad())?;
            Ok(IdempotencyKey::parse(key.as_bytes())
                .map_err(|_| bad())?
                .scoped(&client))
        }
    }
}

impl DynamoStore {
    /// As [`crate::store::SnapshotStore::export`], sorting `buffer` records at a time in
    /// memory (a smaller buffer spills more, shorter runs to disk; tests make it tiny).
    pub async fn export_sorted_in(
        &self,
        now: u64,
        sink: RecordSink,
        buffer: usize,
    ) -> Result<Consistency, StoreError> {
        let today = Day::of(UNIX_EPOCH + std::time::Duration::from_secs(now));
        let (tx, mut rx) = mpsc::channel::<Record>(SORT_QUEUE);
        let segments =
            (0..SCAN_SEGMENTS).map(|segment| self.scan_segment(segment, now, today, tx.clone()));
        let scan = try_join_all(segments);
        drop(tx);
        let collect = async {
            let mut sort = ExternalSort::new(buffer);
            while let Some(record) = rx.recv().await {
                sort.push(record).await?;
            }
            Ok::<_, StoreError>(sort)
        };
        // Nothing goes to the sink before the whole table was read: a failed scan must not
        // leave a partial file that looks whole.
        let (scanned, sorted) = tokio::join!(scan, collect);
        // A failed sort stops the segments too (their queue closes): its error is the cause.
        let sorted = match (scanned, sorted) {
            (_, Err(err)) | (Err(err), Ok(_)) => return Err(err),
            (Ok(_), Ok(sorted)) => sorted,
        };
        tracing::debug!(table = %self.table(), runs = sorted.runs(), "export scanned");
        sorted.finish(sink).await?;
        Ok(Consistency::PerItem)
    }

    /// Reads one segment of the table, page after page, and hands its records to `tx`.
    async fn scan_segment(
        &self,
        segment: i32,
        now: u64,
        today: Day,
        tx: mpsc::Sender<Record>,
    ) -> Result<(), StoreError> {
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        let mut batch_totals: HashMap<String, u64> = HashMap::new();
        loop {
            let page = self
                .paced(|| {
                    let start = start.clone();
                    async move {
                        self.client
                            .scan()
                            .table_name(self.table())
                            .consistent_read(true)
                            .segment(segment)
                            .total_segments(SCAN_SEGMENTS)
                            .limit(SCAN_PAGE_ITEMS)
                            .set_exclusive_start_key(start)
                            .send()
                            .await
                            .map_err(|err| self.failed("Scan", err))
                    }
                })
                .await?;
            let mut keys = Vec::new();
            for item in page.items.unwrap_or_default() {
                let Some(name) = item.get(KEY_ATTRIBUTE).and_then(|v| v.as_s().ok()) else {
                    continue;
                };
                match item_kind(name)? {
                    Item::Route(route) => {
                        if let Some(record) = self.route_record(route, &item, today)? {
                            send(&tx, Record::Route(record)).await?;
                        }
                    }
                    Item::Key(id) => {
                        let expires_at = self.expires_at(&item, name)?;
                        // Expired keys are gone, whether or not TTL has deleted them yet.
                        if expires_at > now {
                            keys.push((id, expires_at, item));
                        }
                    }
                    Item::Other => {}
                }
            }
            if batch_totals.len() > MAX_REMEMBERED_BATCHES {
                batch_totals.clear();
            }
            self.prefetch_batch_totals(keys.iter().map(|(_, _, item)| item), &mut batch_totals)
                .await?;
            for (id, expires_at, item) in keys {
                let key = key_of_record_id(&id)?;
                let outcome = self.resolve(item, &id, &mut batch_totals).await?;
                let record = KeyRecord {
                    key,
                    route: outcome.route,
                    count: outcome.count,
                    expires_at,
                };
                send(&tx, Record::Key(record)).await?;
            }
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(()),
            }
        }
    }

    /// A route's record, from its item as one read gave it (`None` for an item with no total
    /// yet, which no commit leaves).
    fn route_record(
        &self,
        route: Route,
        item: &HashMap<String, AttributeValue>,
        today: Day,
    ) -> Result<Option<RouteRecord>, StoreError> {
        let Some(total) = item.get(COUNT_ATTRIBUTE) else {
            return Ok(None);
        };
        let total = total.as_n().map_err(|_| {
            StoreError::unavailable(
                format!(
                    "DynamoDB table {} holds a non-number {COUNT_ATTRIBUTE} for route {route}",
                    self.table()
                ),
                Fault::NotANumber,
            )
        })?;
        let total = count_value(total, &format!("route {route}"), self.table())?;
        let (days, months) = kept_periods(today, item, self.table())?;
        Ok(Some(RouteRecord {
            route,
            total,
            days,
            months,
        }))
    }

    fn expires_at(
        &self,
        item: &HashMap<String, AttributeValue>,
        name: &str,
    ) -> Result<u64, StoreError> {
        let value = item
            .get(EXPIRES_AT_ATTRIBUTE)
            .and_then(|v| v.as_n().ok())
            .ok_or_else(|| {
                StoreError::unavailable(
                    format!(
                        "DynamoDB table {} holds a malformed idempotency record {name:?}",
                        self.table()
                    ),
                    Fault::MalformedItem,
                )
            })?;
        count_value(value, name, self.table())
    }
}

async fn send(tx: &mpsc::Sender<Record>, record: Record) -> Result<(), StoreError> {
    // The receiver only goes away when the sort failed, whose error is the one reported.
    tx.send(record)
        .await
        .map_err(|_| StoreError::unavailable("exporting a snapshot", SnapshotFault::SinkClosed))
}
