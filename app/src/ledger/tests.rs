//! The ledger observed from the store's side: commits, batches, concurrency, failures,
//! throttling.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use super::*;
use crate::calendar::{Day, Month};
use crate::clock::SystemClock;
use crate::store::{
    BatchStore, ItemLimits, ItemStore, MemoryStore, RouteOutcome, RouteWrite, StoreBase, StoreError,
};

/// Counts commits, can be told to fail or throttle, and remembers the largest commit, to observe
/// the ledger from the store's side. Serves as a batch or a per-item store.
struct Observed {
    inner: MemoryStore,
    commits: AtomicUsize,
    fail: AtomicBool,
    /// Throttle this many of the next commits.
    throttle: AtomicUsize,
    throttled: AtomicUsize,
    delay: Duration,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    largest_commit: AtomicUsize,
    /// A keyed commit ran beside another commit of its route.
    keyed_overlapped: AtomicBool,
    routes_in_flight: std::sync::Mutex<HashMap<Route, usize>>,
    limits: ItemLimits,
}

impl Observed {
    fn new(delay: Duration) -> Arc<Self> {
        Self::with_limits(
            delay,
            ItemLimits {
                max_in_flight: 4,
                per_route: 2,
                max_keyed: 98,
            },
        )
    }

    fn with_limits(delay: Duration, limits: ItemLimits) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryStore::new(),
            commits: AtomicUsize::new(0),
            fail: AtomicBool::new(false),
            throttle: AtomicUsize::new(0),
            throttled: AtomicUsize::new(0),
            delay,
            in_flight: AtomicUsize::new(0),
            most_in_flight: AtomicUsize::new(0),
            largest_commit: AtomicUsize::new(0),
            keyed_overlapped: AtomicBool::new(false),
            routes_in_flight: std::sync::Mutex::new(HashMap::new()),
            limits,
        })
    }

    async fn observe(&self, batch: &[RouteWrite]) -> Result<Vec<RouteOutcome>, StoreError> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        {
            let mut routes = self.routes_in_flight.lock().expect("lock");
            for write in batch {
                let running = routes.entry(write.route).or_insert(0);
                *running += 1;
                if *running > 1 && !write.keyed.is_empty() {
                    self.keyed_overlapped.store(true, Ordering::SeqCst);
                }
            }
        }
        tokio::time::sleep(self.delay).await;
        {
            let mut routes = self.routes_in_flight.lock().expect("lock");
            for write in batch {
                if let Some(running) = routes.get_mut(&write.route) {
                    *running -= 1;
                }
            }
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.commits.fetch_add(1, Ordering::SeqCst);
        let size = batch.iter().map(RouteWrite::transactions).sum::<u64>() as usize;
        self.largest_commit.fetch_max(size, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(
                "injected",
                std::io::Error::other("injected"),
            ));
        }
        let throttle = self
            .throttle
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if throttle.is_ok() {
            self.throttled.fetch_add(1, Ordering::SeqCst);
            return Err(StoreError::throttled(
                "injected",
                std::io::Error::other("injected"),
            ));
        }
        self.inner.commit(batch).await
    }

    fn commits(&self) -> usize {
        self.commits.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl crate::store::SnapshotStore for Observed {}

#[async_trait::async_trait]
impl StoreBase for Observed {
    fn kind(&self) -> &'static str {
        "observed"
    }
    async fn get(&self, route: Route) -> Result<u64, StoreError> {
        self.inner.get(route).await
    }
    async fn daily(&self, route: Route, from: Day, to: Day) -> Result<Vec<u64>, StoreError> {
        self.inner.daily(route, from, to).await
    }
    async fn monthly(&self, route: Route, from: Month, to: Month) -> Result<Vec<u64>, StoreError> {
        self.inner.monthly(route, from, to).await
    }
    async fn check_ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl BatchStore for Observed {
    async fn commit(&self, batch: &[RouteWrite]) -> Result<Vec<RouteOutcome>, StoreError> {
        self.observe(batch).await
    }
}

#[async_trait::async_trait]
impl ItemStore for Observed {
    fn limits(&self) -> ItemLimits {
        self.limits
    }
    async fn commit(&self, write: &RouteWrite) -> Result<RouteOutcome, StoreError> {
        let mut outcomes = self.observe(std::slice::from_ref(write)).await?;
        outcomes.pop().ok_or_else(|| {
            StoreError::unavailable("no outcome", std::io::Error::other("no outcome"))
        })
    }
}

fn batch_store(store: &Arc<Observed>) -> Store {
    Store::Batch(store.clone())
}

fn item_store(store: &Arc<Observed>) -> Store {
    Store::Item(store.clone())
}

fn route(s: &str) -> Route {
    Route::parse(s).expect("valid route")
}

fn key(s: &str) -> IdempotencyKey {
    IdempotencyKey::parse(s.as_bytes()).expect("key")
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
    let store = Observed::new(Duration::from_millis(5));
    let ledger = Ledger::start(
        batch_store(&store),
        LedgerSettings::default(),
        SystemClock::shared(),
    );
    let hot = route("AR1133");
    let results = record_many(&ledger, &vec![hot; 500]).await;
    let mut counts: Vec<u64> = results.into_iter().map(|r| r.expect("ok")).collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=500).collect::<Vec<u64>>());
    assert_eq!(ledger.count(hot).await.expect("count"), 500);
    assert!(
        store.commits() < 100,
        "500 POSTs took {} commits",
        store.commits()
    );
}

