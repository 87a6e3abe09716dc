//! Snapshots of the dynamodb store, at the store's level, on moto and on dynalite: an export
//! holds exactly what the reads return, in the file's order, however many sorted runs it
//! merged; an import into a fresh table exports back the same; imports repeated (as a resumed
//! run repeats a chunk) change nothing; a merge adds once; and throttling only slows an import.
//!
//! Keyed commits run on moto only (dynalite has no `TransactWriteItems`); on dynalite, key
//! records are written as finished records (with their count), the form older versions left.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant, UNIX_EPOCH},
};

use flight_counter::{
    auth::ClientName,
    calendar::{Day, Month},
    clock::ManualClock,
    idempotency::{IdempotencyKey, KeyedIncrement},
    route::Route,
    snapshot::{KeyRecord, Record, RouteRecord},
    store::{
        DynamoStore, ImportMark, ItemStore, KEY_ATTRIBUTE, RouteWrite, SnapshotStore, StoreBase,
    },
};

use crate::{
    emulators::{self, Kind},
    helpers::{dynamodb_config, dynamodb_store_on, table_on},
    throttle_proxy::ThrottleProxy,
};

/// The first day written; the export happens on the last, `LAST_DAY` days later.
const FIRST_DAY: &str = "2026-09-01";
/// Days (after the first) on which routes are written: the first falls out of the 62-day
/// window by the last.
const WRITE_DAYS: [i32; 4] = [0, 30, 75, 80];
const LAST_DAY: i32 = 80;

fn day(offset: i32) -> Day {
    Day::parse(FIRST_DAY)
        .expect("day")
        .plus(offset)
        .expect("day")
}

/// Noon of `day`, in epoch seconds.
fn noon(day: Day) -> u64 {
    day.number() as u64 * 86_400 + 43_200
}

fn route(n: usize) -> Route {
    Route::parse(&format!("SN{}", n + 1)).expect("route")
}

fn key(n: usize) -> IdempotencyKey {
    let key = IdempotencyKey::parse(format!("order-{n}").as_bytes()).expect("key");
    // Every third key in a client's scope.
    if n.is_multiple_of(3) {
        key.scoped(&ClientName::parse("alice").expect("client"))
    } else {
        key
    }
}

