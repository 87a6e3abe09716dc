//! Moving counts between stores with the real binary's `export` and `import`: 6,000 routes
//! written over 70 days (a clock moved day by day) and 1,000 live idempotency keys go from the
//! embedded store to DynamoDB (moto) and back to a new embedded store. On every side every
//! total, every day and month series and multi-route reads agree, and every key replays the
//! count it first answered. Then the same file imported again changes nothing, an import
//! killed half-way and run again ends exact, and a second snapshot imported `--since` the first
//! adds exactly what the source recorded in between to a target that took writes of its own.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use flight_counter::{
    calendar::Day,
    clock::{Clock, ManualClock, SharedClock},
    idempotency::{IdempotencyKey, KeyedIncrement},
    route::Route,
    store::{BatchStore, EmbeddedStore, ItemStore, RouteWrite, StoreBase},
};

use crate::{
    emulators::{self, Kind},
    helpers::{AWS_TEST_ENV, dynamodb_config, dynamodb_store_on},
};

/// Routes of the move through DynamoDB: 6 import chunks, and 2 Scan pages in each of the
/// export's 4 segments. (moto serves one request at a time and rescans the table for every
/// page: more routes only make the test slower.)
const MOVE_ROUTES: usize = 6_000;
/// Routes of the killed import, all embedded: enough chunks that the kill lands mid-way.
const KILLED_ROUTES: usize = 20_000;
const DAYS: i32 = 70;
const KEYS: usize = 1_000;
const AIRLINES: [&str; 3] = ["AR", "IB", "LA"];

fn route(i: usize) -> Route {
    let name = format!("{}{}", AIRLINES[i / 9_000], 1 + i % 9_000);
    Route::parse(&name).expect("route")
}

fn key(k: usize) -> IdempotencyKey {
    IdempotencyKey::parse(format!("move-{k}").as_bytes()).expect("key")
}

/// The route key `k` was first used with.
fn key_route(k: usize) -> usize {
    (k * 13) % MOVE_ROUTES
}

/// Noon of the day `days_ago` days before today (UTC).
fn noon(days_ago: i32) -> SystemTime {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let midnight = now - now % 86_400;
    UNIX_EPOCH + Duration::from_secs(midnight - days_ago as u64 * 86_400 + 12 * 3_600)
}

/// Writes the data set into `store` through its commit path, day by day, then the keys.
async fn fill(store: &EmbeddedStore, clock: &ManualClock, routes: usize) {
    for d in 0..DAYS {
        clock.set(noon(DAYS - 1 - d));
        let today = clock.today();
        let writes: Vec<RouteWrite> = (0..routes)
            .filter(|r| (r + d as usize).is_multiple_of(5))
            .map(|r| RouteWrite::keyless(route(r), 1 + ((r * 7 + d as usize) % 4) as u64, today))
            .collect();
        for batch in writes.chunks(2_000) {
            BatchStore::commit(store, batch).await.expect("commit");
        }
    }
    let now = clock.epoch_seconds();
    let today = clock.today();
    // Routes in a batch are distinct: one batch per round of keys over distinct routes.
    for round in (0..KEYS).collect::<Vec<_>>().chunks(500) {
        let writes: Vec<RouteWrite> = round
            .iter()
            .map(|&k| RouteWrite {
                route: route(key_route(k)),
                keyless: 0,
                keyed: vec![KeyedIncrement {
                    key: key(k),
                    route: route(key_route(k)),
                    now,
                    expires_at: now + 86_400,
                }],
                day: today,
            })
            .collect();
        BatchStore::commit(store, &writes)
            .await
            .expect("keyed commit");
    }
}

