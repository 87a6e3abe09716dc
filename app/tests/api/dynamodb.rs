//! The dynamodb store beyond the shared contract, on real DynamoDB-compatible servers: several
//! service processes sharing one table, DynamoDB going away and coming back under load, a
//! service started before DynamoDB, a missing table, and the 64-bit limit.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use flight_counter::{
    calendar::Day,
    route::Route,
    store::{ItemStore, RouteWrite, Store, StoreBase},
};
use serde_json::Value;

use crate::helpers::send_json;
use crate::{
    emulators::{self, Emulator, Kind},
    helpers::{
        AWS_TEST_ENV, ServiceProcess, TestApp, client, dynamodb_config, dynamodb_store, millis,
        secs, within,
    },
};

/// Arguments that put a service process on `table` of `server`.
pub fn dynamodb_args<'a>(table: &'a str, endpoint: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--store",
        "dynamodb",
        "--table",
        table,
        "--endpoint-url",
        endpoint,
    ];
    args.extend_from_slice(extra);
    args
}

async fn readiness(base: &str) -> u16 {
    match client().get(format!("{base}/readyz")).send().await {
        Ok(resp) => resp.status().as_u16(),
        Err(_) => 0,
    }
}

/// Polls `/readyz` until it answers `status`, for at most `limit`.
pub async fn wait_for_readiness(base: &str, status: u16, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = readiness(base).await;
        if got == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{base}/readyz still answers {got}, not {status}, after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls a read until the store answers it (`200`), for at most `limit`. On DynamoDB, readiness
/// no longer tells whether the table can be reached (it stays `200` through a DynamoDB outage),
/// so the tests wait for the store itself.
async fn wait_for_store(base: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let got = match client()
            .get(format!("{base}/transactions/RZ1"))
            .send()
            .await
        {
            Ok(resp) => resp.status().as_u16(),
            Err(_) => 0,
        };
        if got == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{base} still answers reads with {got} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The sum of the samples of metric `name` whose labels contain every one of `labels`.
async fn metric(base: &str, name: &str, labels: &[&str]) -> f64 {
    let text = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|line| line.starts_with(name) && !line.starts_with('#'))
        .filter(|line| {
            let series = line.rsplit_once(' ').map_or(*line, |(series, _)| series);
            series[name.len()..].starts_with(['{', ' '])
                && labels.iter().all(|label| series.contains(label))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn count(base: &str, route: &str) -> u64 {
    let resp = client()
        .get(format!("{base}/transactions/{route}"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200, "GET {route}");
    let body: Value = resp.json().await.expect("json");
    body["transactions"].as_u64().expect("u64")
}

/// Two service processes on one table; 32 clients post to one route, alternating between the
/// processes. Every POST is answered 200, the answers across both processes are exactly
/// 1..=N (no count handed out twice, none skipped), and both read N.
async fn processes_sharing_a_table_never_lose_or_repeat_a_count(kind: Kind) {
    let server = emulators::shared(kind);
    let table = emulators::unique_table("pods");
    let endpoint = server.endpoint();
    let args = dynamodb_args(&table, &endpoint, &["--create-table"]);
    let pods = [
        ServiceProcess::start_with_env(&args, &AWS_TEST_ENV),
        ServiceProcess::start_with_env(&args, &AWS_TEST_ENV),
    ];
    for pod in &pods {
        wait_for_readiness(&pod.base, 200, Duration::from_secs(15)).await;
        wait_for_store(&pod.base, Duration::from_secs(15)).await;
    }
    let bases: Arc<Vec<String>> = Arc::new(pods.iter().map(|p| p.base.clone()).collect());
    let (clients, per_client) = (32, 40);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let bases = Arc::clone(&bases);
            tokio::spawn(async move {
                let http = client();
                let mut answers = Vec::new();
                for i in 0..per_client {
                    let base = &bases[(c + i) % bases.len()];
                    let resp = http
                        .post(format!("{base}/transactions/PD1"))
                        .send()
                        .await
                        .expect("sent");
                    assert_eq!(resp.status(), 200, "POST through {base}");
                    let body: Value = resp.json().await.expect("json");
                    answers.push(body["transactions"].as_u64().expect("u64"));
                }
                answers
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.expect("client"));
    }
    let n = (clients * per_client) as u64;
    answers.sort_unstable();
    assert_eq!(answers, (1..=n).collect::<Vec<u64>>());
    for pod in &pods {
        assert_eq!(count(&pod.base, "PD0001").await, n);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_table_on_dynalite() {
    processes_sharing_a_table_never_lose_or_repeat_a_count(Kind::Dynalite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_sharing_a_table_on_moto() {
    processes_sharing_a_table_never_lose_or_repeat_a_count(Kind::Moto).await;
}

/// What the load generator saw.
#[derive(Default)]
struct Observed {
    /// Counts answered with 200.
    acknowledged: Vec<u64>,
    /// Statuses other than 200 (0: no answer at all).
    refused: Vec<u16>,
    /// Slowest answer that was not a 200.
    slowest_refusal: Duration,
}

/// DynamoDB dies (SIGKILL) while 16 clients post; POSTs turn 503 within the commit timeout,
/// while readiness stays 200 (a shared store failing is no reason to take this pod out of the
/// load balancer: every pod would go, and clients would get refused connections instead of
/// 503s) and the metrics count the failures. It comes back on the same port with its data
/// (dynalite on disk): the service recovers without a restart, and every acknowledged count is
/// in the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_going_away_under_load_gives_503_keeps_readiness_then_recovers_losing_nothing() {
    let data = tempfile::tempdir().expect("temp dir");
    let server = Emulator::start(Kind::Dynalite, Some(data.path()));
    let endpoint = server.endpoint();
    let commit_timeout = Duration::from_secs(2);
    let service = ServiceProcess::start_with_env(
        &dynamodb_args(
            "faults",
            &endpoint,
            &["--create-table", "--commit-timeout", "2s"],
        ),
        &AWS_TEST_ENV,
    );
    wait_for_readiness(&service.base, 200, Duration::from_secs(15)).await;
    wait_for_store(&service.base, Duration::from_secs(15)).await;

    let observed = Arc::new(Mutex::new(Observed::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..16)
        .map(|_| {
            let (observed, stop) = (Arc::clone(&observed), Arc::clone(&stop));
            let url = format!("{}/transactions/FT1", service.base);
            tokio::spawn(async move {
                let http = client();
                // Bounded whatever happens.
                for _ in 0..20_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let started = Instant::now();
                    let answer = match http.post(&url).send().await {
                        Ok(resp) if resp.status() == 200 => {
                            let body: Value = resp.json().await.expect("json");
                            Ok(body["transactions"].as_u64().expect("u64"))
                        }
                        Ok(resp) => Err(resp.status().as_u16()),
                        Err(_) => Err(0),
                    };
                    let elapsed = started.elapsed();
                    {
                        let mut seen = observed.lock().unwrap_or_else(|p| p.into_inner());
                        match answer {
                            Ok(n) => seen.acknowledged.push(n),
                            Err(status) => {
                                seen.refused.push(status);
                                seen.slowest_refusal = seen.slowest_refusal.max(elapsed);
                            }
                        }
                    }
                    if answer.is_err() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        })
        .collect();
    let acknowledged = || {
        observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .acknowledged
            .len()
    };

    within(Duration::from_secs(10), "load running", async || {
        acknowledged() >= 20
    })
    .await;

    let refused = || {
        observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refused
            .len()
    };
    let failed_commits_before = metric(
        &service.base,
        "flight_counter_store_commits_total",
        &["outcome=\"error\""],
    )
    .await;

    server.kill();
    let deadline = Instant::now() + commit_timeout * 3;
    while refused() == 0 {
        assert!(
            Instant::now() < deadline,
            "no POST was refused while DynamoDB was down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Keep it down a while, so that clients meet the outage on every path (retries included);
    // readiness stays up all along: the pod answers, with 503s.
    let down_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < down_until {
        let ready: Value = send_json(client().get(format!("{}/readyz", service.base))).await;
        assert_eq!(
            ready["status"], "ready",
            "readiness during a DynamoDB outage"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused_during = refused();
    assert!(
        refused_during > 0,
        "no POST was refused while DynamoDB was down"
    );
    // The outage shows where alerts look: failed commits and 503 answers.
    let failed_commits = metric(
        &service.base,
        "flight_counter_store_commits_total",
        &["outcome=\"error\""],
    )
    .await;
    assert!(
        failed_commits > failed_commits_before,
        "failed commits are counted ({failed_commits_before} before, {failed_commits} during)"
    );
    let answered_503 = metric(
        &service.base,
        "flight_counter_http_requests_total",
        &["method=\"POST\"", "status=\"503\""],
    )
    .await;
    assert!(
        answered_503 >= 1.0,
        "POSTs answered 503 are counted ({answered_503})"
    );

    server.launch().expect("dynalite restarts on its port");
    wait_for_store(&service.base, Duration::from_secs(15)).await;
    let after_restart = acknowledged();
    let deadline = Instant::now() + Duration::from_secs(10);
    while acknowledged() < after_restart + 100 {
        assert!(
            Instant::now() < deadline,
            "POSTs are not acknowledged again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("client");
    }

    let observed = std::mem::take(&mut *observed.lock().unwrap_or_else(|p| p.into_inner()));
    assert!(
        observed.refused.iter().all(|&s| s == 503),
        "refusals other than 503: {:?}",
        observed
            .refused
            .iter()
            .filter(|&&s| s != 503)
            .collect::<Vec<_>>()
    );
    assert!(
        observed.slowest_refusal <= commit_timeout + Duration::from_millis(500),
        "a POST waited {:?} for its 503 (commit timeout {commit_timeout:?})",
        observed.slowest_refusal
    );
    let distinct: HashSet<u64> = observed.acknowledged.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        observed.acknowledged.len(),
        "a count was handed out twice"
    );
    let highest = observed.acknowledged.iter().copied().max().unwrap_or(0);
    let stored = count(&service.base, "FT1").await;
    // A POST refused or cut off may still have been applied (its answer was lost), so the
    // table may hold more than was acknowledged, never less.
    assert!(
        stored >= observed.acknowledged.len() as u64,
        "stored {stored} < acknowledged {}",
        observed.acknowledged.len()
    );
    assert!(
        stored >= highest,
        "stored {stored} < highest answer {highest}"
    );
}

/// The service starts while nothing listens at the DynamoDB endpoint: it serves and is ready
/// (the pod itself is fine), POSTs answer 503 promptly, and once DynamoDB is up they succeed
/// without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_starts_before_dynamodb_and_counts_once_it_is_up() {
    let server = Emulator::on_port(Kind::Dynalite, emulators::free_port(), None);
    let endpoint = server.endpoint();
    let service = ServiceProcess::start_with_env(
        &dynamodb_args(
            "latecomer",
            &endpoint,
            &["--create-table", "--commit-timeout", "2s"],
        ),
        &AWS_TEST_ENV,
    );
    assert_eq!(readiness(&service.base).await, 200);
    let started = Instant::now();
    let resp = client()
        .post(format!("{}/transactions/LT1", service.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(3));
    let logged = service.logged("cannot reach DynamoDB");
    assert!(!logged.is_empty(), "the log says DynamoDB is unreachable");

    server.launch().expect("dynalite starts");
    wait_for_store(&service.base, Duration::from_secs(10)).await;
    let resp = client()
        .post(format!("{}/transactions/LT1", service.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["transactions"], 1);
}

/// Without --create-table a missing table is answered 503 (readiness stays 200: the table is
/// shared, so it would be missing for every pod), and the log says so on one line; once the
/// table exists the service counts without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_reported_and_answered_503_until_it_is_created() {
    let server = emulators::shared(Kind::Dynalite);
    let table = emulators::unique_table("missing");
    let endpoint = server.endpoint();
    let service =
        ServiceProcess::start_with_env(&dynamodb_args(&table, &endpoint, &[]), &AWS_TEST_ENV);
    assert_eq!(readiness(&service.base).await, 200);
    let resp = client()
        .post(format!("{}/transactions/MT1", service.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 503);
    let reports = service.logged("does not exist");
    let report = reports.first().expect("a log line about the missing table");
    let event: Value = serde_json::from_str(report).expect("one JSON event per line");
    assert_eq!(event["level"], "WARN", "{report}");
    assert!(report.contains(&table), "{report}");
    assert!(report.contains("--create-table"), "{report}");

    // Another instance (here one started with --create-table) creates it.
    let creator = ServiceProcess::start_with_env(
        &dynamodb_args(&table, &endpoint, &["--create-table"]),
        &AWS_TEST_ENV,
    );
    wait_for_store(&creator.base, Duration::from_secs(10)).await;
    // The first instance checks again every 2 s.
    wait_for_store(&service.base, Duration::from_secs(10)).await;
    let resp = client()
        .post(format!("{}/transactions/MT1", service.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
}

/// DynamoDB numbers go beyond 64 bits; the store refuses, atomically, to pass u64::MAX.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_that_would_pass_u64_max_is_refused_and_left_unchanged() {
    let server = emulators::shared(Kind::Dynalite);
    let table = emulators::unique_table("overflow");
    let endpoint = server.endpoint();
    let config = dynamodb_config(&table, &endpoint, |_| {});
    let store = dynamodb_store(&config).await;
    let route = Route::parse("OV1").expect("route");
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.check_ready().await.is_err() {
        assert!(Instant::now() < deadline, "table never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let preload = ItemStore::commit(
        &*store,
        &RouteWrite::keyless(route, u64::MAX - 1, Day::of(SystemTime::now())),
    )
    .await
    .expect("preload");
    assert_eq!(preload.keyless_total, u64::MAX - 1);
    let app = TestApp::spawn_with_store(config, Store::Item(store)).await;
    assert_eq!(app.record("OV1", "OV0001").await, u64::MAX);
    let resp = app.post("OV1").await;
    assert_eq!(resp.status(), 500);
    assert_eq!(app.count("OV1", "OV0001").await, u64::MAX);
    app.stop().await;
}

/// A TCP proxy to `upstream` that delivers requests at once and holds every chunk of the
/// answers for `delay`: DynamoDB applies each write, and its answer arrives late.
async fn slow_answers_proxy(upstream: u16, delay: Duration) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut server_rx, mut server_tx) = server.into_split();
                let requests = async {
                    let _ = tokio::io::copy(&mut client_rx, &mut server_tx).await;
                };
                let answers = async {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n) = server_rx.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        tokio::time::sleep(delay).await;
                        if client_tx.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                tokio::join!(requests, answers);
            });
        }
    });
    (port, task)
}

/// An `ADD` whose attempt timed out may have been applied: it must not be retried, or the
/// transaction is counted twice (or three times, with three attempts). Every answer here comes
/// after the attempt timeout, so every POST gets a 503, and each is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_update_is_not_retried_into_a_double_count() {
    let server = emulators::shared(Kind::Dynalite);
    let table = emulators::unique_table("ambiguous");
    let direct = server.endpoint();
    let (proxy_port, proxy) = slow_answers_proxy(server.port(), Duration::from_millis(400)).await;
    let slow = format!("http://127.0.0.1:{proxy_port}");

    // The table, and a reader that sees it directly.
    let direct_config = dynamodb_config(&table, &direct, |_| {});
    let reader = TestApp::spawn_with_store(
        direct_config.clone(),
        Store::Item(dynamodb_store(&direct_config).await),
    )
    .await;
    let config = dynamodb_config(&table, &slow, |c| {
        c.dynamodb.attempt_timeout = millis(150);
        c.dynamodb.max_attempts = 3;
        c.ledger.commit_timeout = secs(3);
    });
    let store = dynamodb_store(&config).await;
    let posts = 5;
    for _ in 0..posts {
        let started = Instant::now();
        let applied = ItemStore::commit(
            &*store,
            &RouteWrite::keyless(
                Route::parse("AM1").expect("route"),
                1,
                Day::of(SystemTime::now()),
            ),
        )
        .await;
        assert!(
            applied.is_err(),
            "the answer came after the attempt timeout"
        );
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "gave up after the first attempt, took {:?}",
            started.elapsed()
        );
    }
    // Once the last write has landed, read them directly: each applied once, none twice.
    within(Duration::from_secs(5), "the last write", async || {
        reader.count("AM1", "AM0001").await >= posts
    })
    .await;
    assert_eq!(reader.count("AM1", "AM0001").await, posts);
    proxy.abort();
    reader.stop().await;
}
