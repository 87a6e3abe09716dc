//! The snapshot contract, as tests both local stores run against themselves: data written
//! through the normal commit path, exported, read back through the store's reads, imported
//! into another store and exported again.

use std::{
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use tokio::sync::mpsc;

use crate::{
    auth::ClientName,
    calendar::Day,
    clock::{Clock as _, ManualClock},
    idempotency::{IdempotencyKey, KeyedIncrement},
    route::Route,
    snapshot::{Record, RouteRecord},
    store::{BatchStore, ImportMark, RouteWrite, SnapshotStore, StoreError},
};

/// 2026-11-26 12:00 UTC.
pub const START: u64 = 1_795_694_400;
const DAY: u64 = 86_400;
const ROUTES: [&str; 4] = ["AR1133", "AR20", "LA1", "QF9"];

pub fn clock() -> Arc<ManualClock> {
    ManualClock::at(UNIX_EPOCH + Duration::from_secs(START))
}

pub fn route(name: &str) -> Route {
    Route::parse(name).expect("route")
}

fn key(raw: &str, client: Option<&str>) -> IdempotencyKey {
    let key = IdempotencyKey::parse(raw.as_bytes()).expect("key");
    match client {
        Some(client) => key.scoped(&ClientName::parse(client).expect("client")),
        None => key,
    }
}

fn keyed(raw: &str, client: Option<&str>, on: &str, now: u64, ttl: u64) -> KeyedIncrement {
    KeyedIncrement {
        key: key(raw, client),
        route: route(on),
        now,
        expires_at: now + ttl,
    }
}

/// Commits on several days and months, one of them out of the window by the end, with keys
/// of two scopes and one that has expired by the end. Returns the time it ends at.
pub async fn write_sample(store: &impl BatchStore, clock: &ManualClock) -> u64 {
    let commit = async |writes: Vec<RouteWrite>| {
        store.commit(&writes).await.expect("commit");
    };
    let now = clock.epoch_seconds();
    let today = clock.today();
    commit(vec![
        RouteWrite::keyless(route("AR1133"), 5, today),
        RouteWrite {
            keyed: vec![keyed("old", None, "LA1", now, 10)],
            ..RouteWrite::keyless(route("LA1"), 1, today)
        },
    ])
    .await;
    // 80 days later: the first day has left the 62-day window, its month has not.
    for (days, n) in [(80, 2), (81, 3), (112, 4)] {
        clock.advance(Duration::from_secs(
            days * DAY - (clock.epoch_seconds() - START),
        ));
        let (now, today) = (clock.epoch_seconds(), clock.today());
        let writes = ROUTES
            .iter()
            .map(|name| RouteWrite::keyless(route(name), n, today))
            .collect();
        commit(writes).await;
        // The keys of day 80 expire exactly at the end: expired then.
        let ttl = 32 * DAY;
        commit(vec![RouteWrite {
            route: route("QF9"),
            keyless: 0,
            keyed: vec![
                keyed(&format!("k-{days}"), None, "QF9", now, ttl),
                keyed(&format!("k-{days}"), Some("alpha"), "QF9", now, ttl),
            ],
            day: today,
        }])
        .await;
    }
    clock.epoch_seconds()
}

pub async fn export_all(store: &impl SnapshotStore, now: u64) -> Vec<Record> {
    let (sink, mut records) = mpsc::channel(16);
    let collected = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Some(record) = records.recv().await {
            all.push(record);
        }
        all
    });
    store.export(now, sink).await.expect("export");
    collected.await.expect("collector")
}

/// Every route written once, ascending, with what the store's reads answer; then the keys
/// unexpired at `now`, ascending by record id, the expired one absent.
pub async fn check_export_of_sample(store: &(impl BatchStore + SnapshotStore), now: u64) {
    let records = export_all(store, now).await;
    let today = Day::of(UNIX_EPOCH + Duration::from_secs(now));
    let mut names = Vec::new();
    let mut ids = Vec::new();
    for record in &records {
        match record {
            Record::Route(r) => {
                assert!(ids.is_empty(), "a route after a key: {record:?}");
                names.push(r.route.as_str().to_owned());
                check_route_against_reads(store, r, today).await;
            }
            Record::Key(k) => {
                assert!(k.expires_at > now, "an expired key was exported: {k:?}");
                ids.push(k.key.record_id().into_owned());
            }
        }
    }
    let mut expected: Vec<String> = ROUTES
        .iter()
        .map(|r| route(r).as_str().to_owned())
        .collect();
    expected.sort_unstable();
    assert_eq!(names, expected, "every route once, ascending");
    let mut expected: Vec<String> = [80, 81, 112]
        .iter()
        .flat_map(|d| [format!("k-{d}"), format!("alpha k-{d}")])
        .collect();
    expected.retain(|id| !id.ends_with("k-80"));
    expected.sort();
    assert_eq!(ids, expected, "unexpired keys, ascending by record id");
}

