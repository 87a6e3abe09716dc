//! Keyed commits: a route's keyed transactions (and any keyless ones queued with them), up to
//! 98 keys, in one `TransactWriteItems`, with no condition on the count's value.
//!
//! The transaction holds:
//! - the route's item: `SET p<batch> = count + n, transactions = count + n` (both
//!   operands are the count before the update, so the item records the total this commit left,
//!   under a name of its own, in the same atomic write as the increment), on condition only that
//!   the count stays within 64 bits;
//! - one `Put` per key, `idem#<key>` with the route, the batch and the key's place from the end
//!   of the batch (`back`), on condition that no unexpired record of the key exists
//!   (`ReturnValuesOnConditionCheckFailure=ALL_OLD` hands back the record that is there);
//! - the batch record of the route's previous keyed commit (`batch#<id>`, its total), with
//!   `REMOVE p<id>` on the route's item: the total moves off the item in the same write.
//!
//! After it, one consistent read of the route's item gives the batch's total `T`: key `j` of `r`
//! counts `T - (r - 1 - j)`, the `n - r` keyless ones the numbers just below. Other instances'
//! `ADD`s in between change nothing of that, since the total was recorded atomically with the
//! increment. A key whose `Put` condition failed was recorded before: its outcome is read from
//! its record (the batch total from the route's item or from the batch record), and the
//! commit is sent again without it. `docs/dynamodb.md` has the argument in full.

//!
//! One transaction is built once and sent, with a client request token of its own, until its
//! outcome is known or the commit timeout is near ([`attempt`] sorts every attempt): DynamoDB
//! applies a token's transaction once. Where a server does not honour the token (the emulators,
//! or DynamoDB itself after ten minutes), a repeat of an applied transaction is cancelled,
//! since its keys are recorded now, and the records handed back name this very batch: the
//! commit was applied by an earlier attempt, and every caller in it, keyed and keyless, is
//! answered from that batch's total. Nothing of it is ever applied again.

mod transact;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use super::{
    DynamoStore, errors::Fault, markers::Marker, records::record_batch, retry::contention_backoff,
};
use crate::{
    idempotency::KeyedOutcome,
    route::Route,
    store::{RouteOutcome, RouteWrite, StoreError},
};
use transact::{Failed, Sent};

/// Most transactions of one keyed commit cancelled by contention.
const KEYED_ATTEMPTS: u32 = 16;
impl DynamoStore {
    pub(super) async fn commit_keyed(
        &self,
        write: &RouteWrite,
    ) -> Result<RouteOutcome, StoreError> {
        let mut finish = self.pending.take_for(write.route);
        let result = self.commit_keyed_with(write, &mut finish).await;
        if let Some(marker) = finish {
            // Not carried off: next time.
            self.pending.add(marker);
        }
        result
    }

    /// How long the transactions of one keyed commit may take: the commit timeout, less the
    /// read of the total that follows them.
    fn keyed_budget(&self) -> Duration {
        let timeout = self.settings.operation_timeout;
        timeout.saturating_sub(self.settings.attempt_timeout.min(timeout / 4))
    }

