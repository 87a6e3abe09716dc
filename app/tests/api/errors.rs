//! The HTTP surface beyond the counting itself: every error in the JSON shape with the right
//! status and headers, the OpenAPI document, Swagger UI, health, readiness and metrics.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use flight_counter::{
    calendar::{Day, Month},
    route::Route,
    store::{
        BatchStore, MemoryStore, RouteOutcome, RouteWrite, SnapshotStore, Store, StoreBase,
        StoreError,
    },
};
use serde_json::Value;

use crate::helpers::{TestApp, client, config_with, millis, secs, send_json, test_config};

async fn memory_app() -> TestApp {
    TestApp::spawn(test_config()).await
}

async fn json_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status(), status);
    let content_type = resp.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: Value = resp.json().await.expect("json body");
    assert_eq!(body["error"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{body}");
    body
}

#[tokio::test]
async fn unknown_paths_are_json_404() {
    let app = memory_app().await;
    for path in [
        "/nope",
        "/transactions/",
        "/transactions/AR1/extra",
        "/transactions/AR1/daily/extra",
        "/../etc/passwd",
    ] {
        let resp = app.client.get(app.url(path)).send().await.expect("sent");
        json_error(resp, 404, "not_found").await;
    }
    app.stop().await;
}

#[tokio::test]
async fn wrong_methods_are_json_405_with_allow() {
    let app = memory_app().await;
    let cases = [
        ("PUT", "/transactions/AR1", "GET, POST"),
        ("DELETE", "/transactions/AR1", "GET, POST"),
        ("PATCH", "/transactions/AR1", "GET, POST"),
        ("POST", "/healthz", "GET"),
        ("DELETE", "/readyz", "GET"),
        ("POST", "/metrics", "GET"),
        ("POST", "/openapi.json", "GET"),
        ("POST", "/dashboard", "GET"),
        ("DELETE", "/dashboard", "GET"),
    ];
    for (method, path, allow) in cases {
        let resp = app
            .client
            .request(method.parse().expect("method"), app.url(path))
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.headers()["allow"], allow, "{method} {path}");
        let body = json_error(resp, 405, "method_not_allowed").await;
        assert!(body["message"].as_str().expect("msg").contains(allow));
    }
    app.stop().await;
}

#[tokio::test]
async fn undecodable_paths_are_json_400() {
    let app = memory_app().await;
    for path in [
        "/transactions/%FF",
        "/transactions/%C3%28",
        "/transactions/AR%",
    ] {
        let resp = app.client.get(app.url(path)).send().await.expect("sent");
        assert_eq!(resp.status(), 400, "{path}");
        let body: Value = resp.json().await.expect("json");
        assert!(
            body["error"] == "invalid_route" || body["error"] == "bad_request",
            "{path}: {body}"
        );
    }
    app.stop().await;
}

/// Opens a fresh connection and sends raw bytes on it (none if `request` is empty).
async fn raw_connection(app: &TestApp, request: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write");
    stream
}

/// Sends raw bytes on a fresh connection and reads the answer until the server closes it.
async fn raw_exchange(app: &TestApp, request: &[u8]) -> String {
    use tokio::io::AsyncReadExt;
    let mut stream = raw_connection(app, request).await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection after a malformed request")
        .expect("read");
    String::from_utf8(answer).expect("utf-8 answer")
}

/// Splits the last answer on a connection into its status line, head and parsed JSON body.
fn last_answer(raw: &str) -> (String, String, Value) {
    let start = raw.rfind("HTTP/1.1 ").expect("a status line");
    let (head, body) = raw[start..]
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head and body in {raw:?}"));
    let status_line = head.lines().next().unwrap_or_default().to_owned();
    let body: Value = serde_json::from_str(body).expect("a JSON body");
    (status_line, head.to_ascii_lowercase(), body)
}

