//! The ledger: the only way into a store. It implements group commit.
//!
//! POSTs that arrive while a commit is in flight wait in a queue and go together into the next
//! commit, so the cost of a durable commit (an fsync, a network round trip) is shared by every
//! transaction that arrived meanwhile. There is no timer: when the store is idle, a POST is
//! committed at once, alone, and waits for exactly one commit. Each caller gets its own count,
//! worked out from the new total the commit returned: a route that gained `n` transactions and
//! now totals `T` hands out `T-n+1 ..= T`, in arrival order, exactly as if the POSTs had been
//! applied one after another.
//!
//! Keyed transactions (an `Idempotency-Key`) take the same path, into the same commits, on
//! every store. Concurrent POSTs with one key in this process are committed once: the first
//! one commits, the others wait for it and answer its outcome. Duplicates in other processes
//! are resolved by the store's atomic key insert.
//!
//! Files: [`dispatcher`] forms commits, [`queue`] holds the waiting transactions, [`commit`]
//! runs one commit, [`pacing`] slows down routes the store throttles, [`health`] is what
//! readiness reads.

mod commit;
mod dispatcher;
mod error;
mod health;
mod pacing;
mod queue;
mod settings;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use rustc_hash::FxHashMap;
use tokio::{
    sync::{Mutex, Notify, mpsc, oneshot, watch},
    task::JoinHandle,
};

pub use error::{LedgerError, RETRY_AFTER, Unavailability};
pub use health::StoreHealth;
pub use settings::LedgerSettings;

use crate::telemetry::logging::error_chain;
use crate::{
    calendar::{Day, Month},
    clock::SharedClock,
    idempotency::{IdempotencyKey, KeyedIncrement, KeyedOutcome, expiry},
    route::{Airline, Route},
    store::{Consistency, RecordSink, Store, StoreError},
    telemetry::metrics as m,
};
use commit::CommitContext;
use dispatcher::Dispatcher;
use queue::Waiter;

/// Most expired keys deleted in one sweep transaction.
const SWEEP_CHUNK: usize = 1000;

type KeyedResult = Result<KeyedOutcome, LedgerError>;

/// Keys being committed in this process: the first caller's outcome, once it has one.
type InFlight = std::sync::Mutex<FxHashMap<IdempotencyKey, watch::Receiver<Option<KeyedResult>>>>;

pub struct Ledger {
    store: Store,
    settings: LedgerSettings,
    intake: mpsc::Sender<Waiter>,
    health: Arc<StoreHealth>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<Notify>,
    in_flight: InFlight,
    clock: SharedClock,
}

/// Takes a key out of the in-flight map when its first caller finishes or gives up.
struct InFlightEntry<'a> {
    in_flight: &'a InFlight,
    key: &'a IdempotencyKey,
}

impl Drop for InFlightEntry<'_> {
    fn drop(&mut self) {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(self.key);
    }
}

impl Ledger {
    /// Starts the dispatcher for `store`. `clock` says which day a commit counts on and when
    /// an idempotency key expires. Must be called inside a tokio runtime.
    pub fn start(store: Store, settings: LedgerSettings, clock: SharedClock) -> Arc<Self> {
        let (intake, queue) = mpsc::channel(settings.max_batch.clamp(64, 8192));
        let health = Arc::new(StoreHealth::new());
        let stop = Arc::new(Notify::new());
        let cx = CommitContext {
            timeout: settings.commit_timeout,
            health: Arc::clone(&health),
            kind: store.kind(),
            clock: Arc::clone(&clock),
        };
        let dispatcher = Dispatcher::new(store.clone(), settings.clone(), cx);
        let handle = tokio::spawn(dispatcher.run(queue, Arc::clone(&stop)));
        Arc::new(Self {
            store,
            settings,
            intake,
            health,
            dispatcher: Mutex::new(Some(handle)),
            stop,
            in_flight: std::sync::Mutex::new(FxHashMap::default()),
            clock,
        })
    }

