//! Keyless commits and reads: one `UpdateItem ... ADD` per commit (the total, the day and the
//! month together), one consistent `GetItem` per read, one `BatchGetItem` per read of many
//! routes.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue};
use rustc_hash::FxHashMap;

use super::errors::Fault;
use super::{
    COUNT_ATTRIBUTE, DynamoStore, KEY_ATTRIBUTE, count_value,
    errors::is_contention,
    periods::{day_attribute, month_attribute},
    retry::{contention_backoff, count_timed_out},
};
use crate::{calendar::Day, route::Route, store::StoreError};

/// Most attempts of an `ADD` that meets a transaction holding the same item.
const CONTENTION_ATTEMPTS: u32 = 8;

impl DynamoStore {
    /// Adds `delta` to the route's count and to its count on `day` and in that day's month,
    /// atomically, and returns the new total.
    pub(super) async fn add(&self, route: Route, delta: u64, day: Day) -> Result<u64, StoreError> {
        let upkeep = self.window.upkeep(route, day);
        let removals = upkeep.removals;
        let mut expression = "ADD #count :delta, #day :delta, #month :delta".to_owned();
        if !removals.is_empty() {
            let names: Vec<String> = (0..removals.len()).map(|i| format!("#old{i}")).collect();
            expression.push_str(" REMOVE ");
            expression.push_str(&names.join(", "));
        }
        let mut attempt = 1;
        let out = loop {
            let mut update = self
                .adder
                .update_item()
                .table_name(self.table())
                .key(KEY_ATTRIBUTE, AttributeValue::S(route.as_str().to_owned()))
                .update_expression(&expression)
                .expression_attribute_names("#day", day_attribute(day))
                .expression_attribute_names("#month", month_attribute(day.month()));
            for (i, name) in removals.iter().enumerate() {
                update = update.expression_attribute_names(format!("#old{i}"), name);
            }
            let updated = update
                // DynamoDB numbers go far beyond 64 bits: refuse, atomically, to pass u64::MAX.
                .condition_expression("attribute_not_exists(#count) OR #count <= :limit")
                .expression_attribute_names("#count", COUNT_ATTRIBUTE)
                .expression_attribute_values(":delta", AttributeValue::N(delta.to_string()))
                .expression_attribute_values(
                    ":limit",
                    AttributeValue::N((u64::MAX - delta).to_string()),
                )
                // A sweeping write gets the whole item back (no read unit is charged for
                // it): the store sees the periods that fell out of the window and removes
                // them next time. Any other write needs only the new total.
                .return_values(if upkeep.sweeps {
                    ReturnValue::AllNew
                } else {
                    ReturnValue::UpdatedNew
                })
                .send()
                .await;
            count_timed_out("UpdateItem", &updated);
            match updated {
                Ok(out) => break out,
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    return Err(StoreError::Overflow(route));
                }
                // A keyed commit of another instance held the item: nothing was applied.
                Err(err) if is_contention(&err) && attempt < CONTENTION_ATTEMPTS => {
                    tokio::time::sleep(contention_backoff(attempt)).await;
                    attempt += 1;
                }
                Err(err) => return Err(self.failed("UpdateItem", err)),
            }
        };
        if upkeep.sweeps {
            self.window.swept(route, day, out.attributes());
        }
        let total = out
            .attributes()
            .and_then(|item| item.get(COUNT_ATTRIBUTE))
            .and_then(|value| value.as_n().ok())
            .ok_or_else(|| {
                StoreError::unavailable(
                    format!(
                        "DynamoDB returned no {COUNT_ATTRIBUTE} for route {route} after UpdateItem"
                    ),
                    Fault::MissingAttribute(COUNT_ATTRIBUTE),
                )
            })?;
        count_value(total, &format!("route {route}"), self.table())
    }

    /// The route's count, read consistently (0 for a route never seen).
    pub(super) async fn read_count(&self, route: Route) -> Result<u64, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table())
            .key(KEY_ATTRIBUTE, AttributeValue::S(route.as_str().to_owned()))
            .consistent_read(true)
            .projection_expression("#count")
            .expression_attribute_names("#count", COUNT_ATTRIBUTE)
            .send()
            .await
            .map_err(|err| self.failed("GetItem", err))?;
        match out.item().and_then(|item| item.get(COUNT_ATTRIBUTE)) {
            None => Ok(0),
            Some(value) => match value.as_n() {
                Ok(n) => count_value(n, &format!("route {route}"), self.table()),
                Err(_) => Err(StoreError::unavailable(
                    format!(
                        "DynamoDB table {} holds a non-number {COUNT_ATTRIBUTE} for route {route}",
                        self.table()
                    ),
                    Fault::NotANumber,
                )),
            },
        }
    }
}

/// Most keys in one `BatchGetItem`.
const MAX_BATCH_GET: usize = 100;
/// Most rounds of a `BatchGetItem` that DynamoDB answers in part (throttled keys come back as
/// unprocessed).
const BATCH_GET_ROUNDS: u32 = 8;

impl DynamoStore {
    /// The counts of distinct routes, in order, read consistently: one `BatchGetItem` per 100
    /// routes, with the keys DynamoDB leaves unprocessed asked for again after a pause.
    pub(super) async fn read_counts(&self, routes: &[Route]) -> Result<Vec<u64>, StoreError> {
        let mut counts: FxHashMap<Route, u64> = FxHashMap::default();
        for chunk in routes.chunks(MAX_BATCH_GET) {
            let mut keys: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|route| {
                    HashMap::from([(
                        KEY_ATTRIBUTE.to_owned(),
                        AttributeValue::S(route.as_str().to_owned()),
                    )])
                })
                .collect();
            let mut round = 1;
            while !keys.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .projection_expression("#key, #count")
                    .expression_attribute_names("#key", KEY_ATTRIBUTE)
                    .expression_attribute_names("#count", COUNT_ATTRIBUTE)
                    .build()
                    .map_err(|e| StoreError::unavailable("building a BatchGetItem request", e))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(self.table(), request)
                    .send()
                    .await
                    .map_err(|err| self.failed("BatchGetItem", err))?;
                for item in out
                    .responses()
                    .and_then(|r| r.get(self.table()))
                    .into_iter()
                    .flatten()
                {
                    let route = item
                        .get(KEY_ATTRIBUTE)
                        .and_then(|v| v.as_s().ok())
                        .and_then(|s| Route::parse(s).ok());
                    let count = item.get(COUNT_ATTRIBUTE).and_then(|v| v.as_n().ok());
                    if let (Some(route), Some(count)) = (route, count) {
                        counts.insert(route, count_value(count, route.as_str(), self.table())?);
                    }
                }
                keys = out
                    .unprocessed_keys()
                    .and_then(|u| u.get(self.table()))
                    .map(|k| k.keys().to_vec())
                    .unwrap_or_default();
                if !keys.is_empty() {
                    if round >= BATCH_GET_ROUNDS {
                        return Err(StoreError::unavailable(
                            format!(
                                "DynamoDB left {} routes unread after {round} BatchGetItem rounds",
                                keys.len()
                            ),
                            Fault::Unprocessed(keys.len()),
                        ));
                    }
                    tokio::time::sleep(contention_backoff(round)).await;
                    round += 1;
                }
            }
        }
        Ok(routes
            .iter()
            .map(|r| counts.get(r).copied().unwrap_or(0))
            .collect())
    }
}
