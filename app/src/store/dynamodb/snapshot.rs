//! Snapshots of the dynamodb store: export and import (see [`crate::store::SnapshotStore`]).

use super::DynamoStore;
use crate::store::SnapshotStore;

#[async_trait::async_trait]
impl SnapshotStore for DynamoStore {}
