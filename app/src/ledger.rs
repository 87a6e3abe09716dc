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
//! One dispatcher task owns the queue. It hands batches to commit tasks as the store's
//! [`CommitMode`] allows (one whole batch at a time for a local database; one commit per route,
//! several routes at once, for a networked store) and hears back from them when they finish. A
//! local database never has a route in two commits at once. A networked store may have a hot
//! route in a few overlapping commits (each an atomic add that returns its own total), so the
//! next batch travels while the previous one is on the wire; counts stay distinct, though a
//! later batch may then be handed lower numbers than an earlier one.
//!
//! Keyed transactions (an `Idempotency-Key`) take one of two paths. A store that takes keys in
//! its batches (a local database) gets them in the same group commit as everything else, each
//! key in the same write transaction as its count. Any other store gets each keyed transaction
//! as a commit of its own ([`Store::apply_keyed`]), while keyless POSTs keep their batched path.
//! Either way, concurrent POSTs with one key in this process are committed once: the first one
//! commits, the others wait for it and answer its outcome. Duplicates in other processes are
//! resolved by the store's atomic key insert.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;
use tokio::{
    sync::{Mutex, mpsc, oneshot, watch},
    task::JoinHandle,
};

use crate::{
    idempotency::{IdempotencyKey, KeyedIncrement, KeyedOutcome, epoch_seconds, expiry},
    route::Route,
    store::{CommitMode, Increment, SharedStore, StoreError},
    telemetry::metrics as m,
};

/// Most expired keys deleted in one sweep transaction.
const SWEEP_CHUNK: usize = 1000;

/// Tuning of the ledger; validated by the configuration layer.
#[derive(Debug, Clone)]
pub struct LedgerSettings {
    /// Coalesce concurrent POSTs into shared commits. When off, every POST is its own commit.
    pub group_commit: bool,
    /// Most transactions in one commit (per batch, and per route in a per-route store).
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

/// Why a transaction was not recorded (or a count not read).
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the service is shutting down")]
    ShuttingDown,
}

/// Whether the last commit (or readiness probe) succeeded: readiness reads it.
#[derive(Debug)]
pub struct StoreHealth {
    healthy: AtomicBool,
}

