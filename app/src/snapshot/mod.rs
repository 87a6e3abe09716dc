//! Snapshots: every route's total and kept days and months, and every unexpired idempotency
//! record, read out of one store and into another, so that counts move between machines and
//! stores, and a backup can be restored.
//!
//! Files: [`format`] (the JSON Lines file, written and read as it streams).

pub mod format;
#[cfg(test)]
mod tests;

pub use format::{
    FORMAT, FormatError, Header, KeyRecord, Record, RouteRecord, SnapshotReader, SnapshotWriter,
    VERSION,
};
