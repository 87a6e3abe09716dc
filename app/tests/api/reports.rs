//! Dashboards' reads on every store: daily and monthly counts, many routes at once, their `400`s,
//! and, with a clock the test moves, the day boundary and the retention window.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use flight_counter::{
    calendar::Day,
    clock::{ManualClock, SystemClock},
    idempotency::{IdempotencyKey, KeyedIncrement},
    route::Route,
    store::{EmbeddedStore, ItemStore, MemoryStore, RouteWrite, Store, StoreBase},
};
use serde_json::{Value, json};

use crate::{
    emulators::Kind,
    helpers::{
        TestApp, client, dynamodb_store, post_concurrently, read_item, table_on, test_config,
    },
    idempotency::post_keyed,
    store_contract::Fixture,
};

async fn get_json(app: &TestApp, path: &str) -> (u16, Value) {
    let resp = app.client.get(app.url(path)).send().await.expect("sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json body"))
}

fn today() -> Day {
    Day::of(SystemTime::now())
}

/// POSTs show up on today's day and this month; other days and unseen routes are zeros.
pub async fn daily_and_monthly_counts_follow_posts(f: Fixture) {
    for _ in 0..3 {
        f.app.record("rp1", "RP0001").await;
    }
    let today = today();
    let (status, body) = get_json(&f.app, "/transactions/rp1/daily").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["route"], "RP0001");
    let days = body["days"].as_array().expect("days");
    assert_eq!(days.len(), 7);
    assert_eq!(days[0]["date"], today.plus(-6).expect("day").to_string());
    assert_eq!(
        days[6],
        json!({"date": today.to_string(), "transactions": 3})
    );
    assert!(days[..6].iter().all(|d| d["transactions"] == 0), "{body}");

    let (status, body) = get_json(&f.app, "/transactions/RP0001/monthly").await;
    assert_eq!(status, 200, "{body}");
    let months = body["months"].as_array().expect("months");
    assert_eq!(months.len(), 12);
    assert_eq!(
        months[11],
        json!({"month": today.month().to_string(), "transactions": 3})
    );

    let (status, body) = get_json(
        &f.app,
        &format!("/transactions/ZZ9999/daily?from={today}&to={today}"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"route": "ZZ9999", "days": [{"date": today.to_string(), "transactions": 0}]})
    );
    f.app.stop().await;
}

/// Every refused range is a JSON `400 invalid_date_range` naming the window; a bad route is
/// `invalid_route`.
pub async fn bad_ranges_are_refused_naming_the_window(f: Fixture) {
    let today = today();
    let first = today.window_start();
    let tomorrow = today.plus(1).expect("day");
    let too_early = first.plus(-1).expect("day");
    let month = today.month();
    for query in [
        format!("daily?from={tomorrow}"),
        format!("daily?to={tomorrow}"),
        format!("daily?from={too_early}"),
        format!("daily?from={today}&to={}", today.plus(-1).expect("day")),
        "daily?from=2026-02-30".to_owned(),
        "daily?to=21-11-2026".to_owned(),
        format!("monthly?to={}", month.plus(1)),
        format!("monthly?from={}", month.plus(-24)),
        "monthly?from=2026-13".to_owned(),
        format!("monthly?from={month}&to={}", month.plus(-1)),
    ] {
        let (status, body) = get_json(&f.app, &format!("/transactions/AR1/{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"], "invalid_date_range", "{query}");
        let message = body["message"].as_str().expect("message");
        assert!(message.contains("can be read"), "{query}: {message}");
    }
    let (status, body) = get_json(&f.app, &format!("/transactions/AR1/daily?from={first}")).await;
    assert_eq!(status, 200, "the first day kept can be read: {body}");
    assert_eq!(body["days"].as_array().map(Vec::len), Some(62));
    let (status, body) = get_json(&f.app, "/transactions/A1/daily").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_route"))
    );
    f.app.stop().await;
}