impl StoreHealth {
    fn new() -> Self {
        Self {
            healthy: AtomicBool::new(false),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn set(&self, healthy: bool) {
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        if was != healthy {
            if healthy {
                tracing::info!("store is accepting commits");
            } else {
                tracing::warn!("store is failing; readiness is down until it recovers");
            }
        }
    }
}

type Reply = oneshot::Sender<Result<u64, LedgerError>>;
type KeyedReply = oneshot::Sender<Result<KeyedOutcome, LedgerError>>;
type KeyedResult = Result<KeyedOutcome, LedgerError>;

enum Waiter {
    Plain { route: Route, reply: Reply },
    Keyed(KeyedIncrement, KeyedReply),
}

/// Keys being committed in this process: the first caller's outcome, once it has one.
type InFlight = std::sync::Mutex<FxHashMap<IdempotencyKey, watch::Receiver<Option<KeyedResult>>>>;

pub struct Ledger {
    store: SharedStore,
    settings: LedgerSettings,
    /// Keyed transactions join the group commit (the store takes keys in its batches).
    batch_keys: bool,
    intake: mpsc::Sender<Waiter>,
    health: Arc<StoreHealth>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<tokio::sync::Notify>,
    in_flight: InFlight,
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
    /// Starts the dispatcher for `store`. Must be called inside a tokio runtime.
    pub fn start(store: SharedStore, settings: LedgerSettings) -> Arc<Self> {
        let (intake, queue) = mpsc::channel(settings.max_batch.clamp(64, 8192));
        let health = Arc::new(StoreHealth::new());
        let stop = Arc::new(tokio::sync::Notify::new());
        let dispatcher = Dispatcher::new(Arc::clone(&store), settings.clone(), Arc::clone(&health));
        let handle = tokio::spawn(dispatcher.run(queue, Arc::clone(&stop)));
        Arc::new(Self {
            batch_keys: settings.group_commit
                && store.batches_keys()
                && store.commit_mode() == CommitMode::WholeBatch,
            store,
            settings,
            intake,
            health,
            dispatcher: Mutex::new(Some(handle)),
            stop,
            in_flight: std::sync::Mutex::new(FxHashMap::default()),
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
        let deadline = self.settings.commit_timeout;
        if !self.settings.group_commit {
            return self.record_alone(route, deadline).await;
        }
        let (reply, answer) = oneshot::channel();
        let queued_and_committed = async {
            self.intake
                .send(Waiter::Plain { route, reply })
                .await
                .map_err(|_| LedgerError::ShuttingDown)?;
            // A dropped reply means the dispatcher is gone: only happens at shutdown.
            answer.await.map_err(|_| LedgerError::ShuttingDown)?
        };
        tokio::time::timeout(deadline, queued_and_committed)
            .await
            .map_err(|_| LedgerError::TimedOut(deadline))?
    }

    /// Group commit turned off: one commit of its own per transaction.
    async fn record_alone(&self, route: Route, deadline: Duration) -> Result<u64, LedgerError> {
        let started = Instant::now();
        let result =
            tokio::time::timeout(deadline, self.store.apply(&[Increment { route, delta: 1 }]))
                .await;
        let result = match result {
            Ok(Ok(totals)) => totals
                .first()
                .copied()
                .ok_or_else(|| StoreError::Unavailable("store returned no total".into()).into()),
            Ok(Err(err)) => Err(LedgerError::Store(err)),
            Err(_) => Err(LedgerError::TimedOut(deadline)),
        };
        m::commit_finished(
            started.elapsed(),
            1,
            u64::from(result.is_ok()),
            result.is_ok(),
        );
        self.health.set(result.is_ok());
        result
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
            .map_err(|_| LedgerError::TimedOut(deadline))?
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
                    let result = self.commit_keyed(route, key.clone()).await;
                    // Whoever waits for this key gets the same outcome.
                    outcome_tx.send_replace(Some(result.clone()));
                    return result;
                }
            };
            // Another caller in this process is committing this key: wait for its outcome.
            if let Ok(outcome) = first.wait_for(Option::is_some).await {
                if let Some(result) = outcome.as_ref() {
                    return result
                        .clone()
                        .map(|o| KeyedOutcome::replay(o.route, o.count));
                }
            }
            // It gave up without an outcome (its client went away): try again, maybe first.
        }
    }

    async fn commit_keyed(&self, route: Route, key: IdempotencyKey) -> KeyedResult {
        let now = epoch_seconds();
        let increment = KeyedIncrement {
            key,
            route,
            now,
            expires_at: expiry(now, self.settings.idempotency_retention),
        };
        if self.batch_keys {
            let (reply, answer) = oneshot::channel();
            self.intake
                .send(Waiter::Keyed(increment, reply))
                .await
                .map_err(|_| LedgerError::ShuttingDown)?;
            return answer.await.map_err(|_| LedgerError::ShuttingDown)?;
        }
        let started = Instant::now();
        let result = self
            .store
            .apply_keyed(&increment)
            .await
            .map_err(LedgerError::from);
        let recorded = result.as_ref().map_or(0, |o| u64::from(!o.replayed));
        m::commit_finished(started.elapsed(), 1, recorded, result.is_ok());
        self.health.set(result.is_ok());
        if let Err(err) = &result {
            tracing::error!(store = self.store.kind(), error = %err, "keyed commit failed");
        }
        result
    }

    /// Deletes the idempotency keys that have expired, in bounded chunks (one commit each), and
    /// returns how many. Stores that expire keys themselves (DynamoDB TTL) delete nothing here.
    pub async fn sweep_expired_keys(&self) -> Result<usize, LedgerError> {
        let deadline = self.settings.commit_timeout;
        let now = epoch_seconds();
        let mut swept = 0;
        loop {
            let chunk =
                tokio::time::timeout(deadline, self.store.sweep_expired_keys(now, SWEEP_CHUNK))
                    .await
                    .map_err(|_| LedgerError::TimedOut(deadline))??;
            swept += chunk;
            if chunk < SWEEP_CHUNK {
                m::keys_swept(swept as u64);
                return Ok(swept);
            }
        }
    }

    /// The current count of `route`.
    pub async fn count(&self, route: Route) -> Result<u64, LedgerError> {
        let deadline = self.settings.commit_timeout;
        tokio::time::timeout(deadline, self.store.get(route))
            .await
            .map_err(|_| LedgerError::TimedOut(deadline))?
            .map_err(LedgerError::from)
    }

    /// Asks the store whether it can commit, and remembers the answer for readiness.
    pub async fn probe(&self) -> bool {
        let deadline = self.settings.commit_timeout;
        let ok = match tokio::time::timeout(deadline, self.store.check_ready()).await {
            Ok(Ok(())) => true,
            Ok(Err(err)) => {
                tracing::warn!(store = self.store.kind(), error = %err, "store is not ready");
                false
            }
            Err(_) => {
                tracing::warn!(store = self.store.kind(), timeout = ?deadline, "store readiness check timed out");
                false
            }
        };
        self.health.set(ok);
        ok
    }

    /// Stops taking transactions, commits everything already queued, and waits for the last
    /// commit to finish. Callers still waiting get their counts; later ones get `ShuttingDown`.
    pub async fn close(&self) {
        self.stop.notify_one();
        let handle = self.dispatcher.lock().await.take();
        if let Some(handle) = handle {
            if let Err(err) = handle.await {
                tracing::error!(error = %err, "ledger dispatcher ended abnormally");
            }
        }
    }
}

/// The single owner of the queue of waiting transactions.
struct Dispatcher {
    store: SharedStore,
    mode: CommitMode,
    settings: LedgerSettings,
    health: Arc<StoreHealth>,
    /// Waiters per route, in arrival order.
    waiting: FxHashMap<Route, VecDeque<Reply>>,
    waiting_total: usize,
    /// Routes with waiters and no commit in flight, oldest first.
    ready: VecDeque<Route>,
    /// Routes that are part of a commit in flight.
    /// Commits in flight per route.
    committing: FxHashMap<Route, usize>,
    /// Keyed transactions waiting, in arrival order (whole-batch stores only).
    keyed: VecDeque<(KeyedIncrement, KeyedReply)>,
    commits_in_flight: usize,
    finished_tx: mpsc::UnboundedSender<Vec<Route>>,
    finished_rx: mpsc::UnboundedReceiver<Vec<Route>>,
}

impl Dispatcher {
    fn new(store: SharedStore, settings: LedgerSettings, health: Arc<StoreHealth>) -> Self {
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        Self {
            mode: store.commit_mode(),
            store,
            settings,
            health,
            waiting: FxHashMap::default(),
            waiting_total: 0,
            ready: VecDeque::new(),
            committing: FxHashMap::default(),
            keyed: VecDeque::new(),
            commits_in_flight: 0,
            finished_tx,
            finished_rx,
        }
    }