async fn check_route_against_reads(store: &impl BatchStore, r: &RouteRecord, today: Day) {
    assert_eq!(store.get(r.route).await.expect("get"), r.total, "{r:?}");
    let first = today.window_start();
    let daily = store.daily(r.route, first, today).await.expect("daily");
    let days: Vec<(Day, u64)> = (first.number()..)
        .zip(daily)
        .filter(|(_, n)| *n > 0)
        .map(|(number, n)| (Day::from_number(number).expect("day"), n))
        .collect();
    assert_eq!(r.days, days, "{r:?}");
    let (first, this) = (today.month().window_start(), today.month());
    let monthly = store.monthly(r.route, first, this).await.expect("monthly");
    let months: Vec<u64> = monthly.into_iter().filter(|n| *n > 0).collect();
    assert_eq!(r.months.iter().map(|(_, n)| *n).collect::<Vec<_>>(), months);
    assert!(r.days.iter().map(|(_, n)| n).sum::<u64>() <= r.total);
}

pub fn mark(snapshot: &str, lines_done: u64, finished: bool) -> ImportMark {
    ImportMark {
        snapshot: snapshot.to_owned(),
        lines_done,
        finished,
    }
}

/// Import into an empty store in two marked chunks, then export: the same records. A chunk
/// applied again without merge changes nothing; merged under a new snapshot id, it adds.
pub async fn check_import(
    source: &impl SnapshotStore,
    target: &(impl BatchStore + SnapshotStore),
    now: u64,
) {
    let records = export_all(source, now).await;
    assert!(target.is_empty().await.expect("is_empty"));
    assert_eq!(target.import_mark("s1").await.expect("mark"), None);
    let (first, second) = records.split_at(3);
    target
        .import_chunk(first, &mark("s1", 4, false), false)
        .await
        .expect("first chunk");
    assert!(!target.is_empty().await.expect("is_empty"));
    assert_eq!(
        target.import_mark("s1").await.expect("mark"),
        Some(mark("s1", 4, false))
    );
    let done = mark("s1", 2 + records.len() as u64, true);
    target
        .import_chunk(second, &done, false)
        .await
        .expect("second chunk");
    assert_eq!(target.import_mark("s1").await.expect("mark"), Some(done));
    assert_eq!(export_all(target, now).await, records, "identical records");

    target
        .import_chunk(first, &mark("s1", 4, false), false)
        .await
        .expect("again");
    assert_eq!(
        export_all(target, now).await,
        records,
        "set twice: unchanged"
    );

    target
        .import_chunk(&records, &mark("s2", 99, true), true)
        .await
        .expect("merge");
    let merged = export_all(target, now).await;
    assert_eq!(merged.len(), records.len());
    for (after, before) in merged.iter().zip(&records) {
        match (after, before) {
            (Record::Route(after), Record::Route(before)) => {
                assert_eq!(after.total, 2 * before.total);
                let doubled: Vec<_> = before.days.iter().map(|(d, n)| (*d, 2 * n)).collect();
                assert_eq!(after.days, doubled);
                let doubled: Vec<_> = before.months.iter().map(|(m, n)| (*m, 2 * n)).collect();
                assert_eq!(after.months, doubled);
                let read = target.get(after.route).await.expect("get");
                assert_eq!(read, after.total);
            }
            // Keys held unexpired are kept as they were.
            (after, before) => assert_eq!(after, before),
        }
    }
}

/// A merge that would overflow a route applies nothing of its chunk, and no mark.
pub async fn check_overflow(target: &(impl BatchStore + SnapshotStore), now: u64) {
    let today = Day::of(UNIX_EPOCH + Duration::from_secs(now));
    target
        .commit(&[RouteWrite::keyless(route("LA1"), 1, today)])
        .await
        .expect("commit");
    let records = [
        Record::Route(RouteRecord {
            route: route("AR1"),
            total: 5,
            days: vec![(today, 5)],
            months: vec![],
        }),
        Record::Route(RouteRecord {
            route: route("LA1"),
            total: u64::MAX,
            days: vec![],
            months: vec![],
        }),
    ];
    let failed = target
        .import_chunk(&records, &mark("big", 3, false), true)
        .await;
    assert!(
        matches!(failed, Err(StoreError::Overflow(r)) if r == route("LA1")),
        "{failed:?}"
    );
    assert_eq!(target.get(route("AR1")).await.expect("get"), 0);
    assert_eq!(target.get(route("LA1")).await.expect("get"), 1);
    assert_eq!(target.import_mark("big").await.expect("mark"), None);
}
