//! Snapshots of the memory store, through the rules shared with the embedded store
//! (`store::local::snapshot`).
//!
//! An export builds every record under the store's lock, then sends them with the lock
//! released: it is one point in time (every commit acknowledged before it, none after), at the
//! cost of holding commits while the records are built and of a copy of the store's contents
//! in memory until they are sent. The memory store is for tests and throwaway runs, where that
//! is cheap; sending under the lock instead would hold commits for as long as the reader takes.
//!
//! An import chunk is applied to an overlay and written to the maps, with its mark, only once
//! it all fits: under one lock, so it is in whole or not at all.

use super::{MemoryStore, State};
use crate::{
    route::Route,
    snapshot::Record,
    store::{
        Consistency, ImportMark, RecordSink, SnapshotStore, StoreError,
        local::{
            memtable::Overlay,
            snapshot::{Listing, apply_chunk, export, is_empty},
        },
    },
};

/// The first `limit` names after `after` of an unordered map's, ascending.
fn sorted_after<'a>(
    names: impl Iterator<Item = &'a str>,
    after: Option<&str>,
    limit: usize,
) -> Vec<String> {
    let mut names: Vec<&str> = names
        .filter(|name| after.is_none_or(|after| *name > after))
        .collect();
    names.sort_unstable();
    names.into_iter().take(limit).map(str::to_owned).collect()
}

impl Listing for State {
    fn routes_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(sorted_after(
            self.routes.keys().map(Route::as_str),
            after,
            limit,
        ))
    }

    fn keys_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        Ok(sorted_after(self.keys.keys().map(|id| &**id), after, limit))
    }
}

#[async_trait::async_trait]
impl SnapshotStore for MemoryStore {
    async fn export(&self, now: u64, sink: RecordSink) -> Result<Consistency, StoreError> {
        let mut records = Vec::new();
        // One chunk of everything: the maps are unordered, so each chunk would sort them all.
        export(&*self.lock(), now, usize::MAX, &mut |record| {
            records.push(record);
            true
        })?;
        for record in records {
            if sink.send(record).await.is_err() {
                break;
            }
        }
        Ok(Consistency::PointInTime)
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        is_empty(&*self.lock())
    }

    async fn import_mark(&self, snapshot: &str) -> Result<Option<ImportMark>, StoreError> {
        Ok(self.lock().imports.get(snapshot).cloned())
    }

    async fn import_chunk(
        &self,
        records: &[Record],
        mark: &ImportMark,
        merge: bool,
    ) -> Result<(), StoreError> {
        let now = self.clock.epoch_seconds();
        let mut state = self.lock();
        let writes = {
            let mut overlay = Overlay::new(&*state);
            apply_chunk(&mut overlay, records, merge, now)?;
            overlay.writes
        };
        writes.flush_into(&mut *state)?;
        state
            .imports
            .insert(mark.snapshot.as_str().into(), mark.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests;