    async fn run(mut self, mut queue: mpsc::Receiver<Waiter>, stop: Arc<tokio::sync::Notify>) {
        let mut intake_open = true;
        loop {
            // Everything that queued up meanwhile joins the next commit.
            if intake_open {
                intake_open = self.absorb(&mut queue);
            }
            match self.mode {
                // One commit at a time: run it right here. Waiting for it in this task (rather
                // than in a task of its own that reports back) saves two trips through the
                // scheduler per commit, and the next batch is formed the moment it returns.
                CommitMode::WholeBatch => {
                    let keyed = self.next_keyed();
                    let room = self.settings.max_batch.max(1).saturating_sub(keyed.len());
                    let batch = self.next_batch(usize::MAX, room);
                    if batch.is_some() || !keyed.is_empty() {
                        let routes = commit(
                            Arc::clone(&self.store),
                            batch.unwrap_or_default(),
                            keyed,
                            self.settings.commit_timeout,
                            Arc::clone(&self.health),
                        )
                        .await;
                        self.finished(routes);
                        continue;
                    }
                }
                CommitMode::PerRoute { max_in_flight, .. } => {
                    while self.commits_in_flight < max_in_flight.max(1) {
                        let Some(batch) = self.next_batch(1, self.settings.max_batch) else {
                            break;
                        };
                        self.commits_in_flight += 1;
                        let commit = self.commit(batch);
                        let finished = self.finished_tx.clone();
                        tokio::spawn(async move {
                            // The dispatcher outlives every commit it starts, unless the runtime
                            // itself is going away, and then nobody is left to tell.
                            let _ = finished.send(commit.await);
                        });
                    }
                }
            }
            if !intake_open && self.waiting_total == 0 && self.commits_in_flight == 0 {
                break;
            }
            let room = self.waiting_total < self.settings.max_pending;
            tokio::select! {
                biased;
                Some(routes) = self.finished_rx.recv() => {
                    self.commits_in_flight -= 1;
                    self.finished(routes);
                }
                _ = stop.notified(), if intake_open => {
                    // No new senders get in; what is already queued is still received.
                    queue.close();
                }
                waiter = queue.recv(), if intake_open && room => match waiter {
                    Some(waiter) => self.enqueue(waiter),
                    None => intake_open = false,
                },
            }
        }
    }

