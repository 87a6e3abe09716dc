//! Running one commit: the one place for its deadline, its metrics, the store's health, and
//! handing the result back to every caller in it.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use super::{LedgerError, StoreHealth, queue::Taken};
use crate::telemetry::logging::error_chain;
use crate::{
    clock::SharedClock,
    store::{BatchStore, ItemStore, RouteOutcome, StoreError},
    telemetry::metrics::{self as m, CommitOutcome},
};

/// What a commit needs besides its transactions.
#[derive(Clone)]
pub(super) struct CommitContext {
    pub timeout: Duration,
    pub health: Arc<StoreHealth>,
    pub kind: &'static str,
    /// Says which day a commit happens on: the day its transactions count on.
    pub clock: SharedClock,
}

/// Commits a whole batch in one store transaction and answers every caller in it.
///
/// A route whose count would overflow fails alone: the store applied nothing, so the batch is
/// committed again without it. One route pushed to its limit (which only tampering with the
/// store can do) must not fail the other routes' POSTs, nor count against the store's health.
pub(super) async fn commit_batch(
    store: &Arc<dyn BatchStore>,
    mut batch: Vec<Taken>,
    cx: &CommitContext,
) {
    let day = cx.clock.today();
    let started = Instant::now();
    let deadline = started + cx.timeout;
    let mut overflowed = Vec::new();
    let result = loop {
        let writes: Vec<_> = batch.iter().map(|taken| taken.write(day)).collect();
        match tokio::time::timeout_at(deadline, store.commit(&writes)).await {
            Ok(Ok(outcomes)) if outcomes.len() == batch.len() => break Ok(outcomes),
            Ok(Ok(outcomes)) => {
                break Err(LedgerError::wrong_outcomes(batch.len(), outcomes.len()));
            }
            Ok(Err(StoreError::Overflow(route))) if batch.len() > 1 => {
                match batch.iter().position(|taken| taken.route == route) {
                    Some(at) => overflowed.push(batch.swap_remove(at)),
                    None => break Err(LedgerError::Full(route)),
                }
            }
            Ok(Err(err)) => break Err(err.into()),
            Err(_) => break Err(LedgerError::timed_out(cx.timeout)),
        }
    };
    for taken in overflowed {
        let err = LedgerError::Full(taken.route);
        tracing::error!(store = cx.kind, route = %taken.route, error = %error_chain(&err), "commit refused");
        m::commit_finished(started.elapsed(), taken.len() as u64, CommitOutcome::Failed);
        taken.fail(&err);
    }
    let transactions: usize = batch.iter().map(Taken::len).sum();
    match result {
        Ok(outcomes) => {
            let recorded = batch
                .into_iter()
                .zip(outcomes)
                .map(|(taken, outcome)| taken.answer(outcome))
                .sum();
            finished(cx, started, transactions, CommitOutcome::Ok { recorded });
        }
        Err(err) => {
            tracing::error!(store = cx.kind, error = %error_chain(&err), transactions, "commit failed");
            failed(cx, started, transactions, &err);
            for taken in batch {
                taken.fail(&err);
            }
        }
    }
}

/// How a per-item commit ended, for the dispatcher.
pub(super) struct ItemDone {
    pub started: Instant,
    /// The store refused the commit for its rate and applied nothing: these transactions go
    /// back in the queue.
    pub throttled: Option<Taken>,
}

/// Commits one route's transactions and answers the callers, unless the store throttled it.
pub(super) async fn commit_item(
    store: Arc<dyn ItemStore>,
    taken: Taken,
    cx: CommitContext,
) -> ItemDone {
    let write = taken.write(cx.clock.today());
    let started = Instant::now();
    let transactions = taken.len();
    let result = match tokio::time::timeout(cx.timeout, store.commit(&write)).await {
        Ok(Ok(outcome)) if outcome.keyed.len() == write.keyed.len() => Ok(outcome),
        Ok(Ok(outcome)) => Err(LedgerError::wrong_outcomes(
            write.keyed.len(),
            outcome.keyed.len(),
        )),
        Ok(Err(err @ StoreError::Throttled { .. })) => {
            tracing::debug!(route = %taken.route, error = %error_chain(&err), transactions, "commit throttled");
            finished(&cx, started, transactions, CommitOutcome::Throttled);
            return ItemDone {
                started,
                throttled: Some(taken),
            };
        }
        Ok(Err(err)) => Err(err.into()),
        Err(_) => Err(LedgerError::timed_out(cx.timeout)),
    };
    settle(taken, result, &cx, started, transactions);
    ItemDone {
        started,
        throttled: None,
    }
}

fn settle(
    taken: Taken,
    result: Result<RouteOutcome, LedgerError>,
    cx: &CommitContext,
    started: Instant,
    transactions: usize,
) {
    match result {
        Ok(outcome) => {
            let recorded = taken.answer(outcome);
            finished(cx, started, transactions, CommitOutcome::Ok { recorded });
        }
        Err(err) => {
            tracing::error!(store = cx.kind, route = %taken.route, error = %error_chain(&err), transactions, "commit failed");
            finished(cx, started, transactions, CommitOutcome::Failed);
            taken.fail(&err);
        }
    }
}

/// A failed commit. An overflowing count says nothing about the store's health: it is the
/// route's own failure, and readiness stays as it was.
fn failed(cx: &CommitContext, started: Instant, transactions: usize, err: &LedgerError) {
    if matches!(err, LedgerError::Full(_)) {
        m::commit_finished(
            started.elapsed(),
            transactions as u64,
            CommitOutcome::Failed,
        );
    } else {
        finished(cx, started, transactions, CommitOutcome::Failed);
    }
}

fn finished(cx: &CommitContext, started: Instant, transactions: usize, outcome: CommitOutcome) {
    match outcome {
        CommitOutcome::Ok { .. } => cx.health.set(true),
        CommitOutcome::Failed => cx.health.set(false),
        CommitOutcome::Throttled => {}
    }
    m::commit_finished(started.elapsed(), transactions as u64, outcome);
}
