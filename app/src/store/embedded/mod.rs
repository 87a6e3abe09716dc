//! The default store: a redb file on local disk. Each batch is one write transaction, made
//! durable (fsync) before it returns, so a batch of any size costs one commit.
//!
//! Idempotency keys live in the same file, in the table `idempotency_keys` (key → route, count,
//! expiry), written in the same write transaction as the counts of their batch, plus an index by
//! expiry (`idempotency_expiry`) from which a periodic sweep deletes expired keys in bounded
//! chunks. [`tables`] holds the transactions; [`file`] opens the file, and opens it again after
//! a failed write (a full disk), so that the store recovers without a restart.

mod file;
mod tables;

use std::{path::Path, sync::Arc};

use redb::{ReadableDatabase, ReadableTableMetadata};

use super::{BatchStore, RouteOutcome, RouteWrite, StoreBase, StoreError};
use crate::{
    calendar::{Day, Month},
    route::Route,
};
use file::DatabaseFile;
use tables::{
    EXPIRY, KEYS, Periods, ROUTES, commit_batch, forget_old_periods, read_count, read_range, sweep,
    unavailable,
};

/// The file the store lives in, inside the configured data directory.
pub const DATABASE_FILE: &str = "flight-counter.redb";
/// The page cache when none is configured: what suits a pod with a 256 MiB memory limit.
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

pub struct EmbeddedStore {
    file: Arc<DatabaseFile>,
}

impl EmbeddedStore {
    /// Opens (or creates) the database in `data_dir`, with the default page cache. Fails if
    /// another process has it open.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        Self::open_with_cache(data_dir, DEFAULT_CACHE_BYTES)
    }

    /// As [`EmbeddedStore::open`], with a page cache of `cache_bytes`.
    pub fn open_with_cache(data_dir: &Path, cache_bytes: usize) -> anyhow::Result<Self> {
        use anyhow::Context as _;

        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let file = DatabaseFile::open(data_dir.join(DATABASE_FILE), cache_bytes)?;
        Ok(Self {
            file: Arc::new(file),
        })
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// How many idempotency key records are stored, expired or not.
    pub fn key_records(&self) -> anyhow::Result<u64> {
        let db = self.file.get()?;
        let txn = db.begin_read()?;
        let keys = txn.open_table(KEYS)?.len()?;
        let index = txn.open_table(EXPIRY)?.len()?;
        anyhow::ensure!(
            keys == index,
            "{keys} key records but {index} expiry index entries"
        );
        Ok(keys)
    }

    /// Runs a blocking write on the database off the async workers; a write that fails marks
    /// the file broken, to be opened again.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&redb::Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        if self.file.is_broken() {
            return Err(StoreError::Unavailable(
                "the database failed a write and is not open again yet".into(),
            ));
        }
        let db = self.file.get()?;
        let result = tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(unavailable)?;
        if let Err(err @ StoreError::Unavailable(_)) = &result {
            self.file.mark_broken(err);
        }
        result
    }
}

#[async_trait::async_trait]
impl StoreBase for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn housekeeping(&self, now: u64, today: Day, limit: usize) -> Result<usize, StoreError> {
        self.write(move |db| {
            let keys = sweep(db, now, limit)?;
            Ok(keys + forget_old_periods(db, today, limit.saturating_sub(keys))?)
        })
        .await
    }

    async fn get(&self, route: Route) -> Result<u64, StoreError> {
        // A read transaction is a snapshot lookup in the page cache: cheap enough to run inline.
        read_count(&*self.file.get()?, route)
    }

    async fn get_many(&self, routes: &[Route]) -> Result<Vec<u64>, StoreError> {
        let db = self.file.get()?;
        let txn = db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(ROUTES).map_err(unavailable)?;
        routes
            .iter()
            .map(|route| {
                Ok(table
                    .get(route.as_str())
                    .map_err(unavailable)?
                    .map_or(0, |row| row.value().0))
            })
            .collect()
    }

    async fn daily(&self, route: Route, from: Day, to: Day) -> Result<Vec<u64>, StoreError> {
        read_range(
            &*self.file.get()?,
            Periods::Days,
            route,
            from.number(),
            to.number(),
        )
    }

    async fn monthly(&self, route: Route, from: Month, to: Month) -> Result<Vec<u64>, StoreError> {
        read_range(
            &*self.file.get()?,
            Periods::Months,
            route,
            from.number(),
            to.number(),
        )
    }

    /// Whether a commit goes through now: a small durable write, or, after a failed write,
    /// opening the database again and then that write.
    async fn check_ready(&self) -> Result<(), StoreError> {
        let file = Arc::clone(&self.file);
        tokio::task::spawn_blocking(move || {
            if file.is_broken() {
                return file.recover();
            }
            let probed = file.probe();
            if let Err(err) = &probed {
                file.mark_broken(err);
            }
            probed
        })
        .await
        .map_err(unavailable)?
    }
}

#[async_trait::async_trait]
impl BatchStore for EmbeddedStore {
    async fn commit(&self, batch: &[RouteWrite]) -> Result<Vec<RouteOutcome>, StoreError> {
        let batch = batch.to_vec();
        // The commit blocks on fsync: keep it off the async workers.
        self.write(move |db| commit_batch(db, &batch)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file written by the layout before `routes` (route → total in `transactions`) opens
    /// with its totals, which then count on as before.
    #[tokio::test]
    async fn totals_of_the_earlier_layout_are_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        {
            let db = redb::Database::create(dir.path().join(DATABASE_FILE)).expect("create");
            let txn = db.begin_write().expect("write");
            {
                let mut totals = txn
                    .open_table(redb::TableDefinition::<&str, u64>::new("transactions"))
                    .expect("table");
                totals.insert("AR1133", 41).expect("insert");
            }
            txn.commit().expect("commit");
        }
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let route = Route::parse("AR1133").expect("route");
        assert_eq!(store.get(route).await.expect("read"), 41);
        let today = Day::parse("2026-11-21").expect("day");
        let outcomes = store
            .commit(&[RouteWrite::keyless(route, 1, today)])
            .await
            .expect("commit");
        assert_eq!(outcomes[0].keyless_total, 42);
        assert_eq!(
            store.daily(route, today, today).await.expect("daily"),
            vec![1]
        );
    }

    /// A route's day moves to history when its first commit of the next day comes, and reads
    /// see both.
    #[tokio::test]
    async fn days_move_to_history_and_reads_see_them_all() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let route = Route::parse("LA1").expect("route");
        let day = |s: &str| Day::parse(s).expect("day");
        for (when, n) in [("2026-11-29", 3), ("2026-11-30", 2), ("2026-12-01", 5)] {
            store
                .commit(&[RouteWrite::keyless(route, n, day(when))])
                .await
                .expect("commit");
        }
        // A clock set back counts in history, leaving the row's day alone.
        store
            .commit(&[RouteWrite::keyless(route, 1, day("2026-11-29"))])
            .await
            .expect("commit");
        assert_eq!(
            store
                .daily(route, day("2026-11-28"), day("2026-12-02"))
                .await
                .expect("daily"),
            vec![0, 4, 2, 5, 0]
        );
        assert_eq!(
            store
                .monthly(route, day("2026-11-01").month(), day("2026-12-01").month())
                .await
                .expect("monthly"),
            vec![6, 5]
        );
        assert_eq!(store.get(route).await.expect("total"), 11);
    }
}
