//! Files of the previous layout (`&str`-keyed tables under their earlier names) opened by the
//! store: every value is kept, the old tables are gone, and a second open changes nothing.

use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use super::*;
use crate::{
    calendar::{Day, Month},
    clock::SystemClock,
    idempotency::{IdempotencyKey, KeyedIncrement},
    route::Route,
    store::{
        BatchStore as _, RouteWrite, StoreBase as _,
        embedded::{DATABASE_FILE, EmbeddedStore},
    },
};

/// Keys expire far after any run of the tests, so that none is treated as gone.
const EXPIRES_AT: u64 = 4_000_000_000;

fn day(text: &str) -> Day {
    Day::parse(text).expect("day")
}

fn route(name: &str) -> Route {
    Route::parse(name).expect("route")
}

/// What the tables hold, in key order, read with the current definitions.
#[derive(Debug, PartialEq, Eq)]
struct Contents {
    routes: Vec<(String, StoredRow)>,
    keys: Vec<(String, (String, u64, u64))>,
    expiry: Vec<(u64, String)>,
    daily: Vec<(i32, String, u64)>,
    monthly: Vec<(i32, String, u64)>,
}

/// The sample of the previous layout (routes in their canonical spelling): three routes (one of them with only a total), their
/// history, and two keys (one scoped to a client) with their expiry entries.
fn sample() -> Contents {
    let today = day("2026-11-21");
    let (d, m) = (today.number(), today.month().number());
    Contents {
        routes: vec![
            ("AR1133".into(), (41, d, 3, m, 20)),
            ("LA0001".into(), (13, d - 1, 7, m, 13)),
            ("QF0009".into(), (5, 0, 0, 0, 0)),
        ],
        keys: vec![
            ("client k-2".into(), ("LA0001".into(), 7, EXPIRES_AT)),
            ("k-1".into(), ("AR1133".into(), 40, EXPIRES_AT + 1)),
        ],
        expiry: vec![
            (EXPIRES_AT, "client k-2".into()),
            (EXPIRES_AT + 1, "k-1".into()),
        ],
        daily: vec![
            (d - 3, "AR1133".into(), 4),
            (d - 2, "LA0001".into(), 6),
            (d - 1, "AR1133".into(), 13),
        ],
        monthly: vec![(m - 2, "AR1133".into(), 9), (m - 1, "AR1133".into(), 12)],
    }
}

/// Writes `contents` as the previous version did: its definitions spelled out here (names and
/// `&str` keys), with the empty `transactions` table that version left behind and its other
/// tables.
fn write_previous_layout(path: &Path, contents: &Contents) {
    let db = redb::Database::create(path).expect("create");
    let txn = db.begin_write().expect("write");
    {
        let mut routes = txn
            .open_table(TableDefinition::<&str, StoredRow>::new("routes"))
            .expect("routes");
        for (route, row) in &contents.routes {
            routes.insert(route.as_str(), row).expect("insert");
        }
        let mut keys = txn
            .open_table(TableDefinition::<&str, (&str, u64, u64)>::new(
                "idempotency_keys",
            ))
            .expect("keys");
        for (id, (route, count, expires_at)) in &contents.keys {
            keys.insert(id.as_str(), (route.as_str(), *count, *expires_at))
                .expect("insert");
        }
        let mut expiry = txn
            .open_table(TableDefinition::<(u64, &str), ()>::new(
                "idempotency_expiry",
            ))
            .expect("expiry");
        for (at, id) in &contents.expiry {
            expiry.insert((*at, id.as_str()), ()).expect("insert");
        }
        for (name, entries) in [("daily", &contents.daily), ("monthly", &contents.monthly)] {
            let mut table = txn
                .open_table(TableDefinition::<(i32, &str), u64>::new(name))
                .expect(name);
            for (period, route, n) in entries {
                table.insert((*period, route.as_str()), n).expect("insert");
            }
        }
        txn.open_table(TableDefinition::<&str, u64>::new("transactions"))
            .expect("transactions");
        txn.open_table(TableDefinition::<&str, u64>::new("journal"))
            .expect("journal");
        txn.open_table(TableDefinition::<&str, u64>::new("readiness_probe"))
            .expect("probe");
        txn.open_table(TableDefinition::<&str, (u64, bool)>::new("imports"))
            .expect("imports");
    }
    txn.commit().expect("commit");
}

