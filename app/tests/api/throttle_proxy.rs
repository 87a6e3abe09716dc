//! A DynamoDB that throttles: `scripts/dynamodb-throttle-proxy.py` in front of a local server,
//! refusing, as DynamoDB does, writes past a budget per item per second (neither emulator
//! throttles). Refused writes are answered by the proxy and never reach the server. The same
//! proxy honours client request tokens and loses answers on demand (`dynamodb_faults`).
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
use serde_json::{Value, json};

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
        Self::start_with(upstream_port, writes_per_second, &[])
    }

    /// As [`ThrottleProxy::start`], with more flags (client request tokens, slow transactions,
    /// faults).
    pub fn start_with(upstream_port: u16, writes_per_second: u32, extra: &[&str]) -> ThrottleProxy {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the crate lives in the workspace")
            .join("scripts/dynamodb-throttle-proxy.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--listen", "127.0.0.1:0"])
            .args(["--upstream", &format!("127.0.0.1:{upstream_port}")])
            .args(["--writes-per-second", &writes_per_second.to_string()])
            .args(extra)
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

    /// Replaces the fault settings (`{}`: no faults from now on); answers the settings now in
    /// force.
    pub async fn set_faults(&self, settings: Value) -> Value {
        let resp = client()
            .post(format!("{}/__proxy/faults", self.endpoint()))
            .json(&settings)
            .send()
            .await
            .expect("fault settings sent");
        assert_eq!(resp.status(), 200, "POST /__proxy/faults {settings}");
        resp.json().await.expect("settings are JSON")
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

/// A transaction of one `ADD` on `route`, with a client request token.
fn tokened_add(
    client: &Client,
    table: &str,
    route: &str,
    token: &str,
) -> aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder {
    use aws_sdk_dynamodb::types::{TransactWriteItem, Update};
    let update = Update::builder()
        .table_name(table)
        .key("route", AttributeValue::S(route.into()))
        .update_expression("ADD #count :one")
        .expression_attribute_names("#count", "transactions")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .build()
        .expect("an update");
    client
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().update(update).build())
        .client_request_token(token)
}

async fn item_count(client: &Client, table: &str, route: &str) -> u64 {
    client
        .get_item()
        .table_name(table)
        .key("route", AttributeValue::S(route.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("read the item directly")
        .item()
        .and_then(|i| i.get("transactions"))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The proxy keeps DynamoDB's promises on client request tokens in front of moto, in the very
/// answers the SDK knows: the same token and request is applied once and answered again, the
/// same token with another request is `IdempotentParameterMismatchException`, and the same
/// token while the first runs is `TransactionInProgressException`. moto alone applies every
/// repeat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_honours_client_request_tokens_as_dynamodb_does() {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    let server = emulators::shared(Kind::Moto);
    let table = emulators::unique_table("tokens");
    let direct = single_attempt_client(&server.endpoint());
    create_table(&direct, &table).await;
    let proxy = ThrottleProxy::start_with(
        server.port(),
        1_000_000,
        &["--honour-tokens", "--transaction-ms", "300"],
    );
    let honoured = single_attempt_client(&proxy.endpoint());

    tokened_add(&honoured, &table, "TK0001", "token-1")
        .send()
        .await
        .expect("first");
    tokened_add(&honoured, &table, "TK0001", "token-1")
        .send()
        .await
        .expect("the same again: the first answer");
    assert_eq!(
        item_count(&direct, &table, "TK0001").await,
        1,
        "applied once"
    );

    let other = tokened_add(&honoured, &table, "TK0002", "token-1")
        .send()
        .await
        .expect_err("another request with the token");
    assert!(
        matches!(
            other.as_service_error(),
            Some(TransactWriteItemsError::IdempotentParameterMismatchException(_))
        ),
        "{other:?}"
    );
    assert_eq!(item_count(&direct, &table, "TK0002").await, 0);

    let first = tokio::spawn(tokened_add(&honoured, &table, "TK0003", "token-2").send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let running = tokened_add(&honoured, &table, "TK0003", "token-2")
        .send()
        .await
        .expect_err("the same while the first runs");
    assert!(
        matches!(
            running.as_service_error(),
            Some(TransactWriteItemsError::TransactionInProgressException(_))
        ),
        "{running:?}"
    );
    first.await.expect("task").expect("the first one");
    assert_eq!(item_count(&direct, &table, "TK0003").await, 1);

    // moto itself runs every repeat: the reason the store must recognise its own batches.
    for _ in 0..2 {
        tokened_add(&direct, &table, "TK0004", "token-3")
            .send()
            .await
            .expect("moto");
    }
    assert_eq!(item_count(&direct, &table, "TK0004").await, 2);
    let tokens = &proxy.stats().await["tokens"];
    assert_eq!(
        (
            &tokens["replayed"],
            &tokens["mismatched"],
            &tokens["in_progress"]
        ),
        (&json!(1), &json!(1), &json!(1)),
        "{tokens}"
    );
}