#[tokio::test]
async fn requests_the_http_parser_refuses_get_json_errors_too() {
    let app = memory_app().await;
    let long_target = format!(
        "GET /transactions/{} HTTP/1.1\r\nHost: t\r\n\r\n",
        "A".repeat(70_000)
    );
    let many_headers = format!(
        "GET /version HTTP/1.1\r\nHost: t\r\n{}\r\n",
        (0..200)
            .map(|i| format!("x-h{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: [(&[u8], &str, &str); 5] = [
        (
            b"POST /transactions/AR1 HTTP/1.1\r\nHost: t\r\nIdempotency-Key: a\x01b\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
            "malformed_request",
        ),
        (
            b"POST /transactions/AR1 HTTP/1.1\r\nHost: t\r\nIdempotency-Key: a\x7fb\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
            "malformed_request",
        ),
        (
            b"NOT HTTP AT ALL\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
            "malformed_request",
        ),
        (
            long_target.as_bytes(),
            "HTTP/1.1 414 URI Too Long",
            "uri_too_long",
        ),
        (
            many_headers.as_bytes(),
            "HTTP/1.1 431 Request Header Fields Too Large",
            "request_header_fields_too_large",
        ),
    ];
    for (request, expected_status, expected_code) in cases {
        let raw = raw_exchange(&app, request).await;
        let (status_line, head, body) = last_answer(&raw);
        assert_eq!(status_line, expected_status, "{raw}");
        assert!(head.contains("content-type: application/json"), "{raw}");
        assert!(head.contains("connection: close"), "{raw}");
        assert_eq!(body["error"], expected_code, "{raw}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{raw}"
        );
    }

    // A valid request before the malformed one on the same connection is answered untouched.
    let raw = raw_exchange(
        &app,
        b"POST /transactions/AR1 HTTP/1.1\r\nHost: t\r\n\r\nPOST /transactions/AR1 HTTP/1.1\r\nHost: t\r\nX-Bad: \x02\r\n\r\n",
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 200 OK\r\n"), "{raw}");
    assert_eq!(raw.matches("HTTP/1.1 ").count(), 2, "{raw}");
    let (status_line, _, body) = last_answer(&raw);
    assert_eq!(status_line, "HTTP/1.1 400 Bad Request");
    assert_eq!(body["error"], "malformed_request");

    // Only the well-formed POST counted; the refusals are counted by status in /metrics.
    assert_eq!(app.count("AR1", "AR0001").await, 1);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent")
        .text()
        .await
        .expect("text");
    for (status, at_least) in [("400", 4), ("414", 1), ("431", 1)] {
        let line = metrics
            .lines()
            .find(|l| {
                l.starts_with("flight_counter_http_malformed_requests_total{")
                    && l.contains(&format!("status=\"{status}\""))
            })
            .unwrap_or_else(|| panic!("no malformed-request counter for {status}:\n{metrics}"));
        let value: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .expect("a number");
        assert!(value >= at_least as f64, "{line}");
    }
    app.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_json_413_and_not_counted() {
    let app = memory_app().await;
    let resp = app
        .client
        .post(app.url("/transactions/AR1"))
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await
        .expect("sent");
    json_error(resp, 413, "payload_too_large").await;
    assert_eq!(app.count("AR1", "AR0001").await, 0);
    // A small body is ignored: the POST counts.
    let resp = app
        .client
        .post(app.url("/transactions/AR1"))
        .json(&serde_json::json!({"seats": 3}))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    assert_eq!(app.count("AR1", "AR0001").await, 1);
    app.stop().await;
}

#[tokio::test]
async fn openapi_document_describes_the_contract() {
    let app = memory_app().await;
    let resp = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.expect("json");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3."));
    let path = &doc["paths"]["/transactions/{route}"];
    for method in ["get", "post"] {
        let op = &path[method];
        assert_eq!(op["tags"][0], "Transactions", "{method}");
        let param = &op["parameters"][0];
        assert_eq!(param["name"], "route");
        assert_eq!(param["in"], "path");
        assert_eq!(param["schema"]["$ref"], "#/components/schemas/Route");
        assert_eq!(
            doc["components"]["schemas"]["Route"]["pattern"],
            flight_counter::route::ROUTE_PATTERN
        );
        for status in ["200", "400", "500", "503"] {
            assert!(
                op["responses"][status].is_object(),
                "{method} lacks {status}"
            );
        }
        let retry_after = &op["responses"]["503"]["headers"];
        assert!(
            retry_after
                .as_object()
                .expect("headers")
                .keys()
                .any(|k| k.eq_ignore_ascii_case("retry-after")),
            "{retry_after}"
        );
    }
    assert!(path["post"]["responses"]["413"].is_object());
    // The idempotency contract: the header, its bounds, the replay marker and the 422.
    let key = &path["post"]["parameters"][1];
    assert_eq!(key["name"], "Idempotency-Key");
    assert_eq!(key["in"], "header");
    assert_eq!(key["required"], false);
    assert_eq!(key["schema"]["maxLength"], 255);
    assert_eq!(key["schema"]["minLength"], 1);
    assert_eq!(
        key["schema"]["pattern"],
        flight_counter::idempotency::KEY_PATTERN
    );
    assert!(path["post"]["responses"]["422"].is_object());
    assert!(path["get"]["responses"]["422"].is_null());
    let replayed = &path["post"]["responses"]["200"]["headers"];
    assert!(
        replayed
            .as_object()
            .expect("headers")
            .keys()
            .any(|k| k.eq_ignore_ascii_case("idempotent-replayed")),
        "{replayed}"
    );
    let schema = &doc["components"]["schemas"]["TransactionCount"];
    assert_eq!(schema["properties"]["transactions"]["type"], "integer");
    assert_eq!(schema["properties"]["route"]["type"], "string");
    for ops_path in ["/healthz", "/readyz"] {
        assert_eq!(doc["paths"][ops_path]["get"]["tags"][0], "Operations");
    }
    app.stop().await;
}

#[tokio::test]
async fn swagger_ui_is_served_at_the_root() {
    let app = memory_app().await;
    let resp = app.client.get(app.url("/")).send().await.expect("sent");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let html = resp.text().await.expect("html");
    assert!(html.contains("SwaggerUIBundle"));
    assert!(
        html.contains("/transactions/{route}"),
        "the document is embedded"
    );
    app.stop().await;
}

/// The dashboard is one HTML page, not cached stale, whose policy runs its own script and style
/// and nothing else; the description Swagger UI shows links to it.
#[tokio::test]
async fn the_dashboard_is_served_with_a_strict_policy() {
    let app = memory_app().await;
    let resp = app
        .client
        .get(app.url("/dashboard"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
            .unwrap_or_default()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(header("cache-control"), "no-cache");
    assert_eq!(header("x-frame-options"), "DENY");
    let policy = header("content-security-policy");
    assert!(
        policy.starts_with("default-src 'none'; script-src 'sha256-"),
        "{policy}"
    );
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe"), "{policy}");
    let html = resp.text().await.expect("html");
    assert!(html.contains("<title>Flight counter dashboard</title>"));
    assert!(!html.contains("{{"), "a placeholder left in the page");
    // HEAD is answered as GET; the query is not looked at (a bookmarked page may carry one).
    let head = app
        .client
        .head(app.url("/dashboard?x=1"))
        .send()
        .await
        .expect("sent");
    assert_eq!(head.status(), 200);
    let doc: Value = send_json(app.client.get(app.url("/openapi.json"))).await;
    let description = doc["info"]["description"].as_str().expect("description");
    assert!(
        description.contains("[/dashboard](/dashboard)"),
        "{description}"
    );
    app.stop().await;
}

#[tokio::test]
async fn health_readiness_and_version() {
    let app = memory_app().await;
    let health: Value = send_json(app.client.get(app.url("/healthz"))).await;
    assert_eq!(health, serde_json::json!({"status": "ok"}));
    let ready: Value = send_json(app.client.get(app.url("/readyz"))).await;
    assert_eq!(ready, serde_json::json!({"status": "ready"}));
    let version: Value = send_json(app.client.get(app.url("/version"))).await;
    assert_eq!(version["name"], "flight-counter");
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(version["store"], "memory");
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_template_and_transactions() {
    let app = memory_app().await;
    for _ in 0..3 {
        app.record("MX1", "MX0001").await;
    }
    let _ = app.get("bad!").await;
    let _ = app
        .client
        .get(app.url("/some/random/path"))
        .send()
        .await
        .expect("sent");
    let resp = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain")
    );
    let text = resp.text().await.expect("text");
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no sample {prefix} in\n{text}"))
    };
    // Tests in this binary share one metrics registry, so assert lower bounds.
    assert!(
        value(
            "flight_counter_http_requests_total{method=\"POST\",path=\"/transactions/{route}\",status=\"200\",client=\"anonymous\"}"
        ) >= 3.0
    );
    assert!(
        value(
            "flight_counter_http_requests_total{method=\"GET\",path=\"/transactions/{route}\",status=\"400\",client=\"anonymous\"}"
        ) >= 1.0
    );
    assert!(
        value(
            "flight_counter_http_requests_total{method=\"GET\",path=\"unmatched\",status=\"404\",client=\"anonymous\"}"
        ) >= 1.0
    );
    assert!(value("flight_counter_transactions_recorded_total") >= 3.0);
    assert!(text.contains("flight_counter_http_request_duration_seconds_bucket{"));
    assert!(text.contains("flight_counter_store_commit_batch_size_bucket{"));
    assert!(text.contains("flight_counter_store_commit_duration_seconds_bucket{"));
    assert!(text.contains("flight_counter_build_info{"));
    // The connection this request came on is open while /metrics is rendered.
    assert!(value("flight_counter_http_open_connections") >= 1.0);
    assert!(
        !text.contains("/some/random/path"),
        "raw paths never become labels"
    );
    app.stop().await;
}

/// A store that fails on demand, to see what clients get when commits fail.
struct FlakyStore {
    inner: MemoryStore,
    failing: AtomicBool,
}

#[async_trait::async_trait]
impl BatchStore for FlakyStore {
    async fn commit(&self, batch: &[RouteWrite]) -> Result<Vec<RouteOutcome>, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(
                "writing",
                std::io::Error::other("disk on fire"),
            ));
        }
        self.inner.commit(batch).await
    }
}

#[async_trait::async_trait]
impl SnapshotStore for FlakyStore {}

#[async_trait::async_trait]
impl StoreBase for FlakyStore {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    async fn get(&self, route: Route) -> Result<u64, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(
                "writing",
                std::io::Error::other("disk on fire"),
            ));
        }
        self.inner.get(route).await
    }
    async fn daily(&self, route: Route, from: Day, to: Day) -> Result<Vec<u64>, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(
                "writing",
                std::io::Error::other("disk on fire"),
            ));
        }
        self.inner.daily(route, from, to).await
    }
    async fn monthly(&self, route: Route, from: Month, to: Month) -> Result<Vec<u64>, StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(
                "writing",
                std::io::Error::other("disk on fire"),
            ));
        }
        self.inner.monthly(route, from, to).await
    }
    async fn check_ready(&self) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable(
                "writing",
                std::io::Error::other("disk on fire"),
            ));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_failing_store_gives_503_with_retry_after_and_readiness_follows() {
    let store = Arc::new(FlakyStore {
        inner: MemoryStore::new(),
        failing: AtomicBool::new(false),
    });
    let app = TestApp::spawn_with_store(test_config(), Store::Batch(store.clone())).await;
    assert_eq!(app.record("FL1", "FL0001").await, 1);

    store.failing.store(true, Ordering::SeqCst);
    for resp in [app.post("FL1").await, app.get("FL1").await] {
        assert_eq!(resp.headers()["retry-after"], "1");
        let body = json_error(resp, 503, "store_unavailable").await;
        assert!(
            !body["message"].as_str().expect("msg").contains("fire"),
            "no internals leak"
        );
    }
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["status"], "store_unavailable");

    store.failing.store(false, Ordering::SeqCst);
    // The failed POST was not applied; the next one continues from 1.
    assert_eq!(app.record("FL1", "FL0001").await, 2);
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(ready.status(), 200);
    app.stop().await;
}

