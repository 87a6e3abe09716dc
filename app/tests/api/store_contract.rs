//! The API contract, run against every store: whatever backs the counts, clients see the same
//! behaviour. Each store gets its own module of these tests through `store_contract_tests!`.

use std::collections::HashSet;

use serde_json::Value;

use std::sync::Arc;

use flight_counter::{clock::ManualClock, startup::ApplicationBuilder};

use crate::helpers::{TestApp, post_concurrently};

/// A running service on some store, plus whatever must live as long as it (a temp dir, a
/// server process).
pub struct Fixture {
    pub app: TestApp,
    /// The service's clock: it moves only when a test moves it.
    pub clock: Arc<ManualClock>,
    pub _keep: Box<dyn std::any::Any + Send>,
}

impl Fixture {
    /// Starts the service from `builder` on `clock`, keeping `keep` alive as long as it runs.
    pub async fn start(
        builder: ApplicationBuilder,
        clock: Arc<ManualClock>,
        keep: impl std::any::Any + Send,
    ) -> Fixture {
        let app = TestApp::start(builder.clock(clock.clone())).await;
        Fixture {
            app,
            clock,
            _keep: Box::new(keep),
        }
    }
}

pub async fn post_answers_canonical_route_and_running_count(f: Fixture) {
    assert_eq!(f.app.record("ar1133", "AR1133").await, 1);
    assert_eq!(f.app.record("AR1133", "AR1133").await, 2);
    assert_eq!(f.app.record("Ar1133", "AR1133").await, 3);
    let resp = f.app.post("la1").await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("application/json")
    );
    let body: Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        serde_json::json!({"route": "LA0001", "transactions": 1})
    );
    f.app.stop().await;
}

pub async fn get_reads_counts_and_unknown_routes_are_zero(f: Fixture) {
    assert_eq!(f.app.count("ZZ9999", "ZZ9999").await, 0);
    for _ in 0..5 {
        f.app.record("U24567", "U24567").await;
    }
    assert_eq!(f.app.count("u24567", "U24567").await, 5);
    // Reading changes nothing.
    assert_eq!(f.app.count("U24567", "U24567").await, 5);
    f.app.stop().await;
}

pub async fn spellings_of_one_flight_share_one_counter(f: Fixture) {
    for spelling in ["ar1", "AR01", "ar001", "AR0001"] {
        f.app.record(spelling, "AR0001").await;
    }
    assert_eq!(f.app.count("Ar1", "AR0001").await, 4);
    f.app.record("arg7", "ARG0007").await;
    f.app.record("aa100a", "AA0100A").await;
    assert_eq!(f.app.count("ARG0007", "ARG0007").await, 1);
    assert_eq!(f.app.count("AA0100A", "AA0100A").await, 1);
    assert_eq!(f.app.count("AA0100", "AA0100").await, 0);
    f.app.stop().await;
}

pub async fn invalid_routes_get_a_json_400_and_change_nothing(f: Fixture) {
    for bad in [
        "A", "12345", "AR12345", "AR1133XY", "AR-1", "%20AR1", "AR1%2F2",
    ] {
        for method in ["POST", "GET"] {
            let resp = f
                .app
                .client
                .request(
                    method.parse().expect("method"),
                    f.app.url(&format!("/transactions/{bad}")),
                )
                .send()
                .await
                .expect("sent");
            assert_eq!(resp.status(), 400, "{method} {bad}");
            let body: Value = resp.json().await.expect("json");
            assert_eq!(body["error"], "invalid_route", "{method} {bad}: {body}");
            let message = body["message"].as_str().expect("message");
            assert!(message.contains("AR1133"), "{message}");
        }
    }
    assert_eq!(f.app.count("AR1", "AR0001").await, 0);
    f.app.stop().await;
}

/// 64 clients, 3,200 POSTs on one route: every answer is a distinct count, the counts are
/// exactly 1..=N, and the stored total is N.
pub async fn concurrent_posts_on_one_route_get_distinct_counts(f: Fixture) {
    concurrent_posts(f, 64, 50).await;
}

pub async fn concurrent_posts(f: Fixture, clients: usize, per_client: usize) {
    let base = f.app.url("");
    let (mut counts, failures) = post_concurrently(&base, "HT0042", clients, per_client).await;
    assert!(failures.is_empty(), "non-200 answers: {failures:?}");
    let n = (clients * per_client) as u64;
    counts.sort_unstable();
    assert_eq!(counts.len() as u64, n);
    assert_eq!(counts, (1..=n).collect::<Vec<u64>>(), "counts are 1..=N");
    assert_eq!(f.app.count("HT42", "HT0042").await, n);
    f.app.stop().await;
}

pub async fn concurrent_posts_on_many_routes_are_counted_per_route(f: Fixture) {
    let routes: Vec<String> = (1..=16).map(|i| format!("MR{i}")).collect();
    let tasks: Vec<_> = (0..320)
        .map(|i| {
            let client = f.app.client.clone();
            let url = f
                .app
                .url(&format!("/transactions/{}", routes[i % routes.len()]));
            tokio::spawn(async move {
                let resp = client.post(url).send().await.expect("sent");
                assert_eq!(resp.status(), 200);
                let body: Value = resp.json().await.expect("json");
                (
                    body["route"].as_str().expect("route").to_owned(),
                    body["transactions"].as_u64().expect("u64"),
                )
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for task in tasks {
        let answer = task.await.expect("task");
        assert!(seen.insert(answer.clone()), "duplicate answer {answer:?}");
    }
    for i in 1..=16 {
        let canonical = format!("MR{i:04}");
        assert_eq!(f.app.count(&canonical, &canonical).await, 20);
    }
    f.app.stop().await;
}

/// Instantiates the contract for one store. `$fixture` is an async expression that yields a
/// fresh [`Fixture`].
#[macro_export]
macro_rules! store_contract_tests {
    ($store:ident, $fixture:expr) => {
        mod $store {
            #[allow(unused_imports)]
            use super::*;
            use $crate::store_contract as contract;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn post_answers_canonical_route_and_running_count() {
                contract::post_answers_canonical_route_and_running_count($fixture.await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn get_reads_counts_and_unknown_routes_are_zero() {
                contract::get_reads_counts_and_unknown_routes_are_zero($fixture.await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn spellings_of_one_flight_share_one_counter() {
                contract::spellings_of_one_flight_share_one_counter($fixture.await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn invalid_routes_get_a_json_400_and_change_nothing() {
                contract::invalid_routes_get_a_json_400_and_change_nothing($fixture.await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_posts_on_one_route_get_distinct_counts() {
                contract::concurrent_posts_on_one_route_get_distinct_counts($fixture.await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_posts_on_many_routes_are_counted_per_route() {
                contract::concurrent_posts_on_many_routes_are_counted_per_route($fixture.await)
                    .await;
            }
        }
    };
}
