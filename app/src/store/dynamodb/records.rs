//! Idempotency key records, and the outcome of a key recorded before.
//!
//! A key record `idem#<key>` holds the route, and either the count itself (records written by
//! earlier versions, one transaction per key) or the batch it was committed in and its place
//! from the batch's end (`back`): its count is the batch's total minus `back`.

use std::collections::HashMap;

use aws_sdk_dynamodb::{error::BuildError, types::AttributeValue};

use super::errors::Fault;
use super::{
    DynamoStore, KEY_ATTRIBUTE, KEY_COUNT_ATTRIBUTE, KEY_RECORD_PREFIX, KEY_ROUTE_ATTRIBUTE,
};
use crate::{idempotency::KeyedOutcome, route::Route, store::StoreError};

/// A key record's batch id and its place from the end of that batch.
pub const KEY_BATCH_ATTRIBUTE: &str = "batch";
pub const KEY_BACK_ATTRIBUTE: &str = "back";

/// A request the SDK refused to build: a bug here, reported as the store being unavailable.
pub(super) fn invalid(err: BuildError) -> StoreError {
    StoreError::unavailable("building a DynamoDB request", err)
}

pub(super) fn num(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn text(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// The batch a key record names, if it names one.
pub(super) fn record_batch(item: &HashMap<String, AttributeValue>) -> Option<&str> {
    item.get(KEY_BATCH_ATTRIBUTE)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
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
    /// The outcome of a key recorded before, from the record handed back (or read, where the
    /// server hands back none).
    pub(super) async fn resolve(
        &self,
        item: HashMap<String, AttributeValue>,
        record_id: &str,
        batch_totals: &mut HashMap<String, u64>,
    ) -> Result<KeyedOutcome, StoreError> {
        let name = format!("{KEY_RECORD_PREFIX}{record_id}");
        let item = self.key_record_item(item, record_id).await?;
        match self.key_record(&item, &name)? {
            KeyRecord::Done { route, count } => Ok(KeyedOutcome::replay(route, count)),
            KeyRecord::InBatch { route, batch, back } => {
                let total = match batch_totals.get(&batch) {
                    Some(total) => *total,
                    None => {
                        let total = self.batch_total(route, &batch).await?;
                        batch_totals.insert(batch.clone(), total);
                        total
                    }
                };
                let count = total.checked_sub(back).ok_or_else(|| {
                    StoreError::unavailable(
                        format!("batch {batch} holds a total below {back}"),
                        Fault::TotalTooLow {
                            total,
                            at_least: back,
                        },
                    )
                })?;
                Ok(KeyedOutcome::replay(route, count))
            }
        }
    }

    /// Reads, ahead of [`DynamoStore::resolve`], the totals of the batches that these key
    /// records name and `batch_totals` does not hold yet: one read of each route's item, and
    /// the batch records of totals moved off it, at once. (A record that cannot be read is left
    /// for `resolve` to report.)
    pub(super) async fn prefetch_batch_totals<'a>(
        &self,
        records: impl Iterator<Item = &'a HashMap<String, AttributeValue>>,
        batch_totals: &mut HashMap<String, u64>,
    ) -> Result<(), StoreError> {
        let mut wanted: HashMap<Route, Vec<String>> = HashMap::new();
        for item in records {
            if let Ok(KeyRecord::InBatch { route, batch, .. }) = self.key_record(item, "")
                && !batch_totals.contains_key(&batch)
            {
                let batches = wanted.entry(route).or_default();
                if !batches.contains(&batch) {
                    batches.push(batch);
                }
            }
        }
        for (route, batches) in wanted {
            batch_totals.extend(self.batch_totals(route, &batches).await?);
        }
        Ok(())
    }

    /// A key record as a cancelled transaction handed it back, or read now where the server
    /// handed back none.
    pub(super) async fn key_record_item(
        &self,
        item: HashMap<String, AttributeValue>,
        record_id: &str,
    ) -> Result<HashMap<String, AttributeValue>, StoreError> {
        if !item.is_empty() {
            return Ok(item);
        }
        let name = format!("{KEY_RECORD_PREFIX}{record_id}");
        self.read_item(&name).await?.ok_or_else(|| {
            StoreError::unavailable(
                format!("the idempotency record {name:?} was there and then gone"),
                Fault::MissingItem,
            )
        })
    }

    fn key_record(
        &self,
        item: &HashMap<String, AttributeValue>,
        name: &str,
    ) -> Result<KeyRecord, StoreError> {
        let malformed = || {
            StoreError::unavailable(
                format!(
                    "DynamoDB table {} holds a malformed idempotency record {name:?}",
                    self.table()
                ),
                Fault::MalformedItem,
            )
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

    pub(super) async fn read_item(
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
}
