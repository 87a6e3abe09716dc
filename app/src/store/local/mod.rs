//! What the two local stores (`embedded`, `memory`) share, so that a rule of counting is written
//! once: the rows a route and a key are kept in ([`rows`]), the commit rules and upkeep applied
//! to any tables holding them ([`rules`]), a batch as those rules take it ([`record`]), and the
//! in-memory layers of writes over other tables ([`memtable`]: the embedded store's memtables,
//! and each local commit's scratch writes, applied only once the whole batch fits), what a
//! snapshot reads out of those tables and writes into them ([`snapshot`]), and pages of routes
//! in route order ([`catalog`]).

pub(super) mod catalog;
pub(super) mod memtable;
pub(super) mod record;
pub(super) mod rows;
pub(super) mod rules;
pub(super) mod snapshot;
