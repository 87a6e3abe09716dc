//! Which routes exist and which lead, over HTTP, on every store: paging through 2,500 routes
//! while new ones are created, the airline filter, cursors that were tampered with, rankings
//! by day and by month with ties, their bad queries, and conditional reads (`ETag`, `304`).
//! On DynamoDB, 50 concurrent ranking reads cost one pass over the table.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures_util::{StreamExt as _, stream};
use serde_json::Value;

use crate::{
    dynamodb::{dynamodb_args, wait_for_readiness},
    emulators::{self, Kind},
    helpers::{AWS_TEST_ENV, ServiceProcess, client, metric_sum, send_json},
    store_contract::Fixture,
};

const AIRLINES: [(&str, usize); 4] = [("AR", 900), ("ARG", 400), ("LA", 900), ("U2", 300)];

/// The data set: 2,500 routes of four airlines (`AR` and `ARG` side by side), route `i`
/// counting `1 + i % 3`.
fn data_set() -> BTreeMap<String, u64> {
    let mut routes = BTreeMap::new();
    let mut i = 0;
    for (airline, n) in AIRLINES {
        for number in 1..=n {
            routes.insert(format!("{airline}{number:04}"), 1 + (i % 3) as u64);
            i += 1;
        }
    }
    routes
}

/// POSTs `times` to each route, 32 at a time.
async fn post_all(base: &str, routes: impl IntoIterator<Item = (String, u64)>) {
    let client = client();
    let posts: Vec<String> = routes
        .into_iter()
        .flat_map(|(route, times)| std::iter::repeat_n(route, times as usize))
        .collect();
    stream::iter(posts)
        .for_each_concurrent(32, |route| {
            let client = client.clone();
            async move {
                let resp = client
                    .post(format!("{base}/transactions/{route}"))
                    .send()
                    .await
                    .expect("sent");
                assert_eq!(resp.status(), 200, "POST {route}");
            }
        })
        .await;
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let resp = client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

/// Every page of `/transactions?limit=100` (plus `query`), in order.
async fn list_all(base: &str, query: &str) -> Vec<(String, u64)> {
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/transactions?limit=100{query}&cursor={cursor}"),
            None => format!("/transactions?limit=100{query}"),
        };
        let (status, page) = get(base, &path).await;
        assert_eq!(status, 200, "{path}: {page}");
        let routes = page["routes"].as_array().expect("routes");
        assert!(routes.len() <= 100, "{path}");
        for r in routes {
            listed.push((
                r["route"].as_str().expect("route").to_owned(),
                r["transactions"].as_u64().expect("count"),
            ));
        }
        match page.get("next_cursor").and_then(Value::as_str) {
            Some(next) => cursor = Some(next.to_owned()),
            None => return listed,
        }
    }
}

pub async fn routes_are_listed_once_in_order_while_new_ones_appear(f: Fixture) {
    let base = f.app.url("");
    let routes = data_set();
    post_all(&base, routes.clone()).await;

    // New routes are created while the pages are read.
    let stop = Arc::new(AtomicBool::new(false));
    let creating = tokio::spawn({
        let (base, stop) = (base.clone(), Arc::clone(&stop));
        async move {
            let mut created = Vec::new();
            let mut n = 1;
            while !stop.load(Ordering::Relaxed) && n < 500 {
                let route = format!("NW{n:04}");
                post_all(&base, [(route.clone(), 1)]).await;
                created.push(route);
                n += 1;
            }
            created
        }
    });
    let listed = list_all(&base, "").await;
    stop.store(true, Ordering::Relaxed);
    let created = creating.await.expect("creator");

    let names: Vec<&str> = listed.iter().map(|(r, _)| r.as_str()).collect();
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "in route order, none repeated"
    );
    let old: Vec<(String, u64)> = listed
        .iter()
        .filter(|(r, _)| !r.starts_with("NW"))
        .cloned()
        .collect();
    let expected: Vec<(String, u64)> = routes.into_iter().collect();
    assert_eq!(old.len(), expected.len(), "every route once");
    assert_eq!(old, expected);
    assert!(
        listed
            .iter()
            .filter(|(r, _)| r.starts_with("NW"))
            .all(|(r, n)| created.contains(r) && *n == 1),
        "new routes, if listed, as created"
    );

    // One airline's routes: AR's, not ARG's.
    let ar = list_all(&base, "&airline=ar").await;
    assert_eq!(ar.len(), 900);
    assert!(
        ar.iter()
            .all(|(r, _)| r.starts_with("AR") && !r.starts_with("ARG"))
    );
    let arg = list_all(&base, "&airline=ARG").await;
    assert_eq!(arg.len(), 400);

    // A cursor must come back as it was given.
    let (_, first) = get(&base, "/transactions?limit=2").await;
    let cursor = first["next_cursor"].as_str().expect("a cursor");
    let (status, second) = get(&base, &format!("/transactions?limit=2&cursor={cursor}")).await;
    assert_eq!(status, 200);
    assert_eq!(second["routes"][0]["route"], "AR0003", "{second}");
    let mut forged: Vec<char> = cursor.chars().collect();
    forged[3] = if forged[3] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    for bad in [forged.as_str(), "AR0002", "x"] {
        let (status, body) = get(&base, &format!("/transactions?cursor={bad}")).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"], "invalid_query", "{body}");
        assert!(
            body["message"]
                .as_str()
                .expect("message")
                .contains("cursor")
        );
    }
    for bad in [
        "/transactions?limit=0",
        "/transactions?limit=1001",
        "/transactions?airline=A",
        "/transactions?route=AR1&limit=5",
    ] {
        let (status, body) = get(&base, bad).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_query")),
            "{bad}: {body}"
        );
    }
    f.app.stop().await;
}

