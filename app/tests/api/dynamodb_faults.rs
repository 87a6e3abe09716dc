//! Exactly-once on DynamoDB when answers are lost or late, with and without the client request
//! token honoured.
//!
//! Each test runs moto (single-threaded, exact) behind `scripts/dynamodb-throttle-proxy.py`,
//! which honours `ClientRequestToken` as DynamoDB does (`--honour-tokens`) or, like the
//! emulators, not at all, and loses one in ten answers of chosen operations after forwarding
//! them. Two
//! service processes share the table; keyed and keyless clients post on one hot route. Keyed
//! clients send a 503'd POST again with the same key, to either process, until it is answered
//! 200.
//!
//! Every run checks: the final count is at most (distinct keys + keyless POSTs sent) and at
//! least (distinct keys + keyless POSTs answered 200); counts handed out are distinct; every key
//! replays its count from the other process; the fault really happened. With the token honoured
//! the faults hit transactions only, and every keyless POST is exact: final = keys + keyless
//! 200s. Without it they hit keyless `ADD`s too (which may be applied and answered 503), and the
//! store must recognise its own applied batches in the cancelled repeats.
//!
//! The runs take turns with the scale tests (`ONE_LOAD_AT_A_TIME`): one load at a time on two
//! cores. Each load lasts `FLIGHT_COUNTER_FAULT_TEST_SECONDS` (4 by default: some 750 keys
//! and 25 lost answers per run; replaying every key from the other process takes about as long
//! again, on the debug build of the service).

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::{
    dynamodb_scale::{ONE_LOAD_AT_A_TIME, count, start_processes},
    emulators::{Emulator, Kind},
    helpers::{ServiceProcess, client, metric_sum},
    idempotency::{assert_replays, post_keyed},
    throttle_proxy::ThrottleProxy,
};

const ROUTE: &str = "FX1";
/// One in this many answers of the chosen operations is lost, in each fault run: by schedule
/// rather than by chance, so that every run meets its fault a known number of times.
const FAULT_EVERY: usize = 10;
/// The services' attempt timeout, and how long a late answer is held: past it. (2 s rather
/// than the default 1 s: the tests share two cores with the rest of the suite, and an `ADD`
/// that times out on a busy machine is a keyless POST answered 503 that may count.)
const ATTEMPT_TIMEOUT: &str = "2s";
const LATE_MS: &str = "3000";
/// Keyed and keyless clients per process.
const KEYED_CLIENTS: usize = 6;
const KEYLESS_CLIENTS: usize = 3;
/// Keyed clients per process on the slow emulator: enough for batches of 10 and more.
const SLOW_KEYED_CLIENTS: usize = 16;

fn load_seconds() -> u64 {
    std::env::var("FLIGHT_COUNTER_FAULT_TEST_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4)
}

/// moto behind the proxy, and two service processes on one table through it.
struct Rig {
    _moto: Emulator,
    proxy: ThrottleProxy,
    processes: Vec<ServiceProcess>,
    bases: Vec<String>,
}

async fn rig(table: &str, proxy_args: &[&str], service_extra: &[&str]) -> Rig {
    let moto = Emulator::start(Kind::Moto, None);
    // No throttling here: the budget is out of reach.
    let proxy = ThrottleProxy::start_with(moto.port(), 1_000_000, proxy_args);
    let endpoint = proxy.endpoint();
    let mut args = vec![
        "--store",
        "dynamodb",
        "--table",
        table,
        "--endpoint-url",
        &endpoint,
        "--create-table",
    ];
    args.extend_from_slice(service_extra);
    let processes = start_processes(2, &args).await;
    let bases = processes.iter().map(|p| p.base.clone()).collect();
    proxy.reset().await;
    Rig {
        _moto: moto,
        proxy,
        processes,
        bases,
    }
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    /// Each key, the count it was answered with, and the process that answered it.
    keyed: Vec<(String, u64, usize)>,
    /// Keyed POSTs answered 503 (and sent again).
    keyed_refused: u64,
    keyless_sent: u64,
    keyless_counts: Vec<u64>,
    statuses: HashMap<u16, u64>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.keyed.extend(other.keyed);
        self.keyed_refused += other.keyed_refused;
        self.keyless_sent += other.keyless_sent;
        self.keyless_counts.extend(other.keyless_counts);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
    }

    fn keys(&self) -> u64 {
        self.keyed.len() as u64
    }

    fn keyless_ok(&self) -> u64 {
        self.keyless_counts.len() as u64
    }

    fn refused(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| **status != 200)
            .map(|(_, n)| n)
            .sum()
    }
}

