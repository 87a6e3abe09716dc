//! The default store: a redb file on local disk. Each batch is one write transaction, made
//! durable (fsync) before it returns, so a batch of any size costs one commit.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{CommitMode, Increment, Store, StoreError};
use crate::route::Route;

/// Canonical route → number of transactions.
const COUNTS: TableDefinition<&str, u64> = TableDefinition::new("transactions");

/// The file the store lives in, inside the configured data directory.
pub const DATABASE_FILE: &str = "flight-counter.redb";

pub struct EmbeddedStore {
    db: Arc<Database>,
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens (or creates) the database in `data_dir`. Fails if another process has it open.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;

        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        let path = data_dir.join(DATABASE_FILE);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => anyhow::anyhow!(
                "database {} is already open in another process",
                path.display()
            ),
            other => anyhow::anyhow!("cannot open database {}: {other}", path.display()),
        })?;
        // Create the table up front so that reads never meet a missing table.
        let txn = db.begin_write()?;
        txn.open_table(COUNTS)?;
        txn.commit()?;
        Ok(Self {
            db: Arc::new(db),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

fn commit_batch(db: &Database, batch: &[Increment]) -> Result<Vec<u64>, StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    let mut totals = Vec::with_capacity(batch.len());
    {
        let mut table = txn.open_table(COUNTS).map_err(unavailable)?;
        for inc in batch {
            let key = inc.route.as_str();
            let current = table.get(key).map_err(unavailable)?.map(|v| v.value());
            let total = current
                .unwrap_or(0)
                .checked_add(inc.delta)
                .ok_or(StoreError::Overflow(inc.route))?;
            table.insert(key, total).map_err(unavailable)?;
            totals.push(total);
        }
    }
    // Returning early above drops the transaction, which aborts it: nothing half-applied.
    txn.commit().map_err(unavailable)?;
    Ok(totals)
}

fn read_count(db: &Database, route: Route) -> Result<u64, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(COUNTS).map_err(unavailable)?;
    let count = table.get(route.as_str()).map_err(unavailable)?;
    Ok(count.map(|v| v.value()).unwrap_or(0))
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn commit_mode(&self) -> CommitMode {
        CommitMode::WholeBatch
    }

    async fn apply(&self, batch: &[Increment]) -> Result<Vec<u64>, StoreError> {
        let db = Arc::clone(&self.db);
        let batch = batch.to_vec();
        // The commit blocks on fsync: keep it off the async workers.
        tokio::task::spawn_blocking(move || commit_batch(&db, &batch))
            .await
            .map_err(unavailable)?
    }

    async fn get(&self, route: Route) -> Result<u64, StoreError> {
        // A read transaction is a snapshot lookup in the page cache: cheap enough to run inline.
        read_count(&self.db, route)
    }

    async fn check_ready(&self) -> Result<(), StoreError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(unavailable)?;
            txn.open_table(COUNTS).map_err(unavailable)?;
            Ok(())
        })
        .await
        .map_err(unavailable)?
    }
}
