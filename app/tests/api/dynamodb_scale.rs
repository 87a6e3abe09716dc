//! The production path at scale: several service processes sharing one table, keyed POSTs on
//! one hot route, keyed and keyless POSTs mixed, and a table that throttles.
//!
//! Each test has an emulator of its own: moto is served single-threaded (exact counts), and
//! nothing else should queue behind these loads. The tests take turns (one load at a time on a
//! two-core machine), so that what they measure is the service, not each other; and
//! `scripts/test.sh` runs them after the rest of the suite, one at a time with the fault tests,
//! so that a test waiting for its turn holds up no other test.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    emulators::{Emulator, Kind},
    helpers::{AWS_TEST_ENV, ServiceProcess, client, metric_sum as metric},
    idempotency::{assert_replays, post_keyed},
    throttle_proxy::ThrottleProxy,
};

/// Held by the test whose load is running (the fault tests in `dynamodb_faults` take it too).
pub static ONE_LOAD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long the long keyed load runs: 15 s by default, some thousands of keys, each replayed
/// afterwards; `FLIGHT_COUNTER_SCALE_TEST_SECONDS` runs it longer.
fn keyed_load_seconds() -> u64 {
    std::env::var("FLIGHT_COUNTER_SCALE_TEST_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15)
}

fn service_args<'a>(table: &'a str, endpoint: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--store",
        "dynamodb",
        "--table",
        table,
        "--endpoint-url",
        endpoint,
        "--create-table",
        // Single-threaded moto under load answers slowly at times: an attempt may take the whole
        // commit timeout rather than turn into a 503.
        "--dynamodb-attempt-timeout",
        "5s",
    ];
    args.extend_from_slice(extra);
    args
}

pub async fn wait_ready(base: &str) {
    let http = client();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(resp) = http.get(format!("{base}/readyz")).send().await
            && resp.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{base} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn start_processes(n: usize, args: &[&str]) -> Vec<ServiceProcess> {
    let processes: Vec<ServiceProcess> = (0..n)
        .map(|_| ServiceProcess::start_with_env(args, &AWS_TEST_ENV))
        .collect();
    for p in &processes {
        wait_ready(&p.base).await;
    }
    processes
}

pub async fn count(base: &str, route: &str) -> u64 {
    let body: Value = client()
        .get(format!("{base}/transactions/{route}"))
        .send()
        .await
        .expect("GET sent")
        .json()
        .await
        .expect("json");
    body["transactions"].as_u64().expect("a count")
}

/// What one client saw: keyed answers by key, keyless counts, and how many of each status.
#[derive(Default)]
struct Seen {
    keyed: Vec<(String, u64)>,
    keyless: Vec<u64>,
    statuses: HashMap<u16, u64>,
}

impl Seen {
    fn merge(&mut self, other: Seen) {
        self.keyed.extend(other.keyed);
        self.keyless.extend(other.keyless);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
    }

    fn answered(&self) -> u64 {
        self.statuses.values().sum()
    }

    fn ok(&self) -> u64 {
        self.statuses.get(&200).copied().unwrap_or(0)
    }
}

/// One client posting on `route` until `until`: keyed with a new key each time (`tag` names
/// them), or keyless.
async fn client_loop(
    base: String,
    route: &'static str,
    tag: Option<String>,
    until: Instant,
) -> Seen {
    let http = client();
    let mut seen = Seen::default();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        match &tag {
            Some(tag) => {
                let key = format!("{tag}-{n}");
                let answer = post_keyed(&http, &base, route, &key).await;
                *seen.statuses.entry(answer.status).or_default() += 1;
                if answer.status == 200 {
                    assert!(!answer.replayed, "a new key was answered as a replay");
                    seen.keyed.push((key, answer.count()));
                }
            }
            None => {
                let resp = http
                    .post(format!("{base}/transactions/{route}"))
                    .send()
                    .await
                    .expect("POST sent");
                let status = resp.status().as_u16();
                *seen.statuses.entry(status).or_default() += 1;
                if status == 200 {
                    let body: Value = resp.json().await.expect("json");
                    seen.keyless
                        .push(body["transactions"].as_u64().expect("a count"));
                }
            }
        }
    }
    seen
}

/// Runs `clients` clients, client `i` on process `i % processes`, keyed where `keyed(i)`.
async fn run_load(
    bases: &[String],
    route: &'static str,
    clients: usize,
    keyed: impl Fn(usize) -> bool,
    length: Duration,
) -> Seen {
    let until = Instant::now() + length;
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let base = bases[i % bases.len()].clone();
            let tag = keyed(i).then(|| format!("c{i}"));
            tokio::spawn(client_loop(base, route, tag, until))
        })
        .collect();
    let mut seen = Seen::default();
    for task in tasks {
        seen.merge(task.await.expect("client task"));
    }
    seen
}