/// A store that never answers: callers must get a 503 within the commit timeout, not hang.
struct StuckStore;

#[async_trait::async_trait]
impl BatchStore for StuckStore {
    async fn commit(&self, _: &[RouteWrite]) -> Result<Vec<RouteOutcome>, StoreError> {
        std::future::pending().await
    }
}

#[async_trait::async_trait]
impl SnapshotStore for StuckStore {}

#[async_trait::async_trait]
impl StoreBase for StuckStore {
    fn kind(&self) -> &'static str {
        "stuck"
    }
    async fn get(&self, _: Route) -> Result<u64, StoreError> {
        std::future::pending().await
    }
    async fn daily(&self, _: Route, _: Day, _: Day) -> Result<Vec<u64>, StoreError> {
        std::future::pending().await
    }
    async fn monthly(&self, _: Route, _: Month, _: Month) -> Result<Vec<u64>, StoreError> {
        std::future::pending().await
    }
    async fn check_ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[tokio::test]
async fn a_stuck_store_gives_503_within_the_deadline() {
    let config = config_with(|c| {
        c.ledger.commit_timeout = millis(300);
        c.server.drain_timeout = secs(1);
    });
    let app = TestApp::spawn_with_store(config, Store::batch(StuckStore)).await;
    let started = std::time::Instant::now();
    let resp = app.post("ST1").await;
    assert!(started.elapsed() < Duration::from_secs(3));
    json_error(resp, 503, "store_unavailable").await;
    let resp = app.get("ST1").await;
    json_error(resp, 503, "store_unavailable").await;
    app.stop().await;
}

