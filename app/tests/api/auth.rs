//! Client authentication with API keys, over HTTP: every refusal's status and body, that a
//! refused request changes nothing, public reads, keys rotated under a running process, a
//! broken keys file, per-client idempotency keys, and keys made by `flight-counter api-key`.
//! The counting cases run on the embedded store and on DynamoDB (moto).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use flight_counter::auth::{RELOAD_INTERVAL, digest_hex};
use serde_json::Value;

use crate::{
    emulators::Kind,
    helpers::{ServiceProcess, client, metric_sum, within},
    store_contract::Fixture,
};

pub const WRITE_KEY: &str = "fck_writer-key-for-the-tests-0123456789abcdefghij";
const OTHER_WRITE_KEY: &str = "fck_second-writer-key-for-the-tests-0123456789abc";
const READ_KEY: &str = "fck_reader-key-for-the-tests-0123456789abcdefghij";

/// A keys file in a temporary directory.
pub struct KeysFile {
    dir: tempfile::TempDir,
}

impl KeysFile {
    pub fn new(lines: &str) -> KeysFile {
        let file = KeysFile {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        file.write(lines);
        file
    }

    /// The usual clients: a writer, a second writer, a reader.
    pub fn standard() -> KeysFile {
        KeysFile::new(&format!(
            "# test clients\n\
             booking-engine write {}\n\
             partner-gds    write {}\n\
             dashboards     read  {}\n",
            digest_hex(WRITE_KEY),
            digest_hex(OTHER_WRITE_KEY),
            digest_hex(READ_KEY),
        ))
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("api-keys")
    }

    pub fn arg(&self) -> String {
        self.path().to_str().expect("utf-8 path").to_owned()
    }

    pub fn write(&self, lines: &str) {
        // Written aside and renamed into place, as an editor or a deploy would: a reader never
        // sees half a file.
        let staged = self.dir.path().join("api-keys.new");
        std::fs::write(&staged, lines).expect("write keys");
        std::fs::rename(&staged, self.path()).expect("rename keys");
    }
}

/// One answer: status, `WWW-Authenticate`, JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    www_authenticate: Option<String>,
    body: Value,
}

async fn call(
    base: &str,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    idempotency_key: Option<&str>,
) -> Answer {
    let mut request = client().request(method.parse().expect("method"), format!("{base}{path}"));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    if let Some(key) = idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    let resp = request.send().await.expect("sent");
    let status = resp.status().as_u16();
    let www_authenticate = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let body = resp.json().await.expect("JSON body");
    Answer {
        status,
        www_authenticate,
        body,
    }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

/// Asserts a `401`: `WWW-Authenticate: Bearer` and the JSON error shape.
fn assert_unauthorized(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 401, "{what}: {answer:?}");
    assert_eq!(answer.www_authenticate.as_deref(), Some("Bearer"), "{what}");
    assert_eq!(answer.body["error"], "unauthorized", "{what}: {answer:?}");
    let message = answer.body["message"].as_str().expect("message");
    assert!(
        message.contains("Bearer") || message.contains("key"),
        "{message}"
    );
    assert_eq!(answer.body.as_object().map(|o| o.len()), Some(2), "{what}");
}

async fn count_with(base: &str, route: &str, key: &str) -> u64 {
    let answer = call(
        base,
        "GET",
        &format!("/transactions/{route}"),
        Some(&bearer(key)),
        None,
    )
    .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["transactions"].as_u64().expect("count")
}

async fn embedded(keys: &KeysFile) -> Fixture {
    let path = keys.path();
    crate::stores::embedded_with(|c| c.auth.api_keys_file = Some(path)).await
}

async fn moto(keys: &KeysFile) -> Fixture {
    let path = keys.path();
    crate::stores::dynamodb(Kind::Moto, |c| c.auth.api_keys_file = Some(path)).await
}

