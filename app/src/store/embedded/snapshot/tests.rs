use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use crate::{
    calendar::Day,
    clock::{Clock as _, SharedClock},
    route::Route,
    snapshot::Record,
    store::{
        BatchStore, EmbeddedSettings, EmbeddedStore, RouteWrite, SnapshotStore as _,
        local::snapshot::contract::{
            check_export_of_sample, check_import, check_overflow, clock, export_all, route,
            write_sample,
        },
    },
};

fn open(dir: &std::path::Path, clock: SharedClock) -> EmbeddedStore {
    let settings = EmbeddedSettings {
        // A small memtable cap (2,048 entries): freezes and flushes happen during the tests.
        cache_bytes: 4 << 20,
        checkpoint_interval: Duration::from_millis(50),
    };
    EmbeddedStore::open_with(dir, settings, clock).expect("open")
}

#[tokio::test]
async fn an_export_holds_what_the_reads_answer() {
    let (dir, clock) = (tempfile::tempdir().expect("temp dir"), clock());
    let store = open(dir.path(), clock.clone());
    let now = write_sample(&store, &clock).await;
    check_export_of_sample(&store, now).await;
    // The same after a checkpoint: what the database holds reads as what the memtables held.
    store.checkpoint().await.expect("checkpoint");
    check_export_of_sample(&store, now).await;
}

#[tokio::test]
async fn an_import_gives_back_the_same_records_and_merges_once() {
    let clock = clock();
    let (from, to) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let source = open(from.path(), clock.clone());
    let now = write_sample(&source, &clock).await;
    let target = open(to.path(), clock.clone());
    check_import(&source, &target, now).await;
    // Durable: what was imported is there after the store is opened again.
    let records = export_all(&target, now).await;
    drop(target);
    let reopened = open(to.path(), clock);
    assert_eq!(export_all(&reopened, now).await, records);
    assert!(reopened.import_mark("s2").await.expect("mark").is_some());
}

#[tokio::test]
async fn an_overflowing_merge_applies_nothing() {
    let (dir, clock) = (tempfile::tempdir().expect("temp dir"), clock());
    let now = clock.epoch_seconds();
    check_overflow(&open(dir.path(), clock), now).await;
}

/// Routes every commit of the committer below adds one to, together.
const HOT: usize = 20;

fn hot(i: usize) -> Route {
    route(&format!("HT{i:02}"))
}

/// An export while commits run: every commit acknowledged before it began is in it, the routes
/// one commit counts together agree (one point in time), days never add up past a total, and
/// commits are acknowledged all along, none of them stalled for long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_export_is_one_point_in_time_and_does_not_stall_commits() {
    let (dir, clock) = (tempfile::tempdir().expect("temp dir"), clock());
    let store = Arc::new(open(dir.path(), clock.clone()));
    let today = clock.today();
    let cold: Vec<RouteWrite> = (0..3_000)
        .map(|i| RouteWrite::keyless(route(&format!("CO{i:04}")), 1, today))
        .collect();
    store.commit(&cold).await.expect("cold routes");

    let acked = Arc::new(Mutex::new(0u64));
    let exporting = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let committer = tokio::spawn({
        let (store, acked, exporting) = (store.clone(), acked.clone(), exporting.clone());
        let (latencies, stop) = (latencies.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::Acquire) {
                let batch: Vec<RouteWrite> = (0..HOT)
                    .map(|i| RouteWrite::keyless(hot(i), 1, today))
                    .collect();
                let started = Instant::now();
                let outcomes = store.commit(&batch).await.expect("commit");
                if exporting.load(Ordering::Acquire) {
                    latencies.lock().expect("latencies").push(started.elapsed());
                }
                *acked.lock().expect("acked") = outcomes[0].keyless_total;
            }
        }
    });
    // Let a few commits through, then export with a slow reader.
    while *acked.lock().expect("acked") < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    exporting.store(true, Ordering::Release);
    let acked_before = *acked.lock().expect("acked");
    let (sink, mut receiver) = mpsc::channel(8);
    let export = tokio::spawn({
        let store = store.clone();
        let now = clock.epoch_seconds();
        async move { store.export(now, sink).await }
    });
    let mut records = Vec::new();
    while let Some(record) = receiver.recv().await {
        if records.len() % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        records.push(record);
    }
    export.await.expect("export task").expect("export");
    exporting.store(false, Ordering::Release);
    let acked_after = *acked.lock().expect("acked");
    stop.store(true, Ordering::Release);
    committer.await.expect("committer");

    let totals: BTreeMap<Route, u64> = records
        .iter()
        .filter_map(|record| match record {
            Record::Route(r) => {
                let days: u64 = r.days.iter().map(|(_, n)| n).sum();
                assert!(days <= r.total, "{r:?}");
                Some((r.route, r.total))
            }
            Record::Key(_) => None,
        })
        .collect();
    assert_eq!(totals.len(), 3_000 + HOT);
    let exported = totals[&hot(0)];
    assert!(
        (0..HOT).all(|i| totals[&hot(i)] == exported),
        "one commit's routes disagree: {totals:?}"
    );
    assert!(exported >= acked_before, "{exported} < {acked_before}");
    assert!(exported <= acked_after);
    let latencies = latencies.lock().expect("latencies");
    assert!(
        latencies.len() >= 5,
        "commits were acknowledged during the export: {}",
        latencies.len()
    );
    let longest = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        longest < Duration::from_secs(1),
        "a commit took {longest:?}"
    );
    assert_eq!(Day::of(clock.now()), today);
}
