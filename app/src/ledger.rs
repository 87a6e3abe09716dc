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
//! route is never in two commits at once, so its callers are answered in order.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rustc_hash::{FxHashMap, FxHashSet};
use tokio::{
    sync::{Mutex, mpsc, oneshot},
    task::JoinHandle,
};

use crate::{
    route::Route,
    store::{CommitMode, Increment, SharedStore, StoreError},
    telemetry::metrics as m,
};

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
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            group_commit: true,
            max_batch: 4096,
            max_pending: 65_536,
            commit_timeout: Duration::from_secs(5),
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

struct Waiter {
    route: Route,
    reply: Reply,
}

pub struct Ledger {
    store: SharedStore,
    settings: LedgerSettings,
    intake: mpsc::Sender<Waiter>,
    health: Arc<StoreHealth>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    stop: Arc<tokio::sync::Notify>,
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
            store,
            settings,
            intake,
            health,
            dispatcher: Mutex::new(Some(handle)),
            stop,
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
                .send(Waiter { route, reply })
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
        m::commit_finished(started.elapsed(), 1, result.is_ok());
        self.health.set(result.is_ok());
        result
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
    committing: FxHashSet<Route>,
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
            committing: FxHashSet::default(),
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
                    if let Some(batch) = self.next_batch(usize::MAX) {
                        let routes = self.commit(batch).await;
                        self.finished(routes);
                        continue;
                    }
                }
                CommitMode::PerRoute { max_in_flight } => {
                    while self.commits_in_flight < max_in_flight.max(1) {
                        let Some(batch) = self.next_batch(1) else {
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
        let replies = self.waiting.entry(waiter.route).or_default();
        if replies.is_empty() && !self.committing.contains(&waiter.route) {
            self.ready.push_back(waiter.route);
        }
        replies.push_back(waiter.reply);
        self.waiting_total += 1;
    }

    fn finished(&mut self, routes: Vec<Route>) {
        for route in routes {
            self.committing.remove(&route);
            if self.waiting.get(&route).is_some_and(|w| !w.is_empty()) {
                self.ready.push_back(route);
            }
        }
    }

    /// Takes the next batch: waiting routes that have no commit in flight, oldest first, up to
    /// `max_routes` routes and `max_batch` transactions.
    fn next_batch(&mut self, max_routes: usize) -> Option<Vec<(Route, Vec<Reply>)>> {
        let mut room = self.settings.max_batch.max(1);
        let mut batch: Vec<(Route, Vec<Reply>)> = Vec::new();
        while room > 0 && batch.len() < max_routes {
            let Some(route) = self.ready.pop_front() else {
                break;
            };
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
            self.committing.insert(route);
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
            self.settings.commit_timeout,
            Arc::clone(&self.health),
        )
    }
}

/// Commits one batch and answers every caller in it.
async fn commit(
    store: SharedStore,
    batch: Vec<(Route, Vec<Reply>)>,
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
    let transactions: u64 = increments.iter().map(|i| i.delta).sum();
    let started = Instant::now();
    let outcome = match tokio::time::timeout(timeout, store.apply(&increments)).await {
        Ok(Ok(totals)) if totals.len() == increments.len() => Ok(totals),
        Ok(Ok(_)) => Err(LedgerError::Store(StoreError::Unavailable(
            "store returned a wrong number of totals".into(),
        ))),
        Ok(Err(err)) => Err(LedgerError::Store(err)),
        Err(_) => Err(LedgerError::TimedOut(timeout)),
    };
    m::commit_finished(started.elapsed(), transactions, outcome.is_ok());
    health.set(outcome.is_ok());

    let routes = batch.iter().map(|(route, _)| *route).collect();
    match outcome {
        Ok(totals) => {
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
    }

    impl Observed {
        fn new(mode: CommitMode, delay: Duration) -> Arc<Self> {
            Arc::new(Self {
                inner: MemoryStore::new(),
                commits: AtomicUsize::new(0),
                fail: AtomicBool::new(false),
                mode,
                delay,
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
            tokio::time::sleep(self.delay).await;
            self.commits.fetch_add(1, Ordering::SeqCst);
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("injected".into()));
            }
            self.inner.apply(batch).await
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
            CommitMode::PerRoute { max_in_flight: 4 },
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
}