/// Every refusal, with its status and body; none of them counts anything; the right scope
/// is answered `200`.
async fn refused_requests_are_json_401_or_403_and_change_nothing(f: Fixture) {
    let base = f.app.url("");
    let post = "/transactions/AU1";
    let missing = call(&base, "POST", post, None, None).await;
    assert_unauthorized(&missing, "no key");
    assert!(
        missing.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("Authorization: Bearer")),
        "{missing:?}"
    );
    // Authentication comes first: neither the route nor the Idempotency-Key is looked at.
    assert_unauthorized(
        &call(&base, "POST", "/transactions/not-a-route", None, None).await,
        "no key, bad route",
    );
    assert_unauthorized(
        &call(&base, "POST", post, None, Some("has space")).await,
        "no key, bad Idempotency-Key",
    );
    let unknown = call(&base, "POST", post, Some(&bearer("fck_no-such-key")), None).await;
    assert_unauthorized(&unknown, "unknown key");
    assert!(
        !unknown.body.to_string().contains("fck_no-such-key"),
        "the key is never echoed: {unknown:?}"
    );
    for malformed in [
        "Basic Ym9va2luZzpzZWNyZXQ=",
        "Bearer",
        "Bearer ",
        WRITE_KEY,
        &format!("Bearer {WRITE_KEY} {WRITE_KEY}"),
        &format!("Bearer {}", "k".repeat(600)),
    ] {
        assert_unauthorized(
            &call(&base, "POST", post, Some(malformed), None).await,
            malformed,
        );
    }
    let forbidden = call(&base, "POST", post, Some(&bearer(READ_KEY)), Some("ro-1")).await;
    assert_eq!(forbidden.status, 403, "{forbidden:?}");
    assert_eq!(forbidden.body["error"], "forbidden");
    assert!(
        forbidden.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("write scope")),
        "{forbidden:?}"
    );
    assert_eq!(forbidden.www_authenticate, None);
    // Reads need a key too.
    assert_unauthorized(&call(&base, "GET", post, None, None).await, "GET, no key");
    assert_unauthorized(
        &call(&base, "GET", post, Some(&bearer("fck_nope")), None).await,
        "GET, unknown key",
    );
    // Nothing was counted, and the refused read-key POST did not take its Idempotency-Key.
    assert_eq!(count_with(&base, "AU1", READ_KEY).await, 0);
    let written = call(&base, "POST", post, Some(&bearer(WRITE_KEY)), Some("ro-1")).await;
    assert_eq!(written.status, 200, "{written:?}");
    assert_eq!(
        written.body,
        serde_json::json!({"route": "AU0001", "transactions": 1})
    );
    assert_eq!(count_with(&base, "AU1", READ_KEY).await, 1);
    assert_eq!(count_with(&base, "au0001", WRITE_KEY).await, 1);
    // Operations endpoints stay open.
    for open in ["/healthz", "/readyz", "/version", "/openapi.json"] {
        let answer = call(&base, "GET", open, None, None).await;
        assert_eq!(answer.status, 200, "{open}: {answer:?}");
    }
    assert_eq!(
        call(&base, "GET", "/version", None, None).await.body["auth"],
        "api-keys"
    );
    // The pages need no key; the dashboard's reads send one.
    for page in ["/", "/dashboard"] {
        let page = client()
            .get(format!("{base}{page}"))
            .send()
            .await
            .expect("sent");
        assert_eq!(page.status(), 200);
    }
    let metrics = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    for reason in ["missing", "malformed", "unknown", "forbidden"] {
        assert!(
            metrics.contains(&format!(
                "flight_counter_auth_failures_total{{reason=\"{reason}\"}}"
            )),
            "{reason}"
        );
    }
    assert!(
        metrics.contains("client=\"booking-engine\""),
        "client label"
    );
    assert!(metrics.contains("client=\"anonymous\""), "client label");
    assert!(!metrics.contains(WRITE_KEY) && !metrics.contains(READ_KEY));
    f.app.stop().await;
}