/// Every count handed out (keyed and keyless together) is distinct and they are exactly
/// `1..=N`, where N is the route's final count.
fn assert_counts_are_exactly_one_to_n(seen: &Seen, final_count: u64) {
    let mut all: Vec<u64> = seen
        .keyed
        .iter()
        .map(|(_, c)| *c)
        .chain(seen.keyless.iter().copied())
        .collect();
    all.sort_unstable();
    let distinct: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a count was handed out twice");
    assert_eq!(all.len() as u64, final_count, "acknowledged != counted");
    assert_eq!(all, (1..=final_count).collect::<Vec<u64>>());
}

/// Sends every key again, from 32 clients over all processes: each must replay its count.
async fn assert_every_key_replays(bases: &[String], route: &'static str, keyed: &[(String, u64)]) {
    let chunks: Vec<Vec<(String, u64)>> = keyed
        .chunks(keyed.len().div_ceil(32).max(1))
        .map(<[_]>::to_vec)
        .collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let base = bases[i % bases.len()].clone();
            tokio::spawn(async move {
                let http = client();
                for (key, count) in chunk {
                    assert_replays(&http, &base, route, &key, count).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("replay task");
    }
}

/// 32 clients, each POST with a new key, split across two processes, on one route, for
/// [`keyed_load_seconds`]: every POST answered 200, the counts distinct and exactly 1..=N, N
/// the number of keys, and every key replays its count. The keyed path commits in groups: far
/// fewer write requests than POSTs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_posts_from_two_processes_on_one_hot_route_all_count_once() {
    let _turn = ONE_LOAD_AT_A_TIME.lock().await;
    let moto = Emulator::start(Kind::Moto, None);
    let endpoint = moto.endpoint();
    let processes = start_processes(2, &service_args("scale-keyed", &endpoint, &[])).await;
    let bases: Vec<String> = processes.iter().map(|p| p.base.clone()).collect();
    let length = Duration::from_secs(keyed_load_seconds());
    let started = Instant::now();
    let seen = run_load(&bases, "HK1", 32, |_| true, length).await;
    let elapsed = started.elapsed();

    assert_eq!(
        seen.ok(),
        seen.answered(),
        "every keyed POST is answered 200: {:?}",
        seen.statuses
    );
    let final_count = count(&bases[0], "HK1").await;
    assert_counts_are_exactly_one_to_n(&seen, final_count);
    let keys: HashSet<&String> = seen.keyed.iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len() as u64, final_count);

    let mut transactions = 0.0;
    for base in &bases {
        transactions += metric(
            base,
            "flight_counter_dynamodb_calls_total",
            &["TransactWriteItems"],
        )
        .await;
    }
    let per_thousand = transactions * 1000.0 / final_count as f64;
    println!(
        "keyed, 2 processes, 32 clients: {final_count} POSTs in {:.1} s = {:.0}/s; \
         {transactions} TransactWriteItems = {per_thousand:.1} per 1,000 POSTs",
        elapsed.as_secs_f64(),
        final_count as f64 / elapsed.as_secs_f64()
    );
    // One transaction per POST before group commit; commits of many keys now.
    assert!(
        per_thousand < 500.0,
        "{per_thousand} TransactWriteItems per 1,000 keyed POSTs"
    );

    assert_every_key_replays(&bases, "HK1", &seen.keyed).await;
    assert_eq!(count(&bases[1], "HK1").await, final_count);
}

/// Keyless and keyed POSTs on one hot route at once, from two processes: the keyless `ADD`s of
/// one process keep moving the count under the other's keyed commits, and the keyed POSTs keep
/// completing (a commit that required the count to stay put would starve), with exact counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_posts_keep_completing_beside_keyless_ones_on_a_hot_route() {
    let _turn = ONE_LOAD_AT_A_TIME.lock().await;
    let moto = Emulator::start(Kind::Moto, None);
    let endpoint = moto.endpoint();
    let processes = start_processes(2, &service_args("scale-mixed", &endpoint, &[])).await;
    let bases: Vec<String> = processes.iter().map(|p| p.base.clone()).collect();
    // Clients alternate: keyed, keyless, keyed, ...; each process gets both kinds.
    let seen = run_load(&bases, "MX1", 32, |i| i % 4 < 2, Duration::from_secs(10)).await;

    assert_eq!(
        seen.ok(),
        seen.answered(),
        "every POST is answered 200: {:?}",
        seen.statuses
    );
    assert!(
        seen.keyed.len() >= 100 && seen.keyless.len() >= 100,
        "both kinds made progress: {} keyed, {} keyless",
        seen.keyed.len(),
        seen.keyless.len()
    );
    let final_count = count(&bases[0], "MX1").await;
    assert_counts_are_exactly_one_to_n(&seen, final_count);
    println!(
        "mixed, 2 processes: {} keyed and {} keyless POSTs, all 200",
        seen.keyed.len(),
        seen.keyless.len()
    );
}