#[tokio::test]
async fn a_lone_caller_is_committed_without_waiting_for_company() {
    let store = Observed::new(Duration::ZERO);
    let ledger = Ledger::start(
        batch_store(&store),
        LedgerSettings::default(),
        SystemClock::shared(),
    );
    let started = Instant::now();
    assert_eq!(ledger.record(route("LA1")).await.expect("ok"), 1);
    assert_eq!(store.commits(), 1);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn batches_never_exceed_the_limit() {
    let store = Observed::new(Duration::from_millis(20));
    let settings = LedgerSettings {
        max_batch: 7,
        ..LedgerSettings::default()
    };
    let ledger = Ledger::start(batch_store(&store), settings, SystemClock::shared());
    let routes: Vec<Route> = (0..100)
        .map(|i| route(&format!("AB{}", i % 3 + 1)))
        .collect();
    let results = record_many(&ledger, &routes).await;
    assert!(results.iter().all(|r| r.is_ok()));
    assert!(store.commits() >= 100 / 7);
    assert!(store.largest_commit.load(Ordering::SeqCst) <= 7);
    let mut total = 0;
    for r in [route("AB1"), route("AB2"), route("AB3")] {
        total += store.inner.get(r).await.expect("get");
    }
    assert_eq!(total, 100);
}

#[tokio::test]
async fn a_failed_commit_fails_every_caller_in_it_and_applies_nothing() {
    let store = Observed::new(Duration::from_millis(5));
    store.fail.store(true, Ordering::SeqCst);
    let ledger = Ledger::start(
        batch_store(&store),
        LedgerSettings::default(),
        SystemClock::shared(),
    );
    let results = record_many(&ledger, &vec![route("AR1"); 50]).await;
    assert!(results.iter().all(|r| matches!(
        r,
        Err(LedgerError::Unavailable {
            cause: Unavailability::Store(StoreError::Unavailable { .. }),
            ..
        })
    )));
    assert!(!ledger.health().is_healthy());
    store.fail.store(false, Ordering::SeqCst);
    assert_eq!(ledger.record(route("AR1")).await.expect("ok"), 1);
    assert!(ledger.health().is_healthy());
}

#[tokio::test]
async fn per_item_stores_commit_routes_independently() {
    let store = Observed::new(Duration::from_millis(5));
    let ledger = Ledger::start(
        item_store(&store),
        LedgerSettings::default(),
        SystemClock::shared(),
    );
    let routes: Vec<Route> = (0..400)
        .map(|i| route(&format!("XY{}", i % 8 + 1)))
        .collect();
    let results = record_many(&ledger, &routes).await;
    let mut per_route: HashMap<Route, Vec<u64>> = HashMap::new();
    for (r, res) in routes.iter().zip(results) {
        per_route.entry(*r).or_default().push(res.expect("ok"));
    }
    for (r, mut counts) in per_route {
        counts.sort_unstable();
        assert_eq!(counts, (1..=50).collect::<Vec<u64>>(), "route {r}");
    }
    assert!(store.most_in_flight.load(Ordering::SeqCst) <= 4);
}

#[tokio::test]
async fn a_hot_route_overlaps_keyless_commits_up_to_its_limit_with_distinct_counts() {
    let store = Observed::with_limits(
        Duration::from_millis(5),
        ItemLimits {
            max_in_flight: 8,
            per_route: 2,
            max_keyed: 98,
        },
    );
    let ledger = Ledger::start(
        item_store(&store),
        LedgerSettings::default(),
        SystemClock::shared(),
    );
    let hot = route("PL1");
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
    let mut counts: Vec<u64> = Vec::new();
    for task in tasks {
        counts.push(task.await.expect("task").expect("ok"));
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=300).collect::<Vec<u64>>());
    assert_eq!(store.most_in_flight.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn close_commits_what_is_queued() {
    let store = Observed::new(Duration::from_millis(10));
    let ledger = Ledger::start(
        batch_store(&store),
        LedgerSettings::default(),
        SystemClock::shared(),
    );
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
async fn group_commit_off_commits_once_per_transaction_through_the_same_queue() {
    for item in [false, true] {
        let store = Observed::new(Duration::ZERO);
        let settings = LedgerSettings {
            group_commit: false,
            ..LedgerSettings::default()
        };
        let store_handle = if item {
            item_store(&store)
        } else {
            batch_store(&store)
        };
        let ledger = Ledger::start(store_handle, settings, SystemClock::shared());
        let results = record_many(&ledger, &vec![route("AR1"); 40]).await;
        assert!(results.iter().all(|r| r.is_ok()));
        assert_eq!(store.commits(), 40);
        assert_eq!(store.largest_commit.load(Ordering::SeqCst), 1);
    }
}

/// 20 keys, each sent 5 times at once: every key counted once, its copies answered alike.
async fn keyed_duplicates_are_counted_once(store: &Arc<Observed>, handle: Store) {
    let ledger = Ledger::start(handle, LedgerSettings::default(), SystemClock::shared());
    let hot = route("AR1");
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let ledger = Arc::clone(&ledger);
            let key = key(&format!("key-{}", i % 20));
            tokio::spawn(async move { (i % 20, ledger.record_keyed(hot, key).await) })
        })
        .collect();
    let mut per_key: HashMap<usize, Vec<KeyedOutcome>> = HashMap::new();
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
    assert!(
        store.commits() < 20,
        "100 keyed POSTs took {} commits",
        store.commits()
    );
}

#[tokio::test]
async fn keyed_duplicates_share_group_commits_in_a_batch_store() {
    let store = Observed::new(Duration::from_millis(5));
    keyed_duplicates_are_counted_once(&store, batch_store(&store)).await;
}

#[tokio::test]
async fn keyed_duplicates_share_group_commits_in_a_per_item_store() {
    let store = Observed::new(Duration::from_millis(5));
    keyed_duplicates_are_counted_once(&store, item_store(&store)).await;
}

#[tokio::test]
async fn a_keyed_commit_is_alone_on_its_route_and_within_the_keyed_limit() {
    let store = Observed::with_limits(
        Duration::from_millis(3),
        ItemLimits {
            max_in_flight: 8,
            per_route: 4,
            max_keyed: 5,
        },
    );
    let ledger = Ledger::start(
        item_store(&store),
        LedgerSettings::default(),
        SystemClock::shared(),
    );
    let hot = route("AR1");
    let tasks: Vec<_> = (0..200u64)
        .map(|i| {
            let ledger = Arc::clone(&ledger);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(i * 50)).await;
                if i % 2 == 0 {
                    ledger
                        .record_keyed(hot, key(&format!("k{i}")))
                        .await
                        .map(|o| o.count)
                } else {
                    ledger.record(hot).await
                }
            })
        })
        .collect();
    let mut counts = Vec::new();
    for t in tasks {
        counts.push(t.await.expect("task").expect("ok"));
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=200).collect::<Vec<u64>>());
    assert!(!store.keyed_overlapped.load(Ordering::SeqCst));
}

