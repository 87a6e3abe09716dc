//! Exactly-once counting with `Idempotency-Key`, on every store that supports it: memory,
//! embedded (with and without group commit) and DynamoDB on moto (served single-threaded, so
//! exact counts under concurrency can be asserted; dynalite has no `TransactWriteItems`).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use flight_counter::{
    clock::{Clock, ManualClock, SystemClock},
    config::Config,
    startup::Application,
    store::{DynamoStore, EmbeddedStore, MemoryStore, Store, StoreBase},
};
use serde_json::Value;

use crate::{
    emulators::{self, Kind},
    helpers::{
        AWS_TEST_ENV, ServiceProcess, TestApp, client, config_with, dynamodb_store,
        embedded_config, read_item, secs, table_on, within,
    },
    store_contract::Fixture,
};

/// One answer to a keyed POST.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    /// Whether `Idempotent-Replayed: true` came with it.
    pub replayed: bool,
}

impl Answer {
    pub fn count(&self) -> u64 {
        assert_eq!(self.status, 200, "{}", self.body);
        self.body["transactions"].as_u64().expect("count is a u64")
    }
}

/// Sends `key` again through `base` and asserts it is answered as a replay of `count`.
pub async fn assert_replays(
    http: &reqwest::Client,
    base: &str,
    route: &str,
    key: &str,
    count: u64,
) {
    let again = post_keyed(http, base, route, key).await;
    assert_eq!(again.status, 200, "replay of {key}: {}", again.body);
    assert!(again.replayed, "{key} was not answered as a replay");
    assert_eq!(again.count(), count, "{key} replayed another count");
}

pub async fn post_keyed(http: &reqwest::Client, base: &str, route: &str, key: &str) -> Answer {
    let resp = http
        .post(format!("{base}/transactions/{route}"))
        .header("Idempotency-Key", key)
        .send()
        .await
        .expect("POST sent");
    let status = resp.status().as_u16();
    let replayed = match resp.headers().get("idempotent-replayed") {
        None => false,
        Some(v) => {
            assert_eq!(v, "true", "the replay marker is `true` or absent");
            true
        }
    };
    let body: Value = resp.json().await.expect("json body");
    Answer {
        status,
        body,
        replayed,
    }
}

pub async fn first_post_counts_and_retries_replay_its_answer(f: Fixture) {
    let (http, base) = (&f.app.client, f.app.url(""));
    let first = post_keyed(http, &base, "AR1", "order-1").await;
    assert_eq!(first.count(), 1);
    assert!(!first.replayed, "a first POST is not a replay");
    assert_eq!(first.body["route"], "AR0001");
    for spelling in ["AR1", "ar0001"] {
        let again = post_keyed(http, &base, spelling, "order-1").await;
        assert_eq!(again.count(), 1, "{spelling}");
        assert!(again.replayed, "{spelling}");
        assert_eq!(again.body, first.body);
    }
    // Keyless POSTs and other keys are counted as before.
    assert_eq!(f.app.record("AR1", "AR0001").await, 2);
    assert_eq!(post_keyed(http, &base, "AR1", "order-2").await.count(), 3);
    let late = post_keyed(http, &base, "AR1", "order-1").await;
    assert_eq!((late.count(), late.replayed), (1, true));
    assert_eq!(f.app.count("AR1", "AR0001").await, 3);
    f.app.stop().await;
}

pub async fn a_key_reused_on_another_route_is_refused_and_changes_nothing(f: Fixture) {
    let (http, base) = (&f.app.client, f.app.url(""));
    assert_eq!(post_keyed(http, &base, "AR1", "shared").await.count(), 1);
    let reused = post_keyed(http, &base, "LA1", "shared").await;
    assert_eq!(reused.status, 422, "{}", reused.body);
    assert_eq!(reused.body["error"], "idempotency_key_reused");
    let message = reused.body["message"].as_str().expect("message");
    assert!(message.contains("AR0001"), "{message}");
    assert!(!reused.replayed);
    assert_eq!(f.app.count("LA1", "LA0001").await, 0);
    assert_eq!(f.app.count("AR1", "AR0001").await, 1);
    // The key still belongs to its first route.
    let replay = post_keyed(http, &base, "AR1", "shared").await;
    assert_eq!((replay.count(), replay.replayed), (1, true));
    f.app.stop().await;
}

