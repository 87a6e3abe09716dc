use super::*;
use crate::idempotency::{IdempotencyKey, KeyedIncrement, KeyedOutcome};

fn today() -> Day {
    Day::parse("2026-11-21").expect("day")
}

fn keyed(key: &str, route: &str, now: u64) -> KeyedIncrement {
    KeyedIncrement {
        key: IdempotencyKey::parse(key.as_bytes()).expect("key"),
        route: Route::parse(route).expect("route"),
        now,
        expires_at: now + 10,
    }
}

async fn one_keyed(store: &MemoryStore, k: KeyedIncrement) -> KeyedOutcome {
    let write = RouteWrite {
        route: k.route,
        keyless: 0,
        keyed: vec![k],
        day: today(),
    };
    let mut outcomes = store.commit(&[write]).await.expect("ok");
    outcomes.remove(0).keyed.remove(0)
}

#[tokio::test]
async fn a_key_is_counted_once_until_it_expires_and_is_swept() {
    let store = MemoryStore::new();
    let route = Route::parse("AR1").expect("route");
    let first = one_keyed(&store, keyed("k1", "AR1", 100)).await;
    assert_eq!(first, KeyedOutcome::recorded(route, 1));
    let again = one_keyed(&store, keyed("k1", "AR1", 105)).await;
    assert_eq!(again, KeyedOutcome::replay(route, 1));
    // Same key, other route: the stored outcome comes back, nothing is recorded.
    let other = one_keyed(&store, keyed("k1", "LA1", 105)).await;
    assert_eq!(other, KeyedOutcome::replay(route, 1));
    assert_eq!(
        store.get(Route::parse("LA1").expect("route")).await.ok(),
        Some(0)
    );
    // Expired: a new transaction.
    let later = one_keyed(&store, keyed("k1", "AR1", 110)).await;
    assert_eq!(later, KeyedOutcome::recorded(route, 2));
    assert_eq!(store.housekeeping(119, today(), 10).await.ok(), Some(0));
    assert_eq!(store.housekeeping(120, today(), 10).await.ok(), Some(1));
    assert_eq!(store.key_records(), 0);
}

#[tokio::test]
async fn a_key_twice_in_one_batch_is_counted_once() {
    let store = MemoryStore::new();
    let route = Route::parse("AR1").expect("route");
    let outcomes = store
        .commit(&[RouteWrite {
            route,
            keyless: 2,
            keyed: vec![
                keyed("a", "AR1", 1),
                keyed("a", "AR1", 1),
                keyed("b", "AR1", 1),
            ],
            day: today(),
        }])
        .await
        .expect("ok");
    assert_eq!(
        outcomes,
        vec![RouteOutcome {
            keyless_total: 2,
            keyed: vec![
                KeyedOutcome::recorded(route, 3),
                KeyedOutcome::replay(route, 3),
                KeyedOutcome::recorded(route, 4)
            ]
        }]
    );
    assert_eq!(store.get(route).await.ok(), Some(4));
}

#[tokio::test]
async fn an_overflow_anywhere_in_the_batch_applies_nothing() {
    let store = MemoryStore::new();
    let (a, b) = (
        Route::parse("AR1").expect("route"),
        Route::parse("LA1").expect("route"),
    );
    store
        .commit(&[RouteWrite::keyless(b, u64::MAX, today())])
        .await
        .expect("ok");
    let failed = store
        .commit(&[
            RouteWrite::keyless(a, 5, today()),
            RouteWrite::keyless(b, 1, today()),
        ])
        .await;
    assert!(matches!(failed, Err(StoreError::Overflow(r)) if r == b));
    assert_eq!(store.get(a).await.ok(), Some(0));
    assert_eq!(store.get(b).await.ok(), Some(u64::MAX));
}

/// Upkeep goes through the shared rules: days that left the window are deleted, and count
/// in the limit like keys.
#[tokio::test]
async fn days_out_of_the_window_are_deleted() {
    let store = MemoryStore::new();
    let route = Route::parse("AR1").expect("route");
    let old = Day::parse("2026-01-01").expect("day");
    for day in [old, today()] {
        store
            .commit(&[RouteWrite::keyless(route, 2, day)])
            .await
            .expect("ok");
    }
    assert_eq!(store.daily(route, old, old).await.ok(), Some(vec![2]));
    assert_eq!(store.housekeeping(0, today(), 10).await.ok(), Some(1));
    assert_eq!(store.daily(route, old, old).await.ok(), Some(vec![0]));
    assert_eq!(
        store.daily(route, today(), today()).await.ok(),
        Some(vec![2])
    );
    assert_eq!(store.get(route).await.ok(), Some(4));
}
