//! Which routes exist and which lead: the list of routes in route order, and the routes with
//! the most transactions on a day or in a month.
//!
//! A ranking needs every route's count for the period, so it is built by one pass over the
//! whole store (its snapshot export: one point in time on the local stores, one consistent
//! `Scan` on DynamoDB) and kept in memory for `--rankings-refresh`. Readers in between are
//! answered from memory with the time the pass was taken (`as_of`); a reader that finds it
//! stale starts the next pass and every reader meanwhile waits for that one pass, so a store
//! sees at most one pass per refresh interval per instance, however many read. A pass ranks
//! every period asked for in the last [`WANTED_FOR`] at once, so that a dashboard's few
//! rankings cost one pass between them; a period asked for the first time starts a pass of
//! its own. Nothing is written on the commit path: a POST costs what it did.
//!
//! Listing routes reads the store's own order where it has one (the local stores: one ranged
//! read a page). DynamoDB spreads routes by hash, so there the names come from the last pass
//! (routes created since show up after the next one) and each page's totals from a consistent
//! read of its routes.
//!
//! Files: [`top`] (the bounded ranking a pass keeps per period), [`pass`] (one pass).

mod pass;
mod top;

use std::{collections::HashMap, sync::Arc, time::Duration};

use tokio::{sync::Mutex as AsyncMutex, time::Instant};

use crate::{
    calendar::{Day, Month},
    ledger::{Ledger, LedgerError},
    route::{Airline, Route},
};

/// Most routes in one ranking.
pub const MAX_RANKED: usize = 100;
/// How long a period stays among those a pass ranks after it was last asked for.
pub const WANTED_FOR: Duration = Duration::from_secs(600);
/// Most periods (with their airline filters) one pass ranks.
const MAX_WANTED: usize = 32;

/// The period a ranking is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RankedPeriod {
    Day(Day),
    Month(Month),
}

/// What one ranking ranks: a period, and an airline's routes only, if given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RankingKey {
    pub period: RankedPeriod,
    pub airline: Option<Airline>,
}

/// The leading routes of a period, as of a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranking {
    /// Most transactions first, ties by route; at most [`MAX_RANKED`].
    pub routes: Vec<(Route, u64)>,
    /// When the pass read the store, in seconds since the Unix epoch.
    pub as_of: u64,
    /// How long until the next pass may be taken.
    pub fresh_for: Duration,
}

/// What the last pass found.
#[derive(Default)]
struct Cache {
    /// When the pass began (`None`: never), and its time by the service's clock.
    taken: Option<(Instant, u64)>,
    rankings: HashMap<RankingKey, Arc<Vec<(Route, u64)>>>,
    /// Every route with a count, in route order: kept only for a store that cannot list
    /// routes in order itself.
    names: Option<Arc<Vec<Route>>>,
    /// Keys asked for, and when last.
    wanted: HashMap<RankingKey, Instant>,
}

pub struct Rankings {
    ledger: Arc<Ledger>,
    refresh: Duration,
    cache: std::sync::Mutex<Cache>,
    /// Held while a pass runs: readers that need one wait here, then find it done.
    passing: AsyncMutex<()>,
}