/// What one store says of the data set: every total, and the series of every 97th route.
async fn view(
    store: &dyn StoreBase,
    today: Day,
    count: usize,
) -> (Vec<u64>, Vec<(Vec<u64>, Vec<u64>)>) {
    let routes: Vec<Route> = (0..count).map(route).collect();
    let mut totals = Vec::with_capacity(count);
    for chunk in routes.chunks(100) {
        totals.extend(store.get_many(chunk).await.expect("get_many"));
    }
    let first_day = today.plus(-61).expect("day");
    let month = today.month();
    let mut series = Vec::new();
    for r in (0..count).step_by(97) {
        let days = store
            .daily(routes[r], first_day, today)
            .await
            .expect("daily");
        let months = store
            .monthly(routes[r], month.plus(-23), month)
            .await
            .expect("monthly");
        series.push((days, months));
    }
    (totals, series)
}

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flight-counter"))
        .args(args)
        .envs(AWS_TEST_ENV)
        .stdin(Stdio::null())
        .output()
        .expect("flight-counter runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {stderr}");
    stderr
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_move_from_embedded_to_dynamodb_and_back_exactly() {
    let work = tempfile::tempdir().expect("temp dir");
    let source_dir = work.path().join("source");
    let clock = ManualClock::at(noon(DAYS - 1));
    let shared: SharedClock = clock.clone();
    {
        let source = EmbeddedStore::open(&source_dir, shared.clone()).expect("open");
        fill(&source, &clock, MOVE_ROUTES).await;
        source.close().await;
    }
    let today = clock.today();
    let source = EmbeddedStore::open(&source_dir, shared.clone()).expect("open");
    let expected = view(&source, today, MOVE_ROUTES).await;
    assert!(expected.0.iter().all(|&t| t > 0), "every route has counts");
    source.close().await;
    drop(source);

    // Embedded to a file.
    let first = work.path().join("first.jsonl");
    let said = run(&[
        "export",
        "--data-dir",
        path_arg(&source_dir),
        "--output",
        path_arg(&first),
    ]);
    assert!(
        said.contains(&format!("{MOVE_ROUTES} routes, {KEYS} keys")),
        "{said}"
    );

    // The file into DynamoDB.
    // A moto of its own: moto serves one request at a time, and this test's scans of 6,000
    // items would hold up every other test on a shared one past its commit timeout.
    let server = emulators::Emulator::start(Kind::Moto, None);
    let table = emulators::unique_table("moves");
    let endpoint = server.endpoint();
    let dynamo_flags = [
        "--store",
        "dynamodb",
        "--table",
        &table,
        "--endpoint-url",
        &endpoint,
        "--create-table",
    ];
    let import: Vec<&str> = ["import", "--input", path_arg(&first)]
        .into_iter()
        .chain(dynamo_flags)
        .collect();
    let said = run(&import);
    assert!(
        said.contains(&format!("imported {MOVE_ROUTES} routes and {KEYS} keys")),
        "{said}"
    );
    let config = dynamodb_config(&table, &endpoint, |_| {});
    let dynamo = dynamodb_store_on(&config, shared.clone()).await;
    assert_eq!(
        view(dynamo.as_ref(), today, MOVE_ROUTES).await,
        expected,
        "embedded to DynamoDB"
    );
    // The same file again changes nothing.
    let said = run(&import);
    assert!(said.contains("nothing changed"), "{said}");

    // DynamoDB to a file, and into a new embedded store.
    let second = work.path().join("second.jsonl");
    // moto serves one request at a time and walks the whole table for every Scan page, so the
    // four segments' pages queue behind each other: give an attempt a minute.
    let export: Vec<&str> = [
        "export",
        "--output",
        path_arg(&second),
        "--dynamodb-attempt-timeout",
        "60s",
    ]
    .into_iter()
    .chain(dynamo_flags)
    .collect();
    run(&export);
    let restored_dir = work.path().join("restored");
    run(&[
        "import",
        "--input",
        path_arg(&second),
        "--data-dir",
        path_arg(&restored_dir),
    ]);
    let restored = EmbeddedStore::open(&restored_dir, shared.clone()).expect("open");
    assert_eq!(
        view(&restored, today, MOVE_ROUTES).await,
        expected,
        "DynamoDB to embedded"
    );

    // Every key replays the count it first answered, on both new stores.
    let now = clock.epoch_seconds();
    for k in (0..KEYS).step_by(7) {
        let write = RouteWrite {
            route: route(key_route(k)),
            keyless: 0,
            keyed: vec![KeyedIncrement {
                key: key(k),
                route: route(key_route(k)),
                now,
                expires_at: now + 86_400,
            }],
            day: today,
        };
        let on_dynamo = ItemStore::commit(dynamo.as_ref(), &write)
            .await
            .expect("commit");
        let on_embedded = BatchStore::commit(&restored, std::slice::from_ref(&write))
            .await
            .expect("commit");
        for outcome in [&on_dynamo.keyed[0], &on_embedded[0].keyed[0]] {
            assert!(outcome.replayed, "key {k} counted again");
            assert_eq!(outcome.route, route(key_route(k)));
        }
        assert_eq!(
            on_dynamo.keyed[0].count, on_embedded[0].keyed[0].count,
            "key {k}"
        );
    }
    restored.close().await;
}

