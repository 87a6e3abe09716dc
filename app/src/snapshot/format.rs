//! The snapshot file: JSON Lines, one record a line, in an order that lets a reader check it
//! as it streams, with no memory that grows with the file:
//!
//! 1. a header: `{"format":"flight-counter-snapshot","version":1,"id":..,"source":..,"taken_at":..}`;
//! 2. one line per route, in ascending route order (so a repeated route is caught at once):
//!    `{"type":"route","route":"AR1133","transactions":12,"days":{"2026-12-01":3},"months":{"2026-12":3}}`;
//! 3. one line per unexpired idempotency record, in ascending order of its record id:
//!    `{"type":"key","client":"booking-engine","key":"k-1","route":"AR1133","count":4,"expires_at":1765000000}`
//!    (`client` is null in the shared scope);
//! 4. an end line with the number of each: `{"type":"end","routes":1,"keys":1}`. A file that
//!    stops before it was cut short, and is refused.
//!
//! Every error names the line and the field. [`SnapshotWriter`] writes one;
//! [`SnapshotReader`](super::reader::SnapshotReader) reads one back.

use std::io::{self, Write};

use serde_json::{Map, Value, json};

use crate::{
    auth::ClientName,
    calendar::{Day, Month},
    idempotency::IdempotencyKey,
    route::Route,
};

pub const FORMAT: &str = "flight-counter-snapshot";
pub const VERSION: u64 = 1;
/// Longest line a reader accepts: a route with every day and month kept is under 4 KiB, a key
/// record under 1 KiB.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Who took a snapshot, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Identifies the snapshot: an import records it, so a second import of the same file is
    /// recognised.
    pub id: String,
    /// The store it was taken from (`embedded`, `memory`, `dynamodb`).
    pub source: String,
    /// When it was taken, in seconds since the Unix epoch.
    pub taken_at: u64,
}

/// One route: its lifetime total and the days and months kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRecord {
    pub route: Route,
    pub total: u64,
    pub days: Vec<(Day, u64)>,
    pub months: Vec<(Month, u64)>,
}

/// One unexpired idempotency record: the outcome its first POST answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub key: IdempotencyKey,
    pub route: Route,
    pub count: u64,
    pub expires_at: u64,
}

/// One record of a snapshot, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Route(RouteRecord),
    Key(KeyRecord),
}

/// Why a snapshot file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("line {line}: {field}: {reason}")]
    Field {
        line: u64,
        field: &'static str,
        reason: String,
    },
    #[error("line {line}: {reason}")]
    Line { line: u64, reason: String },
    #[error("the file ends at line {line} without its end line: it was cut short")]
    Truncated { line: u64 },
    #[error("cannot read the snapshot")]
    Io(#[from] io::Error),
}

pub(super) fn field(line: u64, field: &'static str, reason: impl Into<String>) -> FormatError {
    FormatError::Field {
        line,
        field,
        reason: reason.into(),
    }
}

/// Writes a snapshot, record by record.
pub struct SnapshotWriter<W: Write> {
    out: W,
    routes: u64,
    keys: u64,
}

impl<W: Write> SnapshotWriter<W> {
    pub fn new(mut out: W, header: &Header) -> io::Result<Self> {
        let line = json!({
            "format": FORMAT,
            "version": VERSION,
            "id": header.id,
            "source": header.source,
            "taken_at": header.taken_at,
        });
        writeln!(out, "{line}")?;
        Ok(Self {
            out,
            routes: 0,
            keys: 0,
        })
    }

    /// Routes must come in ascending order, before any key.
    pub fn route(&mut self, record: &RouteRecord) -> io::Result<()> {
        let days: Map<String, Value> = record
            .days
            .iter()
            .map(|(day, n)| (day.to_string(), json!(n)))
            .collect();
        let months: Map<String, Value> = record
            .months
            .iter()
            .map(|(month, n)| (month.to_string(), json!(n)))
            .collect();
        let line = json!({
            "type": "route",
            "route": record.route.as_str(),
            "transactions": record.total,
            "days": days,
            "months": months,
        });
        self.routes += 1;
        writeln!(self.out, "{line}")
    }

    /// Keys must come in ascending order of their record id, after every route.
    pub fn key(&mut self, record: &KeyRecord) -> io::Result<()> {
        let line = json!({
            "type": "key",
            "client": record.key.client().map(ClientName::as_str),
            "key": record.key.as_str(),
            "route": record.route.as_str(),
            "count": record.count,
            "expires_at": record.expires_at,
        });
        self.keys += 1;
        writeln!(self.out, "{line}")
    }

    /// What has been written so far (a caller streaming the snapshot drains a `Vec<u8>` here).
    pub fn output(&mut self) -> &mut W {
        &mut self.out
    }

    /// Writes one record, in its place in the file's order.
    pub fn record(&mut self, record: &Record) -> io::Result<()> {
        match record {
            Record::Route(route) => self.route(route),
            Record::Key(key) => self.key(key),
        }
    }

    /// Writes the end line and returns the output, flushed, with the number of routes and keys.
    pub fn finish(mut self) -> io::Result<(W, u64, u64)> {
        let line = json!({"type": "end", "routes": self.routes, "keys": self.keys});
        writeln!(self.out, "{line}")?;
        self.out.flush()?;
        Ok((self.out, self.routes, self.keys))
    }
}