impl Rankings {
    pub fn new(ledger: Arc<Ledger>, refresh: Duration) -> Self {
        Self {
            ledger,
            refresh,
            cache: std::sync::Mutex::new(Cache::default()),
            passing: AsyncMutex::new(()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The ranking for `key` from the last pass, if that pass ranked it and is fresh.
    fn cached(&self, key: &RankingKey) -> Option<Ranking> {
        let cache = self.cache();
        let (began, as_of) = cache.taken?;
        let age = began.elapsed();
        if age >= self.refresh {
            return None;
        }
        let routes = cache.rankings.get(key)?;
        Some(Ranking {
            routes: routes.as_ref().clone(),
            as_of,
            fresh_for: self.refresh - age,
        })
    }

    /// Today, UTC, by the service's clock: the day a ranking defaults to.
    pub fn today(&self) -> Day {
        self.ledger.today()
    }

    /// How long the rankings of the last pass stay fresh (zero: the next reader takes a pass).
    pub fn fresh_for(&self) -> Duration {
        self.cache().taken.map_or(Duration::ZERO, |(began, _)| {
            self.refresh.saturating_sub(began.elapsed())
        })
    }

    /// The `limit` routes (at most [`MAX_RANKED`]) with the most transactions in `key`'s
    /// period, ties by route.
    pub async fn top(&self, key: RankingKey, limit: usize) -> Result<Ranking, LedgerError> {
        self.cache().wanted.insert(key, Instant::now());
        let mut ranking = match self.cached(&key) {
            Some(ranking) => ranking,
            None => {
                let _passing = self.passing.lock().await;
                // The pass this reader waited for may have ranked it.
                match self.cached(&key) {
                    Some(ranking) => ranking,
                    None => {
                        self.run_pass().await?;
                        self.cached(&key).unwrap_or(Ranking {
                            routes: Vec::new(),
                            as_of: self.ledger.epoch_seconds(),
                            fresh_for: Duration::ZERO,
                        })
                    }
                }
            }
        };
        ranking.routes.truncate(limit.min(MAX_RANKED));
        Ok(ranking)
    }

    /// Up to `limit` routes after `after` in route order (only `airline`'s, if given), with
    /// their totals now.
    pub async fn list(
        &self,
        after: Option<Route>,
        airline: Option<Airline>,
        limit: usize,
    ) -> Result<Vec<(Route, u64)>, LedgerError> {
        if let Some(listed) = self.ledger.list_routes(after, airline, limit).await? {
            return Ok(listed);
        }
        let names = self.names().await?;
        let start = after.map_or(0, |after| names.partition_point(|name| *name <= after));
        let start = match airline {
            Some(code) => start.max(names.partition_point(|name| name.as_str() < code.as_str())),
            None => start,
        };
        let page: Vec<Route> = names[start..]
            .iter()
            .take_while(|name| airline.is_none_or(|code| code.flies(name)))
            .take(limit)
            .copied()
            .collect();
        let totals = self.ledger.counts(&page).await?;
        Ok(page.into_iter().zip(totals).collect())
    }

    /// Every route's name from the last pass, taking one if it is stale.
    async fn names(&self) -> Result<Arc<Vec<Route>>, LedgerError> {
        let fresh = |cache: &Cache| {
            let taken_recently = cache
                .taken
                .is_some_and(|(began, _)| began.elapsed() < self.refresh);
            cache.names.clone().filter(|_| taken_recently)
        };
        if let Some(names) = fresh(&self.cache()) {
            return Ok(names);
        }
        let _passing = self.passing.lock().await;
        if let Some(names) = fresh(&self.cache()) {
            return Ok(names);
        }
        self.run_pass().await?;
        Ok(self.cache().names.clone().unwrap_or_default())
    }

    /// One pass over the store, ranking every key wanted lately (the caller holds `passing`).
    async fn run_pass(&self) -> Result<(), LedgerError> {
        let began = Instant::now();
        let keys: Vec<RankingKey> = {
            let mut cache = self.cache();
            cache.wanted.retain(|_, asked| asked.elapsed() < WANTED_FOR);
            let mut keys: Vec<(RankingKey, Instant)> =
                cache.wanted.iter().map(|(k, at)| (*k, *at)).collect();
            // The most recently asked first, when there are more than a pass ranks.
            keys.sort_unstable_by_key(|(_, asked)| std::cmp::Reverse(*asked));
            keys.into_iter().take(MAX_WANTED).map(|(k, _)| k).collect()
        };
        let result = pass::run(&self.ledger, &keys, self.ledger.store_shared()).await?;
        let mut cache = self.cache();
        cache.taken = Some((began, result.as_of));
        cache.rankings = result
            .rankings
            .into_iter()
            .map(|(key, routes)| (key, Arc::new(routes)))
            .collect();
        cache.names = result.names.map(Arc::new);
        metrics::histogram!(crate::telemetry::metrics::RANKING_PASS_SECONDS)
            .record(began.elapsed().as_secs_f64());
        Ok(())
    }
}
