//! Test harness: start the real service, in process (through `startup`, as `main` does) or as
//! the real binary in a child process, on a random loopback port, and talk to it over HTTP.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use flight_counter::{
    clock::{SharedClock, SystemClock},
    config::{Config, StoreKind},
    startup::{Application, ApplicationBuilder, StartupError},
    store::{DynamoStore, Store},
};
use serde_json::Value;
use tokio::{sync::oneshot, task::JoinHandle};

/// A running in-process instance.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), StartupError>>>,
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(128)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// A configuration for a test instance, as a value: the defaults, on a random port, the
/// memory store, a short drain.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.server.bind = SocketAddr::from(([127, 0, 0, 1], 0));
    config.store = StoreKind::Memory;
    config.server.drain_timeout = Duration::from_secs(5);
    config
}

/// [`test_config`], changed by `change`, and checked as `main` checks it.
pub fn config_with(change: impl FnOnce(&mut Config)) -> Config {
    let mut config = test_config();
    change(&mut config);
    config.validate().expect("valid test config");
    config
}

/// A configuration of the dynamodb store on `table` at `endpoint`, creating the table.
pub fn dynamodb_config(table: &str, endpoint: &str, change: impl FnOnce(&mut Config)) -> Config {
    config_with(|config| {
        config.store = StoreKind::Dynamodb;
        config.dynamodb.table = table.to_owned();
        config.dynamodb.endpoint_url = Some(endpoint.to_owned());
        config.dynamodb.create_table = true;
        change(config);
    })
}

/// A configuration of the embedded store under `dir`.
pub fn embedded_config(dir: &Path, change: impl FnOnce(&mut Config)) -> Config {
    config_with(|config| {
        config.store = StoreKind::Embedded;
        config.embedded.data_dir = dir.to_owned();
        change(config);
    })
}

pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

impl TestApp {
    /// Starts the service with the store its configuration names.
    pub async fn spawn(config: Config) -> TestApp {
        Self::start(Application::builder(config)).await
    }

    /// Starts the service around a store the test provides.
    pub async fn spawn_with_store(config: Config, store: Store) -> TestApp {
        Self::start(Application::builder(config).store(store)).await
    }

    /// Starts the service around a store and a clock the test provides.
    pub async fn spawn_with_clock(config: Config, store: Store, clock: SharedClock) -> TestApp {
        Self::start(Application::builder(config).store(store).clock(clock)).await
    }

    /// Starts the service as `main` does, from a builder.
    pub async fn start(builder: ApplicationBuilder) -> TestApp {
        let app = builder.build().await.expect("build app");
        let addr = app.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let test_app = TestApp {
            addr,
            client: client(),
            stop: Some(stop),
            server: Some(server),
        };
        test_app.wait_ready().await;
        test_app
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post(&self, route: &str) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/transactions/{route}")))
            .send()
            .await
            .expect("POST sent")
    }

    pub async fn get(&self, route: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/transactions/{route}")))
            .send()
            .await
            .expect("GET sent")
    }

    /// POSTs and returns the count, asserting success and the canonical route.
    pub async fn record(&self, route: &str, canonical: &str) -> u64 {
        let resp = self.post(route).await;
        assert_eq!(resp.status(), 200, "POST {route}");
        let body: Value = resp.json().await.expect("json body");
        assert_eq!(body["route"], canonical, "POST {route}: {body}");
        body["transactions"].as_u64().expect("count is a u64")
    }

    /// GETs and returns the count, asserting success and the canonical route.
    pub async fn count(&self, route: &str, canonical: &str) -> u64 {
        let resp = self.get(route).await;
        assert_eq!(resp.status(), 200, "GET {route}");
        let body: Value = resp.json().await.expect("json body");
        assert_eq!(body["route"], canonical, "GET {route}: {body}");
        body["transactions"].as_u64().expect("count is a u64")
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(resp) = self.client.get(self.url("/readyz")).send().await
                && resp.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("service at {} never became ready", self.addr);
    }

    /// Triggers a graceful shutdown and waits for it to complete.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("clean shutdown");
        }
    }
}

/// POSTs `per_client` times from each of `clients` concurrent clients to `route`, and returns
/// every count answered with `200` (other answers are returned as errors, with their status).
pub async fn post_concurrently(
    base: &str,
    route: &str,
    clients: usize,
    per_client: usize,
) -> (Vec<u64>, Vec<u16>) {
    let base = Arc::new(base.to_owned());
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let base = Arc::clone(&base);
            let route = route.to_owned();
            tokio::spawn(async move {
                let client = client();
                let mut counts = Vec::new();
                let mut failures = Vec::new();
                for _ in 0..per_client {
                    match client
                        .post(format!("{base}/transactions/{route}"))
                        .send()
                        .await
                    {
                        Ok(resp) if resp.status() == 200 => {
                            let body: Value = resp.json().await.expect("json");
                            counts.push(body["transactions"].as_u64().expect("u64"));
                        }
                        Ok(resp) => failures.push(resp.status().as_u16()),
                        Err(_) => failures.push(0),
                    }
                }
                (counts, failures)
            })
        })
        .collect();
    let mut counts = Vec::new();
    let mut failures = Vec::new();
    for task in tasks {
        let (c, f) = task.await.expect("client task");
        counts.extend(c);
        failures.extend(f);
    }
    (counts, failures)
}

