use super::*;
use crate::clock::SystemClock;

/// A file written by the layout before `routes` (route → total in `transactions`) opens
/// with its totals, which then count on as before.
#[tokio::test]
async fn totals_of_the_earlier_layout_are_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let db = redb::Database::create(dir.path().join(DATABASE_FILE)).expect("create");
        let txn = db.begin_write().expect("write");
        {
            let mut totals = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("transactions"))
                .expect("table");
            totals.insert("AR1133", 41).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let store = EmbeddedStore::open(dir.path(), SystemClock::shared()).expect("open");
    let route = Route::parse("AR1133").expect("route");
    assert_eq!(store.get(route).await.expect("read"), 41);
    let today = Day::parse("2026-11-21").expect("day");
    let outcomes = store
        .commit(&[RouteWrite::keyless(route, 1, today)])
        .await
        .expect("commit");
    assert_eq!(outcomes[0].keyless_total, 42);
    assert_eq!(
        store.daily(route, today, today).await.expect("daily"),
        vec![1]
    );
}

/// A route's day moves to history when its first commit of the next day comes, and reads
/// see both.
#[tokio::test]
async fn days_move_to_history_and_reads_see_them_all() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), SystemClock::shared()).expect("open");
    let route = Route::parse("LA1").expect("route");
    let day = |s: &str| Day::parse(s).expect("day");
    for (when, n) in [("2026-11-29", 3), ("2026-11-30", 2), ("2026-12-01", 5)] {
        store
            .commit(&[RouteWrite::keyless(route, n, day(when))])
            .await
            .expect("commit");
    }
    // A clock set back counts in history, leaving the row's day alone.
    store
        .commit(&[RouteWrite::keyless(route, 1, day("2026-11-29"))])
        .await
        .expect("commit");
    assert_eq!(
        store
            .daily(route, day("2026-11-28"), day("2026-12-02"))
            .await
            .expect("daily"),
        vec![0, 4, 2, 5, 0]
    );
    assert_eq!(
        store
            .monthly(route, day("2026-11-01").month(), day("2026-12-01").month())
            .await
            .expect("monthly"),
        vec![6, 5]
    );
    assert_eq!(store.get(route).await.expect("total"), 11);
}