    async fn commit_keyed_with(
        &self,
        write: &RouteWrite,
        finish: &mut Option<Marker>,
    ) -> Result<RouteOutcome, StoreError> {
        let route = write.route;
        let deadline = Instant::now() + self.keyed_budget();
        let mut outcomes: Vec<Option<KeyedOutcome>> = vec![None; write.keyed.len()];
        // A key twice in one write is one transaction: later copies get the first's outcome.
        let mut first_copy: HashMap<String, usize> = HashMap::new();
        let mut copies: Vec<(usize, usize)> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        for (at, keyed) in write.keyed.iter().enumerate() {
            match first_copy.entry(keyed.key.record_id().into_owned()) {
                std::collections::hash_map::Entry::Occupied(first) => {
                    copies.push((at, *first.get()))
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(at);
                    open.push(at);
                }
            }
        }
        let mut keyless_total = 0;
        let mut attempt = 1;
        // Totals of the batches that keys recorded before belong to, read once each.
        let mut batch_totals: HashMap<String, u64> = HashMap::new();
        loop {
            if open.is_empty() {
                // Every key was recorded by other commits, and no transaction of this one was
                // applied: the keyless transactions alone.
                if write.keyless > 0 {
                    keyless_total = self.add(route, write.keyless, write.day).await?;
                }
                break;
            }
            let prepared = self.prepare(write, &open, finish.as_ref())?;
            let expires_at = open
                .iter()
                .map(|&at| write.keyed[at].expires_at)
                .max()
                .unwrap_or(0);
            // Until its outcome is known, the batch's total may be on the route's item: noted,
            // so that the upkeep finds and moves it if this commit gives up without knowing.
            self.pending.add(Marker {
                route,
                id: prepared.batch.clone(),
                total: None,
                expires_at,
                since: Instant::now(),
            });
            let applied = match self.send(route, &prepared, deadline).await {
                Err(Failed {
                    error,
                    maybe_applied,
                }) => {
                    if !maybe_applied {
                        self.pending.forget(route, &prepared.batch);
                    }
                    return Err(error);
                }
                Ok(Sent::Applied) => true,
                Ok(Sent::Conflict) => {
                    self.pending.forget(route, &prepared.batch);
                    self.contention_pause(route, &mut attempt).await?;
                    continue;
                }
                Ok(Sent::Cancelled(reasons)) => {
                    let (recorded_before, contention) =
                        self.cancelled(route, &reasons, open.len())?;
                    let mut records = Vec::with_capacity(recorded_before.len());
                    for (place, item) in recorded_before {
                        let at = open[place];
                        let record_id = write.keyed[at].key.record_id().into_owned();
                        let item = self.key_record_item(item, &record_id).await?;
                        records.push((at, record_id, item));
                    }
                    if records
                        .iter()
                        .any(|(_, _, item)| record_batch(item) == Some(prepared.batch.as_str()))
                    {
                        // The keys were recorded by this very transaction: an earlier attempt
                        // was applied, and the server ran the repeat as a new transaction.
                        tracing::info!(%route, batch = %prepared.batch,
                            "a keyed commit was applied by an earlier attempt of its transaction; \
                             answered from its total");
                        true
                    } else {
                        self.pending.forget(route, &prepared.batch);
                        self.prefetch_batch_totals(
                            records.iter().map(|(_, _, item)| item),
                            &mut batch_totals,
                        )
                        .await?;
                        for (at, record_id, item) in records {
                            outcomes[at] =
                                Some(self.resolve(item, &record_id, &mut batch_totals).await?);
                        }
                        open.retain(|at| outcomes[*at].is_none());
                        if contention {
                            self.contention_pause(route, &mut attempt).await?;
                        }
                        false
                    }
                }
            };
            if applied {
                *finish = None;
                let total = self.applied_total(route, &prepared.batch, write).await?;
                let r = open.len() as u64;
                // A total below the batch's own size is not one this commit could have made.
                keyless_total = total
                    .checked_sub(write.keyless + r)
                    .map(|before| before + write.keyless)
                    .ok_or_else(|| {
                        StoreError::unavailable(
                            format!(
                                "route {route} holds a total of {total} for keyed commit {}, \
                                 below its {} transactions",
                                prepared.batch,
                                write.keyless + r
                            ),
                            Fault::TotalTooLow {
                                total,
                                at_least: write.keyless + r,
                            },
                        )
                    })?;
                for (place, &at) in open.iter().enumerate() {
                    outcomes[at] =
                        Some(KeyedOutcome::recorded(route, total - r + 1 + place as u64));
                }
                self.pending.add(Marker {
                    route,
                    id: prepared.batch,
                    total: Some(total),
                    expires_at,
                    since: Instant::now(),
                });
                break;
            }
        }
        for (at, first) in copies {
            outcomes[at] = outcomes[first].map(|o| KeyedOutcome::replay(o.route, o.count));
        }
        let keyed = outcomes
            .into_iter()
            .map(|o| {
                o.ok_or_else(|| {
                    StoreError::unavailable("answering a keyed commit", Fault::NoOutcome)
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(RouteOutcome {
            keyless_total,
            keyed,
        })
    }

    /// The total an applied transaction left, read consistently: from the route's item, where
    /// it was written, or from its batch record if it has been moved since.
    async fn applied_total(
        &self,
        route: Route,
        batch: &str,
        write: &RouteWrite,
    ) -> Result<u64, StoreError> {
        if let Some(total) = self.read_marker(route, batch, Some(write.day)).await? {
            return Ok(total);
        }
        self.read_batch_record(batch).await.map_err(|err| {
            StoreError::unavailable(
                format!("route {route} lost the total of keyed commit {batch}"),
                err,
            )
        })
    }

    /// A jittered pause before a new transaction, after one was cancelled by contention.
    async fn contention_pause(&self, route: Route, attempt: &mut u32) -> Result<(), StoreError> {
        if *attempt >= KEYED_ATTEMPTS {
            return Err(StoreError::unavailable(
                format!(
                    "route {route} was held by other transactions during {KEYED_ATTEMPTS} \
                     attempts of a keyed commit"
                ),
                Fault::Contended(KEYED_ATTEMPTS),
            ));
        }
        tokio::time::sleep(contention_backoff(*attempt)).await;
        *attempt += 1;
        Ok(())
    }
}