pub async fn bad_keys_are_refused_with_a_json_400_and_change_nothing(f: Fixture) {
    let long = "k".repeat(256);
    let bad: Vec<reqwest::header::HeaderValue> = vec![
        reqwest::header::HeaderValue::from_static(""),
        reqwest::header::HeaderValue::from_str(&long).expect("header"),
        reqwest::header::HeaderValue::from_static("has space"),
        reqwest::header::HeaderValue::from_static("tab\there"),
        reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").expect("header"),
        reqwest::header::HeaderValue::from_bytes(b"\xff\xfe").expect("header"),
    ];
    for value in bad {
        let resp = f
            .app
            .client
            .post(f.app.url("/transactions/BK1"))
            .header("Idempotency-Key", value.clone())
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), 400, "{value:?}");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(
            body["error"], "invalid_idempotency_key",
            "{value:?}: {body}"
        );
        let message = body["message"].as_str().expect("message");
        assert!(message.contains("255"), "{message}");
    }
    // Two keys on one request: which one would it be?
    let resp = f
        .app
        .client
        .post(f.app.url("/transactions/BK1"))
        .header("Idempotency-Key", "one")
        .header("Idempotency-Key", "two")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 400);
    // A bad route with a good key is still an invalid route.
    let resp = post_keyed(&f.app.client, &f.app.url(""), "A1", "fine").await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.body["error"], "invalid_route");
    assert_eq!(f.app.count("BK1", "BK0001").await, 0);
    // The longest and widest valid key.
    let widest: String = (0x21u8..=0x7e).map(char::from).collect();
    let longest = format!("{widest}{}", "z".repeat(255 - widest.len()));
    let ok = post_keyed(&f.app.client, &f.app.url(""), "BK1", &longest).await;
    assert_eq!((ok.count(), ok.replayed), (1, false));
    f.app.stop().await;
}

/// Sends every one of `keys` logical transactions `copies` times at once, copy `c` of key `k`
/// to `bases[(k + c) % bases.len()]`, each copy from a client of its own, spread over `routes`.
/// Returns each key's answers.
pub async fn retry_storm(
    bases: &[String],
    routes: &[&str],
    keys: std::ops::Range<usize>,
    copies: usize,
    tag: &str,
) -> HashMap<usize, Vec<Answer>> {
    let bases = Arc::new(bases.to_vec());
    let mut tasks = Vec::new();
    for k in keys {
        for c in 0..copies {
            let bases = Arc::clone(&bases);
            let route = routes[k % routes.len()].to_owned();
            let key = format!("{tag}-{k:04}");
            tasks.push(tokio::spawn(async move {
                let http = client();
                let base = &bases[(k + c) % bases.len()];
                (k, post_keyed(&http, base, &route, &key).await)
            }));
        }
    }
    let mut answers: HashMap<usize, Vec<Answer>> = HashMap::new();
    for task in tasks {
        let (k, answer) = task.await.expect("client task");
        answers.entry(k).or_default().push(answer);
    }
    answers
}

/// Checks a storm's answers: every copy `200`, the copies of one key the same count, exactly
/// one of them not a replay, and the distinct counts per route exactly `1..=N`.
pub fn check_storm(answers: &HashMap<usize, Vec<Answer>>, routes: &[&str]) -> HashMap<usize, u64> {
    let mut per_route: HashMap<String, Vec<u64>> = HashMap::new();
    let mut counts = HashMap::new();
    for (k, copies) in answers {
        for a in copies {
            assert_eq!(a.status, 200, "key {k}: {}", a.body);
        }
        let distinct: HashSet<u64> = copies.iter().map(Answer::count).collect();
        assert_eq!(
            distinct.len(),
            1,
            "key {k} got different counts: {copies:?}"
        );
        let first = copies.iter().filter(|a| !a.replayed).count();
        assert!(first <= 1, "key {k} was counted {first} times: {copies:?}");
        let count = copies[0].count();
        per_route
            .entry(copies[0].body["route"].as_str().expect("route").to_owned())
            .or_default()
            .push(count);
        counts.insert(*k, count);
    }
    assert!(per_route.len() <= routes.len());
    for (route, mut got) in per_route {
        got.sort_unstable();
        let n = got.len() as u64;
        assert_eq!(got, (1..=n).collect::<Vec<u64>>(), "route {route}");
    }
    counts
}

