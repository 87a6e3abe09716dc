//! The API contract on each store.

use flight_counter::{clock::ManualClock, config::Config, startup::Application, store::Store};

use crate::{
    catalog_tests,
    emulators::{self, Kind},
    helpers::{dynamodb_config, dynamodb_store_on, embedded_config, secs, test_config},
    store_contract::Fixture,
    store_contract_tests,
};

pub async fn memory() -> Fixture {
    Fixture::start(
        Application::builder(test_config()),
        ManualClock::starting_now(),
        (),
    )
    .await
}

pub async fn embedded() -> Fixture {
    embedded_with(|_| {}).await
}

pub async fn embedded_with(change: impl FnOnce(&mut Config)) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = embedded_config(dir.path(), change);
    Fixture::start(
        Application::builder(config),
        ManualClock::starting_now(),
        dir,
    )
    .await
}

pub async fn embedded_without_group_commit() -> Fixture {
    embedded_with(|c| c.ledger.group_commit = false).await
}

store_contract_tests!(memory_store, memory());
store_contract_tests!(embedded_store, embedded());
store_contract_tests!(
    embedded_store_one_commit_per_post,
    embedded_without_group_commit()
);

/// The dynamodb store on a fresh table of a shared DynamoDB-compatible server.
pub async fn dynamodb(kind: Kind, change: impl FnOnce(&mut Config)) -> Fixture {
    let server = emulators::shared(kind);
    let table = emulators::unique_table(kind.name());
    let config = dynamodb_config(&table, &server.endpoint(), |c| {
        // Every attempt may take the whole commit timeout: on a loaded test machine a slow
        // attempt must not turn into a 503 (a timed-out UpdateItem is never retried).
        c.dynamodb.attempt_timeout = secs(5);
        change(c);
    });
    let clock = ManualClock::starting_now();
    let store = dynamodb_store_on(&config, clock.clone()).await;
    Fixture::start(
        Application::builder(config).store(Store::Item(store)),
        clock,
        (),
    )
    .await
}

store_contract_tests!(dynamodb_on_dynalite, dynamodb(Kind::Dynalite, |_| {}));
store_contract_tests!(
    dynamodb_on_dynalite_one_update_per_post,
    dynamodb(Kind::Dynalite, |c| c.ledger.group_commit = false)
);
// moto is served single-threaded (scripts/moto-server.py): its threaded server can lose
// concurrent ADDs, which would make exact counts unassertable.
store_contract_tests!(dynamodb_on_moto, dynamodb(Kind::Moto, |_| {}));

// Listing, rankings and conditional reads on each store.
catalog_tests!(memory_catalog, memory());
catalog_tests!(embedded_catalog, embedded());
catalog_tests!(
    dynamodb_catalog_on_dynalite,
    dynamodb(Kind::Dynalite, |_| {})
);
