//! flight-counter: counts confirmed booking transactions per flight route.
//!
//! Layers, outermost first: [`connection`] (the listening socket and each accepted TCP
//! connection: limits, deadlines, JSON bodies for requests the HTTP parser refuses) → [`api`]
//! (HTTP, OpenAPI, JSON errors) → [`ledger`] (group commit, pacing) → [`store`] (where counts
//! live). [`route`] owns what a valid route is; [`auth`] who a client is and what its key
//! allows; [`limits`] how much each client may ask of one instance; [`calendar`] which day and
//! month a commit counts on, by the one [`clock`]. [`startup`] assembles the
//! service for `main` and the tests alike; [`config`] and [`telemetry`] serve it.

pub mod api;
pub mod auth;
pub mod calendar;
pub mod clock;
pub mod commands;
pub mod config;
pub mod connection;
pub mod idempotency;
pub mod ledger;
pub mod lifecycle;
pub mod limits;
pub mod rankings;
pub mod route;
pub mod snapshot;
pub mod startup;
pub mod store;
pub mod telemetry;