/// The same `Idempotency-Key` from two clients is two transactions; each client's retries
/// replay its own answer; one client reusing its key on another route is `422`.
async fn idempotency_keys_are_per_client(f: Fixture) {
    let base = f.app.url("");
    let post = |key: &'static str| {
        let base = base.clone();
        async move {
            call(
                &base,
                "POST",
                "/transactions/IK1",
                Some(&bearer(key)),
                Some("order-7"),
            )
            .await
        }
    };
    let first = post(WRITE_KEY).await;
    assert_eq!(
        (first.status, &first.body["transactions"]),
        (200, &1.into())
    );
    let second = post(OTHER_WRITE_KEY).await;
    assert_eq!(
        (second.status, &second.body["transactions"]),
        (200, &2.into()),
        "another client's identical key is another transaction"
    );
    for (key, count) in [(WRITE_KEY, 1), (OTHER_WRITE_KEY, 2)] {
        let replay = client()
            .post(format!("{base}/transactions/IK1"))
            .header("Authorization", bearer(key))
            .header("Idempotency-Key", "order-7")
            .send()
            .await
            .expect("sent");
        assert_eq!(replay.status(), 200);
        assert_eq!(replay.headers()["idempotent-replayed"], "true");
        let body: Value = replay.json().await.expect("json");
        assert_eq!(body["transactions"], count);
    }
    let reused = call(
        &base,
        "POST",
        "/transactions/LA1",
        Some(&bearer(WRITE_KEY)),
        Some("order-7"),
    )
    .await;
    assert_eq!(reused.status, 422, "{reused:?}");
    assert_eq!(reused.body["error"], "idempotency_key_reused");
    assert_eq!(count_with(&base, "IK1", READ_KEY).await, 2);
    assert_eq!(count_with(&base, "LA1", READ_KEY).await, 0);
    f.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_refused_requests_are_json_401_or_403_and_change_nothing() {
    let keys = KeysFile::standard();
    refused_requests_are_json_401_or_403_and_change_nothing(embedded(&keys).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_on_moto_refused_requests_are_json_401_or_403_and_change_nothing() {
    let keys = KeysFile::standard();
    refused_requests_are_json_401_or_403_and_change_nothing(moto(&keys).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_idempotency_keys_are_per_client() {
    let keys = KeysFile::standard();
    idempotency_keys_are_per_client(embedded(&keys).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_on_moto_idempotency_keys_are_per_client() {
    let keys = KeysFile::standard();
    idempotency_keys_are_per_client(moto(&keys).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_reads_need_no_key_but_writes_do() {
    let keys = KeysFile::standard();
    let path = keys.path();
    let f = crate::stores::embedded_with(|c| {
        c.auth.api_keys_file = Some(path);
        c.auth.public_reads = true;
    })
    .await;
    let base = f.app.url("");
    let read = call(&base, "GET", "/transactions/PB1", None, None).await;
    assert_eq!(read.status, 200, "{read:?}");
    assert_eq!(read.body["transactions"], 0);
    // A key that is sent is still checked.
    assert_unauthorized(
        &call(
            &base,
            "GET",
            "/transactions/PB1",
            Some(&bearer("fck_wrong")),
            None,
        )
        .await,
        "public read, wrong key",
    );
    assert_unauthorized(
        &call(&base, "POST", "/transactions/PB1", None, None).await,
        "public reads, POST without key",
    );
    let written = call(
        &base,
        "POST",
        "/transactions/PB1",
        Some(&bearer(WRITE_KEY)),
        None,
    )
    .await;
    assert_eq!(written.body["transactions"], 1, "{written:?}");
    assert_eq!(
        call(&base, "GET", "/transactions/PB1", None, None)
            .await
            .body["transactions"],
        1
    );
    f.app.stop().await;
}

/// Without a keys file, everyone may read and write, and the service says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_keys_file_authentication_is_off_and_announced() {
    let service = ServiceProcess::start(&["--store", "memory"]);
    let version = call(&service.base, "GET", "/version", None, None).await;
    assert_eq!(version.body["auth"], "off");
    let written = call(&service.base, "POST", "/transactions/OF1", None, None).await;
    assert_eq!(written.body["transactions"], 1, "{written:?}");
    let warnings = service.logged("authentication is off");
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("\"WARN\""), "{warnings:?}");
}

/// A directory laid out as the kubelet mounts a Secret: `api-keys` → `..data/api-keys`, and
/// `..data` a symlink to a timestamped directory that an update replaces by swapping the link.
struct SecretVolume {
    dir: tempfile::TempDir,
    generation: std::cell::Cell<u32>,
}

impl SecretVolume {
    fn new(content: &str) -> SecretVolume {
        let volume = SecretVolume {
            dir: tempfile::tempdir().expect("temp dir"),
            generation: std::cell::Cell::new(0),
        };
        volume.update(content);
        std::os::unix::fs::symlink("..data/api-keys", volume.path()).expect("symlink");
        volume
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("api-keys")
    }

    fn update(&self, content: &str) {
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        let root = self.dir.path();
        let data = format!("..2026_11_21_00_00_{generation:02}");
        std::fs::create_dir(root.join(&data)).expect("mkdir");
        std::fs::write(root.join(&data).join("api-keys"), content).expect("write");
        let staged = root.join("..data_tmp");
        std::os::unix::fs::symlink(&data, &staged).expect("symlink");
        std::fs::rename(&staged, root.join("..data")).expect("swap");
    }
}

fn line(client: &str, scope: &str, key: &str) -> String {
    format!("{client} {scope} {}\n", digest_hex(key))
}

/// The keys-file error gauge of a running service.
async fn keys_file_errors(base: &str) -> f64 {
    crate::helpers::metric_sum(base, "flight_counter_auth_keys_file_errors", &[]).await
}

/// Keys rotate under a running process (a Secret volume updated the kubelet's way): the new
/// key works within seconds and the old one stops. A reload applies what the file says: a
/// removed line is revoked even when another line is broken, the broken line is counted and
/// logged by number (never by content), and a deleted file fails closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_without_a_restart_and_a_reload_applies_what_the_file_says() {
    const OLD: &str = "fck_old-key-before-the-rotation-0123456789abcdefgh";
    const NEW: &str = "fck_new-key-after-the-rotation-0123456789abcdefghi";
    // Pasted into the digest column by mistake: it must never reach the logs.
    const PASTED: &str = "fck_pasted-raw-key-in-the-wrong-column-0123456789";
    let volume = SecretVolume::new(&line("booking-engine", "write", OLD));
    let path = volume.path();
    let path_arg = path.to_str().expect("utf-8");
    let service = ServiceProcess::start(&["--store", "memory", "--api-keys-file", path_arg]);
    let base = service.base.clone();
    let post = async |key: &str| {
        call(&base, "POST", "/transactions/RO1", Some(&bearer(key)), None)
            .await
            .status
    };
    assert_eq!(post(OLD).await, 200);
    assert_eq!(post(NEW).await, 401);
    assert_eq!(keys_file_errors(&base).await, 0.0, "emitted while healthy");

    // Overlap: both keys are valid while clients move to the new one.
    volume.update(&format!(
        "{}{}",
        line("booking-engine", "write", OLD),
        line("booking-engine", "write", NEW)
    ));
    within(Duration::from_secs(5), "the new key accepted", async || {
        post(NEW).await == 200
    })
    .await;
    assert_eq!(post(OLD).await, 200, "both keys during the overlap");

    // The old key's line is removed and a broken line added: the old key is revoked within
    // the reload interval all the same, and the broken line grants nothing.
    volume.update(&format!(
        "# comment\n{}booking-engine write {PASTED}\n",
        line("booking-engine", "write", NEW)
    ));
    let revoked = within(Duration::from_secs(5), "the old key refused", async || {
        post(OLD).await == 401
    })
    .await;
    assert!(
        revoked < RELOAD_INTERVAL + Duration::from_millis(800),
        "revoked after {revoked:?}"
    );
    assert_eq!(post(NEW).await, 200);
    assert_eq!(post(PASTED).await, 401, "a broken line grants nothing");
    assert_eq!(keys_file_errors(&base).await, 1.0);
    let refused = service.logged("API keys file line refused");
    assert_eq!(refused.len(), 1, "logged once, not every poll: {refused:?}");
    let error: Value = serde_json::from_str(&refused[0]).expect("json log line");
    assert_eq!(error["level"], "ERROR");
    assert_eq!(error["line"], 3, "{error}");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("digest")),
        "{error}"
    );
    // Two more reloads find the same file: neither logs its broken line again.
    let reads = metric_sum(&base, "flight_counter_auth_keys_file_reads_total", &[]).await;
    within(Duration::from_secs(5), "two more reloads", async || {
        metric_sum(&base, "flight_counter_auth_keys_file_reads_total", &[]).await >= reads + 2.0
    })
    .await;
    assert_eq!(service.logged("API keys file line refused").len(), 1);

    // A missing file (deleted from under the process) fails closed.
    std::fs::remove_file(&path).expect("remove the link");
    within(
        Duration::from_secs(5),
        "a missing file fails closed",
        async || post(NEW).await == 401,
    )
    .await;
    assert_eq!(keys_file_errors(&base).await, 1.0);
    assert_eq!(service.logged("API keys file cannot be read").len(), 1);
    // And back once it can be read.
    std::os::unix::fs::symlink("..data/api-keys", &path).expect("symlink");
    volume.update(&line("booking-engine", "write", NEW));
    within(Duration::from_secs(5), "the key back", async || {
        post(NEW).await == 200
    })
    .await;
    assert_eq!(keys_file_errors(&base).await, 0.0);
    let logs = service
        .logs
        .lock()
        .map(|l| l.join("\n"))
        .unwrap_or_default();
    for key in [OLD, NEW, PASTED] {
        assert!(!logs.contains(key), "an API key appeared in the logs");
    }
}

/// The keys file rewritten in place (truncated, then written in two parts with a pause, so
/// that a reader can see it half-written) 200 times while a client keeps sending a valid key:
/// not one request is turned away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_rewrites_never_turn_a_valid_key_away() {
    let mut content = String::new();
    for i in 0..40 {
        content.push_str(&line(&format!("client-{i}"), "write", &format!("fck_k{i}")));
    }
    // The key on the last line: lost by any read of a half-written file.
    const KEY: &str = "fck_k39";
    let keys = KeysFile::new(&content);
    let keys_arg = keys.arg();
    let service = ServiceProcess::start(&["--store", "memory", "--api-keys-file", &keys_arg]);
    let writer = std::thread::spawn({
        let path = keys.path();
        move || {
            use std::io::Write as _;
            let (head, tail) = content.split_at(content.len() / 2);
            for _ in 0..200 {
                let mut file = std::fs::File::create(&path).expect("truncate");
                file.write_all(head.as_bytes()).expect("head");
                std::thread::sleep(Duration::from_millis(8));
                file.write_all(tail.as_bytes()).expect("tail");
                drop(file);
                std::thread::sleep(Duration::from_millis(12));
            }
        }
    });
    let http = client();
    let (mut answered, mut refused) = (0u32, 0u32);
    while !writer.is_finished() {
        let resp = http
            .get(format!("{}/transactions/IP1", service.base))
            .header("Authorization", bearer(KEY))
            .send()
            .await
            .expect("sent");
        answered += 1;
        if resp.status() != 200 {
            refused += 1;
        }
    }
    writer.join().expect("writer");
    assert!(answered > 100, "{answered} requests");
    assert_eq!(
        refused,
        0,
        "{refused} of {answered} requests refused; {:?}",
        service.logged("API keys")
    );
    println!("in-place rewrites: {answered} requests, {refused} refused");
    assert_eq!(keys_file_errors(&service.base).await, 0.0);
}

/// Runs `flight-counter api-key` and returns (stdout, stderr).
fn generate(client: &str, scope: &str) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flight-counter"))
        .args(["api-key", "--client", client, "--scope", scope])
        .output()
        .expect("run api-key");
    assert!(out.status.success(), "{out:?}");
    (
        String::from_utf8(out.stdout).expect("utf-8"),
        String::from_utf8(out.stderr).expect("utf-8"),
    )
}

/// A key from the generator works against a file built from the line it printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_generators_key_works_with_the_line_it_prints() {
    let (writer_key, writer_line) = generate("booking-engine", "write");
    let (reader_key, reader_line) = generate("dashboards", "read");
    let writer_key = writer_key.trim_end();
    let reader_key = reader_key.trim_end();
    assert_eq!(writer_key.lines().count(), 1);
    assert!(
        writer_key.starts_with("fck_") && writer_key.len() == 47,
        "{writer_key}"
    );
    assert_ne!(writer_key, reader_key);
    assert_eq!(writer_line.lines().count(), 1, "{writer_line}");
    assert!(
        !writer_line.contains(writer_key),
        "the line never holds the key"
    );
    assert_eq!(
        writer_line.trim_end(),
        format!("booking-engine write {}", digest_hex(writer_key))
    );
    let keys = KeysFile::new(&format!("{writer_line}{reader_line}"));
    let keys_arg = keys.arg();
    let service = ServiceProcess::start(&["--store", "memory", "--api-keys-file", &keys_arg]);
    let posted = call(
        &service.base,
        "POST",
        "/transactions/GN1",
        Some(&bearer(writer_key)),
        None,
    )
    .await;
    assert_eq!(posted.status, 200, "{posted:?}");
    assert_eq!(posted.body["transactions"], 1);
    let refused = call(
        &service.base,
        "POST",
        "/transactions/GN1",
        Some(&bearer(reader_key)),
        None,
    )
    .await;
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(count_with(&service.base, "GN1", reader_key).await, 1);

    let bad = Command::new(env!("CARGO_BIN_EXE_flight-counter"))
        .args(["api-key", "--client", "Not_A_Name", "--scope", "write"])
        .output()
        .expect("run api-key");
    assert_eq!(bad.status.code(), Some(2));
    assert!(bad.stdout.is_empty(), "no key printed on a bad request");
}

