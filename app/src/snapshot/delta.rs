//! What a later snapshot of a store holds beyond an earlier one: for each route, the
//! transactions recorded between the two (its total, days and months, less the earlier
//! snapshot's), and the idempotency keys first used between them. Both files list routes and
//! keys in ascending order, so the two are read side by side, line by line, with memory that
//! does not grow with them.
//!
//! Imported with `--merge` into a store that already took the earlier snapshot (and has taken
//! new writes since), it adds exactly what the source recorded in between: the last step of a
//! move with little write downtime (see docs/operations.md).

use std::io::BufRead;

use super::{
    FormatError, Header, KeyRecord, Record, RouteRecord, SnapshotReader, transfer::TransferError,
};

/// Records to import, with the line of the file they come from (what an import's mark counts).
pub trait RecordSource {
    fn header(&self) -> &Header;
    /// The line of the last record read.
    fn line(&self) -> u64;
    fn next_record(&mut self) -> Result<Option<Record>, TransferError>;
}

impl<R: BufRead> RecordSource for SnapshotReader<R> {
    fn header(&self) -> &Header {
        SnapshotReader::header(self)
    }

    fn line(&self) -> u64 {
        SnapshotReader::line(self)
    }

    fn next_record(&mut self) -> Result<Option<Record>, TransferError> {
        Ok(SnapshotReader::next_record(self)?)
    }
}

/// Why two snapshots are not an earlier and a later one of one store.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("the earlier snapshot was taken after the later one ({earlier} > {later})")]
    Order { earlier: u64, later: u64 },
    #[error(
        "route {route}: the later snapshot (line {line}) holds less than the earlier one in \
         {what}; they are not two snapshots of one store, in order"
    )]
    Shrank {
        route: String,
        line: u64,
        what: &'static str,
    },
    #[error(
        "route {0} is in the earlier snapshot but not in the later one; they are not two \
         snapshots of one store, in order"
    )]
    Vanished(String),
}

/// The later snapshot less the earlier one.
pub struct Delta<L: BufRead, E: BufRead> {
    later: SnapshotReader<L>,
    earlier: SnapshotReader<E>,
    /// The earlier snapshot's next record, read ahead.
    ahead: Option<Record>,
    /// The later snapshot's header under an id of its own (`<later>-since-<earlier>`): a
    /// delta is not the whole later snapshot, so an import of one never passes for, nor
    /// resumes, an import of the other.
    header: Header,
}

impl<L: BufRead, E: BufRead> Delta<L, E> {
    pub fn new(
        later: SnapshotReader<L>,
        earlier: SnapshotReader<E>,
    ) -> Result<Self, TransferError> {
        let (e, l) = (earlier.header().taken_at, later.header().taken_at);
        if e > l {
            return Err(DeltaError::Order {
                earlier: e,
                later: l,
            }
            .into());
        }
        let header = Header {
            id: format!("{}-since-{}", later.header().id, earlier.header().id),
            ..later.header().clone()
        };
        let mut delta = Self {
            later,
            earlier,
            ahead: None,
            header,
        };
        delta.ahead = delta.earlier.next_record()?;
        Ok(delta)
    }

    fn advance_earlier(&mut self) -> Result<(), FormatError> {
        self.ahead = self.earlier.next_record()?;
        Ok(())
    }

    /// The route's record less the earlier snapshot's, if it changed.
    fn route(&mut self, later: RouteRecord) -> Result<Option<RouteRecord>, TransferError> {
        // Routes the later snapshot skipped over cannot have vanished from a store.
        if let Some(Record::Route(earlier)) = &self.ahead
            && earlier.route.as_str() < later.route.as_str()
        {
            return Err(DeltaError::Vanished(earlier.route.to_string()).into());
        }
        let earlier = match &self.ahead {
            Some(Record::Route(earlier)) if earlier.route == later.route => {
                let earlier = earlier.clone();
                self.advance_earlier()?;
                earlier
            }
            _ => return Ok(Some(later)),
        };
        let line = self.later.line();
        let shrank = |what| DeltaError::Shrank {
            route: later.route.to_string(),
            line,
            what,
        };
        let total = later
            .total
            .checked_sub(earlier.total)
            .ok_or_else(|| shrank("its total"))?;
        if total == 0 {
            return Ok(None);
        }
        let days = less(&later.days, &earlier.days).ok_or_else(|| shrank("a day"))?;
        let months = less(&later.months, &earlier.months).ok_or_else(|| shrank("a month"))?;
        Ok(Some(RouteRecord {
            route: later.route,
            total,
            days,
            months,
        }))
    }

    /// The key, unless the earlier snapshot holds it already.
    fn key(&mut self, later: KeyRecord) -> Result<Option<KeyRecord>, TransferError> {
        // The earlier routes the later snapshot did not list are gone: an error.
        if let Some(Record::Route(earlier)) = &self.ahead {
            return Err(DeltaError::Vanished(earlier.route.to_string()).into());
        }
        let id = later.key.record_id().into_owned();
        while let Some(Record::Key(earlier)) = &self.ahead {
            let earlier_id = earlier.key.record_id();
            if earlier_id.as_ref() > id.as_str() {
                break;
            }
            let same = earlier_id.as_ref() == id.as_str();
            // An earlier key missing from the later snapshot expired in between: skipped.
            self.advance_earlier()?;
            if same {
                return Ok(None);
            }
        }
        Ok(Some(later))
    }
}

/// Each period's count less the earlier one's (periods the earlier snapshot had kept but the
/// later one no longer does fell out of the window: nothing to add for them). `None` when a
/// count went down.
fn less<P: Ord + Copy>(later: &[(P, u64)], earlier: &[(P, u64)]) -> Option<Vec<(P, u64)>> {
    let mut out = Vec::with_capacity(later.len());
    for (period, count) in later {
        let before = earlier
            .iter()
            .find(|(p, _)| p == period)
            .map_or(0, |(_, n)| *n);
        let added = count.checked_sub(before)?;
        if added > 0 {
            out.push((*period, added));
        }
    }
    Some(out)
}

impl<L: BufRead, E: BufRead> RecordSource for Delta<L, E> {
    fn header(&self) -> &Header {
        &self.header
    }

    fn line(&self) -> u64 {
        self.later.line()
    }

    fn next_record(&mut self) -> Result<Option<Record>, TransferError> {
        loop {
            let Some(record) = self.later.next_record()? else {
                // Both files are read to their end lines, so that either being cut short is
                // caught.
                while self.ahead.is_some() {
                    if let Some(Record::Route(earlier)) = &self.ahead {
                        return Err(DeltaError::Vanished(earlier.route.to_string()).into());
                    }
                    self.advance_earlier()?;
                }
                return Ok(None);
            };
            let changed = match record {
                Record::Route(route) => self.route(route)?.map(Record::Route),
                Record::Key(key) => self.key(key)?.map(Record::Key),
            };
            if changed.is_some() {
                return Ok(changed);
            }
        }
    }
}
