//! The API contract on each store.

use crate::{
    helpers::{TestApp, test_config},
    store_contract::Fixture,
    store_contract_tests,
};

async fn memory() -> Fixture {
    Fixture {
        app: TestApp::spawn(test_config(&["--store", "memory"])).await,
        _keep: Box::new(()),
    }
}

async fn embedded() -> Fixture {
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
