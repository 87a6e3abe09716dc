//! One pass over the whole store: its snapshot export, read as it streams, each route offered
//! to the ranking of every key asked for; on a store that cannot list its routes in order, the
//! names of every route kept too.

use std::collections::HashMap;

use tokio::sync::mpsc;

use super::{MAX_RANKED, RankedPeriod, RankingKey, top::TopRoutes};
use crate::{
    ledger::{Ledger, LedgerError},
    route::Route,
    snapshot::{Record, RouteRecord},
};

/// Records read ahead of the rankings.
const RECORDS_IN_FLIGHT: usize = 1024;

pub struct PassResult {
    /// When the pass read the store, in seconds since the Unix epoch.
    pub as_of: u64,
    pub rankings: HashMap<RankingKey, Vec<(Route, u64)>>,
    /// Every route with a count, in route order, if asked for.
    pub names: Option<Vec<Route>>,
}

/// The count of `record`'s route in `period` (0 when the period is not kept).
fn count_in(record: &RouteRecord, period: RankedPeriod) -> u64 {
    match period {
        RankedPeriod::Day(day) => record
            .days
            .iter()
            .find(|(d, _)| *d == day)
            .map_or(0, |(_, n)| *n),
        RankedPeriod::Month(month) => record
            .months
            .iter()
            .find(|(m, _)| *m == month)
            .map_or(0, |(_, n)| *n),
    }
}

pub async fn run(
    ledger: &Ledger,
    keys: &[RankingKey],
    keep_names: bool,
) -> Result<PassResult, LedgerError> {
    let as_of = ledger.epoch_seconds();
    let (sink, mut records) = mpsc::channel(RECORDS_IN_FLIGHT);
    let reading = ledger.export(as_of, sink);
    let ranking = async {
        let mut tops: Vec<(RankingKey, TopRoutes)> = keys
            .iter()
            .map(|key| (*key, TopRoutes::new(MAX_RANKED)))
            .collect();
        let mut names = keep_names.then(Vec::new);
        let mut every_route_read = false;
        while let Some(record) = records.recv().await {
            // Key records follow every route: nothing more to rank.
            let Record::Route(record) = record else {
                every_route_read = true;
                break;
            };
            for (key, top) in &mut tops {
                if key.airline.is_none_or(|code| code.flies(&record.route)) {
                    top.offer(record.route, count_in(&record, key.period));
                }
            }
            if let Some(names) = &mut names {
                names.push(record.route);
            }
        }
        // Dropping the receiver ends the export without reading its keys.
        drop(records);
        (tops, names, every_route_read)
    };
    let (read, (tops, names, every_route_read)) = tokio::join!(reading, ranking);
    // An export stopped by the dropped receiver may report the closed channel as an error
    // (DynamoDB's does): every route had been read by then.
    if let Err(err) = read
        && !every_route_read
    {
        return Err(err);
    }
    let names = names.map(|mut names| {
        names.sort_unstable();
        names.dedup();
        names
    });
    Ok(PassResult {
        as_of,
        rankings: tops
            .into_iter()
            .map(|(key, top)| (key, top.into_ranking()))
            .collect(),
        names,
    })
}