/// Noon UTC of `day` days after 2026-11-20.
fn noon(day: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_694_400 - 6 * 86_400 + day * 86_400)
}

fn ranked(body: &Value) -> Vec<(String, u64)> {
    body["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .map(|r| {
            (
                r["route"].as_str().expect("route").to_owned(),
                r["transactions"].as_u64().expect("count"),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter().map(|(r, n)| (r.to_string(), *n)).collect()
}

pub async fn routes_are_ranked_by_day_and_month_ties_by_route(f: Fixture) {
    let base = f.app.url("");
    // 2026-11-20: yesterday's counts; 2026-11-21: today's.
    f.clock.set(noon(0));
    post_all(
        &base,
        [("LA1", 5), ("AR1", 2), ("ARG1", 2), ("U21", 1)].map(|(r, n)| (r.to_owned(), n)),
    )
    .await;
    f.clock.set(noon(1));
    post_all(
        &base,
        [("AR1", 3), ("AR2", 3), ("LA1", 1), ("ARG1", 4)].map(|(r, n)| (r.to_owned(), n)),
    )
    .await;

    let (status, today) = get(&base, "/top-routes").await;
    assert_eq!(status, 200, "{today}");
    assert_eq!(
        (today["period"].as_str(), today["date"].as_str()),
        (Some("day"), Some("2026-11-21"))
    );
    assert_eq!(
        ranked(&today),
        pairs(&[("ARG0001", 4), ("AR0001", 3), ("AR0002", 3), ("LA0001", 1)])
    );
    let as_of = today["as_of"].as_str().expect("as_of");
    assert!(as_of.starts_with("2026-11-21T12:00:0"), "{as_of}");

    let (_, yesterday) = get(&base, "/top-routes?day=2026-11-20&limit=3").await;
    assert_eq!(
        ranked(&yesterday),
        pairs(&[("LA0001", 5), ("AR0001", 2), ("ARG0001", 2)])
    );
    let (_, month) = get(&base, "/top-routes?month=2026-11&limit=100").await;
    assert_eq!(
        (month["period"].as_str(), month["date"].as_str()),
        (Some("month"), Some("2026-11"))
    );
    assert_eq!(
        ranked(&month),
        pairs(&[
            ("ARG0001", 6),
            ("LA0001", 6),
            ("AR0001", 5),
            ("AR0002", 3),
            ("U20001", 1),
        ])
    );
    let (_, ar) = get(&base, "/top-routes?month=2026-11&airline=ar").await;
    assert_eq!(ranked(&ar), pairs(&[("AR0001", 5), ("AR0002", 3)]));

    // Served from memory until the next pass is due: a new POST does not show yet.
    post_all(&base, [("QF1".to_owned(), 9)]).await;
    let (_, again) = get(&base, "/top-routes").await;
    assert_eq!(again["as_of"], today["as_of"]);
    assert_eq!(ranked(&again), ranked(&today));

    for (bad, code) in [
        ("/top-routes?day=2026-11-21&month=2026-11", "invalid_query"),
        ("/top-routes?day=2026-11-22", "invalid_date_range"),
        ("/top-routes?day=2026-09-01", "invalid_date_range"),
        ("/top-routes?month=2024-10", "invalid_date_range"),
        ("/top-routes?day=21-11-2026", "invalid_query"),
        ("/top-routes?limit=0", "invalid_query"),
        ("/top-routes?limit=101", "invalid_query"),
        ("/top-routes?airline=A1B", "invalid_query"),
        ("/top-routes?week=1", "invalid_query"),
    ] {
        let (status, body) = get(&base, bad).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(code)),
            "{bad}: {body}"
        );
    }
    f.app.stop().await;
}