/// Many routes in one read: canonical, in the order asked, each once; limits and bad routes.
pub async fn many_routes_are_read_at_once(f: Fixture) {
    for _ in 0..2 {
        f.app.record("MN1", "MN0001").await;
    }
    f.app.record("la1", "LA0001").await;
    let (status, body) = get_json(
        &f.app,
        "/transactions?route=la1&route=ZZ9&route=mn0001&route=LA0001",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"routes": [
            {"route": "LA0001", "transactions": 1},
            {"route": "ZZ0009", "transactions": 0},
            {"route": "MN0001", "transactions": 2},
        ]})
    );
    let hundred: Vec<String> = (1..=100).map(|i| format!("route=MX{i}")).collect();
    let (status, body) = get_json(&f.app, &format!("/transactions?{}", hundred.join("&"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["routes"].as_array().map(Vec::len), Some(100));
    let (status, body) = get_json(
        &f.app,
        &format!("/transactions?{}&route=MX101", hundred.join("&")),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_query"))
    );
    // Without `route`, the routes that have counts are listed instead.
    let (status, body) = get_json(&f.app, "/transactions").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"routes": [
            {"route": "LA0001", "transactions": 1},
            {"route": "MN0001", "transactions": 2},
        ]})
    );
    let (status, body) = get_json(&f.app, "/transactions?route=AR1&route=not-a-route").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_route"))
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("not-a-route")),
        "{body}"
    );
    f.app.stop().await;
}