    /// Takes every waiter already queued, up to the pending limit. Returns whether the intake
    /// is still open.
    fn absorb(&mut self, queue: &mut mpsc::Receiver<Waiter>) -> bool {
        while self.waiting_total < self.settings.max_pending {
            match queue.try_recv() {
                Ok(waiter) => self.enqueue(waiter),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    fn enqueue(&mut self, waiter: Waiter) {
        let (route, reply) = match waiter {
            Waiter::Plain { route, reply } => (route, reply),
            Waiter::Keyed(increment, reply) => {
                self.keyed.push_back((increment, reply));
                self.waiting_total += 1;
                return;
            }
        };
        let eligible = self.can_commit(route);
        let replies = self.waiting.entry(route).or_default();
        if replies.is_empty() && eligible {
            self.ready.push_back(route);
        }
        replies.push_back(reply);
        self.waiting_total += 1;
    }

    /// Takes the keyed transactions of the next batch: all that wait, up to the batch limit,
    /// but no more than half of it while keyless ones wait too, so neither kind starves.
    fn next_keyed(&mut self) -> Vec<(KeyedIncrement, KeyedReply)> {
        if self.keyed.is_empty() {
            return Vec::new();
        }
        let room = self.settings.max_batch.max(1);
        let plain_waiting = self.waiting_total - self.keyed.len();
        let take = self
            .keyed
            .len()
            .min(room - plain_waiting.min(room / 2))
            .max(1);
        self.waiting_total -= take;
        self.keyed.drain(..take).collect()
    }

    /// How many commits may be in flight on one route at once.
    fn per_route_limit(&self) -> usize {
        match self.mode {
            CommitMode::WholeBatch => 1,
            CommitMode::PerRoute { per_route, .. } => per_route.max(1),
        }
    }

    fn can_commit(&self, route: Route) -> bool {
        self.committing.get(&route).copied().unwrap_or(0) < self.per_route_limit()
    }

    fn finished(&mut self, routes: Vec<Route>) {
        for route in routes {
            if let Some(in_flight) = self.committing.get_mut(&route) {
                *in_flight -= 1;
                if *in_flight == 0 {
                    self.committing.remove(&route);
                }
            }
            if self.waiting.get(&route).is_some_and(|w| !w.is_empty()) {
                // It may already be queued as ready; `next_batch` skips stale entries.
                self.ready.push_back(route);
            }
        }
    }

    /// Takes the next batch: waiting routes below their limit of commits in flight, oldest
    /// first, up to `max_routes` routes and `room` transactions.
    fn next_batch(
        &mut self,
        max_routes: usize,
        mut room: usize,
    ) -> Option<Vec<(Route, Vec<Reply>)>> {
        let mut batch: Vec<(Route, Vec<Reply>)> = Vec::new();
        while room > 0 && batch.len() < max_routes {
            let Some(route) = self.ready.pop_front() else {
                break;
            };
            if !self.can_commit(route) {
                // Queued again when one of its commits finishes.
                continue;
            }
            let Some(replies) = self.waiting.get_mut(&route) else {
                continue;
            };
            let take = replies.len().min(room);
            let taken: Vec<Reply> = replies.drain(..take).collect();
            if replies.is_empty() {
                self.waiting.remove(&route);
            }
            room -= take;
            self.waiting_total -= take;
            *self.committing.entry(route).or_insert(0) += 1;
            batch.push((route, taken));
        }
        (!batch.is_empty()).then_some(batch)
    }

    fn commit(
        &self,
        batch: Vec<(Route, Vec<Reply>)>,
    ) -> impl std::future::Future<Output = Vec<Route>> + Send + 'static {
        commit(
            Arc::clone(&self.store),
            batch,
            Vec::new(),
            self.settings.commit_timeout,
            Arc::clone(&self.health),
        )
    }
}

/// Commits one batch and answers every caller in it.
async fn commit(
    store: SharedStore,
    batch: Vec<(Route, Vec<Reply>)>,
    keyed: Vec<(KeyedIncrement, KeyedReply)>,
    timeout: Duration,
    health: Arc<StoreHealth>,
) -> Vec<Route> {
    let increments: Vec<Increment> = batch
        .iter()
        .map(|(route, replies)| Increment {
            route: *route,
            delta: replies.len() as u64,
        })
        .collect();
    let keyless: u64 = increments.iter().map(|i| i.delta).sum();
    let transactions = keyless + keyed.len() as u64;
    let started = Instant::now();
    let applied = if keyed.is_empty() {
        tokio::time::timeout(timeout, store.apply(&increments))
            .await
            .map(|result| result.map(|totals| (totals, Vec::new())))
    } else {
        let increments_keyed: Vec<KeyedIncrement> = keyed.iter().map(|(k, _)| k.clone()).collect();
        tokio::time::timeout(
            timeout,
            store.apply_with_keys(&increments, &increments_keyed),
        )
        .await
    };
    let outcome = match applied {
        Ok(Ok((totals, outcomes)))
            if totals.len() == increments.len() && outcomes.len() == keyed.len() =>
        {
            Ok((totals, outcomes))
        }
        Ok(Ok(_)) => Err(LedgerError::Store(StoreError::Unavailable(
            "store returned a wrong number of totals".into(),
        ))),
        Ok(Err(err)) => Err(LedgerError::Store(err)),
        Err(_) => Err(LedgerError::TimedOut(timeout)),
    };
    let recorded = match &outcome {
        Ok((_, outcomes)) => keyless + outcomes.iter().filter(|o| !o.replayed).count() as u64,
        Err(_) => 0,
    };
    m::commit_finished(started.elapsed(), transactions, recorded, outcome.is_ok());
    health.set(outcome.is_ok());

    let routes = batch.iter().map(|(route, _)| *route).collect();
    match outcome {
        Ok((totals, outcomes)) => {
            for ((_, reply), outcome) in keyed.into_iter().zip(outcomes) {
                let _ = reply.send(Ok(outcome));
            }
            for ((_, replies), total) in batch.into_iter().zip(totals) {
                let first = total.saturating_sub(replies.len() as u64) + 1;
                for (offset, reply) in replies.into_iter().enumerate() {
                    // A caller that gave up (timed out, disconnected) no longer listens.
                    let _ = reply.send(Ok(first + offset as u64));
                }
            }
        }
        Err(err) => {
            tracing::error!(store = store.kind(), error = %err, transactions, "commit failed");
            for (_, replies) in batch {
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
            for (_, reply) in keyed {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Store};
    use std::sync::atomic::AtomicUsize;

    /// Counts commits and can be told to fail, to observe the ledger from the store's side.
    struct Observed {
        inner: MemoryStore,
        commits: AtomicUsize,
        fail: AtomicBool,
        mode: CommitMode,
        delay: Duration,
        in_flight: AtomicUsize,
        most_in_flight: AtomicUsize,
    }

    impl Observed {
        fn new(mode: CommitMode, delay: Duration) -> Arc<Self> {
            Arc::new(Self {
                inner: MemoryStore::new(),
                commits: AtomicUsize::new(0),
                fail: AtomicBool::new(false),
                mode,
                delay,
                in_flight: AtomicUsize::new(0),
                most_in_flight: AtomicUsize::new(0),
            })
        }
    }

    #[async_trait::async_trait]
    impl Store for Observed {
        fn kind(&self) -> &'static str {
            "observed"
        }
        fn commit_mode(&self) -> CommitMode {
            self.mode
        }
        async fn apply(&self, batch: &[Increment]) -> Result<Vec<u64>, StoreError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.commits.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("injected".into()));
            }
            self.inner.apply(batch).await
        }
        fn batches_keys(&self) -> bool {
            self.mode == CommitMode::WholeBatch
        }
        async fn apply_with_keys(
            &self,
            batch: &[Increment],
            keyed: &[KeyedIncrement],
        ) -> Result<(Vec<u64>, Vec<KeyedOutcome>), StoreError> {
            tokio::time::sleep(self.delay).await;
            self.commits.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("injected".into()));
            }
            self.inner.apply_with_keys(batch, keyed).await
        }
        async fn get(&self, route: Route) -> Result<u64, StoreError> {
            self.inner.get(route).await
        }
        async fn check_ready(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn route(s: &str) -> Route {
        Route::parse(s).expect("valid route")
    }

    async fn record_many(ledger: &Arc<Ledger>, routes: &[Route]) -> Vec<Result<u64, LedgerError>> {
        let tasks: Vec<_> = routes
            .iter()
            .map(|r| {
                let ledger = Arc::clone(ledger);
                let r = *r;
                tokio::spawn(async move { ledger.record(r).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("task"));
        }
        out
    }

    #[tokio::test]
    async fn concurrent_callers_share_commits_and_get_distinct_counts() {
        let store = Observed::new(CommitMode::WholeBatch, Duration::from_millis(5));
        let ledger = Ledger::start(store.clone(), LedgerSettings::default());
        let hot = route("AR1133");
        let results = record_many(&ledger, &vec![hot; 500]).await;
        let mut counts: Vec<u64> = results.into_iter().map(|r| r.expect("ok")).collect();
        counts.sort_unstable();
        assert_eq!(counts, (1..=500).collect::<Vec<u64>>());
        assert_eq!(ledger.count(hot).await.expect("count"), 500);
        let commits = store.commits.load(Ordering::SeqCst);
        assert!(commits < 100, "500 POSTs took {commits} commits");
    }

    #[tokio::test]
    async fn a_lone_caller_is_committed_without_waiting_for_company() {
        let store = Observed::new(CommitMode::WholeBatch, Duration::ZERO);
        let ledger = Ledger::start(store.clone(), LedgerSettings::default());
        let started = Instant::now();
        assert_eq!(ledger.record(route("LA1")).await.expect("ok"), 1);
        assert_eq!(store.commits.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn batches_never_exceed_the_limit() {
        let store = Observed::new(CommitMode::WholeBatch, Duration::from_millis(20));
        let settings = LedgerSettings {
            max_batch: 7,
            ..LedgerSettings::default()
        };
        let ledger = Ledger::start(store.clone(), settings);
        let routes: Vec<Route> = (0..100)
            .map(|i| route(&format!("AB{}", i % 3 + 1)))
            .collect();
        let results = record_many(&ledger, &routes).await;
        assert!(results.iter().all(|r| r.is_ok()));
        assert!(store.commits.load(Ordering::SeqCst) >= 100 / 7);
        let mut total = 0;
        for r in [route("AB1"), route("AB2"), route("AB3")] {
            total += store.inner.get(r).await.expect("get");
        }
        assert_eq!(total, 100);
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_caller_in_it_and_applies_nothing() {
        let store = Observed::new(CommitMode::WholeBatch, Duration::from_millis(5));
        store.fail.store(true, Ordering::SeqCst);
        let ledger = Ledger::start(store.clone(), LedgerSettings::default());
        let results = record_many(&ledger, &vec![route("AR1"); 50]).await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(LedgerError::Store(StoreError::Unavailable(_)))))
        );
        assert!(!ledger.health().is_healthy());
        store.fail.store(false, Ordering::SeqCst);
        assert_eq!(ledger.record(route("AR1")).await.expect("ok"), 1);
        assert!(ledger.health().is_healthy());
    }

    #[tokio::test]
    async fn per_route_stores_commit_routes_independently() {
        let store = Observed::new(
            CommitMode::PerRoute {
                max_in_flight: 4,
                per_route: 2,
            },
            Duration::from_millis(5),
        );
        let ledger = Ledger::start(store.clone(), LedgerSettings::default());
        let routes: Vec<Route> = (0..400)
            .map(|i| route(&format!("XY{}", i % 8 + 1)))
            .collect();
        let results = record_many(&ledger, &routes).await;
        let mut per_route: std::collections::HashMap<Route, Vec<u64>> =
            std::collections::HashMap::new();
        for (r, res) in routes.iter().zip(results) {
            per_route.entry(*r).or_default().push(res.expect("ok"));
        }
        for (r, mut counts) in per_route {
            counts.sort_unstable();
            assert_eq!(counts, (1..=50).collect::<Vec<u64>>(), "route {r}");
        }
    }

    #[tokio::test]
    async fn a_hot_route_overlaps_commits_up_to_its_limit_with_distinct_counts() {
        let store = Observed::new(
            CommitMode::PerRoute {
                max_in_flight: 8,
                per_route: 2,
            },
            Duration::from_millis(5),
        );
        let ledger = Ledger::start(store.clone(), LedgerSettings::default());
        let hot = route("PL1");
        let mut counts: Vec<u64> = Vec::new();
        // Arrivals spread over time, so that commits of the one route overlap.
        let tasks: Vec<_> = (0..300u64)
            .map(|i| {
                let ledger = Arc::clone(&ledger);
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_micros(i * 100)).await;
                    ledger.record(hot).await
                })
            })
            .collect();
        for task in tasks {
            counts.push(task.await.expect("task").expect("ok"));
        }
        counts.sort_unstable();
        assert_eq!(counts, (1..=300).collect::<Vec<u64>>());
        assert_eq!(store.most_in_flight.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn close_commits_what_is_queued() {
        let store = Observed::new(CommitMode::WholeBatch, Duration::from_millis(10));
        let ledger = Ledger::start(store.clone(), LedgerSettings::default());
        let hot = route("AR1");
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let ledger = Arc::clone(&ledger);
                tokio::spawn(async move { ledger.record(hot).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1)).await;
        ledger.close().await;
        let mut acknowledged = 0;
        for t in tasks {
            if t.await.expect("task").is_ok() {
                acknowledged += 1;
            }
        }
        assert_eq!(store.inner.get(hot).await.expect("get"), acknowledged);
        assert!(matches!(
            ledger.record(hot).await,
            Err(LedgerError::ShuttingDown)
        ));
    }

    #[tokio::test]
    async fn group_commit_off_commits_once_per_transaction() {
        let store = Observed::new(CommitMode::WholeBatch, Duration::ZERO);
        let settings = LedgerSettings {
            group_commit: false,
            ..LedgerSettings::default()
        };
        let ledger = Ledger::start(store.clone(), settings);
        let results = record_many(&ledger, &vec![route("AR1"); 40]).await;
        assert!(results.iter().all(|r| r.is_ok()));
        assert_eq!(store.commits.load(Ordering::SeqCst), 40);
    }

    /// 20 keys, each sent 5 times at once: every key counted once, its copies answered alike.
    async fn keyed_duplicates_are_counted_once(mode: CommitMode) -> usize {
        let store = Observed::new(mode, Duration::from_millis(5));
        let ledger = Ledger::start(store.clone(), LedgerSettings::default());
        let hot = route("AR1");
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let ledger = Arc::clone(&ledger);
                let key = IdempotencyKey::parse(format!("key-{}", i % 20).as_bytes()).expect("key");
                tokio::spawn(async move { (i % 20, ledger.record_keyed(hot, key).await) })
            })
            .collect();
        let mut per_key: std::collections::HashMap<usize, Vec<KeyedOutcome>> =
            std::collections::HashMap::new();
        for t in tasks {
            let (k, outcome) = t.await.expect("task");
            per_key
                .entry(k)
                .or_default()
                .push(outcome.expect("recorded"));
        }
        let mut counts = Vec::new();
        for (k, outcomes) in per_key {
            assert_eq!(outcomes.len(), 5);
            assert!(
                outcomes.iter().all(|o| o.count == outcomes[0].count),
                "key {k}"
            );
            assert_eq!(
                outcomes.iter().filter(|o| !o.replayed).count(),
                1,
                "key {k}"
            );
            counts.push(outcomes[0].count);
        }
        counts.sort_unstable();
        assert_eq!(counts, (1..=20).collect::<Vec<u64>>());
        assert_eq!(ledger.count(hot).await.expect("count"), 20);
        store.commits.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn keyed_duplicates_in_a_whole_batch_store_share_group_commits() {
        let commits = keyed_duplicates_are_counted_once(CommitMode::WholeBatch).await;
        assert!(commits < 20, "100 keyed POSTs took {commits} commits");
    }

    #[tokio::test]
    async fn keyed_duplicates_in_a_per_route_store_are_committed_alone_and_once() {
        let commits = keyed_duplicates_are_counted_once(CommitMode::PerRoute {
            max_in_flight: 4,
            per_route: 2,
        })
        .await;
        assert!((20..=100).contains(&commits), "{commits} commits");
    }

    #[tokio::test]
    async fn a_failed_keyed_commit_records_nothing_and_the_retry_counts() {
        let store = Observed::new(CommitMode::WholeBatch, Duration::ZERO);
        let ledger = Ledger::start(store.clone(), LedgerSettings::default());
        let key = IdempotencyKey::parse(b"retry-me").expect("key");
        store.fail.store(true, Ordering::SeqCst);
        assert!(
            ledger
                .record_keyed(route("AR1"), key.clone())
                .await
                .is_err()
        );
        store.fail.store(false, Ordering::SeqCst);
        let outcome = ledger.record_keyed(route("AR1"), key).await.expect("ok");
        assert_eq!(outcome, KeyedOutcome::recorded(route("AR1"), 1));
    }
}
