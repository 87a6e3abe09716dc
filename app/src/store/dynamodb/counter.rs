//! Keyless commits and reads: one `UpdateItem ... ADD` per commit, one consistent `GetItem` per
//! read.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{
    COUNT_ATTRIBUTE, DynamoStore, KEY_ATTRIBUTE, count_value, errors::is_contention,
    retry::contention_backoff,
};
use crate::{route::Route, store::StoreError};

/// Most attempts of an `ADD` that meets a transaction holding the same item.
const CONTENTION_ATTEMPTS: u32 = 8;

impl DynamoStore {
    /// Adds `delta` to the route's count, atomically, and returns the new total.
    pub(super) async fn add(&self, route: Route, delta: u64) -> Result<u64, StoreError> {
        let mut attempt = 1;
        let out = loop {
            let updated = self
                .adder
                .update_item()
                .table_name(self.table())
                .key(KEY_ATTRIBUTE, AttributeValue::S(route.as_str().to_owned()))
                .update_expression("ADD #count :delta")
                // DynamoDB numbers go far beyond 64 bits: refuse, atomically, to pass u64::MAX.
                .condition_expression("attribute_not_exists(#count) OR #count <= :limit")
                .expression_attribute_names("#count", COUNT_ATTRIBUTE)
                .expression_attribute_values(":delta", AttributeValue::N(delta.to_string()))
                .expression_attribute_values(
                    ":limit",
                    AttributeValue::N((u64::MAX - delta).to_string()),
                )
                .return_values(ReturnValue::UpdatedNew)
                .send()
                .await;
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
        // Only the attribute asked for: some servers return the key in UPDATED_NEW as well.
        let total = out
            .attributes()
            .and_then(|item| item.get(COUNT_ATTRIBUTE))
            .and_then(|value| value.as_n().ok())
            .ok_or_else(|| {
                StoreError::Unavailable(format!(
                    "DynamoDB returned no {COUNT_ATTRIBUTE} for route {route} after UpdateItem"
                ))
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
                Err(_) => Err(StoreError::Unavailable(format!(
                    "DynamoDB table {} holds a non-number {COUNT_ATTRIBUTE} for route {route}",
                    self.table()
                ))),
            },
        }
    }
}
