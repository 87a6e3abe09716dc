//! Black-box tests of the service over HTTP, on a random loopback port.

mod auth;
mod catalog;
mod cors;
mod document;
mod dynamodb;
mod dynamodb_faults;
mod dynamodb_scale;
mod emulators;
mod errors;
mod helpers;
mod idempotency;
mod lifecycle;
mod limits;
mod reports;
mod resources;
mod snapshot_dynamodb;
mod snapshot_moves;
mod snapshot_online;
mod store_contract;
mod stores;
mod throttle_proxy;
