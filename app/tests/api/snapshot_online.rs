//! An online export over HTTP (`GET /admin/export`) from a running embedded service under write
//! load: only an admin key may take it; it is one point in time (every POST acknowledged before
//! any POST it holds was sent is in it, and each route's numbers are exactly `1..=total`); each
//! route's days and months add up to its total; and restoring it with the real binary's
//! `import` into a new data directory gives a service that answers the same counts and goes on
//! counting from them.

use std::{
    path::Path,
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use flight_counter::{
    auth::digest_hex,
    clock::{Clock, ManualClock},
    snapshot::{Record, RouteRecord, SnapshotReader},
    startup::Application,
};
use serde_json::Value;

use crate::{
    auth::{KeysFile, WRITE_KEY},
    helpers::{TestApp, embedded_config, send_json},
};

const ADMIN_KEY: &str = "fck_admin-key-for-the-export-tests-0123456789abcd";
const ROUTES: usize = 40;
const WRITERS: usize = 8;
/// POSTs acknowledged before the export is asked for, and after its body has arrived.
const BEFORE: usize = 600;
const AFTER: usize = 300;

fn route(r: usize) -> String {
    format!("IB{:04}", 100 + r)
}

/// One acknowledged POST: the number it was answered, when it was sent and answered.
struct Post {
    route: usize,
    number: u64,
    sent: Instant,
    acked: Instant,
}

/// POSTs round the routes from `WRITERS` tasks until `stop` is set.
fn start_writers(
    app: &TestApp,
    stop: &Arc<AtomicBool>,
    posts: &Arc<Mutex<Vec<Post>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..WRITERS)
        .map(|w| {
            let (client, stop, posts) = (app.client.clone(), Arc::clone(stop), Arc::clone(posts));
            let base = app.url("/transactions/");
            tokio::spawn(async move {
                let mut r = w;
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let resp = client
                        .post(format!("{base}{}", route(r % ROUTES)))
                        .bearer_auth(WRITE_KEY)
                        .send()
                        .await
                        .expect("POST sent");
                    let acked = Instant::now();
                    assert_eq!(resp.status(), 200, "POST {}", route(r % ROUTES));
                    let body: Value = resp.json().await.expect("json body");
                    let number = body["transactions"].as_u64().expect("a count");
                    posts.lock().expect("posts").push(Post {
                        route: r % ROUTES,
                        number,
                        sent,
                        acked,
                    });
                    r += WRITERS;
                }
            })
        })
        .collect()
}