/// Three processes on one route through a proxy that allows 50 writes a second on an item,
/// as DynamoDB allows a partition about 1,000: the processes slow their commits down instead of
/// failing POSTs, the item stays within its budget, and group commit carries the load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_hot_route_is_paced_not_failed() {
    let _turn = ONE_LOAD_AT_A_TIME.lock().await;
    // Low enough that this machine, client and three processes on two cores, can exceed it
    // many times over; the service must hold the item to it anyway.
    const BUDGET: u32 = 50;
    const CLIENTS_PER_PROCESS: usize = 32;
    let dynalite = Emulator::start(Kind::Dynalite, None);
    let proxy = ThrottleProxy::start(dynalite.port(), BUDGET);
    let endpoint = proxy.endpoint();
    let processes = start_processes(3, &service_args("scale-throttled", &endpoint, &[])).await;
    let bases: Vec<String> = processes.iter().map(|p| p.base.clone()).collect();
    proxy.reset().await;
    // Three seconds to find the pace, then twelve at it.
    let length = Duration::from_secs(15);
    let started = Instant::now();
    let seen = run_load(&bases, "TR1", 3 * CLIENTS_PER_PROCESS, |_| false, length).await;
    let elapsed = started.elapsed().as_secs_f64();
    let stats = proxy.stats().await;

    let answered = seen.answered();
    assert!(
        seen.ok() as f64 >= 0.999 * answered as f64,
        "at least 99.9% of POSTs answered 200: {:?}",
        seen.statuses
    );
    let final_count = count(&bases[0], "TR1").await;
    assert_counts_are_exactly_one_to_n(&seen, final_count);

    let item = stats["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["key"]["route"]["S"] == "TR0001")
        .expect("the hot item's stats")
        .clone();
    let per_second: Vec<u64> = item["units_per_second"]
        .as_array()
        .expect("per second")
        .iter()
        .map(|v| v.as_u64().expect("units"))
        .collect();
    let throttled = item["throttled_requests"].as_u64().expect("throttled");
    let accepted = item["accepted_units"].as_u64().expect("accepted");
    let rate = final_count as f64 / elapsed;
    println!(
        "throttled at {BUDGET}/s on the item, 3 processes x {CLIENTS_PER_PROCESS} clients: \
         {final_count} POSTs in {elapsed:.1} s = {rate:.0}/s; item writes per second \
         {per_second:?}; {accepted} accepted, {throttled} throttled; statuses {:?}",
        seen.statuses
    );
    assert!(
        item["max_units_in_any_window"].as_u64().expect("max") <= u64::from(BUDGET),
        "the proxy let the item pass its budget"
    );
    // After the first seconds the processes have found the pace: what they send stays near
    // what the item takes, rather than hammering it.
    let settled = &per_second[3.min(per_second.len())..];
    assert!(
        settled.iter().all(|units| *units <= u64::from(BUDGET)),
        "{per_second:?}"
    );
    assert!(
        throttled * 2 <= accepted,
        "{throttled} throttled writes for {accepted} accepted: the pace does not hold"
    );
    // The service saw every refusal as throttling: counted apart, commits retried, not failed.
    let mut throttled_calls = 0.0;
    let mut failed_commits = 0.0;
    for base in &bases {
        throttled_calls += metric(
            base,
            "flight_counter_dynamodb_calls_total",
            &["UpdateItem", "outcome=\"throttled\""],
        )
        .await;
        failed_commits += metric(
            base,
            "flight_counter_store_commits_total",
            &["outcome=\"error\""],
        )
        .await;
    }
    assert_eq!(throttled_calls as u64, throttled, "throttled calls counted");
    assert_eq!(failed_commits, 0.0, "no commit failed");
    let bound = f64::from(BUDGET) * CLIENTS_PER_PROCESS as f64;
    assert!(
        rate >= 0.5 * bound,
        "{rate:.0} POSTs/s, under half of the coalescing bound {bound}"
    );
}
