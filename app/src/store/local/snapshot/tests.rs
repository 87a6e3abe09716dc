use super::*;
use crate::store::local::memtable::Overlay;

fn names(list: &[&str]) -> Vec<Box<str>> {
    list.iter().map(|n| Box::from(*n)).collect()
}

/// Chunks of the database's names and the memtables' merge in order, without repeats, and
/// the next chunk starts after the last one sent.
#[test]
fn listings_merge_in_order() {
    let memtables = names(&["b", "d", "f"]);
    let db = |list: &[&str]| list.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    assert_eq!(
        merge_sorted(db(&["a", "b", "c"]), &memtables, None, 3),
        ["a", "b", "c"]
    );
    assert_eq!(
        merge_sorted(db(&["e"]), &memtables, Some("c"), 3),
        ["d", "e", "f"]
    );
    assert!(merge_sorted(Vec::new(), &memtables, Some("f"), 3).is_empty());
}

fn day(text: &str) -> Day {
    Day::parse(text).expect("day")
}

/// Days land where a commit would put them (the latest in the row, the others
/// in history); set twice they stay; merged, they add.
#[test]
fn a_route_record_is_set_or_merged_like_commits() {
    let mut tables = Overlay::new(&NoTables);
    let route = Route::parse("AR1").expect("route");
    let record = Record::Route(RouteRecord {
        route,
        total: 10,
        days: vec![(day("2026-11-19"), 3), (day("2026-11-21"), 4)],
        months: vec![(day("2026-11-21").month(), 7)],
    });
    for _ in 0..2 {
        apply_chunk(&mut tables, std::slice::from_ref(&record), false, 0).expect("set");
    }
    let today = day("2026-11-21");
    let Some(read) = route_record(&tables, route.as_str(), today).expect("read") else {
        panic!("no record");
    };
    assert_eq!(Record::Route(read), record);
    apply_chunk(&mut tables, std::slice::from_ref(&record), true, 0).expect("merge");
    let Some(read) = route_record(&tables, route.as_str(), today).expect("read") else {
        panic!("no record");
    };
    assert_eq!(read.total, 20);
    assert_eq!(
        read.days,
        vec![(day("2026-11-19"), 6), (day("2026-11-21"), 8)]
    );
    assert_eq!(read.months, vec![(today.month(), 14)]);
}

/// Tables holding nothing.
struct NoTables;

impl Tables for NoTables {
    fn row(&self, _: Route) -> Result<RouteRow, StoreError> {
        Ok(RouteRow::default())
    }

    fn key(&self, _: &str) -> Result<Option<KeyRow>, StoreError> {
        Ok(None)
    }

    fn history(&self, _: Periods, _: i32, _: Route) -> Result<u64, StoreError> {
        Ok(0)
    }
}
