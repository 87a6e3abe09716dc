//! Snapshots of the embedded store: export and import (see [`crate::store::SnapshotStore`]).

use super::EmbeddedStore;
use crate::store::SnapshotStore;

#[async_trait::async_trait]
impl SnapshotStore for EmbeddedStore {}