pub async fn a_read_answers_304_until_a_post_changes_it(f: Fixture) {
    let base = f.app.url("");
    post_all(&base, [("AR1133".to_owned(), 2)]).await;
    for path in [
        "/transactions/AR1133",
        "/transactions/AR1133/daily",
        "/transactions?route=AR1133&route=LA1",
        "/transactions?limit=10",
    ] {
        let first = client()
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("sent");
        assert_eq!(first.status(), 200, "{path}");
        assert_eq!(
            first.headers()["cache-control"],
            "private, no-cache",
            "{path}"
        );
        let etag = first.headers()["etag"].to_str().expect("ascii").to_owned();
        let same = client()
            .get(format!("{base}{path}"))
            .header("If-None-Match", &etag)
            .send()
            .await
            .expect("sent");
        assert_eq!(same.status(), 304, "{path}");
        assert_eq!(same.headers()["etag"].to_str().ok(), Some(etag.as_str()));
        assert!(same.bytes().await.expect("body").is_empty());

        post_all(&base, [("AR1133".to_owned(), 1)]).await;
        let changed = client()
            .get(format!("{base}{path}"))
            .header("If-None-Match", &etag)
            .send()
            .await
            .expect("sent");
        assert_eq!(changed.status(), 200, "{path}");
        assert_ne!(changed.headers()["etag"].to_str().ok(), Some(etag.as_str()));
        let body: Value = changed.json().await.expect("json");
        assert!(body.to_string().contains("AR1133"), "{body}");
    }
    // A ranking may be kept until the next pass is due.
    let resp = client()
        .get(format!("{base}/top-routes"))
        .send()
        .await
        .expect("sent");
    let cache = resp.headers()["cache-control"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let age: u64 = cache
        .strip_prefix("private, max-age=")
        .and_then(|s| s.parse().ok())
        .expect("max-age");
    assert!((1..=60).contains(&age), "{cache}");
    f.app.stop().await;
}

#[macro_export]
macro_rules! catalog_tests {
    ($store:ident, $fixture:expr) => {
        mod $store {
            #[allow(unused_imports)]
            use super::*;
            use $crate::catalog;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn routes_are_listed_once_in_order_while_new_ones_appear() {
                catalog::routes_are_listed_once_in_order_while_new_ones_appear($fixture.await)
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn routes_are_ranked_by_day_and_month_ties_by_route() {
                catalog::routes_are_ranked_by_day_and_month_ties_by_route($fixture.await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_read_answers_304_until_a_post_changes_it() {
                catalog::a_read_answers_304_until_a_post_changes_it($fixture.await).await;
            }
        }
    };
}

/// 50 concurrent ranking reads on a fresh DynamoDB service make one pass over the table: the
/// Scans of one parallel scan (its four segments), counted by the process's own metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rankings_on_dynamodb_cost_one_pass() {
    let server = emulators::shared(Kind::Dynalite);
    let table = emulators::unique_table("rankings");
    let endpoint = server.endpoint();
    let args = dynamodb_args(&table, &endpoint, &["--create-table"]);
    let service = ServiceProcess::start_with_env(&args, &AWS_TEST_ENV);
    wait_for_readiness(&service.base, 200, Duration::from_secs(15)).await;
    let base = service.base.clone();
    post_all(&base, (1..=40).map(|n| (format!("AR{n}"), 1 + n % 4))).await;
    let scans = || {
        metric_sum(
            &base,
            "flight_counter_dynamodb_calls_total",
            &["operation=\"Scan\""],
        )
    };
    let before = scans().await;
    let answers: Vec<Value> = stream::iter(0..50)
        .map(|_| send_json(client().get(format!("{base}/top-routes?limit=3"))))
        .buffer_unordered(50)
        .collect()
        .await;
    let first = &answers[0];
    assert!(answers.iter().all(|a| a == first), "one ranking for all");
    assert_eq!(
        ranked(first),
        pairs(&[("AR0003", 4), ("AR0007", 4), ("AR0011", 4)])
    );
    let passes = metric_sum(
        &base,
        "flight_counter_ranking_pass_duration_seconds_count",
        &[],
    )
    .await;
    assert_eq!(passes, 1.0);
    assert_eq!(
        scans().await - before,
        4.0,
        "one page of each of the four segments"
    );
}
