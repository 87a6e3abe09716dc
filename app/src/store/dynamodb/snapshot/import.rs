//! Import: a chunk of a snapshot's records written to the table, then the import's mark.
//!
//! Every write is idempotent on its own, so a run that resumes after a crash may apply a chunk
//! again harmlessly:
//! - routes, into an empty table: `PutItem` of the whole item (`transactions` and the kept
//!   `d…`/`m…` attributes) in `BatchWriteItem`s of 25, the unprocessed ones sent again;
//! - routes, merged: one `UpdateItem` each that `ADD`s the total and every day and month and
//!   sets `imported_<snapshot id>`, on condition that the attribute is not there yet (a route
//!   already merged by an earlier run is skipped) and that the total stays within 64 bits;
//! - key records: one conditional `PutItem` each, written with their count (as finished records
//!   are), unless an unexpired record of the key is there: that one is kept;
//! - the mark: `import#<snapshot id>` with `lines_done` and `finished`.

use std::{collections::HashMap, time::Instant};

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use futures_util::future::try_join_all;

use super::{
    IMPORT_MARK_PREFIX, PACE_INITIAL, PACE_MAX,
    mark::{MARK_FINISHED_ATTRIBUTE, MARK_LINES_ATTRIBUTE},
};
use crate::{
    calendar::Day,
    snapshot::{KeyRecord, Record, RouteRecord},
    store::{
        ImportMark, StoreError,
        dynamodb::{
            COUNT_ATTRIBUTE, DynamoStore, EXPIRES_AT_ATTRIBUTE, KEY_ATTRIBUTE, KEY_COUNT_ATTRIBUTE,
            KEY_RECORD_PREFIX, KEY_ROUTE_ATTRIBUTE,
            errors::Fault,
            periods::{day_attribute, month_attribute},
            records::{invalid, num, text},
            retry::resend_backoff,
        },
    },
};

/// Most write requests in one `BatchWriteItem`.
const BATCH_WRITE_ITEMS: usize = 25;
/// `BatchWriteItem`s, or single writes, of one chunk in flight at once.
const WRITES_IN_FLIGHT: usize = 8;
/// Prefix of the attribute a merge sets on each route it added to, with the snapshot's id.
pub const IMPORTED_PREFIX: &str = "imported_";
/// Reads of a route after a merge's condition failed, before giving up on telling why.
const MERGE_ATTEMPTS: u32 = 4;

impl DynamoStore {
    pub(super) async fn import_records(
        &self,
        records: &[Record],
        mark: &ImportMark,
        merge: bool,
    ) -> Result<(), StoreError> {
        let now = self.clock.epoch_seconds();
        let today = self.clock.today();
        let mut routes = Vec::new();
        let mut keys = Vec::new();
        for record in records {
            match record {
                Record::Route(route) => routes.push(route),
                // An expired key is gone: writing it would change nothing a client sees.
                Record::Key(key) if key.expires_at > now => keys.push(key),
                Record::Key(_) => {}
            }
        }
        // A few writes in flight at a time (windows rather than a stream: the futures borrow
        // the records, and a stream of them is not `Send` for every lifetime).
        if merge {
            for window in routes.chunks(WRITES_IN_FLIGHT) {
                try_join_all(
                    window
                        .iter()
                        .map(|route| self.merge_route(route, &mark.snapshot, today)),
                )
                .await?;
            }
        } else {
            let puts = routes
                .into_iter()
                .map(|route| route_put(route, today))
                .collect::<Result<Vec<_>, _>>()?;
            for window in puts.chunks(BATCH_WRITE_ITEMS * WRITES_IN_FLIGHT) {
                try_join_all(
                    window
                        .chunks(BATCH_WRITE_ITEMS)
                        .map(|batch| self.write_batch(batch.to_vec())),
                )
                .await?;
            }
        }
        for window in keys.chunks(WRITES_IN_FLIGHT) {
            try_join_all(window.iter().map(|key| self.put_key_record(key, now))).await?;
        }
        self.write_mark(mark).await
    }

    /// One `BatchWriteItem`, with the items DynamoDB leaves unprocessed sent again after a
    /// pause, for as long as some of them get through within the pacing patience.
    async fn write_batch(&self, mut pending: Vec<WriteRequest>) -> Result<(), StoreError> {
        let mut progress = Instant::now();
        let mut round = 0u32;
        loop {
            let out = self
                .paced(|| {
                    let items = HashMap::from([(self.table().to_owned(), pending.clone())]);
                    async move {
                        self.transactor
                            .batch_write_item()
                            .set_request_items(Some(items))
                            .send()
                            .await
                            .map_err(|err| self.failed("BatchWriteItem", err))
                    }
                })
                .await?;
            let left = out
                .unprocessed_items
                .and_then(|mut unprocessed| unprocessed.remove(self.table()))
                .unwrap_or_default();
            if left.is_empty() {
                return Ok(());
            }
            if left.len() < pending.len() {
                progress = Instant::now();
                round = 0;
            } else if progress.elapsed() >= self.pace_patience() {
                return Err(StoreError::throttled(
                    format!(
                        "DynamoDB left {} items of an import unprocessed for {:?}",
                        left.len(),
                        self.pace_patience()
                    ),
                    Fault::Unprocessed(left.len()),
                ));
            }
            round += 1;
            tokio::time::sleep(resend_backoff(round, PACE_INITIAL, PACE_MAX)).await;
            pending = left;
        }
    }

