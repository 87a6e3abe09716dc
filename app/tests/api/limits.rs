//! Per-client limits over HTTP: a client bursting past `--client-rate-limit` gets `429`s with
//! `Retry-After` and the `RateLimit` fields while another client is untouched; a multi-route
//! read costs one token per route; `--client-max-idempotency-keys` refuses a new key past the
//! cap and still answers replays; the OpenAPI document declares the `429`s.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use flight_counter::auth::digest_hex;
use flight_counter::limits::RateLimit;
use serde_json::Value;

use crate::{
    auth::KeysFile,
    helpers::{ServiceProcess, TestApp, client, config_with, metric_sum, test_config, within},
};

const BURSTY_KEY: &str = "fck_bursty-client-key-for-the-limit-tests-0123456";
const STEADY_KEY: &str = "fck_steady-client-key-for-the-limit-tests-0123456";

fn keys() -> KeysFile {
    KeysFile::new(&format!(
        "bursty write {}\nsteady read {}\n",
        digest_hex(BURSTY_KEY),
        digest_hex(STEADY_KEY)
    ))
}

/// One answer's status, the headers of a `429`, and its JSON body.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    policy: Option<String>,
    state: Option<String>,
    body: Value,
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let resp = request.send().await.expect("sent");
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().expect("ascii").to_owned())
    };
    let (retry_after, policy, state) = (
        header("retry-after"),
        header("ratelimit-policy"),
        header("ratelimit"),
    );
    let status = resp.status().as_u16();
    let body = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        retry_after,
        policy,
        state,
        body,
    }
}

/// Asserts a `429` of the request rate: JSON body, `Retry-After` of at least 1 s matching
/// `RateLimit`'s `t`, and the policy.
fn assert_rate_limited(answer: &Answer, policy: &str) {
    assert_eq!(answer.status, 429, "{answer:?}");
    assert_eq!(answer.body["error"], "rate_limited", "{answer:?}");
    assert_eq!(
        answer.body.as_object().map(|o| o.len()),
        Some(2),
        "{answer:?}"
    );
    let seconds: u64 = answer
        .retry_after
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!(seconds >= 1, "{answer:?}");
    assert_eq!(answer.policy.as_deref(), Some(policy), "{answer:?}");
    assert_eq!(
        answer.state.as_deref(),
        Some(format!("\"client\";r=0;t={seconds}").as_str()),
        "{answer:?}"
    );
}

