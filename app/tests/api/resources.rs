//! Running out of things: connections past `--max-connections`, descriptors past the process's
//! limit, and disk space under the embedded store (a small tmpfs, filled under load and then
//! grown while the service runs).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{ServiceProcess, TestApp, client, config_with, metric_sum, within};

async fn connect(addr: impl tokio::net::ToSocketAddrs) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

/// Whether the server closes `stream` within `limit` without a byte sent.
async fn closed_at_once(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// The answer to a `GET /healthz` sent over `stream`; empty when the server closed it first.
async fn healthz_over(stream: &mut TcpStream) -> String {
    let request = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await {
        Ok(Ok(_)) => String::from_utf8_lossy(&answer).into_owned(),
        _ => String::new(),
    }
}

/// Past `--max-connections`, a new connection is closed at once (and counted); once one closes,
/// a new one is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_at_once() {
    let app = TestApp::spawn(config_with(|c| c.server.max_connections = 3)).await;
    // wait_ready's pooled connection may still be open: take every place with idle ones.
    let mut idle = Vec::new();
    let mut refused = None;
    for _ in 0..6 {
        let mut stream = connect(app.addr).await;
        if closed_at_once(&mut stream, Duration::from_millis(300)).await {
            refused = Some(stream);
            break;
        }
        idle.push(stream);
    }
    assert!(refused.is_some(), "a connection past the limit was closed");
    assert!(idle.len() <= 3, "{} connections were kept open", idle.len());
    drop(idle.pop());
    // The service frees the place once it sees the close; until then a connection is refused.
    within(
        Duration::from_secs(5),
        "a connection served in the freed place",
        async || {
            let mut stream = connect(app.addr).await;
            healthz_over(&mut stream).await.starts_with("HTTP/1.1 200")
        },
    )
    .await;
    drop(idle);
    let refused = metric_sum(
        &app.url(""),
        "flight_counter_http_connections_refused_total",
        &["reason=\"max_connections\""],
    )
    .await;
    assert!(refused >= 1.0, "{refused} refusals counted");
    app.stop().await;
}

