//! The real binary through its life: configuration errors, durability across restarts, and a
//! graceful shutdown under load that loses no acknowledged transaction.

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::Value;

use crate::helpers::{ServiceProcess, client, has_database, send_json, within};

fn data_dir_arg(dir: &tempfile::TempDir) -> String {
    dir.path().to_str().expect("utf-8 path").to_owned()
}

async fn count(base: &str, route: &str) -> u64 {
    let body: Value = send_json(client().get(format!("{base}/transactions/{route}"))).await;
    body["transactions"].as_u64().expect("u64")
}

#[test]
fn invalid_configuration_exits_non_zero_with_one_line() {
    let cases: [&[&str]; 4] = [
        &["--bind", "not-an-address"],
        &["--store", "cloud"],
        &["--drain-timeout", "soon"],
        &["--max-batch", "10", "--max-pending", "5"],
    ];
    for args in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_flight-counter"))
            .args(args)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with("flight-counter: "), "{stderr}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_flight-counter"))
        .env("FLIGHT_COUNTER_STORE", "nowhere")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nowhere"));
}

#[test]
fn help_lists_every_setting_with_its_environment_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_flight-counter"))
        .arg("--help")
        .output()
        .expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for env in [
        "FLIGHT_COUNTER_BIND",
        "FLIGHT_COUNTER_STORE",
        "FLIGHT_COUNTER_DATA_DIR",
        "FLIGHT_COUNTER_LOG_FORMAT",
        "RUST_LOG",
        "FLIGHT_COUNTER_DRAIN_TIMEOUT",
        "FLIGHT_COUNTER_IDLE_TIMEOUT",
        "FLIGHT_COUNTER_REQUEST_TIMEOUT",
        "FLIGHT_COUNTER_GROUP_COMMIT",
        "FLIGHT_COUNTER_MAX_BATCH",
        "FLIGHT_COUNTER_IDEMPOTENCY_RETENTION",
    ] {
        assert!(help.contains(env), "--help lacks {env}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_survive_a_restart_and_the_store_is_locked_while_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = data_dir_arg(&dir);
    let mut first = ServiceProcess::start(&["--data-dir", &data_dir]);
    let http = client();
    for expected in 1..=7u64 {
        let body: Value = send_json(http.post(format!("{}/transactions/DU77", first.base))).await;
        assert_eq!(body["transactions"], expected);
    }
    assert!(has_database(dir.path()));

    // A second process on the same data directory is refused, clearly.
    let out = Command::new(env!("CARGO_BIN_EXE_flight-counter"))
        .args(["--bind", "127.0.0.1:0", "--data-dir", &data_dir])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already open"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    first.signal("TERM");
    assert_eq!(first.wait(Duration::from_secs(15)), Some(0));

    let second = ServiceProcess::start(&["--data-dir", &data_dir]);
    assert_eq!(count(&second.base, "DU0077").await, 7);
    let body: Value = send_json(http.post(format!("{}/transactions/du77", second.base))).await;
    assert_eq!(body["transactions"], 8);
}

/// Clients post as fast as they can; SIGTERM arrives mid-load. The process exits 0, and after a
/// restart the stored count covers every acknowledged POST (and no more than were sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_loses_no_acknowledged_transaction() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = data_dir_arg(&dir);
    let mut service = ServiceProcess::start(&["--data-dir", &data_dir, "--drain-timeout", "10s"]);
    let acknowledged = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let highest = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..32)
        .map(|_| {
            let (acknowledged, sent, highest, stop) = (
                Arc::clone(&acknowledged),
                Arc::clone(&sent),
                Arc::clone(&highest),
                Arc::clone(&stop),
            );
            let url = format!("{}/transactions/GS1", service.base);
            tokio::spawn(async move {
                let http = client();
                // Bounded: at most this many POSTs per client, whatever happens.
                for _ in 0..5_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    sent.fetch_add(1, Ordering::SeqCst);
                    match http.post(&url).send().await {
                        Ok(resp) if resp.status() == 200 => {
                            if let Ok(body) = resp.json::<Value>().await
                                && let Some(n) = body["transactions"].as_u64()
                            {
                                acknowledged.fetch_add(1, Ordering::SeqCst);
                                highest.fetch_max(n, Ordering::SeqCst);
                            }
                        }
                        // Refused or cut off once the listener closes: expected.
                        _ => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            })
        })
        .collect();

    within(Duration::from_secs(10), "load running", async || {
        acknowledged.load(Ordering::SeqCst) >= 20
    })
    .await;
    service.signal("TERM");
    let code = tokio::task::spawn_blocking(move || service.wait(Duration::from_secs(20)))
        .await
        .expect("wait");
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.expect("client");
    }
    assert_eq!(code, Some(0), "graceful shutdown exits 0");

    let acknowledged = acknowledged.load(Ordering::SeqCst);
    let sent = sent.load(Ordering::SeqCst);
    let restarted = ServiceProcess::start(&["--data-dir", &data_dir]);
    let stored = count(&restarted.base, "GS1").await;
    assert!(
        stored >= acknowledged,
        "stored {stored} < acknowledged {acknowledged}"
    );
    assert!(stored >= highest.load(Ordering::SeqCst));
    assert!(stored <= sent, "stored {stored} > sent {sent}");
}

/// With a shutdown delay, readiness turns 503 at once while requests are still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_503_as_soon_as_draining_starts() {
    let mut service = ServiceProcess::start(&["--store", "memory", "--shutdown-delay", "5s"]);
    let http = client();
    let ready = http
        .get(format!("{}/readyz", service.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 200);
    service.signal("TERM");
    // The signal is handled asynchronously: poll, bounded, until readiness reports draining.
    let mut body = Value::Null;
    for _ in 0..100 {
        let ready = http
            .get(format!("{}/readyz", service.base))
            .send()
            .await
            .expect("sent");
        if ready.status() == 503 {
            body = ready.json().await.expect("json");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(body["status"], "draining");
    // Still serving traffic during the delay.
    let resp = http
        .post(format!("{}/transactions/RD1", service.base))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    let code = tokio::task::spawn_blocking(move || service.wait(Duration::from_secs(15)))
        .await
        .expect("wait");
    assert_eq!(code, Some(0));
}