/// One client sends ten times its limit for two seconds and is refused the excess with JSON
/// `429`s; another client at half its limit meanwhile is never refused. Open paths stay open
/// for the limited client, every refusal is counted per client, and the log keeps a sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_bursting_past_its_limit_gets_429s_and_another_client_does_not() {
    let keys = keys();
    let keys_arg = keys.arg();
    let service = ServiceProcess::start(&[
        "--store",
        "memory",
        "--api-keys-file",
        &keys_arg,
        "--client-rate-limit",
        "20/s",
    ]);
    let base = Arc::new(service.base.clone());
    const SECONDS: u64 = 2;
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    // Bursty: 4 senders at 50/s each, 200/s, ten times its 20/s.
    let (ok, limited) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let bursty: Vec<_> = (0..4)
        .map(|_| {
            let (base, ok, limited) = (Arc::clone(&base), Arc::clone(&ok), Arc::clone(&limited));
            tokio::spawn(async move {
                let http = client();
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                let mut refusals = Vec::new();
                while Instant::now() < deadline {
                    tick.tick().await;
                    let answer = send(
                        http.post(format!("{base}/transactions/RL1"))
                            .header("Authorization", format!("Bearer {BURSTY_KEY}")),
                    )
                    .await;
                    match answer.status {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        _ => limited.fetch_add(1, Ordering::Relaxed),
                    };
                    if answer.status != 200 && refusals.len() < 3 {
                        refusals.push(answer);
                    }
                }
                refusals
            })
        })
        .collect();
    // Steady: 10/s, half its limit, at the same time.
    let steady = {
        let base = Arc::clone(&base);
        tokio::spawn(async move {
            let http = client();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let mut statuses = Vec::new();
            while Instant::now() < deadline {
                tick.tick().await;
                let answer = send(
                    http.get(format!("{base}/transactions/RL1"))
                        .header("Authorization", format!("Bearer {STEADY_KEY}")),
                )
                .await;
                statuses.push(answer.status);
            }
            statuses
        })
    };
    // While the bursty client's bucket is empty, its open paths are still answered.
    within(
        Duration::from_secs(SECONDS),
        "the bursty client limited",
        async || limited.load(Ordering::SeqCst) > 0,
    )
    .await;
    for open in [
        "/healthz",
        "/readyz",
        "/version",
        "/openapi.json",
        "/dashboard",
        "/metrics",
    ] {
        let answer = send(
            client()
                .get(format!("{base}{open}"))
                .header("Authorization", format!("Bearer {BURSTY_KEY}")),
        )
        .await;
        assert_eq!(answer.status, 200, "{open} is never limited");
    }
    let mut refusals = Vec::new();
    for task in bursty {
        refusals.extend(task.await.expect("bursty sender"));
    }
    let statuses = steady.await.expect("steady sender");
    let (ok, limited) = (ok.load(Ordering::Relaxed), limited.load(Ordering::Relaxed));
    let share = f64::from(limited) / f64::from(ok + limited);
    println!(
        "rate limit 20/s, burst at 200/s for {SECONDS} s: {ok} answered, {limited} refused \
         ({:.0}% 429); the steady client: {} requests, none refused",
        share * 100.0,
        statuses.len()
    );
    assert!(!refusals.is_empty(), "the bursty client was refused");
    for answer in &refusals {
        assert_rate_limited(answer, "\"client\";q=20;w=1");
        let message = answer.body["message"].as_str().expect("message");
        assert!(
            message.contains("client bursty") && message.contains("20/s"),
            "{message}"
        );
    }
    // 20 tokens at once, then 20 a second: about 60 of 400 pass.
    assert!(
        (30..=90).contains(&ok),
        "{ok} answered at 10x a 20/s limit over {SECONDS} s"
    );
    assert!(share > 0.75, "{share}");
    assert!(statuses.len() >= 15, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let counted = metric_sum(
        &base,
        "flight_counter_client_requests_refused_total",
        &["client=\"bursty\"", "reason=\"rate_limited\""],
    )
    .await;
    assert_eq!(counted, f64::from(limited));
    assert_eq!(
        metric_sum(
            &base,
            "flight_counter_client_requests_refused_total",
            &["client=\"steady\""],
        )
        .await,
        0.0
    );
    // The log keeps a sample of the refusals (at most 10 a second), saying how many it left
    // out; every answered request is logged.
    let logged = service.logged("\"status\":429");
    assert!(
        !logged.is_empty() && logged.len() as u64 <= 10 * (SECONDS + 1) + 10,
        "{} refusal lines for {limited} refusals",
        logged.len()
    );
    let left_out: u64 = logged
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|event| event["suppressed"].as_u64())
        .sum();
    assert!(left_out > 0, "the sample says what it left out");
    assert!(logged.len() as u64 + left_out <= u64::from(limited));
}

/// A multi-route read costs one token per distinct route it reads, and one that costs more
/// than the burst is refused without `Retry-After`. Without keys, every request shares the
/// anonymous bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_route_read_costs_one_token_per_route() {
    // One token back every 10 s: nothing refills during the test.
    let app = TestApp::spawn(config_with(|c| {
        c.limits.client_rate_limit = Some(RateLimit::parse("6/m,burst=10").expect("rate"))
    }))
    .await;
    let read = |routes: &[&str]| {
        let query: Vec<String> = routes.iter().map(|r| format!("route={r}")).collect();
        app.client
            .get(app.url(&format!("/transactions?{}", query.join("&"))))
    };
    let six = ["AR1", "AR2", "AR3", "AR4", "AR5", "AR6"];
    assert_eq!(send(read(&six)).await.status, 200, "6 of 10 tokens");
    let five = send(read(&six[..5])).await;
    assert_rate_limited(&five, "\"client\";q=10;w=100");
    let wait: u64 = five
        .retry_after
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("wait");
    assert!(
        (5..=10).contains(&wait),
        "one more token within 10 s: {wait}"
    );
    // Spellings of one route read it once: 2 tokens.
    let two = send(read(&["AR1", "ar0001", "AR2", "AR1"])).await;
    assert_eq!(two.status, 200, "{two:?}");
    assert_eq!(two.body["routes"].as_array().map(Vec::len), Some(2));
    // More routes than the bucket holds: waiting never helps, so no Retry-After.
    let routes: Vec<String> = (1..=11).map(|n| format!("LA{n}")).collect();
    let routes: Vec<&str> = routes.iter().map(String::as_str).collect();
    let costly = send(read(&routes)).await;
    assert_eq!(costly.status, 429, "{costly:?}");
    assert_eq!(costly.body["error"], "rate_limited");
    assert_eq!(costly.retry_after, None);
    assert_eq!(costly.state, None);
    assert_eq!(costly.policy.as_deref(), Some("\"client\";q=10;w=100"));
    assert!(
        costly.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("11 routes") && m.contains("at most 10 routes")),
        "{costly:?}"
    );
    // A read refused before the store (not a route) costs one token, as does a single read.
    assert_eq!(send(read(&["nope!"])).await.status, 400);
    assert_eq!(app.get("AR1").await.status(), 200);
    // The bucket is empty now; POSTs share it (no keys: one anonymous bucket).
    let post = send(app.client.post(app.url("/transactions/AR1"))).await;
    assert_rate_limited(&post, "\"client\";q=10;w=100");
    app.stop().await;
}