#[tokio::test]
async fn a_failed_keyed_commit_records_nothing_and_the_retry_counts() {
    let store = Observed::new(Duration::ZERO);
    let ledger = Ledger::start(
        batch_store(&store),
        LedgerSettings::default(),
        SystemClock::shared(),
    );
    store.fail.store(true, Ordering::SeqCst);
    assert!(
        ledger
            .record_keyed(route("AR1"), key("retry-me"))
            .await
            .is_err()
    );
    store.fail.store(false, Ordering::SeqCst);
    let outcome = ledger
        .record_keyed(route("AR1"), key("retry-me"))
        .await
        .expect("ok");
    assert_eq!(outcome, KeyedOutcome::recorded(route("AR1"), 1));
}

#[tokio::test]
async fn throttled_commits_are_retried_in_larger_batches_without_failing_anyone() {
    let store = Observed::new(Duration::from_millis(2));
    // The first five commits are refused for their rate: each halves the route's pace (64, 32,
    // 16, 8, 4 commits a second), about half a second of waits in all.
    store.throttle.store(5, Ordering::SeqCst);
    let ledger = Ledger::start(
        item_store(&store),
        LedgerSettings::default(),
        SystemClock::shared(),
    );
    let hot = route("TH1");
    let tasks: Vec<_> = (0..300u64)
        .map(|i| {
            let ledger = Arc::clone(&ledger);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_micros(i * 200)).await;
                ledger.record(hot).await
            })
        })
        .collect();
    let mut counts = Vec::new();
    for t in tasks {
        counts.push(
            t.await
                .expect("task")
                .expect("no caller fails on throttling"),
        );
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=300).collect::<Vec<u64>>());
    assert_eq!(store.throttled.load(Ordering::SeqCst), 5);
    assert!(ledger.health().is_healthy(), "throttling is not a failure");
    // Paced, the route's commits carried more than one transaction each.
    assert!(store.largest_commit.load(Ordering::SeqCst) > 1);
}