async fn wait_for_posts(posts: &Mutex<Vec<Post>>, at_least: usize) {
    while posts.lock().expect("posts").len() < at_least {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_export_under_writes_is_one_point_in_time_and_restores() {
    let work = tempfile::tempdir().expect("temp dir");
    let keys = KeysFile::new(&format!(
        "operators   admin {}\nbooking     write {}\n",
        digest_hex(ADMIN_KEY),
        digest_hex(WRITE_KEY),
    ));
    // A fixed clock: every transaction lands on one day, so days and months must add up to the
    // totals exactly.
    let clock = ManualClock::at(SystemTime::now());
    let config = embedded_config(&work.path().join("live"), |config| {
        config.auth.api_keys_file = Some(keys.path());
    });
    let app = TestApp::start(Application::builder(config).clock(clock.clone())).await;

    // Only an admin key may export.
    let export = app.url("/admin/export");
    let refused = send_json(app.client.get(&export).bearer_auth(WRITE_KEY)).await;
    assert_eq!(refused["error"], "forbidden", "{refused}");
    let resp = app.client.get(&export).send().await.expect("GET sent");
    assert_eq!(resp.status(), 401);

    let stop = Arc::new(AtomicBool::new(false));
    let posts = Arc::new(Mutex::new(Vec::new()));
    let writers = start_writers(&app, &stop, &posts);
    wait_for_posts(&posts, BEFORE).await;

    let asked = Instant::now();
    let resp = app
        .client
        .get(&export)
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .expect("export sent");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().ok(),
        Some("application/x-ndjson")
    );
    let id = resp.headers()["snapshot-id"]
        .to_str()
        .expect("ascii id")
        .to_owned();
    let body = resp.bytes().await.expect("the whole export");
    let received = Instant::now();
    let acked_before_asking = posts
        .lock()
        .expect("posts")
        .iter()
        .filter(|p| p.acked < asked)
        .count();
    let so_far = posts.lock().expect("posts").len();
    wait_for_posts(&posts, so_far + AFTER).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.expect("writer");
    }

    // The file is whole (its end line is checked as it is read) and names itself as the header.
    let mut reader = SnapshotReader::new(&body[..]).expect("a snapshot header");
    assert_eq!(reader.header().id, id);
    assert_eq!(reader.header().source, "embedded");
    let mut totals = vec![0u64; ROUTES];
    let mut records: Vec<RouteRecord> = Vec::new();
    while let Some(record) = reader.next_record().expect("a valid record") {
        let Record::Route(record) = record else {
            panic!("no keyed POSTs were made, yet the export holds a key");
        };
        let r = (0..ROUTES)
            .find(|&r| route(r) == record.route.as_str())
            .unwrap_or_else(|| panic!("{} is not a route the test wrote", record.route.as_str()));
        totals[r] = record.total;
        let today = clock.today();
        assert_eq!(record.days, vec![(today, record.total)], "{record:?}");
        assert_eq!(
            record.months.iter().map(|(_, n)| n).sum::<u64>(),
            record.total
        );
        records.push(record);
    }
    assert_eq!(records.len(), ROUTES);

    // The writers are done: the list is whole.
    let posts = std::mem::take(&mut *posts.lock().expect("posts"));
    for (r, total) in totals.iter().enumerate() {
        // Every number up to the route's total was handed to an acknowledged POST, once.
        let mut numbers: Vec<u64> = posts
            .iter()
            .filter(|p| p.route == r && p.number <= *total)
            .map(|p| p.number)
            .collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (1..=*total).collect::<Vec<_>>(), "{}", route(r));
    }
    let held = |p: &Post| p.number <= totals[p.route];
    assert!(posts.iter().filter(|p| held(p)).count() >= acked_before_asking);
    // One point in time: whatever the export holds, it holds every POST answered before that
    // one was sent, on any route; nothing sent after the body arrived is in it.
    let latest_held = posts
        .iter()
        .filter(|p| held(p))
        .map(|p| p.sent)
        .max()
        .expect("the export holds POSTs");
    for p in posts.iter() {
        if p.acked < latest_held || p.acked < asked {
            assert!(
                held(p),
                "{} #{} was answered before",
                route(p.route),
                p.number
            );
        }
        if p.sent > received {
            assert!(!held(p), "{} #{} was sent after", route(p.route), p.number);
        }
    }
    let live_totals: Vec<u64> = (0..ROUTES)
        .map(|r| posts.iter().filter(|p| p.route == r).count() as u64)
        .collect();
    assert!(
        live_totals
            .iter()
            .zip(&totals)
            .any(|(live, held)| live > held),
        "writes went on after the export"
    );
    app.stop().await;

    // Restore into a new data directory with the real binary, then serve from it.
    let file = work.path().join("backup.jsonl");
    std::fs::write(&file, &body).expect("backup written");
    let restored_dir = work.path().join("restored");
    let out = Command::new(env!("CARGO_BIN_EXE_flight-counter"))
        .args(["import", "--input", path_arg(&file), "--data-dir"])
        .arg(&restored_dir)
        .stdin(Stdio::null())
        .output()
        .expect("flight-counter runs");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("imported {ROUTES} routes")),
        "{said}"
    );

    let restored = TestApp::start(
        Application::builder(embedded_config(&restored_dir, |_| {})).clock(clock.clone()),
    )
    .await;
    let today = clock.today();
    for (r, total) in totals.iter().enumerate() {
        assert_eq!(restored.count(&route(r), &route(r)).await, *total);
        let daily = send_json(restored.client.get(restored.url(&format!(
            "/transactions/{}/daily?from={today}&to={today}",
            route(r)
        ))))
        .await;
        assert_eq!(daily["days"][0]["transactions"], *total, "{daily}");
        assert_eq!(restored.record(&route(r), &route(r)).await, total + 1);
    }
    restored.stop().await;
}
