//! A DynamoDB that throttles: `scripts/dynamodb-throttle-proxy.py` in front of a local server,
//! refusing, as DynamoDB does, writes past a budget per item per second (neither emulator
//! throttles). Refused writes are answered by the proxy and never reach the server.
//!
//! Like the servers in `emulators`, a proxy is killed when its handle drops, and it dies with
//! the test binary however that ends: it runs with `--exit-on-stdin-close`, and its standard
//! input is a pipe from this process, which the kernel closes when the process is gone.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use aws_sdk_dynamodb::{
    Client,
    config::{BehaviorVersion, Credentials, Region, retry::RetryConfig},
    types::{
        AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
        ScalarAttributeType, TableStatus,
    },
};
use serde_json::Value;

use crate::{
    emulators::{self, Kind},
    helpers::client,
};

/// A running proxy. Stopped (killed) on drop.
pub struct ThrottleProxy {
    pub port: u16,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl ThrottleProxy {
    /// Starts a proxy on a free port in front of the server on `upstream_port`, allowing
    /// `writes_per_second` write units per item over a sliding one-second window.
    pub fn start(upstream_port: u16, writes_per_second: u32) -> ThrottleProxy {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the crate lives in the workspace")
            .join("scripts/dynamodb-throttle-proxy.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--listen", "127.0.0.1:0"])
            .args(["--upstream", &format!("127.0.0.1:{upstream_port}")])
            .args(["--writes-per-second", &writes_per_second.to_string()])
            .arg("--exit-on-stdin-close")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");
        // Read on a thread, so that a proxy that never says where it listens cannot hang the
        // test; the thread then drains stdout until the proxy exits.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let port = line
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|p| p.trim().parse::<u16>().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the throttle proxy did not say where it listens (said {line:?})");
        };
        ThrottleProxy { port, child, stdin }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the proxy forwarded and refused since it started or was last reset: per operation,
    /// and per item (accepted units, refused requests, units per whole second, and the most
    /// units accepted in any window).
    pub async fn stats(&self) -> Value {
        let resp = client()
            .get(format!("{}/__proxy/stats", self.endpoint()))
            .send()
            .await
            .expect("stats request sent");
        assert_eq!(resp.status(), 200, "GET /__proxy/stats");
        resp.json().await.expect("stats are JSON")
    }

    /// Forgets every item's window and all counters, and restarts the clock of the stats.
    pub async fn reset(&self) {
        let resp = client()
            .post(format!("{}/__proxy/reset", self.endpoint()))
            .send()
            .await
            .expect("reset request sent");
        assert_eq!(resp.status(), 200, "POST /__proxy/reset");
    }
}

impl Drop for ThrottleProxy {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SDK client for `endpoint` that makes exactly one attempt per call, so that a throttled
/// call fails instead of being retried.
fn single_attempt_client(endpoint: &str) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .build();
    Client::from_conf(config)
}

/// Creates `table` (partition key `route`, a string) and waits until it takes writes.
async fn create_table(client: &Client, table: &str) {
    client
        .create_table()
        .table_name(table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("route")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("route")
                .key_type(KeyType::Hash)
                .build()
                .expect("key schema"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .expect("describe table");
        if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "table {table} never became active"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// 30 `ADD`s on one item at once through a proxy allowing 10 a second: the proxy lets some
/// through and answers the others itself with DynamoDB's throttling error, and the item ends up
/// counting exactly the ones that succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_throttle_proxy_refuses_writes_over_budget_and_applies_nothing() {
    const BUDGET: u32 = 10;
    const CALLS: usize = 30;
    let server = emulators::shared(Kind::Dynalite);
    let table = emulators::unique_table("throttled");
    let direct = single_attempt_client(&server.endpoint());
    create_table(&direct, &table).await;
    let proxy = ThrottleProxy::start(server.port(), BUDGET);
    let throttled = single_attempt_client(&proxy.endpoint());
    proxy.reset().await;

    let calls = (0..CALLS).map(|_| {
        throttled
            .update_item()
            .table_name(&table)
            .key("route", AttributeValue::S("TP0001".into()))
            .update_expression("ADD #count :one")
            .expression_attribute_names("#count", "transactions")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
    });
    let mut succeeded = 0u64;
    for result in futures::future::join_all(calls).await {
        match result {
            Ok(_) => succeeded += 1,
            Err(err) => {
                let refused = err
                    .as_service_error()
                    .is_some_and(|e| e.is_provisioned_throughput_exceeded_exception());
                assert!(refused, "not a throttling error: {err:?}");
            }
        }
    }
    assert!(
        succeeded >= u64::from(BUDGET) && succeeded < CALLS as u64,
        "{succeeded} of {CALLS} calls succeeded with a budget of {BUDGET}/s"
    );

    let item = direct
        .get_item()
        .table_name(&table)
        .key("route", AttributeValue::S("TP0001".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("read the item directly");
    let count: u64 = item
        .item()
        .and_then(|i| i.get("transactions"))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .expect("a numeric count");
    assert_eq!(count, succeeded, "only the admitted writes were applied");

    let stats = proxy.stats().await;
    assert_eq!(stats["budget"], u64::from(BUDGET));
    assert_eq!(
        stats["operations"]["UpdateItem"],
        serde_json::json!({"forwarded": succeeded, "throttled": CALLS as u64 - succeeded}),
        "{stats}"
    );
    let items = stats["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{stats}");
    assert_eq!(
        items[0]["key"],
        serde_json::json!({"route": {"S": "TP0001"}})
    );
    assert_eq!(items[0]["accepted_units"], succeeded);
    assert!(
        items[0]["max_units_in_any_window"]
            .as_u64()
            .is_some_and(|units| units <= u64::from(BUDGET)),
        "{stats}"
    );
}
