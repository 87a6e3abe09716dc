//! The export's sort and the reading of item names, without a server.

use crate::{
    auth::ClientName,
    calendar::{Day, Month},
    idempotency::IdempotencyKey,
    route::Route,
    snapshot::{KeyRecord, Record, RouteRecord},
};

use super::{
    export::{Item, item_kind, key_of_record_id},
    sort::{ExternalSort, Place},
};

fn route_record(name: &str, total: u64) -> Record {
    let day = Day::parse("2026-11-21").expect("day");
    Record::Route(RouteRecord {
        route: Route::parse(name).expect("route"),
        total,
        days: vec![(day, total)],
        months: vec![(Month::parse("2026-11").expect("month"), total)],
    })
}

fn key_record(client: Option<&str>, key: &str, count: u64) -> Record {
    let mut parsed = IdempotencyKey::parse(key.as_bytes()).expect("key");
    if let Some(client) = client {
        parsed = parsed.scoped(&ClientName::parse(client).expect("client"));
    }
    Record::Key(KeyRecord {
        key: parsed,
        route: Route::parse("AR1133").expect("route"),
        count,
        expires_at: 2_000_000_000,
    })
}

/// Records in a scrambled order: routes and keys mixed, as the segments of a scan hand them.
fn scrambled(n: usize) -> Vec<Record> {
    let mut records = Vec::new();
    for i in 0..n {
        records.push(route_record(
            &format!("AR{}", 1000 + (i * 7919) % n),
            i as u64 + 1,
        ));
        let client = (i % 3 == 0).then_some("alice");
        records.push(key_record(
            client,
            &format!("k-{}", (i * 104_729) % n),
            i as u64 + 1,
        ));
    }
    records
}

async fn sorted(records: Vec<Record>, buffer: usize) -> (Vec<Record>, usize) {
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let mut sort = ExternalSort::new(buffer);
    for record in records {
        sort.push(record).await.expect("push");
    }
    let runs = sort.runs();
    let finishing = tokio::spawn(sort.finish(tx));
    let mut out = Vec::new();
    while let Some(record) = rx.recv().await {
        out.push(record);
    }
    finishing.await.expect("joined").expect("finished");
    (out, runs)
}

#[tokio::test]
async fn records_come_out_in_the_files_order_from_memory_and_from_merged_runs() {
    let records = scrambled(300);
    let mut expected = records.clone();
    expected.sort_by_key(Place::of);
    let (in_memory, runs) = sorted(records.clone(), 10_000).await;
    assert_eq!(runs, 0);
    assert_eq!(in_memory, expected);
    let (merged, runs) = sorted(records, 7).await;
    assert!(runs > 50, "{runs} runs");
    assert_eq!(merged, expected);
    // Routes first, ascending; then keys by record id.
    let places: Vec<Place> = merged.iter().map(Place::of).collect();
    assert!(places.windows(2).all(|w| w[0] < w[1]));
    assert!(matches!(places[299], Place::Route(_)));
    assert!(matches!(places[300], Place::Key(_)));
}

#[tokio::test]
async fn a_record_twice_stops_the_export() {
    let records = vec![route_record("AR1", 1), route_record("AR1", 2)];
    let (tx, _rx) = tokio::sync::mpsc::channel(16);
    let mut sort = ExternalSort::new(100);
    for record in records {
        sort.push(record).await.expect("push");
    }
    assert!(sort.finish(tx).await.is_err());
}

#[tokio::test]
async fn a_closed_sink_ends_the_export_with_an_error() {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    drop(rx);
    let mut sort = ExternalSort::new(2);
    for record in scrambled(5) {
        sort.push(record).await.expect("push");
    }
    assert!(sort.finish(tx).await.is_err());
}

#[test]
fn items_are_told_apart_by_their_key() {
    assert!(matches!(item_kind("AR1133"), Ok(Item::Route(r)) if r.as_str() == "AR1133"));
    assert!(matches!(item_kind("idem#alice k-1"), Ok(Item::Key(id)) if id == "alice k-1"));
    for other in ["batch#0123456789abcdef", "import#snap-1", "future#thing"] {
        assert!(matches!(item_kind(other), Ok(Item::Other)), "{other}");
    }
    assert!(item_kind("not a route").is_err());
}

#[test]
fn record_ids_name_their_keys_back() {
    let shared = IdempotencyKey::parse(b"order-1").expect("key");
    let alice = shared
        .clone()
        .scoped(&ClientName::parse("alice").expect("client"));
    for key in [shared, alice] {
        let back = key_of_record_id(&key.record_id()).expect("parsed");
        assert_eq!(back, key);
    }
    assert!(key_of_record_id("Bad!Client k").is_err());
    assert!(key_of_record_id("").is_err());
}