/// 40 transactions on two routes, each sent three times at once by three clients.
pub async fn a_retry_storm_counts_every_transaction_once(f: Fixture) {
    let routes = ["RS1", "RS2"];
    let answers = retry_storm(&[f.app.url("")], &routes, 0..40, 3, "storm").await;
    check_storm(&answers, &routes);
    for key_answers in answers.values() {
        let first = key_answers.iter().filter(|a| !a.replayed).count();
        assert_eq!(first, 1, "exactly one copy is the first: {key_answers:?}");
    }
    assert_eq!(f.app.count("RS1", "RS0001").await, 20);
    assert_eq!(f.app.count("RS2", "RS0002").await, 20);
    f.app.stop().await;
}

/// A key is honoured for the whole retention window (24 hours by default), and used again
/// after it is a new transaction. The service's clock is moved, not waited for.
pub async fn an_expired_key_is_a_new_transaction(f: Fixture) {
    let (http, base) = (&f.app.client, f.app.url(""));
    assert_eq!(post_keyed(http, &base, "EX1", "again").await.count(), 1);
    let replay = post_keyed(http, &base, "EX1", "again").await;
    assert_eq!((replay.count(), replay.replayed), (1, true));
    let retention = Config::default().ledger.idempotency_retention;
    f.clock.advance(retention - Duration::from_secs(1));
    let late = post_keyed(http, &base, "EX1", "again").await;
    assert_eq!(
        (late.count(), late.replayed),
        (1, true),
        "still within the window"
    );
    // Expiry is kept in whole seconds and rounded up: two more seconds pass it.
    f.clock.advance(Duration::from_secs(3));
    let renewed = post_keyed(http, &base, "EX1", "again").await;
    assert_eq!((renewed.count(), renewed.replayed), (2, false));
    let replay = post_keyed(http, &base, "EX1", "again").await;
    assert_eq!((replay.count(), replay.replayed), (2, true));
    assert_eq!(f.app.count("EX1", "EX0001").await, 2);
    f.app.stop().await;
}