/// The tables' contents through the current definitions, and the names of all the tables.
fn read_back(path: &Path) -> (Contents, Vec<String>) {
    let db = redb::Database::open(path).expect("open");
    let txn = db.begin_read().expect("read");
    let names = txn
        .list_tables()
        .expect("list")
        .map(|table| table.name().to_owned())
        .collect();
    let routes = txn.open_table(ROUTES).expect("routes");
    let keys = txn.open_table(KEYS).expect("keys");
    let expiry = txn.open_table(EXPIRY).expect("expiry");
    let history = |table: TableDefinition<(i32, TextKey), u64>| {
        let table = txn.open_table(table).expect("history");
        table
            .iter()
            .expect("iter")
            .map(|entry| {
                let (k, v) = entry.expect("entry");
                let (period, route) = k.value();
                (period, route.to_owned(), v.value())
            })
            .collect()
    };
    let contents = Contents {
        routes: routes
            .iter()
            .expect("iter")
            .map(|entry| {
                let (k, v) = entry.expect("entry");
                (k.value().to_owned(), v.value())
            })
            .collect(),
        keys: keys
            .iter()
            .expect("iter")
            .map(|entry| {
                let (k, v) = entry.expect("entry");
                let (route, count, expires_at) = v.value();
                (k.value().to_owned(), (route.to_owned(), count, expires_at))
            })
            .collect(),
        expiry: expiry
            .iter()
            .expect("iter")
            .map(|entry| {
                let (k, _) = entry.expect("entry");
                let (at, id) = k.value();
                (at, id.to_owned())
            })
            .collect(),
        daily: history(DAILY),
        monthly: history(MONTHLY),
    };
    (contents, names)
}

#[tokio::test]
async fn a_file_of_the_previous_layout_opens_with_every_value_and_only_the_new_tables() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(DATABASE_FILE);
    let written = sample();
    write_previous_layout(&path, &written);

    let store = EmbeddedStore::open(dir.path(), SystemClock::shared()).expect("open");
    let totals = store
        .get_many(&[route("AR1133"), route("LA1"), route("QF9"), route("ZZ1")])
        .await
        .expect("totals");
    assert_eq!(totals, vec![41, 13, 5, 0]);
    let (from, to) = (day("2026-11-17"), day("2026-11-21"));
    assert_eq!(
        store.daily(route("AR1133"), from, to).await.expect("daily"),
        vec![0, 4, 0, 13, 3]
    );
    assert_eq!(
        store.daily(route("LA1"), from, to).await.expect("daily"),
        vec![0, 0, 6, 7, 0]
    );
    let months = (Month::parse("2026-09").expect("month"), to.month());
    assert_eq!(
        store
            .monthly(route("AR1133"), months.0, months.1)
            .await
            .expect("monthly"),
        vec![9, 12, 20]
    );
    drop(store);

    let (contents, tables) = read_back(&path);
    assert_eq!(contents, written);
    for old in [
        "routes",
        "transactions",
        "idempotency_keys",
        "idempotency_expiry",
        "daily",
        "monthly",
    ] {
        assert!(
            !tables.iter().any(|name| name == old),
            "{old} in {tables:?}"
        );
    }

    // Opening it again moves nothing and changes nothing.
    drop(EmbeddedStore::open(dir.path(), SystemClock::shared()).expect("reopen"));
    assert_eq!(read_back(&path), (contents, tables));

    // The keys answer their stored outcome: the same key again counts nothing.
    let store = EmbeddedStore::open(dir.path(), SystemClock::shared()).expect("reopen");
    assert_eq!(store.key_records().await.expect("key records"), 2);
    let replay = KeyedIncrement {
        key: IdempotencyKey::parse(b"k-1").expect("key"),
        route: route("AR1133"),
        now: EXPIRES_AT - 10,
        expires_at: EXPIRES_AT + 100,
    };
    let outcomes = store
        .commit(&[RouteWrite {
            keyed: vec![replay],
            ..RouteWrite::keyless(route("AR1133"), 0, day("2026-11-21"))
        }])
        .await
        .expect("commit");
    let outcome = outcomes[0].keyed[0];
    assert_eq!(
        (outcome.route, outcome.count, outcome.replayed),
        (route("AR1133"), 40, true)
    );
    assert_eq!(store.get(route("AR1133")).await.expect("total"), 41);
}

/// The layout before rows, route → total in `transactions` (as its own test in
/// `embedded::tests` writes it), goes straight to the current routes table.
#[test]
fn totals_of_the_oldest_layout_become_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(DATABASE_FILE);
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut totals = txn
                .open_table(TableDefinition::<&str, u64>::new("transactions"))
                .expect("table");
            totals.insert("AR1133", 41).expect("insert");
            totals.insert("LA0001", 2).expect("insert");
        }
        txn.commit().expect("commit");
    }
    drop(EmbeddedStore::open(dir.path(), SystemClock::shared()).expect("open"));
    let (contents, tables) = read_back(&path);
    let total_only = |total| row_to_stored(RouteRow::total_only(total));
    assert_eq!(
        contents.routes,
        vec![
            ("AR1133".to_owned(), total_only(41)),
            ("LA0001".to_owned(), total_only(2))
        ]
    );
    assert!(
        !tables.iter().any(|name| name == "transactions"),
        "{tables:?}"
    );
}