fn start_and_expect_config_error(keys_file: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flight-counter"))
        .args([
            "--store",
            "memory",
            "--bind",
            "127.0.0.1:0",
            "--api-keys-file",
        ])
        .arg(keys_file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("flight-counter: "), "{stderr}");
    stderr
}

/// A keys file that cannot be read at start is a configuration error (exit 2), never a
/// service without authentication. One with broken lines starts with its valid lines: the
/// broken ones are logged by number and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_keys_file_at_start_exits_2_and_broken_lines_do_not() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = start_and_expect_config_error(&dir.path().join("absent"));
    assert!(
        missing.contains("cannot read the API keys file"),
        "{missing}"
    );
    let keys = KeysFile::new(&format!(
        "{}dashboards read {}\ndashboards write {}\n",
        line("booking-engine", "write", "k1"),
        digest_hex("k2"),
        digest_hex("k3")
    ));
    let keys_arg = keys.arg();
    let service = ServiceProcess::start(&["--store", "memory", "--api-keys-file", &keys_arg]);
    let base = service.base.clone();
    assert_eq!(
        call(
            &base,
            "POST",
            "/transactions/BR1",
            Some(&bearer("k1")),
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(count_with(&base, "BR1", "k2").await, 1);
    assert_unauthorized(
        &call(&base, "GET", "/transactions/BR1", Some(&bearer("k3")), None).await,
        "the conflicting line grants nothing",
    );
    assert_eq!(keys_file_errors(&base).await, 1.0);
    let refused = service.logged("API keys file line refused");
    assert_eq!(refused.len(), 1, "{refused:?}");
    let error: Value = serde_json::from_str(&refused[0]).expect("json log line");
    assert_eq!(error["line"], 3, "{error}");
    assert!(
        error["error"]
            .as_str()
            .is_some_and(|e| e.contains("one scope") && e.contains("line 2")),
        "{error}"
    );
    let loaded = service.logged("API keys loaded");
    assert!(loaded[0].contains("\"refused_lines\":1"), "{loaded:?}");
}