/// A fresh table on `kind`'s shared server (or on `endpoint`), ready, with a store on `clock`.
async fn fresh_store(
    kind: Kind,
    prefix: &str,
    clock: &Arc<ManualClock>,
    endpoint: Option<String>,
) -> (String, Arc<DynamoStore>) {
    let (table, config) = match endpoint {
        None => table_on(kind, prefix, |_| {}),
        Some(endpoint) => {
            let table = emulators::unique_table(prefix);
            let config = dynamodb_config(&table, &endpoint, |_| {});
            (table, config)
        }
    };
    let store = dynamodb_store_on(&config, clock.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.check_ready().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "table {table} never became ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (table, store)
}

/// The unexpired keys written, with the outcome each was answered.
type Keys = BTreeMap<String, (IdempotencyKey, Route, u64, u64)>;

/// Writes `routes` routes through the store's commits, on each of the write days (the clock
/// moved to each), and a few keys: through keyed commits on moto (some totals moved to batch
/// records, some left on the route items), as finished records on dynalite; and one expired
/// key. Leaves the clock on the last day.
async fn fill(
    kind: Kind,
    store: &DynamoStore,
    table: &str,
    clock: &ManualClock,
    routes: usize,
) -> Keys {
    let mut keys = Keys::new();
    for offset in WRITE_DAYS {
        let today = day(offset);
        clock.set(UNIX_EPOCH + Duration::from_secs(noon(today)));
        let commits = (0..routes)
            .filter(|n| !(n + offset as usize).is_multiple_of(3))
            .map(|n| RouteWrite::keyless(route(n), (n as u64 % 5) + 1 + offset as u64, today));
        let commits: Vec<RouteWrite> = commits.collect();
        for window in commits.chunks(16) {
            futures::future::try_join_all(window.iter().map(|w| ItemStore::commit(store, w)))
                .await
                .expect("keyless commit");
        }
    }
    let export_now = noon(day(LAST_DAY));
    if kind == Kind::Moto {
        for (round, offset) in [(0, 75), (1, LAST_DAY)] {
            let today = day(offset);
            clock.set(UNIX_EPOCH + Duration::from_secs(noon(today)));
            for r in 0..2 {
                let keyed: Vec<KeyedIncrement> = (0..3)
                    .map(|k| KeyedIncrement {
                        key: key(round * 10 + r * 3 + k),
                        route: route(r),
                        now: noon(today),
                        // The first key of the last round expires as the export runs.
                        expires_at: if round == 1 && r == 0 && k == 0 {
                            export_now
                        } else {
                            export_now + 3_600
                        },
                    })
                    .collect();
                let write = RouteWrite {
                    route: route(r),
                    keyless: 1,
                    keyed: keyed.clone(),
                    day: today,
                };
                let outcome = ItemStore::commit(store, &write)
                    .await
                    .expect("keyed commit");
                for (inc, out) in keyed.iter().zip(outcome.keyed) {
                    assert!(!out.replayed);
                    if inc.expires_at > export_now {
                        let id = inc.key.record_id().into_owned();
                        keys.insert(id, (inc.key.clone(), out.route, out.count, inc.expires_at));
                    }
                }
            }
            if round == 0 {
                // Totals of the first round move to batch records; the last round's stay
                // on the route items.
                StoreBase::close(store).await;
            }
        }
    } else {
        for n in 0..6 {
            let expires_at = if n == 0 {
                export_now
            } else {
                export_now + 3_600
            };
            let (key, route, count) = (key(n), route(n % 2), 10 + n as u64);
            put_finished_key(store, table, &key, route, count, expires_at).await;
            if n > 0 {
                keys.insert(
                    key.record_id().into_owned(),
                    (key, route, count, expires_at),
                );
            }
        }
    }
    clock.set(UNIX_EPOCH + Duration::from_secs(export_now));
    keys
}

/// A key record with its count on it, written straight to the table.
async fn put_finished_key(
    store: &DynamoStore,
    table: &str,
    key: &IdempotencyKey,
    route: Route,
    count: u64,
    expires_at: u64,
) {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    store
        .client()
        .put_item()
        .table_name(table)
        .item(KEY_ATTRIBUTE, S(format!("idem#{}", key.record_id())))
        .item("target_route", S(route.as_str().to_owned()))
        .item("count", N(count.to_string()))
        .item("expires_at", N(expires_at.to_string()))
        .send()
        .await
        .expect("PutItem");
}

/// Every record an export sends, sorting `buffer` records at a time.
async fn export(store: &DynamoStore, now: u64, buffer: usize) -> Vec<Record> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let collect = async {
        let mut records = Vec::new();
        while let Some(record) = rx.recv().await {
            records.push(record);
        }
        records
    };
    let (exported, records) = tokio::join!(store.export_sorted_in(now, tx, buffer), collect);
    exported.expect("export");
    records
}

fn routes_of(records: &[Record]) -> Vec<&RouteRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Route(r) => Some(r),
            Record::Key(_) => None,
        })
        .collect()
}

fn keys_of(records: &[Record]) -> Vec<&KeyRecord> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Key(k) => Some(k),
            Record::Route(_) => None,
        })
        .collect()
}

/// Routes first, strictly ascending, then keys strictly ascending by record id.
fn assert_in_file_order(records: &[Record]) {
    let routes = routes_of(records);
    let keys = keys_of(records);
    assert_eq!(routes.len() + keys.len(), records.len());
    assert!(
        records[..routes.len()]
            .iter()
            .all(|r| matches!(r, Record::Route(_))),
        "routes come before keys"
    );
    assert!(
        routes
            .windows(2)
            .all(|w| w[0].route.as_str() < w[1].route.as_str()),
        "routes ascending, each once"
    );
    assert!(
        keys.windows(2)
            .all(|w| w[0].key.record_id() < w[1].key.record_id()),
        "keys ascending, each once"
    );
}