/// A keyed client: a new key each time, sent again (alternating processes) after a 503 until
/// it is answered 200.
async fn keyed_client(bases: Vec<String>, first: usize, tag: String, until: Instant) -> Tally {
    let http = client();
    let mut tally = Tally::default();
    let mut n = 0u64;
    while Instant::now() < until {
        n += 1;
        let key = format!("{tag}-{n}");
        let give_up = Instant::now() + Duration::from_secs(60);
        let mut at = first;
        loop {
            let answer = post_keyed(&http, &bases[at], ROUTE, &key).await;
            *tally.statuses.entry(answer.status).or_default() += 1;
            match answer.status {
                200 => {
                    tally.keyed.push((key, answer.count(), at));
                    break;
                }
                503 => {
                    tally.keyed_refused += 1;
                    assert!(
                        Instant::now() < give_up,
                        "{key} still answered 503 after a minute: {}",
                        answer.body
                    );
                    at = (at + 1) % bases.len();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => panic!("{key} answered {other}: {}", answer.body),
            }
        }
    }
    tally
}

async fn keyless_client(base: String, until: Instant) -> Tally {
    let http = client();
    let mut tally = Tally::default();
    while Instant::now() < until {
        tally.keyless_sent += 1;
        let resp = http
            .post(format!("{base}/transactions/{ROUTE}"))
            .send()
            .await
            .expect("POST sent");
        let status = resp.status().as_u16();
        *tally.statuses.entry(status).or_default() += 1;
        match status {
            200 => {
                let body: Value = resp.json().await.expect("json");
                tally
                    .keyless_counts
                    .push(body["transactions"].as_u64().expect("a count"));
            }
            503 => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("a keyless POST answered {other}"),
        }
    }
    tally
}

async fn run_load(bases: &[String], keyed_clients: usize, length: Duration) -> Tally {
    let until = Instant::now() + length;
    let mut tasks = Vec::new();
    for (p, base) in bases.iter().enumerate() {
        for c in 0..keyed_clients {
            tasks.push(tokio::spawn(keyed_client(
                bases.to_vec(),
                p,
                format!("p{p}c{c}"),
                until,
            )));
        }
        for _ in 0..KEYLESS_CLIENTS {
            tasks.push(tokio::spawn(keyless_client(base.clone(), until)));
        }
    }
    let mut tally = Tally::default();
    for task in tasks {
        tally.merge(task.await.expect("client task"));
    }
    tally
}

/// Every count handed out, keyed and keyless, is distinct; and the final count is within the
/// bounds: at least every key and every keyless POST answered 200, at most every key and every
/// keyless POST sent.
fn assert_distinct_and_within_bounds(tally: &Tally, final_count: u64) {
    let all: Vec<u64> = tally
        .keyed
        .iter()
        .map(|(_, c, _)| *c)
        .chain(tally.keyless_counts.iter().copied())
        .collect();
    let distinct: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), all.len(), "a count was handed out twice");
    let keys: HashSet<&String> = tally.keyed.iter().map(|(k, _, _)| k).collect();
    assert_eq!(keys.len(), tally.keyed.len(), "a key was answered twice");
    assert!(
        all.iter().all(|c| *c >= 1 && *c <= final_count),
        "a count outside 1..={final_count}"
    );
    let (low, high) = (
        tally.keys() + tally.keyless_ok(),
        tally.keys() + tally.keyless_sent,
    );
    assert!(
        low <= final_count && final_count <= high,
        "final count {final_count} outside [{low}, {high}] (keys {}, keyless {} sent, {} \
         answered 200)",
        tally.keys(),
        tally.keyless_sent,
        tally.keyless_ok()
    );
}