/// The cap of idempotency keys refuses the (N+1)th new key with a JSON `429`, still answers
/// replays of the keys already created, counts per client, and never counts keyless POSTs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_cap_refuses_a_new_key_past_it_and_answers_replays() {
    let keys = KeysFile::new(&format!(
        "bursty write {}\nother write {}\n",
        digest_hex(BURSTY_KEY),
        digest_hex(STEADY_KEY)
    ));
    let app = TestApp::spawn(config_with(|c| {
        c.auth.api_keys_file = Some(keys.path());
        c.limits.client_max_idempotency_keys = 3;
    }))
    .await;
    let post = |key: &str, idempotency_key: Option<&str>| {
        let mut request = app
            .client
            .post(app.url("/transactions/KQ1"))
            .header("Authorization", format!("Bearer {key}"));
        if let Some(idempotency_key) = idempotency_key {
            request = request.header("Idempotency-Key", idempotency_key);
        }
        request
    };
    for (n, idempotency_key) in ["order-1", "order-2", "order-3"].into_iter().enumerate() {
        let answer = send(post(BURSTY_KEY, Some(idempotency_key))).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        assert_eq!(answer.body["transactions"], n as u64 + 1);
    }
    // A replay under the cap does not count.
    assert_eq!(send(post(BURSTY_KEY, Some("order-3"))).await.status, 200);
    let refused = send(post(BURSTY_KEY, Some("order-4"))).await;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.body["error"], "idempotency_key_quota");
    assert_eq!(refused.body.as_object().map(|o| o.len()), Some(2));
    let message = refused.body["message"].as_str().expect("message");
    assert!(
        message.contains("client bursty") && message.contains("3 idempotency keys"),
        "{message}"
    );
    let seconds: u64 = refused
        .retry_after
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("Retry-After");
    assert!(
        seconds > 23 * 3600 && seconds <= 24 * 3600 + 60,
        "{seconds}"
    );
    assert_eq!(
        refused.policy.as_deref(),
        Some("\"idempotency-keys\";q=3;w=86400")
    );
    assert_eq!(
        refused.state.as_deref(),
        Some(format!("\"idempotency-keys\";r=0;t={seconds}").as_str())
    );
    // At the cap, replays are still answered, with the first answer.
    let replay = post(BURSTY_KEY, Some("order-1"))
        .send()
        .await
        .expect("sent");
    assert_eq!(replay.status(), 200);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let body: Value = replay.json().await.expect("json");
    assert_eq!(body["transactions"], 1);
    // Keyless POSTs, and other clients, are not capped by it.
    assert_eq!(send(post(BURSTY_KEY, None)).await.body["transactions"], 4);
    assert_eq!(
        send(post(STEADY_KEY, Some("order-4"))).await.body["transactions"],
        5
    );
    let count = send(
        app.client
            .get(app.url("/transactions/KQ1"))
            .header("Authorization", format!("Bearer {STEADY_KEY}")),
    )
    .await;
    assert_eq!(
        count.body["transactions"], 5,
        "the refused key recorded nothing"
    );
    app.stop().await;
}

/// Every operation the limits apply to declares its `429` with `Retry-After` and both
/// `RateLimit` fields; open operations declare none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_declares_the_429s() {
    let app = TestApp::spawn(test_config()).await;
    let spec: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let mut limited = 0;
    for (path, item) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("item") {
            let too_many = &operation["responses"]["429"];
            if path.starts_with("/transactions") || path == "/top-routes" {
                limited += 1;
                // The document spells header names in capitals.
                for header in ["RETRY-AFTER", "RATELIMIT-POLICY", "RATELIMIT"] {
                    assert!(
                        too_many["headers"][header].is_object(),
                        "{method} {path}: {header} in {too_many}"
                    );
                }
                let described = too_many["description"].as_str().unwrap_or_default();
                assert!(described.contains("rate_limited"), "{method} {path}");
            } else {
                assert!(too_many.is_null(), "{method} {path} is never limited");
            }
        }
    }
    assert_eq!(limited, 6);
    let codes = spec.to_string();
    assert!(codes.contains("\"rate_limited\"") && codes.contains("\"idempotency_key_quota\""));
    app.stop().await;
}