/// What the service under test gets from the AWS configuration chain when it talks to a local
/// DynamoDB-compatible server: a region, dummy credentials, and no instance metadata lookups.
pub const AWS_TEST_ENV: [(&str, &str); 4] = [
    ("AWS_REGION", "us-east-1"),
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// The dynamodb store a configuration names, on the system clock, with the region and dummy
/// credentials pinned in code (an in-process service cannot be given its own environment).
pub async fn dynamodb_store(config: &Config) -> Arc<DynamoStore> {
    dynamodb_store_on(config, SystemClock::shared()).await
}

/// As [`dynamodb_store`], on the clock the test gives it.
pub async fn dynamodb_store_on(config: &Config, clock: SharedClock) -> Arc<DynamoStore> {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"));
    Arc::new(
        DynamoStore::connect_with(config.dynamo_settings(), loader, clock)
            .await
            .expect("dynamodb store"),
    )
}

/// A fresh table on the shared server of `kind`, and a configuration of the dynamodb store on
/// it (creating it), changed by `change`.
pub fn table_on(
    kind: crate::emulators::Kind,
    prefix: &str,
    change: impl FnOnce(&mut Config),
) -> (String, Config) {
    let table = crate::emulators::unique_table(prefix);
    let endpoint = crate::emulators::shared(kind).endpoint();
    let config = dynamodb_config(&table, &endpoint, change);
    (table, config)
}

/// One item of `table`, read consistently straight from the server (empty when absent).
pub async fn read_item(
    store: &DynamoStore,
    table: &str,
    key: &str,
) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    store
        .client()
        .get_item()
        .table_name(table)
        .key(
            "route",
            aws_sdk_dynamodb::types::AttributeValue::S(key.to_owned()),
        )
        .consistent_read(true)
        .send()
        .await
        .expect("GetItem")
        .item
        .unwrap_or_default()
}

/// The sum of a metric's samples (from `/metrics` at `base`) whose line contains every one of
/// `labels`. A scrape the service cut off (a test that fills its connection places) is made
/// again, for up to five seconds.
pub async fn metric_sum(base: &str, name: &str, labels: &[&str]) -> f64 {
    let started = std::time::Instant::now();
    let text = loop {
        match client().get(format!("{base}/metrics")).send().await {
            Ok(resp) => break resp.text().await.expect("text"),
            Err(err) => {
                assert!(started.elapsed() < Duration::from_secs(5), "metrics: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    text.lines()
        .filter(|line| line.starts_with(name) && labels.iter().all(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The real binary, run as a child process.
pub struct ServiceProcess {
    pub child: Child,
    pub base: String,
    /// Every line it logged so far (JSON, one event per line).
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl ServiceProcess {
    /// Starts `flight-counter` with `args` (plus a random port and JSON logs) and waits until it
    /// says where it listens.
    pub fn start(args: &[&str]) -> ServiceProcess {
        Self::start_with_env(args, &[])
    }

    /// As [`ServiceProcess::start`], with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> ServiceProcess {
        let mut command = Self::command(args);
        command.envs(env.iter().copied());
        Self::spawn(command)
    }

    /// As [`ServiceProcess::start`], with at most `open_files` descriptors (soft and hard
    /// limit, so the service cannot raise it).
    pub fn start_with_open_files(args: &[&str], open_files: u64) -> ServiceProcess {
        use std::os::unix::process::CommandExt as _;
        let mut command = Self::command(args);
        // SAFETY: setrlimit is async-signal-safe, and the closure touches nothing else.
        unsafe {
            command.pre_exec(move || {
                let limit = libc::rlimit {
                    rlim_cur: open_files,
                    rlim_max: open_files,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        Self::spawn(command)
    }

    fn command(args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flight-counter"));
        command
            .args(["--bind", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .env("RUST_LOG", "info");
        command
    }

    fn spawn(mut command: Command) -> ServiceProcess {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start flight-counter");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&logs);
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                kept.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(line.clone());
                if !sent
                    && let Ok(event) = serde_json::from_str::<Value>(&line)
                    && event["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("serving"))
                    && let Some(addr) = event["addr"].as_str()
                {
                    let _ = tx.send(addr.to_owned());
                    sent = true;
                }
            }
        });
        let reported = rx.recv_timeout(Duration::from_secs(20));
        let Some(addr) = reported.ok().and_then(|a| a.parse::<SocketAddr>().ok()) else {
            // Never leave the child behind when the test gives up on it.
            let _ = child.kill();
            let _ = child.wait();
            panic!("flight-counter did not report a listening address within 20 s");
        };
        ServiceProcess {
            child,
            base: format!("http://{addr}"),
            logs,
        }
    }

    /// The logged events whose text contains `needle`.
    pub fn logged(&self, needle: &str) -> Vec<String> {
        self.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|line| line.contains(needle))
            .cloned()
            .collect()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("service did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a directory holds the embedded store's file.
pub fn has_database(dir: &Path) -> bool {
    dir.join(flight_counter::store::DATABASE_FILE).exists()
}

/// Sends a request and returns its JSON body (whatever the status).
pub async fn send_json(request: reqwest::RequestBuilder) -> Value {
    request
        .send()
        .await
        .expect("request sent")
        .json()
        .await
        .expect("JSON body")
}

/// Polls `check` every 100 ms until it holds, and returns how long that took; fails the test
/// with `what` past `limit`. Tests wait for what they need to see, never a fixed time.
pub async fn within(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let started = std::time::Instant::now();
    loop {
        if check().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{what} not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