/// Every key again, through the process that did not answer it first: a replay of its count.
async fn assert_every_key_replays_from_the_other_process(bases: &[String], tally: &Tally) {
    let keyed = tally.keyed.clone();
    let chunks: Vec<Vec<(String, u64, usize)>> = keyed
        .chunks(keyed.len().div_ceil(64).max(1))
        .map(<[_]>::to_vec)
        .collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let bases = bases.to_vec();
            tokio::spawn(async move {
                let http = client();
                for (key, count, at) in chunk {
                    let other = &bases[(at + 1) % bases.len()];
                    assert_replays(&http, other, ROUTE, &key, count).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("replay task");
    }
}

/// Write requests the processes sent, and how many times a store recognised a batch of its
/// own applied by an earlier attempt.
async fn service_figures(rig: &Rig) -> (f64, usize) {
    let mut transactions = 0.0;
    for base in &rig.bases {
        transactions += metric_sum(
            base,
            "flight_counter_dynamodb_calls_total",
            &["TransactWriteItems"],
        )
        .await;
    }
    let recognised = rig
        .processes
        .iter()
        .map(|p| p.logged("applied by an earlier attempt").len())
        .sum();
    (transactions, recognised)
}

/// One fault mode, with the token honoured or not.
async fn answers_lost(mode: &str, tokens: bool) {
    let _turn = ONE_LOAD_AT_A_TIME.lock().await;
    let setting_up = Instant::now();
    let schedule = std::iter::once(mode)
        .chain(std::iter::repeat_n("none", FAULT_EVERY - 1))
        .collect::<Vec<_>>()
        .join(",");
    // With the token honoured, transactions only: every keyless POST must then be exact.
    let operations = if tokens {
        "TransactWriteItems"
    } else {
        "TransactWriteItems,UpdateItem"
    };
    let mut proxy_args = vec![
        "--fault-schedule",
        &schedule,
        "--fault-operations",
        operations,
        "--late-ms",
        LATE_MS,
    ];
    if tokens {
        proxy_args.push("--honour-tokens");
    }
    let table = format!(
        "faults-{mode}-{}",
        if tokens { "tokens" } else { "no-tokens" }
    );
    let rig = rig(
        &table,
        &proxy_args,
        &["--dynamodb-attempt-timeout", ATTEMPT_TIMEOUT],
    )
    .await;
    println!(
        "{mode}: set up in {:.1} s",
        setting_up.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    // A late answer holds its route for the attempt timeout: a late run gets half as long
    // again to meet its faults.
    let seconds = if mode == "late" {
        load_seconds() * 3 / 2
    } else {
        load_seconds()
    };
    let tally = run_load(&rig.bases, KEYED_CLIENTS, Duration::from_secs(seconds)).await;
    let elapsed = started.elapsed().as_secs_f64();
    let stats = rig.proxy.stats().await;
    // The replays below go through without losses.
    rig.proxy.set_faults(json!({})).await;
    let final_count = count(&rig.bases[0], ROUTE).await;
    let (transactions, recognised) = service_figures(&rig).await;
    println!(
        "{mode}, token {}: {} keys ({} answered 503 first), keyless {} sent, {} answered 200; \
         final {final_count} in [{}, {}]; {} answers lost ({:?}); token replays {}, in progress \
         {}; own batches recognised {recognised}; {transactions} TransactWriteItems = {:.1} per \
         1,000 keys; {elapsed:.1} s",
        if tokens { "on" } else { "off" },
        tally.keys(),
        tally.keyed_refused,
        tally.keyless_sent,
        tally.keyless_ok(),
        tally.keys() + tally.keyless_ok(),
        tally.keys() + tally.keyless_sent,
        stats["faults"][mode],
        stats["faults_by_operation"],
        stats["tokens"]["replayed"],
        stats["tokens"]["in_progress"],
        transactions * 1000.0 / tally.keys().max(1) as f64,
    );

    assert!(
        tally.statuses.keys().all(|s| *s == 200 || *s == 503),
        "{:?}",
        tally.statuses
    );
    // A late answer holds its route for the attempt timeout: the late runs go slower.
    assert!(
        tally.keys() >= 30 && tally.keyless_ok() >= 15,
        "the load made progress: {} keys, {} keyless",
        tally.keys(),
        tally.keyless_ok()
    );
    assert!(
        stats["faults_by_operation"]["TransactWriteItems"][mode]
            .as_u64()
            .is_some_and(|n| n >= 3),
        "the proxy lost answers of transactions: {stats}"
    );
    assert_distinct_and_within_bounds(&tally, final_count);
    if tokens {
        assert_eq!(
            final_count,
            tally.keys() + tally.keyless_ok(),
            "with the token honoured and only transactions' answers lost, every keyless POST \
             is exact"
        );
        assert!(
            stats["tokens"]["replayed"].as_u64().is_some_and(|n| n >= 1),
            "transactions were sent again with their tokens and answered from the first: {stats}"
        );
    } else {
        assert!(
            recognised >= 1,
            "without the token, repeats of applied transactions were recognised"
        );
    }
    let replaying = Instant::now();
    assert_every_key_replays_from_the_other_process(&rig.bases, &tally).await;
    println!(
        "{mode}, token {}: {} keys replayed in {:.1} s",
        if tokens { "on" } else { "off" },
        tally.keys(),
        replaying.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_dropped_with_the_token_honoured() {
    answers_lost("drop", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_dropped_without_the_token() {
    answers_lost("drop", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_late_with_the_token_honoured() {
    answers_lost("late", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_late_without_the_token() {
    answers_lost("late", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_errors_after_applying_with_the_token_honoured() {
    answers_lost("500", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_errors_after_applying_without_the_token() {
    answers_lost("500", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_reset_half_way_with_the_token_honoured() {
    answers_lost("reset", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_reset_half_way_without_the_token() {
    answers_lost("reset", false).await;
}

/// Every transaction takes 1.2 s, longer than the default 1 s attempt timeout: the store sends
/// it again with its token (answered `TransactionInProgressException`, then the first answer),
/// or, without the token, recognises its own batch in the cancelled repeat. No over-count, no
/// 503 storm, and the keyed POSTs that arrive meanwhile make batches of 10 or more.
async fn slow_transactions(tokens: bool) {
    let _turn = ONE_LOAD_AT_A_TIME.lock().await;
    let mut proxy_args = vec!["--transaction-ms", "1200"];
    if tokens {
        proxy_args.push("--honour-tokens");
    }
    let table = format!("slow-{}", if tokens { "tokens" } else { "no-tokens" });
    // The service's own defaults: 1 s attempts, 8 s commit timeout.
    let rig = rig(&table, &proxy_args, &[]).await;
    let tally = run_load(&rig.bases, SLOW_KEYED_CLIENTS, Duration::from_secs(10)).await;
    let stats = rig.proxy.stats().await;
    let final_count = count(&rig.bases[0], ROUTE).await;
    let (transactions, recognised) = service_figures(&rig).await;
    let applied = stats["upstream_statuses"]["TransactWriteItems"]["200"]
        .as_u64()
        .unwrap_or(0);
    let keys_per_transaction = tally.keys() as f64 / applied.max(1) as f64;
    println!(
        "slow transactions, token {}: {} keys, keyless {} sent, {} answered 200, final \
         {final_count}; statuses {:?}; {applied} transactions applied, {keys_per_transaction:.1} \
         keys each; {transactions} TransactWriteItems sent = {:.1} per 1,000 keys; token \
         replays {}, in progress {}; own batches recognised {recognised}",
        if tokens { "on" } else { "off" },
        tally.keys(),
        tally.keyless_sent,
        tally.keyless_ok(),
        tally.statuses,
        transactions * 1000.0 / tally.keys().max(1) as f64,
        stats["tokens"]["replayed"],
        stats["tokens"]["in_progress"],
    );
    assert!(tally.keys() >= 40, "{} keys", tally.keys());
    assert_distinct_and_within_bounds(&tally, final_count);
    assert_eq!(
        final_count,
        tally.keys() + tally.keyless_ok(),
        "no over-count: every keyless POST riding in a slow transaction counted once"
    );
    let answered = tally.statuses.values().sum::<u64>();
    assert!(
        tally.refused() * 100 <= answered,
        "a 503 storm: {:?}",
        tally.statuses
    );
    assert!(
        keys_per_transaction >= 10.0,
        "{keys_per_transaction:.1} keys per transaction"
    );
    if tokens {
        assert!(
            stats["tokens"]["in_progress"]
                .as_u64()
                .is_some_and(|n| n >= 1),
            "repeats met the running transaction: {stats}"
        );
    } else {
        assert!(
            recognised >= 1,
            "repeats of applied transactions recognised"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_transactions_with_the_token_honoured() {
    slow_transactions(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_transactions_without_the_token() {
    slow_transactions(false).await;
}

/// DynamoDB answering `IdempotentParameterMismatchException` means this service reused a
/// token with another request: a bug. It is logged as an error, the callers get 503, and
/// nothing was applied, so the key records its count when sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_mismatch_is_logged_as_an_error_and_answered_503() {
    let moto = Emulator::start(Kind::Moto, None);
    let proxy = ThrottleProxy::start_with(
        moto.port(),
        1_000_000,
        &[
            "--fault-operations",
            "TransactWriteItems",
            "--fault-schedule",
            "mismatch",
        ],
    );
    let endpoint = proxy.endpoint();
    let service = ServiceProcess::start_with_env(
        &[
            "--store",
            "dynamodb",
            "--table",
            "mismatch",
            "--endpoint-url",
            &endpoint,
            "--create-table",
        ],
        &crate::helpers::AWS_TEST_ENV,
    );
    crate::dynamodb_scale::wait_ready(&service.base).await;
    let http = client();
    let refused = post_keyed(&http, &service.base, ROUTE, "order-1").await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    let errors: Vec<String> = service
        .logged("IdempotentParameterMismatchException")
        .into_iter()
        .filter(|line| line.contains("\"ERROR\""))
        .collect();
    assert!(!errors.is_empty(), "an error is logged");
    assert_eq!(proxy.stats().await["faults"]["mismatch"], 1);
    // Nothing of it was applied.
    assert_eq!(count(&service.base, ROUTE).await, 0);
    proxy.set_faults(json!({})).await;
    let recorded = post_keyed(&http, &service.base, ROUTE, "order-1").await;
    assert_eq!((recorded.count(), recorded.replayed), (1, false));
}