#[tokio::test]
async fn a_count_that_would_overflow_fails_its_own_posts_only() {
    let store = MemoryStore::new();
    let route = Route::parse("OV1").expect("route");
    store
        .commit(&[RouteWrite::keyless(
            route,
            u64::MAX - 1,
            Day::of(std::time::SystemTime::now()),
        )])
        .await
        .expect("preload");
    let app = TestApp::spawn_with_store(test_config(), Store::batch(store)).await;
    assert_eq!(app.record("OV1", "OV0001").await, u64::MAX);
    let resp = app.post("OV1").await;
    let body = json_error(resp, 500, "count_overflow").await;
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("OV0001"), "{message}");
    assert_eq!(app.count("OV1", "OV0001").await, u64::MAX);

    // POSTs to the full route and to others, in the same commits: the others are counted.
    let client = client();
    let posts = (0..40).map(|i| {
        let route = if i % 4 == 0 { "OV1" } else { "AR1133" };
        client
            .post(app.url(&format!("/transactions/{route}")))
            .send()
    });
    let answers = futures::future::join_all(posts).await;
    let mut refused = 0;
    for (i, answer) in answers.into_iter().enumerate() {
        let answer = answer.expect("answered");
        if i % 4 == 0 {
            json_error(answer, 500, "count_overflow").await;
            refused += 1;
        } else {
            assert_eq!(answer.status(), 200, "route AR1133");
        }
    }
    assert_eq!(refused, 10);
    assert_eq!(app.count("AR1133", "AR1133").await, 30);
    // The store is healthy: readiness stays up.
    let ready = client.get(app.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    use tokio::io::AsyncReadExt;
    let app = TestApp::spawn(config_with(|c| {
        c.server.idle_timeout = secs(1);
        c.ledger.commit_timeout = millis(500);
    }))
    .await;

    // A kept-alive connection is answered, then closed after a second of silence.
    let mut used = raw_connection(&app, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let mut answer = vec![0u8; 4096];
    let n = used.read(&mut answer).await.expect("read");
    assert!(answer[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
    // A connection that never sends a byte is closed the same way.
    let mut silent = raw_connection(&app, b"").await;

    let started = tokio::time::Instant::now();
    for conn in [&mut used, &mut silent] {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest))
            .await
            .expect("the server closes an idle connection")
            .expect("read");
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "{waited:?}"
    );

    // The service itself keeps answering new connections.
    let resp = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_request_sent_too_slowly_is_cut_off_with_a_json_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn(config_with(|c| {
        c.server.request_timeout = secs(1);
        c.ledger.commit_timeout = millis(500);
        c.server.idle_timeout = secs(30);
    }))
    .await;

    // A request head that never ends: a header line every 100 ms keeps it from being idle.
    let mut slow = raw_connection(&app, b"GET /healthz HTTP/1.1\r\nHost: t\r\n").await;
    let started = tokio::time::Instant::now();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        tokio::select! {
            read = slow.read(&mut chunk) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if slow.write_all(b"x-drip: 1\r\n").await.is_err() {
                    break;
                }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never cut off");
    }
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    let raw = String::from_utf8(answer).expect("utf-8");
    let (status_line, head, body) = last_answer(&raw);
    assert_eq!(status_line, "HTTP/1.1 408 Request Timeout", "{raw}");
    assert!(head.contains("content-type: application/json"), "{raw}");
    assert_eq!(body["error"], "request_timeout", "{raw}");

    // An answered request followed by a stray empty line is not a slow request: no 408 comes.
    let mut kept = raw_connection(&app, b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n\r\n").await;
    let mut first = vec![0u8; 4096];
    let n = kept.read(&mut first).await.expect("read");
    assert!(first[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
    let more = tokio::time::timeout(Duration::from_secs(2), kept.read(&mut first)).await;
    assert!(
        more.is_err(),
        "the connection got more than its answer: {more:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn errors_name_the_real_cause() {
    let app = memory_app().await;
    let get = |target: &str| app.client.get(app.url(target)).send();
    // Percent-encoding that is broken, or not UTF-8: the service's words, not the framework's.
    for target in [
        "/transactions/%ZZ",
        "/transactions/%C3%28",
        "/transactions/AR1%",
        "/transactions?route=%FF",
    ] {
        let body = json_error(get(target).await.expect("sent"), 400, "bad_request").await;
        let message = body["message"].as_str().expect("message");
        assert!(message.contains("percent-encode"), "{target}: {message}");
        assert!(
            !message.contains("expects an input value"),
            "{target}: {message}"
        );
    }
    // A parameter that takes one value, given twice.
    let resp = get("/transactions/AR1/monthly?from=2026-01&from=2025-01")
        .await
        .expect("sent");
    let body = json_error(resp, 400, "invalid_query").await;
    assert!(body["message"].as_str().expect("message").contains("from"));
    // A default range that does not fit is blamed on the default, not on a `from` never sent.
    let early = flight_counter::calendar::Day::of(std::time::SystemTime::now())
        .plus(-60)
        .expect("a day");
    let resp = get(&format!("/transactions/AR1/daily?to={early}"))
        .await
        .expect("sent");
    let body = json_error(resp, 400, "invalid_date_range").await;
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("send from as well"), "{message}");
    // Years start at 0001.
    let resp = get("/transactions/AR1/monthly?to=0000-01")
        .await
        .expect("sent");
    let body = json_error(resp, 400, "invalid_date_range").await;
    let message = body["message"].as_str().expect("message");
    assert!(message.contains("year from 0001"), "{message}");
    assert!(!message.contains("-001"), "{message}");
    app.stop().await;
}
