use crate::{
    clock::Clock as _,
    store::{
        MemoryStore,
        local::snapshot::contract::{
            check_export_of_sample, check_import, check_overflow, clock, write_sample,
        },
    },
};

#[tokio::test]
async fn an_export_holds_what_the_reads_answer() {
    let clock = clock();
    let store = MemoryStore::with_clock(clock.clone());
    let now = write_sample(&store, &clock).await;
    check_export_of_sample(&store, now).await;
}

#[tokio::test]
async fn an_import_gives_back_the_same_records_and_merges_once() {
    let clock = clock();
    let source = MemoryStore::with_clock(clock.clone());
    let now = write_sample(&source, &clock).await;
    check_import(&source, &MemoryStore::with_clock(clock), now).await;
}

#[tokio::test]
async fn an_overflowing_merge_applies_nothing() {
    let clock = clock();
    let now = clock.epoch_seconds();
    check_overflow(&MemoryStore::with_clock(clock), now).await;
}
