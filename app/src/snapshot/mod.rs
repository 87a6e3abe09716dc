//! Snapshots: every route's total and kept days and months, and every unexpired idempotency
//! record, read out of one store and into another, so that counts move between machines and
//! stores, and a backup can be restored.
//!
//! Files: [`format`] (the JSON Lines file and its writer), [`reader`] (reading one back,
//! checked as it streams), [`transfer`] (between a store and a file), [`delta`] (what a later
//! snapshot holds beyond an earlier one).

pub mod delta;
pub mod format;
pub mod reader;
#[cfg(test)]
mod tests;
pub mod transfer;

pub use format::{
    FORMAT, FormatError, Header, KeyRecord, Record, RouteRecord, SnapshotWriter, VERSION,
};
pub use reader::SnapshotReader;
pub use transfer::{Exported, Imported, TransferError};
