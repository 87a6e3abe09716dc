//! The ledger's tuning.

use std::time::Duration;

/// Tuning of the ledger; validated by the configuration layer.
#[derive(Debug, Clone)]
pub struct LedgerSettings {
    /// Coalesce concurrent POSTs into shared commits. When off, every POST is its own commit.
    pub group_commit: bool,
    /// Most transactions in one commit (per batch, and per route in a per-item store).
    pub max_batch: usize,
    /// Most transactions waiting for a commit; beyond it new POSTs wait to be queued.
    pub max_pending: usize,
    /// How long a caller waits for its transaction to be committed before it gets `503`.
    pub commit_timeout: Duration,
    /// How long an idempotency key is honoured after its first POST.
    pub idempotency_retention: Duration,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            group_commit: true,
            max_batch: 4096,
            max_pending: 65_536,
            commit_timeout: Duration::from_secs(5),
            idempotency_retention: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl LedgerSettings {
    /// Most transactions one commit may carry.
    pub(super) fn commit_room(&self) -> usize {
        if self.group_commit {
            self.max_batch.max(1)
        } else {
            1
        }
    }
}