/// An export holds every route once, with what `get`, `daily` and `monthly` return, and every
/// unexpired key with the count its replay gives; the expired key and the days out of the
/// window are not in it.
async fn an_export_holds_what_the_reads_return(kind: Kind) {
    let clock = ManualClock::starting_now();
    let (table, store) = fresh_store(kind, "snap-export", &clock, None).await;
    let routes = 12;
    let keys = fill(kind, &store, &table, &clock, routes).await;
    let now = noon(day(LAST_DAY));
    let records = export(&store, now, 50_000).await;
    assert_in_file_order(&records);
    let today = day(LAST_DAY);
    let exported = routes_of(&records);
    assert_eq!(exported.len(), routes, "every route once");
    for record in &exported {
        let route = record.route;
        assert_eq!(
            record.total,
            store.get(route).await.expect("get"),
            "{route}"
        );
        let from = today.window_start();
        let daily = store.daily(route, from, today).await.expect("daily");
        let mut expected_days = Vec::new();
        for (n, count) in daily.iter().enumerate() {
            if *count > 0 {
                expected_days.push((from.plus(n as i32).expect("day"), *count));
            }
        }
        assert_eq!(record.days, expected_days, "{route} days");
        assert!(record.days.iter().all(|(d, _)| *d >= from), "{route}");
        let first_month = today.month().window_start();
        let monthly = store
            .monthly(route, first_month, today.month())
            .await
            .expect("monthly");
        let expected_months: Vec<(Month, u64)> = monthly
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (first_month.plus(i as i32), *n))
            .collect();
        assert_eq!(record.months, expected_months, "{route} months");
        // The first day written is out of the window, but still in the total and its month.
        let days_sum: u64 = record.days.iter().map(|(_, n)| n).sum();
        let months_sum: u64 = record.months.iter().map(|(_, n)| n).sum();
        assert!(
            days_sum <= months_sum && months_sum == record.total,
            "{route}"
        );
    }
    let exported_keys = keys_of(&records);
    let got: Vec<(String, Route, u64, u64)> = exported_keys
        .iter()
        .map(|k| {
            (
                k.key.record_id().into_owned(),
                k.route,
                k.count,
                k.expires_at,
            )
        })
        .collect();
    let expected: Vec<(String, Route, u64, u64)> = keys
        .iter()
        .map(|(id, (_, route, count, expires_at))| (id.clone(), *route, *count, *expires_at))
        .collect();
    assert_eq!(got, expected, "every unexpired key, with its count");
    assert!(exported_keys.iter().all(|k| k.expires_at > now));
    if kind == Kind::Moto {
        // A replay of each key answers the count the export holds.
        for k in &exported_keys {
            let write = RouteWrite {
                route: k.route,
                keyless: 0,
                keyed: vec![KeyedIncrement {
                    key: k.key.clone(),
                    route: k.route,
                    now,
                    expires_at: now + 60,
                }],
                day: today,
            };
            let outcome = ItemStore::commit(&*store, &write).await.expect("replay");
            assert!(outcome.keyed[0].replayed);
            assert_eq!(outcome.keyed[0].count, k.count, "{:?}", k.key);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_holds_what_the_reads_return_on_moto() {
    an_export_holds_what_the_reads_return(Kind::Moto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_holds_what_the_reads_return_on_dynalite() {
    an_export_holds_what_the_reads_return(Kind::Dynalite).await;
}

/// A sort buffer of a few records spills dozens of runs; merged, they come out in exactly the
/// order, and the same records, as one sort in memory.
async fn many_sorted_runs_merge_into_the_exact_order(kind: Kind) {
    let clock = ManualClock::starting_now();
    let (_, store) = fresh_store(kind, "snap-runs", &clock, None).await;
    let today = day(LAST_DAY);
    clock.set(UNIX_EPOCH + Duration::from_secs(noon(today)));
    // Written in an order unlike the sorted one.
    let writes: Vec<RouteWrite> = (0..500)
        .map(|n| RouteWrite::keyless(route((n * 7919) % 500), n as u64 + 1, today))
        .collect();
    for window in writes.chunks(16) {
        futures::future::try_join_all(window.iter().map(|w| ItemStore::commit(&*store, w)))
            .await
            .expect("commit");
    }
    let now = noon(today);
    let started = Instant::now();
    let merged = export(&store, now, 16).await;
    println!(
        "{}: 500 routes exported through 32 sorted runs in {:?}",
        kind.name(),
        started.elapsed()
    );
    assert_eq!(merged.len(), 500);
    assert_in_file_order(&merged);
    assert_eq!(merged, export(&store, now, 50_000).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sorted_runs_merge_into_the_exact_order_on_moto() {
    many_sorted_runs_merge_into_the_exact_order(Kind::Moto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sorted_runs_merge_into_the_exact_order_on_dynalite() {
    many_sorted_runs_merge_into_the_exact_order(Kind::Dynalite).await;
}

/// Imports `records` in chunks of `chunk`, marking each (the header is line 1), as the import
/// command does; each chunk `times` times in a row, as a run that resumes after applying a
/// chunk, before marking it, applies it again.
async fn import_each(
    store: &DynamoStore,
    snapshot: &str,
    records: &[Record],
    chunk: usize,
    merge: bool,
    times: usize,
) {
    let mut lines = 1;
    let chunks: Vec<&[Record]> = records.chunks(chunk).collect();
    for (at, records) in chunks.iter().enumerate() {
        lines += records.len() as u64;
        let mark = ImportMark {
            snapshot: snapshot.to_owned(),
            // The end line counts with the last chunk.
            lines_done: lines + u64::from(at + 1 == chunks.len()),
            finished: at + 1 == chunks.len(),
        };
        for _ in 0..times {
            store
                .import_chunk(records, &mark, merge)
                .await
                .expect("import chunk");
        }
        assert_eq!(store.import_mark(snapshot).await.expect("mark"), Some(mark));
    }
}

async fn import(
    store: &DynamoStore,
    snapshot: &str,
    records: &[Record],
    chunk: usize,
    merge: bool,
) {
    import_each(store, snapshot, records, chunk, merge, 1).await;
}

/// What merging `snapshot` into a store that exported `before` must leave: totals, days and
/// months added route by route; keys of both, the store's own kept where both have one.
fn merged(before: &[Record], snapshot: &[Record]) -> Vec<Record> {
    let mut routes: BTreeMap<String, RouteRecord> = BTreeMap::new();
    let mut keys: BTreeMap<String, KeyRecord> = BTreeMap::new();
    for record in snapshot.iter().chain(before) {
        match record {
            Record::Route(r) => match routes.get_mut(r.route.as_str()) {
                None => {
                    routes.insert(r.route.as_str().to_owned(), r.clone());
                }
                Some(sum) => {
                    sum.total += r.total;
                    let mut days: BTreeMap<Day, u64> = sum.days.iter().copied().collect();
                    for (d, n) in &r.days {
                        *days.entry(*d).or_default() += n;
                    }
                    sum.days = days.into_iter().collect();
                    let mut months: BTreeMap<Month, u64> = sum.months.iter().copied().collect();
                    for (m, n) in &r.months {
                        *months.entry(*m).or_default() += n;
                    }
                    sum.months = months.into_iter().collect();
                }
            },
            // The store's own (`before`, later in the chain) wins.
            Record::Key(k) => {
                keys.insert(k.key.record_id().into_owned(), k.clone());
            }
        }
    }
    let routes = routes.into_values().map(Record::Route);
    routes.chain(keys.into_values().map(Record::Key)).collect()
}

/// A snapshot imported into a fresh table exports back the same records; imported again, it
/// changes nothing. Merged into a table with counts, it adds them once, however many times the
/// merge of a chunk is run.
async fn an_import_exports_back_the_same_and_a_merge_adds_once(kind: Kind) {
    let clock = ManualClock::starting_now();
    let (source_table, source) = fresh_store(kind, "snap-source", &clock, None).await;
    let keys = fill(kind, &source, &source_table, &clock, 20).await;
    let now = noon(day(LAST_DAY));
    let snapshot = export(&source, now, 50_000).await;
    assert_eq!(keys_of(&snapshot).len(), keys.len());

    let (_, copy) = fresh_store(kind, "snap-copy", &clock, None).await;
    assert!(
        copy.is_empty().await.expect("is_empty"),
        "a fresh table is empty"
    );
    assert_eq!(copy.import_mark("snap-1").await.expect("mark"), None);
    let started = Instant::now();
    import(&copy, "snap-1", &snapshot, 7, false).await;
    println!(
        "{}: {} records imported in {:?}",
        kind.name(),
        snapshot.len(),
        started.elapsed()
    );
    assert!(!copy.is_empty().await.expect("is_empty"));
    assert_eq!(export(&copy, now, 50_000).await, snapshot, "exported back");
    import(&copy, "snap-1", &snapshot, 7, false).await;
    assert_eq!(export(&copy, now, 50_000).await, snapshot, "imported twice");

    // A table with counts of its own: some of the same routes, on the same days, and a key
    // the snapshot also holds (its record here is kept).
    let (target_table, target) = fresh_store(kind, "snap-target", &clock, None).await;
    let today = day(LAST_DAY);
    for n in [0, 1, 5, 30] {
        ItemStore::commit(
            &*target,
            &RouteWrite::keyless(route(n), 1_000 + n as u64, today),
        )
        .await
        .expect("commit");
    }
    let (shared_id, (shared_key, _, _, shared_expiry)) =
        keys.iter().next().expect("a key in the snapshot");
    put_finished_key(
        &target,
        &target_table,
        shared_key,
        route(30),
        999,
        *shared_expiry,
    )
    .await;
    let before = export(&target, now, 50_000).await;
    assert!(
        keys_of(&before)
            .iter()
            .any(|k| &*k.key.record_id() == shared_id)
    );
    let expected = merged(&before, &snapshot);
    import(&target, "snap-1", &snapshot, 7, true).await;
    assert_eq!(export(&target, now, 50_000).await, expected, "merged once");
    // A resumed run merges the same chunks again: nothing changes.
    import(&target, "snap-1", &snapshot, 7, true).await;
    assert_eq!(export(&target, now, 50_000).await, expected, "merged again");
    assert_eq!(
        target.get(route(0)).await.expect("get"),
        1_000 + routes_of(&snapshot)[0].total
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_exports_back_the_same_and_a_merge_adds_once_on_moto() {
    an_import_exports_back_the_same_and_a_merge_adds_once(Kind::Moto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_exports_back_the_same_and_a_merge_adds_once_on_dynalite() {
    an_import_exports_back_the_same_and_a_merge_adds_once(Kind::Dynalite).await;
}

/// Through the throttling proxy at one write a second per item, an import and a merge that
/// apply each chunk twice in a row (the second time, the same items within the second: whole
/// `BatchWriteItem`s and merges refused) and mark every chunk (one item, written again and
/// again) are throttled, pace themselves, and end exact. (The proxy refuses a whole request; it
/// never answers `UnprocessedItems`, whose path is the same pacing.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_import_paces_itself_and_ends_exact() {
    let clock = ManualClock::starting_now();
    let (source_table, source) = fresh_store(Kind::Dynalite, "snap-thr-src", &clock, None).await;
    fill(Kind::Dynalite, &source, &source_table, &clock, 20).await;
    let now = noon(day(LAST_DAY));
    let snapshot = export(&source, now, 50_000).await;
    let proxy = ThrottleProxy::start(emulators::shared(Kind::Dynalite).port(), 1);
    let (_, copy) = fresh_store(Kind::Dynalite, "snap-thr", &clock, Some(proxy.endpoint())).await;
    let started = Instant::now();
    import_each(&copy, "snap-t", &snapshot, 10, false, 2).await;
    println!(
        "throttled import, each chunk twice: {:?}",
        started.elapsed()
    );
    assert_eq!(export(&copy, now, 50_000).await, snapshot);
    let started = Instant::now();
    import_each(&copy, "snap-m", &snapshot, 10, true, 2).await;
    println!("throttled merge, each chunk twice: {:?}", started.elapsed());
    assert_eq!(
        export(&copy, now, 50_000).await,
        merged(&snapshot, &snapshot)
    );
    let stats = proxy.stats().await;
    let throttled = |op: &str| stats["operations"][op]["throttled"].as_u64().unwrap_or(0);
    println!("throttled by the proxy: {}", stats["operations"]);
    assert!(throttled("BatchWriteItem") > 0, "{}", stats["operations"]);
    assert!(throttled("UpdateItem") > 0, "{}", stats["operations"]);
}

/// A merge that would take a route past u64::MAX is refused, as a commit would be, and leaves
/// the route as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_past_u64_max_is_refused_and_changes_nothing() {
    let clock = ManualClock::starting_now();
    let today = day(LAST_DAY);
    clock.set(UNIX_EPOCH + Duration::from_secs(noon(today)));
    let (_, store) = fresh_store(Kind::Dynalite, "snap-overflow", &clock, None).await;
    ItemStore::commit(&*store, &RouteWrite::keyless(route(0), u64::MAX - 1, today))
        .await
        .expect("commit");
    let record = Record::Route(RouteRecord {
        route: route(0),
        total: 2,
        days: vec![(today, 2)],
        months: vec![(today.month(), 2)],
    });
    let mark = ImportMark {
        snapshot: "snap-big".into(),
        lines_done: 3,
        finished: true,
    };
    let refused = store.import_chunk(&[record], &mark, true).await;
    assert!(
        matches!(refused, Err(flight_counter::store::StoreError::Overflow(r)) if r == route(0)),
        "{refused:?}"
    );
    assert_eq!(store.get(route(0)).await.expect("get"), u64::MAX - 1);
    assert_eq!(store.import_mark("snap-big").await.expect("mark"), None);
}