    pub fn store_kind(&self) -> &'static str {
        self.store.kind()
    }

    pub fn health(&self) -> &Arc<StoreHealth> {
        &self.health
    }

    /// Records one transaction on `route` and returns the route's count including it. Returns
    /// only once the transaction is durable.
    pub async fn record(&self, route: Route) -> Result<u64, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.queue_and_wait(Waiter::Plain { route, reply }, answer)
            .await
    }

    /// Records one transaction on `route` under an idempotency key, exactly once: the first
    /// POST with the key (within the retention window) is counted and its outcome stored with
    /// the key; every later one, here or in another process, gets that outcome back with
    /// `replayed` set, and records nothing. The outcome's route is the one the key was first
    /// used with, which may not be `route`.
    pub async fn record_keyed(&self, route: Route, key: IdempotencyKey) -> KeyedResult {
        let deadline = self.settings.commit_timeout;
        tokio::time::timeout(deadline, self.record_keyed_once(route, key))
            .await
            .map_err(|_| LedgerError::timed_out(deadline))?
    }

    /// Hands a waiter to the dispatcher and waits for its answer, within the commit timeout:
    /// the one deadline of every write.
    async fn queue_and_wait<T>(
        &self,
        waiter: Waiter,
        answer: oneshot::Receiver<Result<T, LedgerError>>,
    ) -> Result<T, LedgerError> {
        let deadline = self.settings.commit_timeout;
        let queued_and_committed = async {
            self.intake
                .send(waiter)
                .await
                .map_err(|_| LedgerError::ShuttingDown)?;
            // A dropped reply means the dispatcher is gone: only happens at shutdown.
            answer.await.map_err(|_| LedgerError::ShuttingDown)?
        };
        tokio::time::timeout(deadline, queued_and_committed)
            .await
            .map_err(|_| LedgerError::timed_out(deadline))?
    }

    async fn record_keyed_once(&self, route: Route, key: IdempotencyKey) -> KeyedResult {
        loop {
            // Either another caller's pending outcome to wait for, or the sender to publish ours.
            let turn = {
                let mut in_flight = self
                    .in_flight
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                match in_flight.get(&key) {
                    Some(first) => Err(first.clone()),
                    None => {
                        let (outcome_tx, outcome_rx) = watch::channel(None);
                        in_flight.insert(key.clone(), outcome_rx);
                        Ok(outcome_tx)
                    }
                }
            };
            let mut first = match turn {
                Err(first) => first,
                Ok(outcome_tx) => {
                    let _entry = InFlightEntry {
                        in_flight: &self.in_flight,
                        key: &key,
                    };
                    let now = self.clock.epoch_seconds();
                    let increment = KeyedIncrement {
                        key: key.clone(),
                        route,
                        now,
                        expires_at: expiry(now, self.settings.idempotency_retention),
                    };
                    let (reply, answer) = oneshot::channel();
                    let result = self
                        .queue_and_wait(Waiter::Keyed(increment, reply), answer)
                        .await;
                    // Whoever waits for this key gets the same outcome.
                    outcome_tx.send_replace(Some(result.clone()));
                    return result;
                }
            };
            // Another caller in this process is committing this key: wait for its outcome.
            if let Ok(outcome) = first.wait_for(Option::is_some).await
                && let Some(result) = outcome.as_ref()
            {
                return result
                    .clone()
                    .map(|o| KeyedOutcome::replay(o.route, o.count));
            }
            // It gave up without an outcome (its client went away): try again, maybe first.
        }
    }

    /// The store's periodic upkeep: deletes the idempotency keys that have expired, in bounded
    /// chunks (one commit each), and returns how many. Stores that expire keys themselves
    /// (DynamoDB TTL) delete nothing here.
    pub async fn sweep_expired_keys(&self) -> Result<usize, LedgerError> {
        let deadline = self.settings.commit_timeout;
        let now = self.clock.epoch_seconds();
        let today = self.today();
        let mut swept = 0;
        loop {
            let chunk = tokio::time::timeout(
                deadline,
                self.store.base().housekeeping(now, today, SWEEP_CHUNK),
            )
            .await
            .map_err(|_| LedgerError::timed_out(deadline))??;
            swept += chunk;
            if chunk < SWEEP_CHUNK {
                m::keys_swept(swept as u64);
                return Ok(swept);
            }
        }
    }

    /// Today, UTC, by the ledger's clock.
    pub fn today(&self) -> Day {
        self.clock.today()
    }

    /// The current count of `route`.
    pub async fn count(&self, route: Route) -> Result<u64, LedgerError> {
        self.read(self.store.base().get(route)).await
    }

    /// The current counts of distinct `routes`, in order.
    pub async fn counts(&self, routes: &[Route]) -> Result<Vec<u64>, LedgerError> {
        self.read(self.store.base().get_many(routes)).await
    }

    /// The count of `route` on each day from `from` to `to`, oldest first.
    pub async fn daily(&self, route: Route, from: Day, to: Day) -> Result<Vec<u64>, LedgerError> {
        self.read(self.store.base().daily(route, from, to)).await
    }

    /// The count of `route` in each month from `from` to `to`, oldest first.
    pub async fn monthly(
        &self,
        route: Route,
        from: Month,
        to: Month,
    ) -> Result<Vec<u64>, LedgerError> {
        self.read(self.store.base().monthly(route, from, to)).await
    }

    /// Up to `limit` routes after `after` in route order, with their totals (see
    /// [`StoreBase::list_routes`](crate::store::StoreBase::list_routes); `None`: the store
    /// cannot list in order).
    pub async fn list_routes(
        &self,
        after: Option<Route>,
        airline: Option<Airline>,
        limit: usize,
    ) -> Result<Option<Vec<(Route, u64)>>, LedgerError> {
        self.read(self.store.base().list_routes(after, airline, limit))
            .await
    }

    /// Whether the store is shared by every instance of the service (see
    /// [`StoreBase::shared`](crate::store::StoreBase::shared)).
    pub fn store_shared(&self) -> bool {
        self.store.shared()
    }

    /// Seconds since the Unix epoch, by the ledger's clock: the time a snapshot is taken at.
    pub fn epoch_seconds(&self) -> u64 {
        self.clock.epoch_seconds()
    }

    /// Streams a snapshot of the store as of `now` into `sink` (no deadline: an export takes
    /// as long as the store is large; the caller stops it by dropping the receiver).
    pub async fn export(&self, now: u64, sink: RecordSink) -> Result<Consistency, LedgerError> {
        Ok(self.store.base().export(now, sink).await?)
    }

    /// A read from the store, within the commit timeout.
    async fn read<T>(
        &self,
        read: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, LedgerError> {
        let deadline = self.settings.commit_timeout;
        tokio::time::timeout(deadline, read)
            .await
            .map_err(|_| LedgerError::timed_out(deadline))?
            .map_err(LedgerError::from)
    }

    /// Asks the store whether it can commit, and remembers the answer for readiness.
    pub async fn probe(&self) -> bool {
        let deadline = self.settings.commit_timeout;
        let kind = self.store.kind();
        let ok = match tokio::time::timeout(deadline, self.store.base().check_ready()).await {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                tracing::warn!(store = kind, error = %error_chain(&err), "store is not ready");
                false
            }
            Err(_) => {
                tracing::warn!(store = kind, timeout = ?deadline, "store readiness check timed out");
                false
            }
        };
        self.health.set(ok);
        ok
    }

    /// Stops taking transactions, commits everything already queued, waits for the last
    /// commit to finish, and lets the store finish deferred work. Callers still waiting get
    /// their counts; later ones get `ShuttingDown`.
    pub async fn close(&self) {
        self.stop.notify_one();
        let handle = self.dispatcher.lock().await.take();
        if let Some(handle) = handle {
            if let Err(err) = handle.await {
                tracing::error!(error = %error_chain(&err), "ledger dispatcher ended abnormally");
            }
            let deadline = self.settings.commit_timeout;
            if tokio::time::timeout(deadline, self.store.base().close())
                .await
                .is_err()
            {
                tracing::warn!("the store did not finish its deferred work within {deadline:?}");
            }
        }
    }
}