/// After a storm of concurrent POSTs (keyed ones too, where the store takes them), today's
/// count and this month's equal the route's total.
pub async fn the_day_and_month_sum_to_the_total_after_a_storm(f: Fixture, keyed: bool) {
    let base = f.app.url("");
    let (counts, failures) = post_concurrently(&base, "SM0001", 16, 20).await;
    assert!(failures.is_empty(), "{failures:?}");
    let mut expected = counts.len() as u64;
    if keyed {
        let tasks: Vec<_> = (0..160)
            .map(|i| {
                let base = base.clone();
                tokio::spawn(async move {
                    post_keyed(&client(), &base, "SM1", &format!("storm-{}", i % 80)).await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.expect("task").status, 200);
        }
        expected += 80;
    }
    let total = f.app.count("SM1", "SM0001").await;
    assert_eq!(total, expected);
    let (_, daily) = get_json(&f.app, "/transactions/SM1/daily").await;
    let days: u64 = daily["days"]
        .as_array()
        .expect("days")
        .iter()
        .map(|d| d["transactions"].as_u64().expect("count"))
        .sum();
    let (_, monthly) = get_json(&f.app, "/transactions/SM1/monthly").await;
    let months: u64 = monthly["months"]
        .as_array()
        .expect("months")
        .iter()
        .map(|m| m["transactions"].as_u64().expect("count"))
        .sum();
    assert_eq!((days, months), (total, total));
    f.app.stop().await;
}

/// Instantiates the reads' tests for one store.
macro_rules! report_tests {
    ($store:ident, $fixture:expr, keyed: $keyed:expr) => {
        mod $store {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn daily_and_monthly_counts_follow_posts() {
                super::daily_and_monthly_counts_follow_posts($fixture.await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_ranges_are_refused_naming_the_window() {
                super::bad_ranges_are_refused_naming_the_window($fixture.await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_routes_are_read_at_once() {
                super::many_routes_are_read_at_once($fixture.await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_day_and_month_sum_to_the_total_after_a_storm() {
                super::the_day_and_month_sum_to_the_total_after_a_storm($fixture.await, $keyed)
                    .await;
            }
        }
    };
}

report_tests!(on_memory, crate::stores::memory(), keyed: true);
report_tests!(on_embedded, crate::stores::embedded(), keyed: true);
// dynalite has no transactions: keyless POSTs only.
report_tests!(on_dynalite, crate::stores::dynamodb(Kind::Dynalite, |_| {}), keyed: false);
report_tests!(on_moto, crate::stores::dynamodb(Kind::Moto, |_| {}), keyed: true);

/// Midnight UTC at the start of `day`.
fn midnight(day: &str) -> SystemTime {
    let day = Day::parse(day).expect("day");
    SystemTime::UNIX_EPOCH + Duration::from_secs(day.number() as u64 * 86_400)
}

/// On a clock the test moves: a commit half a second before midnight counts on that day (and
/// month), the next one, a second later, on the next; 62 days on, the first day has left the
/// window: it can no longer be asked for, and the store no longer keeps it.
async fn the_day_boundary_and_the_window(store: Store) {
    let clock = ManualClock::at(midnight("2026-12-01") - Duration::from_millis(500));
    let app = TestApp::spawn_with_clock(test_config(), store.clone(), clock.clone()).await;
    app.record("MD1", "MD0001").await;
    clock.advance(Duration::from_secs(1));
    app.record("MD1", "MD0001").await;
    app.record("MD1", "MD0001").await;
    let (status, body) = get_json(
        &app,
        "/transactions/MD1/daily?from=2026-11-30&to=2026-12-01",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["days"],
        json!([
            {"date": "2026-11-30", "transactions": 1},
            {"date": "2026-12-01", "transactions": 2},
        ])
    );
    let (_, body) = get_json(&app, "/transactions/MD1/monthly?from=2026-11").await;
    assert_eq!(
        body["months"],
        json!([
            {"month": "2026-11", "transactions": 1},
            {"month": "2026-12", "transactions": 2},
        ])
    );

    // 2026-11-30 is the first day kept until 2027-01-30; from 2027-01-31 it is gone.
    clock.set(midnight("2027-01-31") + Duration::from_secs(3600));
    app.record("MD1", "MD0001").await;
    let (status, body) = get_json(&app, "/transactions/MD1/daily?from=2026-11-30").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_date_range"))
    );
    let (_, body) = get_json(
        &app,
        "/transactions/MD1/daily?from=2026-12-01&to=2026-12-01",
    )
    .await;
    assert_eq!(body["days"][0]["transactions"], 2);
    let today = Day::parse("2027-01-31").expect("day");
    store
        .base()
        .housekeeping(0, today, 1000)
        .await
        .expect("upkeep");
    let route = Route::parse("MD1").expect("route");
    let kept = |from: &str| {
        let store = store.clone();
        let day = Day::parse(from).expect("day");
        async move { store.base().daily(route, day, day).await.expect("read") }
    };
    assert_eq!(
        kept("2026-11-30").await,
        vec![0],
        "the day out of the window is gone"
    );
    assert_eq!(kept("2026-12-01").await, vec![2], "the days in it are kept");
    assert_eq!(
        app.count("MD1", "MD0001").await,
        4,
        "the total keeps everything"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_day_boundary_and_the_window_on_memory() {
    the_day_boundary_and_the_window(Store::batch(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_day_boundary_and_the_window_on_embedded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), SystemClock::shared()).expect("open");
    the_day_boundary_and_the_window(Store::batch(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_day_boundary_and_the_window_on_dynamodb() {
    let (_, config) = table_on(Kind::Moto, "reports-clock", |_| {});
    let store = dynamodb_store(&config).await;
    // Ready the table first: the clock-driven app is built on the test configuration.
    let app = TestApp::spawn_with_store(config, Store::Item(store.clone())).await;
    app.stop().await;
    the_day_boundary_and_the_window(Store::Item(store)).await;
}

/// DynamoDB's size of an item, by its rules: each attribute's name in UTF-8 bytes plus its
/// value (a string's UTF-8 bytes; a number's significant digits, two to a byte, plus one).
fn item_size(item: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    aws_sdk_dynamodb::types::AttributeValue::S(s) => s.len(),
                    aws_sdk_dynamodb::types::AttributeValue::N(n) => {
                        let digits = n.trim_start_matches('-').replace('.', "");
                        let significant = digits.trim_start_matches('0').trim_end_matches('0');
                        significant.len().div_ceil(2) + 1
                    }
                    other => panic!("unexpected attribute {other:?}"),
                }
        })
        .sum()
}

/// A route's item written on each of 90 consecutive days, keyless and keyed, with a few
/// thousand transactions a day, stays under DynamoDB's 1 KB write unit: the days and months
/// that left the window leave the item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_item_written_for_90_days_stays_under_1_kb() {
    let (table, config) = table_on(Kind::Moto, "reports-size", |_| {});
    let store = dynamodb_store(&config).await;
    while store.check_ready().await.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let route = Route::parse("SZ1").expect("route");
    let first = Day::parse("2026-09-01").expect("day");
    let mut largest = 0;
    for n in 0..90 {
        let day = first.plus(n).expect("day");
        let now = day.number() as u64 * 86_400;
        ItemStore::commit(&*store, &RouteWrite::keyless(route, 123_456, day))
            .await
            .expect("keyless commit");
        let keyed = (0..3)
            .map(|k| KeyedIncrement {
                key: IdempotencyKey::parse(format!("size-{n}-{k}").as_bytes()).expect("key"),
                route,
                now,
                expires_at: now + 60,
            })
            .collect();
        ItemStore::commit(
            &*store,
            &RouteWrite {
                route,
                keyless: 1,
                keyed,
                day,
            },
        )
        .await
        .expect("keyed commit");
        let item = read_item(&store, &table, "SZ0001").await;
        largest = largest.max(item_size(&item));
    }
    println!("largest route item over 90 days: {largest} bytes");
    assert!(largest < 1024, "the route item grew to {largest} bytes");
    let last = first.plus(89).expect("day");
    let kept = StoreBase::daily(&*store, route, last.window_start(), last)
        .await
        .expect("daily");
    assert_eq!(kept, vec![123_460; 62], "every day kept has its count");
    assert_eq!(
        StoreBase::get(&*store, route).await.expect("total"),
        90 * 123_460
    );
}
