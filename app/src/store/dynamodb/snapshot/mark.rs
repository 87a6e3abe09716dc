//! The import's mark, and whether the table holds anything an import would collide with.
//!
//! The mark is one item, `import#<snapshot id>`, with `lines_done` (N) and `finished` (BOOL),
//! written after each chunk ([`super::import`]) and read back consistently.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{
    IMPORT_MARK_PREFIX,
    export::{Item, item_kind},
};
use crate::store::{
    ImportMark, StoreError,
    dynamodb::{DynamoStore, EXPIRES_AT_ATTRIBUTE, KEY_ATTRIBUTE, errors::Fault},
};

/// The mark's attributes.
pub const MARK_LINES_ATTRIBUTE: &str = "lines_done";
pub const MARK_FINISHED_ATTRIBUTE: &str = "finished";
/// Items `is_empty` asks for per page.
const EMPTY_CHECK_PAGE: i32 = 25;

impl DynamoStore {
    /// Whether the table holds no route item and no unexpired key record: a consistent scan, a
    /// few keys a page, that stops at the first such item (import marks and batch records do
    /// not count).
    pub(super) async fn holds_nothing(&self) -> Result<bool, StoreError> {
        let now = self.clock.epoch_seconds();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .paced(|| {
                    let start = start.clone();
                    async move {
                        self.client
                            .scan()
                            .table_name(self.table())
                            .consistent_read(true)
                            .limit(EMPTY_CHECK_PAGE)
                            .projection_expression("#key, #expires")
                            .expression_attribute_names("#key", KEY_ATTRIBUTE)
                            .expression_attribute_names("#expires", EXPIRES_AT_ATTRIBUTE)
                            .set_exclusive_start_key(start)
                            .send()
                            .await
                            .map_err(|err| self.failed("Scan", err))
                    }
                })
                .await?;
            for item in page.items() {
                let Some(name) = item.get(KEY_ATTRIBUTE).and_then(|v| v.as_s().ok()) else {
                    continue;
                };
                match item_kind(name) {
                    Ok(Item::Other) => {}
                    Ok(Item::Key(_)) => {
                        let expires_at = item
                            .get(EXPIRES_AT_ATTRIBUTE)
                            .and_then(|v| v.as_n().ok())
                            .and_then(|n| n.parse::<u64>().ok());
                        // A record with no readable expiry is something the store holds.
                        if expires_at.is_none_or(|at| at > now) {
                            return Ok(false);
                        }
                    }
                    // A route, or an item the store does not know: not empty.
                    Ok(Item::Route(_)) | Err(_) => return Ok(false),
                }
            }
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(true),
            }
        }
    }

    pub(super) async fn read_import_mark(
        &self,
        snapshot: &str,
    ) -> Result<Option<ImportMark>, StoreError> {
        let name = format!("{IMPORT_MARK_PREFIX}{snapshot}");
        let Some(item) = self.paced(|| self.read_item(&name)).await? else {
            return Ok(None);
        };
        let lines_done = item
            .get(MARK_LINES_ATTRIBUTE)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok());
        let finished = item
            .get(MARK_FINISHED_ATTRIBUTE)
            .and_then(|v| v.as_bool().ok());
        match (lines_done, finished) {
            (Some(lines_done), Some(&finished)) => Ok(Some(ImportMark {
                snapshot: snapshot.to_owned(),
                lines_done,
                finished,
            })),
            _ => Err(StoreError::unavailable(
                format!(
                    "DynamoDB table {} holds a malformed import mark {name:?}",
                    self.table()
                ),
                Fault::MalformedItem,
            )),
        }
    }
}