/// An import killed with SIGKILL half-way, then run again, ends exact; so does a second run
/// of a finished one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_killed_half_way_and_run_again_ends_exact() {
    let work = tempfile::tempdir().expect("temp dir");
    let source_dir = work.path().join("source");
    let clock = ManualClock::at(noon(DAYS - 1));
    let shared: SharedClock = clock.clone();
    {
        let source = EmbeddedStore::open(&source_dir, shared.clone()).expect("open");
        fill(&source, &clock, KILLED_ROUTES).await;
        source.close().await;
    }
    let today = clock.today();
    let expected = {
        let source = EmbeddedStore::open(&source_dir, shared.clone()).expect("open");
        let view = view(&source, today, KILLED_ROUTES).await;
        source.close().await;
        view
    };
    let file = work.path().join("snapshot.jsonl");
    run(&[
        "export",
        "--data-dir",
        path_arg(&source_dir),
        "--output",
        path_arg(&file),
    ]);

    let target_dir = work.path().join("target");
    let mut import = Command::new(env!("CARGO_BIN_EXE_flight-counter"))
        .args([
            "import",
            "--input",
            path_arg(&file),
            "--data-dir",
            path_arg(&target_dir),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("import starts");
    // Killed as soon as it says its first chunk is in.
    let stderr = import.stderr.take().expect("stderr");
    let first = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stderr), &mut line).map(|_| line)
    })
    .await
    .expect("reader")
    .expect("a progress line");
    assert!(first.contains("so far"), "{first}");
    import.kill().expect("SIGKILL");
    let _ = import.wait();
    let said = run(&[
        "import",
        "--input",
        path_arg(&file),
        "--data-dir",
        path_arg(&target_dir),
    ]);
    assert!(said.contains("resuming an earlier run"), "{said}");
    assert!(said.contains("imported"), "{said}");
    let said = run(&[
        "import",
        "--input",
        path_arg(&file),
        "--data-dir",
        path_arg(&target_dir),
    ]);
    assert!(said.contains("nothing changed"), "{said}");
    let target = EmbeddedStore::open(&target_dir, shared).expect("open");
    assert_eq!(view(&target, today, KILLED_ROUTES).await, expected);
    target.close().await;
}

/// Adds `n` to each of `routes` on the clock's day.
async fn commit(
    store: &EmbeddedStore,
    clock: &ManualClock,
    routes: std::ops::Range<usize>,
    n: u64,
) {
    let today = clock.today();
    let writes: Vec<RouteWrite> = routes
        .map(|r| RouteWrite::keyless(route(r), n, today))
        .collect();
    BatchStore::commit(store, &writes).await.expect("commit");
}

/// A move with writes on both sides: the target takes a first snapshot and then new writes of
/// its own, while the source goes on recording; importing the source's final snapshot `--since`
/// the first adds exactly what the source recorded in between, and its new keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_since_the_first_snapshot_completes_a_move_exactly() {
    let work = tempfile::tempdir().expect("temp dir");
    let (source_dir, target_dir) = (work.path().join("source"), work.path().join("target"));
    let clock = ManualClock::at(noon(1));
    let shared: SharedClock = clock.clone();
    let source = EmbeddedStore::open(&source_dir, shared.clone()).expect("open");
    commit(&source, &clock, 0..300, 2).await;
    source.close().await;
    drop(source);
    let first = work.path().join("first.jsonl");
    run(&[
        "export",
        "--data-dir",
        path_arg(&source_dir),
        "--output",
        path_arg(&first),
    ]);
    run(&[
        "import",
        "--input",
        path_arg(&first),
        "--data-dir",
        path_arg(&target_dir),
    ]);

    // The source records more, on a new day and on new routes; the target takes writes too.
    clock.set(noon(0));
    let source = EmbeddedStore::open(&source_dir, shared.clone()).expect("open");
    commit(&source, &clock, 200..400, 3).await;
    source.close().await;
    drop(source);
    let target = EmbeddedStore::open(&target_dir, shared.clone()).expect("open");
    commit(&target, &clock, 0..50, 5).await;
    target.close().await;
    drop(target);

    let second = work.path().join("second.jsonl");
    run(&[
        "export",
        "--data-dir",
        path_arg(&source_dir),
        "--output",
        path_arg(&second),
    ]);
    let said = run(&[
        "import",
        "--input",
        path_arg(&second),
        "--since",
        path_arg(&first),
        "--data-dir",
        path_arg(&target_dir),
    ]);
    // Routes 200..400 changed in between; the others are left out.
    assert!(said.contains("imported 200 routes"), "{said}");

    let target = EmbeddedStore::open(&target_dir, shared.clone()).expect("open");
    let today = clock.today();
    for r in 0..400 {
        let from_source = if r < 200 {
            2
        } else if r < 300 {
            5
        } else {
            3
        };
        let own = if r < 50 { 5 } else { 0 };
        assert_eq!(
            target.get(route(r)).await.expect("get"),
            from_source + own,
            "route {r}"
        );
        let today_count = target.daily(route(r), today, today).await.expect("daily")[0];
        assert_eq!(
            today_count,
            if r >= 200 { 3 } else { 0 } + own,
            "route {r} today"
        );
    }
    target.close().await;
    drop(target);
    // Run again: nothing changes.
    let said = run(&[
        "import",
        "--input",
        path_arg(&second),
        "--since",
        path_arg(&first),
        "--data-dir",
        path_arg(&target_dir),
    ]);
    assert!(said.contains("nothing changed"), "{said}");
}