/// CPU time (user and system) the process has used.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name (which may contain spaces), from its closing parenthesis.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// With 64 descriptors and 120 connections, accepts fail with EMFILE: the service backs off
/// instead of spinning, says so once, counts it, keeps serving, and is answering again once the
/// connections close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_service_backs_off_and_recovers() {
    let service = ServiceProcess::start_with_open_files(&["--store", "memory"], 64);
    let addr = service.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..120 {
        // The kernel completes the handshake whether or not the service can accept.
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(&addr)).await
        {
            held.push(stream);
        }
    }
    within(Duration::from_secs(5), "accepts failing", async || {
        !service.logged("cannot accept connections").is_empty()
    })
    .await;
    // A window of two seconds, watched in steps: a service that spins on a failing accept
    // burns nearly all of it; one that backs off, next to nothing.
    let before = cpu_time(service.child.id());
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let used = cpu_time(service.child.id()) - before;
    assert!(
        used < Duration::from_millis(600),
        "the service used {used:?} of CPU in {:?} with accepts failing: it spins",
        window.elapsed()
    );
    let said = service.logged("cannot accept connections");
    assert_eq!(
        said.len(),
        1,
        "one line per interval, not per attempt: {said:?}"
    );
    assert!(said[0].contains("process_descriptor_limit"), "{}", said[0]);
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(resp) = client()
            .get(format!("{}/healthz", service.base))
            .send()
            .await
            && resp.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "never answered again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failures = metric_sum(
        &service.base,
        "flight_counter_http_accept_failures_total",
        &["reason=\"process_descriptor_limit\""],
    )
    .await;
    assert!(failures >= 1.0, "{failures} failed accepts counted");
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` when this machine cannot mount one (not root, no CAP_SYS_ADMIN).
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .ok()?;
        if !mounted.status.success() {
            println!(
                "skipped: cannot mount a tmpfs here ({})",
                String::from_utf8_lossy(&mounted.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.path())
            .status()
            .expect("mount");
        assert!(status.success(), "remount to {size}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Routes enough to need new pages with every commit.
fn route(n: usize) -> String {
    format!("R{}{}", (b'A' + (n % 26) as u8) as char, n / 26 % 9999 + 1)
}

async fn readyz(base: &str) -> u16 {
    match client().get(format!("{base}/readyz")).send().await {
        Ok(resp) => resp.status().as_u16(),
        Err(_) => 0,
    }
}

/// The embedded store on a 2 MiB tmpfs, filled by POSTs on ever new routes: POSTs answer 503
/// and readiness turns 503 while the disk is full; once the tmpfs grows, commits resume without
/// a restart, and nothing acknowledged was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_gives_503s_then_commits_resume_once_space_returns() {
    let Some(disk) = Tmpfs::mount("2m") else {
        return;
    };
    let data_dir = disk.path().join("data");
    let service = ServiceProcess::start(&[
        "--store",
        "embedded",
        "--data-dir",
        data_dir.to_str().expect("utf-8"),
        "--commit-timeout",
        "2s",
    ]);
    let base = service.base.clone();
    let http = client();
    let mut acknowledged: Vec<(String, u64)> = Vec::new();
    let mut full = false;
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(60) {
        // Eight at once: commits of several new routes.
        let batch: Vec<String> = (n..n + 8).map(route).collect();
        n += 8;
        let answers = futures::future::join_all(batch.iter().map(|r| {
            let http = http.clone();
            let url = format!("{base}/transactions/{r}");
            async move { http.post(url).send().await }
        }))
        .await;
        for (r, answer) in batch.iter().zip(answers) {
            let resp = answer.expect("answered");
            match resp.status().as_u16() {
                200 => {
                    let body: Value = resp.json().await.expect("json");
                    acknowledged.push((r.clone(), body["transactions"].as_u64().expect("count")));
                }
                503 => full = true,
                other => panic!("POST answered {other}"),
            }
        }
        if full {
            break;
        }
    }
    assert!(
        full,
        "the disk never filled ({} POSTs acknowledged)",
        acknowledged.len()
    );
    // Readiness follows: it asks whether a commit goes through, not whether a read does.
    let deadline = Instant::now() + Duration::from_secs(6);
    while readyz(&base).await != 503 {
        assert!(
            Instant::now() < deadline,
            "readiness stayed up on a full disk"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = http
        .post(format!("{base}/transactions/FU1"))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 503);

    disk.resize("64m");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = http
            .post(format!("{base}/transactions/BK1"))
            .send()
            .await
            .expect("answered");
        if resp.status() == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "commits never resumed after the disk grew"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(readyz(&base).await, 200);
    for chunk in acknowledged.chunks(100) {
        let query: Vec<String> = chunk.iter().map(|(r, _)| format!("route={r}")).collect();
        let body: Value = http
            .get(format!("{base}/transactions?{}", query.join("&")))
            .send()
            .await
            .expect("read")
            .json()
            .await
            .expect("json");
        for ((r, count), read) in chunk.iter().zip(body["routes"].as_array().expect("routes")) {
            assert!(
                read["transactions"].as_u64().expect("count") >= *count,
                "route {r} lost an acknowledged transaction: {read}"
            );
        }
    }
    drop(service);
}

/// A first start on a disk with no room leaves no file behind, and the next start, with room,
/// works; an empty database file is initialised with a warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_first_start_leaves_nothing_behind_and_an_empty_file_is_initialised() {
    let Some(disk) = Tmpfs::mount("256k") else {
        return;
    };
    let data_dir: PathBuf = disk.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    // Fill the disk.
    let filler = disk.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 256 * 1024]);
    let status = Command::new(env!("CARGO_BIN_EXE_flight-counter"))
        .args(["--bind", "127.0.0.1:0", "--store", "embedded", "--data-dir"])
        .arg(&data_dir)
        .output()
        .expect("ran");
    assert_eq!(
        status.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let database = data_dir.join(flight_counter::store::DATABASE_FILE);
    assert!(
        !database.exists(),
        "the failed first start left its file behind"
    );
    std::fs::remove_file(&filler).expect("free the space");
    disk.resize("16m");

    // An empty file: a start that stopped before writing anything.
    std::fs::write(&database, b"").expect("empty file");
    let service = ServiceProcess::start(&[
        "--store",
        "embedded",
        "--data-dir",
        data_dir.to_str().expect("utf-8"),
    ]);
    let warned = service.logged("the database file is empty");
    assert_eq!(warned.len(), 1, "one warning that says so");
    let resp = client()
        .post(format!("{}/transactions/EM1", service.base))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), 200);
}
