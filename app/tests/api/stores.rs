//! The API contract on each store.

use flight_counter::store::Store;

use crate::{
    emulators::{self, Kind},
    helpers::{TestApp, dynamodb_store, test_config},
    store_contract::Fixture,
    store_contract_tests,
};

pub async fn memory() -> Fixture {
    Fixture {
        app: TestApp::spawn(test_config(&["--store", "memory"])).await,
        _keep: Box::new(()),
    }
}

pub async fn embedded() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path").to_owned();
    let app = TestApp::spawn(test_config(&[
        "--store",
        "embedded",
        "--data-dir",
        &data_dir,
    ]))
    .await;
    Fixture {
        app,
        _keep: Box::new(dir),
    }
}

async fn embedded_without_group_commit() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().to_str().expect("utf-8 path").to_owned();
    let app = TestApp::spawn(test_config(&[
        "--store",
        "embedded",
        "--data-dir",
        &data_dir,
        "--group-commit",
        "false",
    ]))
    .await;
    Fixture {
        app,
        _keep: Box::new(dir),
    }
}

store_contract_tests!(memory_store, memory());
store_contract_tests!(embedded_store, embedded());
store_contract_tests!(
    embedded_store_one_commit_per_post,
    embedded_without_group_commit()
);

/// The dynamodb store on a fresh table of a shared DynamoDB-compatible server.
pub async fn dynamodb(kind: Kind, extra: &[&str]) -> Fixture {
    let server = emulators::shared(kind);
    let table = emulators::unique_table(kind.name());
    let endpoint = server.endpoint();
    let mut args = vec![
        "--store",
        "dynamodb",
        "--table",
        &table,
        "--endpoint-url",
        &endpoint,
        "--create-table",
        // Every attempt may take the whole commit timeout: on a loaded test machine a slow
        // attempt must not turn into a 503 (a timed-out UpdateItem is never retried).
        "--dynamodb-attempt-timeout",
        "5s",
    ];
    args.extend_from_slice(extra);
    let config = test_config(&args);
    let store = dynamodb_store(&config).await;
    Fixture {
        app: TestApp::spawn_with_store(config, Store::Item(store)).await,
        _keep: Box::new(()),
    }
}

store_contract_tests!(dynamodb_on_dynalite, dynamodb(Kind::Dynalite, &[]));
store_contract_tests!(
    dynamodb_on_dynalite_one_update_per_post,
    dynamodb(Kind::Dynalite, &["--group-commit", "false"])
);
// moto is served single-threaded (scripts/moto-server.py): its threaded server can lose
// concurrent ADDs, which would make exact counts unassertable.
store_contract_tests!(dynamodb_on_moto, dynamodb(Kind::Moto, &[]));