/// The idempotency contract for one store. `$fixture` is an async fn that starts a [`Fixture`].
#[macro_export]
macro_rules! idempotency_contract_tests {
    ($store:ident, $fixture:path) => {
        mod $store {
            #[allow(unused_imports)]
            use super::*;
            use $crate::idempotency as contract;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn first_post_counts_and_retries_replay_its_answer() {
                contract::first_post_counts_and_retries_replay_its_answer($fixture().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_key_reused_on_another_route_is_refused_and_changes_nothing() {
                contract::a_key_reused_on_another_route_is_refused_and_changes_nothing(
                    $fixture().await,
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_keys_are_refused_with_a_json_400_and_change_nothing() {
                contract::bad_keys_are_refused_with_a_json_400_and_change_nothing($fixture().await)
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_retry_storm_counts_every_transaction_once() {
                contract::a_retry_storm_counts_every_transaction_once($fixture().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_expired_key_is_a_new_transaction() {
                contract::an_expired_key_is_a_new_transaction($fixture().await).await;
            }
        }
    };
}

async fn embedded_in(dir: &tempfile::TempDir, change: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn(embedded_config(dir.path(), change)).await
}

async fn moto() -> Fixture {
    crate::stores::dynamodb(Kind::Moto, |_| {}).await
}

// The memory store lives in one process: its storms come from many concurrent clients of that
// one process; there is no other process to send copies to.
idempotency_contract_tests!(memory_store, crate::stores::memory);
idempotency_contract_tests!(embedded_store, crate::stores::embedded);
idempotency_contract_tests!(
    embedded_store_one_commit_per_post,
    crate::stores::embedded_without_group_commit
);
idempotency_contract_tests!(dynamodb_on_moto, moto);

/// Expired keys are deleted by the sweep the service runs in the background: nothing is
/// deleted while the clock stands still, everything once it passes the keys' expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_sweeps_expired_keys() {
    let store = Arc::new(MemoryStore::new());
    let clock = ManualClock::starting_now();
    // A one-second window: the sweep runs every half second.
    let config = config_with(|c| c.ledger.idempotency_retention = secs(1));
    let app = TestApp::spawn_with_clock(config, Store::Batch(store.clone()), clock.clone()).await;
    for k in 0..5 {
        let key = format!("sweep-{k}");
        assert_eq!(
            post_keyed(&app.client, &app.url(""), "SW1", &key)
                .await
                .count(),
            k + 1
        );
    }
    assert_eq!(store.key_records(), 5);
    clock.advance(secs(3));
    within(Duration::from_secs(5), "the sweep", async || {
        store.key_records() == 0
    })
    .await;
    assert_eq!(app.count("SW1", "SW0001").await, 5);
    app.stop().await;
}

/// One process owns the embedded file, so the storm comes from many concurrent clients; the
/// service is then restarted, and the same storm again (plus new keys) is answered from the
/// keys that survived: nothing counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_keys_survive_a_restart_and_storms_count_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let routes = ["ER1", "ER2", "ER3"];
    let app = embedded_in(&dir, |_| {}).await;
    let before = retry_storm(&[app.url("")], &routes, 0..30, 3, "restart").await;
    let counts_before = check_storm(&before, &routes);
    app.stop().await;

    let app = embedded_in(&dir, |_| {}).await;
    let after = retry_storm(&[app.url("")], &routes, 0..45, 3, "restart").await;
    let counts_after = check_storm(&after, &routes);
    for (k, count) in &counts_before {
        assert_eq!(
            counts_after.get(k),
            Some(count),
            "key {k} changed its count"
        );
        assert!(after[k].iter().all(|a| a.replayed), "key {k} counted again");
    }
    let mut total = 0;
    for route in routes {
        total += app.count(route, &route.replace('R', "R000")).await;
    }
    assert_eq!(total, 45);
    app.stop().await;
}

/// Keys recorded through the service are deleted from the embedded file by a sweep at or
/// after their expiry, and not before. (The background sweep itself is covered on the memory
/// store, whose records a test can watch while the service runs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_sweeps_expired_keys() {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::starting_now();
    let config = embedded_config(dir.path(), |c| c.ledger.idempotency_retention = secs(3));
    let app = TestApp::start(Application::builder(config).clock(clock.clone())).await;
    for k in 0..5 {
        let key = format!("sweep-{k}");
        assert_eq!(
            post_keyed(&app.client, &app.url(""), "SE1", &key)
                .await
                .count(),
            k + 1
        );
    }
    app.stop().await;
    let store = EmbeddedStore::open(dir.path(), clock.clone()).expect("open");
    assert_eq!(store.key_records().await.expect("records"), 5);
    let today = clock.today();
    let sweep = |at: u64| store.housekeeping(at, today, 1000);
    assert_eq!(sweep(clock.epoch_seconds()).await.expect("sweep"), 0);
    // Three seconds of retention, rounded up to whole seconds: expired five seconds later.
    assert_eq!(sweep(clock.epoch_seconds() + 5).await.expect("sweep"), 5);
    assert_eq!(store.key_records().await.expect("records"), 0);
}

/// Two service processes on one moto table; every transaction is sent three times at once,
/// to both processes: each is counted once, and every copy got the same count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_storms_across_two_processes_count_every_key_once() {
    let server = emulators::shared(Kind::Moto);
    let table = emulators::unique_table("idem-pods");
    let endpoint = server.endpoint();
    let args = [
        "--store",
        "dynamodb",
        "--table",
        &table,
        "--endpoint-url",
        &endpoint,
        "--create-table",
        "--dynamodb-attempt-timeout",
        "5s",
    ];
    let pods = [
        ServiceProcess::start_with_env(&args, &AWS_TEST_ENV),
        ServiceProcess::start_with_env(&args, &AWS_TEST_ENV),
    ];
    let bases: Vec<String> = pods.iter().map(|p| p.base.clone()).collect();
    for base in &bases {
        wait_ready(base).await;
    }
    let routes = ["DP1", "DP2"];
    let answers = retry_storm(&bases, &routes, 0..40, 3, "pods").await;
    check_storm(&answers, &routes);
    for base in &bases {
        assert_eq!(count(base, "DP1").await + count(base, "DP2").await, 40);
    }
    // A key recorded through one process is honoured by the other.
    let http = client();
    let first = post_keyed(&http, &bases[0], "DP3", "handover").await;
    assert_eq!((first.count(), first.replayed), (1, false));
    let other = post_keyed(&http, &bases[1], "DP3", "handover").await;
    assert_eq!((other.count(), other.replayed), (1, true));
    let reused = post_keyed(&http, &bases[1], "DP1", "handover").await;
    assert_eq!(reused.status, 422);
    assert_eq!(count(&bases[0], "DP3").await, 1);
}

/// `--create-table` turns TTL on for `expires_at`, and key records carry it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_key_records_expire_through_ttl() {
    let (table, config) = table_on(Kind::Moto, "idem-ttl", |c| {
        c.ledger.idempotency_retention = secs(3600)
    });
    let store: Arc<DynamoStore> = dynamodb_store(&config).await;
    let app = TestApp::spawn_with_store(config, Store::Item(store.clone())).await;
    let now = SystemClock.epoch_seconds();
    assert_eq!(
        post_keyed(&app.client, &app.url(""), "TT1", "ttl-1")
            .await
            .count(),
        1
    );
    let ttl = store
        .client()
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .expect("DescribeTimeToLive");
    let description = ttl.time_to_live_description().expect("a TTL description");
    assert_eq!(description.attribute_name(), Some("expires_at"));
    assert_eq!(
        description.time_to_live_status().map(|s| s.as_str()),
        Some("ENABLED")
    );
    let item = read_item(&store, &table, "idem#ttl-1").await;
    assert!(!item.is_empty(), "the key record");
    let expires_at: u64 = item["expires_at"]
        .as_n()
        .expect("a number")
        .parse()
        .expect("epoch seconds");
    assert!(
        (now + 3600..=now + 3603).contains(&expires_at),
        "expires_at {expires_at}, now {now}"
    );
    assert_eq!(
        item["target_route"].as_s().map(String::as_str),
        Ok("TT0001")
    );
    // The record names its batch and its place from the batch's end; the batch's total is on
    // the route's item until the service moves it to the batch record (at the latest when it
    // stops).
    assert_eq!(item["back"].as_n().map(String::as_str), Ok("0"));
    let batch = item["batch"].as_s().expect("a batch id").clone();
    app.stop().await;
    let batch_record = read_item(&store, &table, &format!("batch#{batch}")).await;
    assert_eq!(batch_record["count"].as_n().map(String::as_str), Ok("1"));
    assert_eq!(
        batch_record["target_route"].as_s().map(String::as_str),
        Ok("TT0001")
    );
    let route_item = read_item(&store, &table, "TT0001").await;
    assert_eq!(
        route_item["transactions"].as_n().map(String::as_str),
        Ok("1")
    );
    assert!(
        !route_item.keys().any(|name| is_marker(name)),
        "the total was moved off the route's item: {route_item:?}"
    );
}

/// A keyed commit's total stays on the route's item only until the route's next keyed commit,
/// which moves it to a batch record; replays find it in either place, and a record written by
/// an earlier version (the count on the record itself) is honoured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_batch_totals_move_off_the_route_item_and_replays_find_them() {
    let (table, config) = table_on(Kind::Moto, "idem-moves", |_| {});
    let store: Arc<DynamoStore> = dynamodb_store(&config).await;
    let app = TestApp::spawn_with_store(config, Store::Item(store.clone())).await;
    let base = app.url("");
    let http = client();
    let pending = |item: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
        let mut names: Vec<String> = item.keys().filter(|n| is_marker(n)).cloned().collect();
        names.sort();
        names
    };

    assert_eq!(post_keyed(&http, &base, "MV1", "move-1").await.count(), 1);
    let first = read_item(&store, &table, "idem#move-1").await;
    let first_batch = first["batch"].as_s().expect("batch").clone();
    assert_eq!(
        pending(&read_item(&store, &table, "MV0001").await),
        vec![format!("p{first_batch}")]
    );
    // The next keyed commit of the route carries the first one's total off the item.
    assert_eq!(post_keyed(&http, &base, "MV1", "move-2").await.count(), 2);
    let second_batch = read_item(&store, &table, "idem#move-2").await["batch"]
        .as_s()
        .expect("batch")
        .clone();
    assert_eq!(
        pending(&read_item(&store, &table, "MV0001").await),
        vec![format!("p{second_batch}")]
    );
    let moved = read_item(&store, &table, &format!("batch#{first_batch}")).await;
    assert_eq!(moved["count"].as_n().map(String::as_str), Ok("1"));
    // Replays: one total from its batch record, one from the route's item.
    for (key, count) in [("move-1", 1), ("move-2", 2)] {
        let again = post_keyed(&http, &base, "MV1", key).await;
        assert_eq!((again.count(), again.replayed), (count, true), "{key}");
    }
    // A record in the earlier form: the count on the record itself.
    let expires = (SystemClock.epoch_seconds() + 3600).to_string();
    store
        .client()
        .put_item()
        .table_name(&table)
        .item(
            "route",
            aws_sdk_dynamodb::types::AttributeValue::S("idem#legacy".into()),
        )
        .item(
            "target_route",
            aws_sdk_dynamodb::types::AttributeValue::S("MV0001".into()),
        )
        .item(
            "count",
            aws_sdk_dynamodb::types::AttributeValue::N("7".into()),
        )
        .item(
            "expires_at",
            aws_sdk_dynamodb::types::AttributeValue::N(expires),
        )
        .send()
        .await
        .expect("PutItem");
    let legacy = post_keyed(&http, &base, "MV1", "legacy").await;
    assert_eq!((legacy.count(), legacy.replayed), (7, true));
    assert_eq!(count(&base, "MV1").await, 2);
    app.stop().await;
    // At shutdown the last total is moved too.
    assert!(pending(&read_item(&store, &table, "MV0001").await).is_empty());
    let last = read_item(&store, &table, &format!("batch#{second_batch}")).await;
    assert_eq!(last["count"].as_n().map(String::as_str), Ok("2"));
}

/// dynalite has no `TransactWriteItems`: a keyed POST is refused with `503` and records nothing,
/// while keyless POSTs work as ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_transactions_a_keyed_post_is_503_and_records_nothing() {
    let f = crate::stores::dynamodb(Kind::Dynalite, |c| c.ledger.commit_timeout = secs(2)).await;
    let answer = post_keyed(&f.app.client, &f.app.url(""), "NT1", "no-tx").await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(f.app.count("NT1", "NT0001").await, 0);
    assert_eq!(f.app.record("NT1", "NT0001").await, 1);
    f.app.stop().await;
}

async fn wait_ready(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(resp) = client().get(format!("{base}/readyz")).send().await
            && resp.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base} never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(base: &str, route: &str) -> u64 {
    let resp = client()
        .get(format!("{base}/transactions/{route}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    body["transactions"].as_u64().expect("u64")
}

/// Whether a route item attribute holds a keyed commit's total: `p` and a 16-hex-digit batch id.
fn is_marker(name: &str) -> bool {
    name.strip_prefix('p')
        .is_some_and(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}