    /// Adds a route's counts to its item, once per snapshot.
    async fn merge_route(
        &self,
        record: &RouteRecord,
        snapshot: &str,
        today: Day,
    ) -> Result<(), StoreError> {
        let route = record.route;
        let imported = format!("{IMPORTED_PREFIX}{snapshot}");
        let mut names = vec![
            ("#count".to_owned(), COUNT_ATTRIBUTE.to_owned()),
            ("#imported".to_owned(), imported.clone()),
        ];
        let mut values = vec![
            (":total".to_owned(), num(record.total)),
            (":limit".to_owned(), num(u64::MAX - record.total)),
            (":yes".to_owned(), AttributeValue::Bool(true)),
        ];
        let mut adds = vec!["#count :total".to_owned()];
        for (i, (name, count)) in kept(record, today).into_iter().enumerate() {
            names.push((format!("#p{i}"), name));
            values.push((format!(":p{i}"), num(count)));
            adds.push(format!("#p{i} :p{i}"));
        }
        let expression = format!("ADD {} SET #imported = :yes", adds.join(", "));
        for _ in 0..MERGE_ATTEMPTS {
            let updated = self
                .paced(|| {
                    let request = self
                        .transactor
                        .update_item()
                        .table_name(self.table())
                        .key(KEY_ATTRIBUTE, text(route.as_str()))
                        .update_expression(&expression)
                        // Once per snapshot; and, as a commit's `ADD`, never past u64::MAX.
                        .condition_expression(
                            "attribute_not_exists(#imported) AND \
                             (attribute_not_exists(#count) OR #count <= :limit)",
                        )
                        .set_expression_attribute_names(Some(names.iter().cloned().collect()))
                        .set_expression_attribute_values(Some(values.iter().cloned().collect()));
                    async move {
                        match request.send().await {
                            Ok(_) => Ok(true),
                            Err(err)
                                if err
                                    .as_service_error()
                                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                            {
                                Ok(false)
                            }
                            Err(err) => Err(self.failed("UpdateItem", err)),
                        }
                    }
                })
                .await?;
            if updated {
                return Ok(());
            }
            // Which half of the condition failed: the item tells.
            let item = self
                .paced(|| self.read_item(route.as_str()))
                .await?
                .unwrap_or_default();
            if item.contains_key(&imported) {
                // Merged by an earlier run of this import.
                return Ok(());
            }
            let total = item
                .get(COUNT_ATTRIBUTE)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok());
            if total.is_some_and(|total| total.checked_add(record.total).is_none()) {
                return Err(StoreError::Overflow(route));
            }
            // The count changed between the two calls: try again.
        }
        Err(StoreError::Overflow(route))
    }

    /// Writes a key record unless an unexpired record of the key is there.
    async fn put_key_record(&self, record: &KeyRecord, now: u64) -> Result<(), StoreError> {
        let name = format!("{KEY_RECORD_PREFIX}{}", record.key.record_id());
        self.paced(|| {
            let request = self
                .transactor
                .put_item()
                .table_name(self.table())
                .item(KEY_ATTRIBUTE, text(name.as_str()))
                .item(KEY_ROUTE_ATTRIBUTE, text(record.route.as_str()))
                .item(KEY_COUNT_ATTRIBUTE, num(record.count))
                .item(EXPIRES_AT_ATTRIBUTE, num(record.expires_at))
                // As a keyed commit's own record: an unexpired one is the key's outcome.
                .condition_expression("attribute_not_exists(#key) OR #expires <= :now")
                .expression_attribute_names("#key", KEY_ATTRIBUTE)
                .expression_attribute_names("#expires", EXPIRES_AT_ATTRIBUTE)
                .expression_attribute_values(":now", num(now));
            async move {
                match request.send().await {
                    Ok(_) => Ok(()),
                    Err(err)
                        if err
                            .as_service_error()
                            .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                    {
                        Ok(())
                    }
                    Err(err) => Err(self.failed("PutItem", err)),
                }
            }
        })
        .await
    }

    async fn write_mark(&self, mark: &ImportMark) -> Result<(), StoreError> {
        let name = format!("{IMPORT_MARK_PREFIX}{}", mark.snapshot);
        self.paced(|| {
            let request = self
                .transactor
                .update_item()
                .table_name(self.table())
                .key(KEY_ATTRIBUTE, text(name.as_str()))
                .update_expression("SET #lines = :lines, #finished = :finished")
                .expression_attribute_names("#lines", MARK_LINES_ATTRIBUTE)
                .expression_attribute_names("#finished", MARK_FINISHED_ATTRIBUTE)
                .expression_attribute_values(":lines", num(mark.lines_done))
                .expression_attribute_values(":finished", AttributeValue::Bool(mark.finished));
            async move {
                request
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|err| self.failed("UpdateItem", err))
            }
        })
        .await
    }
}

/// A route's days and months the window of `today` keeps, by attribute name, without zeros
/// (no write ever leaves a zero).
fn kept(record: &RouteRecord, today: Day) -> Vec<(String, u64)> {
    let first_day = today.window_start();
    let first_month = today.month().window_start();
    let days = record
        .days
        .iter()
        .filter(|(day, n)| *day >= first_day && *n > 0)
        .map(|(day, n)| (day_attribute(*day), *n));
    let months = record
        .months
        .iter()
        .filter(|(month, n)| *month >= first_month && *n > 0)
        .map(|(month, n)| (month_attribute(*month), *n));
    days.chain(months).collect()
}

/// A route's whole item, as a `BatchWriteItem` put.
fn route_put(record: &RouteRecord, today: Day) -> Result<WriteRequest, StoreError> {
    let mut item = HashMap::from([
        (KEY_ATTRIBUTE.to_owned(), text(record.route.as_str())),
        (COUNT_ATTRIBUTE.to_owned(), num(record.total)),
    ]);
    for (name, count) in kept(record, today) {
        item.insert(name, num(count));
    }
    let put = PutRequest::builder()
        .set_item(Some(item))
        .build()
        .map_err(invalid)?;
    Ok(WriteRequest::builder().put_request(put).build())
}
