//! What dashboards read besides one lifetime total: a route's counts per UTC day and per UTC
//! month, and many routes' totals in one request.
//!
//! Files: [`bodies`] (what the reads answer), [`range`] (which periods a read covers).

mod bodies;
mod range;

use std::sync::Arc;

use poem_openapi::{
    OpenApi,
    param::{Path, Query},
};

use super::{
    ApiTags,
    auth::Caller,
    cursor,
    error::ErrorCode,
    json::JsonBody as Json,
    transactions::{TransactionCount, invalid_route},
};
use crate::{
    calendar::Period,
    ledger::{Ledger, LedgerError},
    rankings::Rankings,
    route::{AIRLINE_RULE, Airline, Route},
};

/// Most routes in one multi-route read.
pub const MAX_ROUTES_PER_READ: usize = 100;
/// Routes in a page of the list when `limit` is not given, and at most.
const DEFAULT_LISTED: usize = 100;
const MAX_LISTED: usize = 1000;
/// The path of the multi-route read, as the route table spells it.
pub const MANY_ROUTES_PATH: &str = "/transactions";
use bodies::{DailyCounts, DayCount, MonthCount, MonthlyCounts, RouteCounts};
use range::{DEFAULT_DAYS, DEFAULT_MONTHS, range};

read_response!(
    DailyResponse,
    DailyCounts,
    "The route's count on each day of the range.",
    "The route is not a flight designator (`invalid_route`), or the dates are not a range \
     that can be read (`invalid_date_range`): malformed, `from` after `to`, `to` after today, \
     or `from` before the first day kept. The message says which days can be read.",
    "daily_bad_request"
);
read_response!(
    MonthlyResponse,
    MonthlyCounts,
    "The route's count in each month of the range.",
    "The route is not a flight designator (`invalid_route`), or the months are not a range \
     that can be read (`invalid_date_range`): malformed, `from` after `to`, `to` after this \
     month, or `from` before the first month kept. The message says which months can be read.",
    "monthly_bad_request"
);
read_response!(
    ManyResponse,
    RouteCounts,
    "Each route's count (with `route`), or a page of routes in route order (without).",
    "More than 100 `route` parameters, `route` with a listing parameter, a `limit` outside 1 \
     to 1000, a malformed `airline`, or a cursor this service did not give (`invalid_query`); \
     a `route` that is not a flight designator (`invalid_route`, naming it).",
    "many_bad_request"
);

fn daily_bad_request(err: poem::Error) -> DailyResponse {
    DailyResponse::BadRequest(Json(invalid_route(&err)))
}

fn monthly_bad_request(err: poem::Error) -> MonthlyResponse {
    MonthlyResponse::BadRequest(Json(invalid_route(&err)))
}

fn many_bad_request(_: poem::Error) -> ManyResponse {
    ManyResponse::bad(ErrorCode::InvalidQuery, query_rule())
}

fn query_rule() -> String {
    format!(
        "give 1 to {MAX_ROUTES_PER_READ} routes as repeated parameters, e.g. \
         /transactions?route=AR1133&route=LA1, or list routes with limit (1 to 1000), airline \
         and cursor, e.g. /transactions?airline=AR&limit=100"
    )
}

/// The routes a multi-route read will read, known before any store is touched: the distinct
/// routes of its `route` parameters, parsed as the operation parses them; for a page of the
/// list, its `limit` in hundreds; 1 for a request the operation refuses without reading (too
/// many routes, one that is not a route).
pub fn routes_read(req: &poem::Request) -> u32 {
    let params: Vec<(String, String)> = req.params().unwrap_or_default();
    let named: Vec<&str> = params
        .iter()
        .filter(|(name, _)| name == "route")
        .map(|(_, value)| value.as_str())
        .collect();
    if named.is_empty() {
        // A page of the list: one token per hundred routes it may hold.
        let limit = params
            .iter()
            .find(|(name, _)| name == "limit")
            .and_then(|(_, value)| value.parse::<usize>().ok())
            .filter(|n| (1..=MAX_LISTED).contains(n))
            .unwrap_or(DEFAULT_LISTED);
        return limit.div_ceil(MAX_ROUTES_PER_READ) as u32;
    }
    if named.len() > MAX_ROUTES_PER_READ {
        return 1;
    }
    let mut routes: Vec<Route> = Vec::with_capacity(named.len());
    for text in named {
        match Route::parse(text) {
            Ok(route) if !routes.contains(&route) => routes.push(route),
            Ok(_) => {}
            Err(_) => return 1,
        }
    }
    routes.len().max(1) as u32
}

/// Why a read of periods has no counts to answer with.
enum PeriodsFailure {
    Range(String),
    Store(LedgerError),
}

pub struct ReportsApi {
    ledger: Arc<Ledger>,
    rankings: Arc<Rankings>,
}

impl ReportsApi {
    pub fn new(ledger: Arc<Ledger>, rankings: Arc<Rankings>) -> Self {
        Self { ledger, rankings }
    }

    /// A route's counts for every period of the range asked, oldest first, by `read`.
    async fn per_period<P: Period, F>(
        &self,
        from: Option<&str>,
        to: Option<&str>,
        default_span: i32,
        read: impl FnOnce(P, P) -> F,
    ) -> Result<Vec<(P, u64)>, PeriodsFailure>
    where
        F: std::future::Future<Output = Result<Vec<u64>, LedgerError>>,
    {
        let current = P::containing(self.ledger.today());
        let (from, to) = range(from, to, default_span, current).map_err(PeriodsFailure::Range)?;
        let counts = read(from, to).await.map_err(PeriodsFailure::Store)?;
        Ok(P::through(from, to).into_iter().zip(counts).collect())
    }
}

#[OpenApi(tag = "ApiTags::Transactions")]
impl ReportsApi {
    /// Read a route's counts per UTC day.
    ///
    /// Every day from `from` to `to` (inclusive, `YYYY-MM-DD`, UTC), oldest first, with `0` for
    /// days without transactions; a route never seen answers all zeros. `to` defaults to today,
    /// `from` to six days before `to`. Days are kept for 62 days: today and the 61 before it.
    /// A transaction counts on the day its commit happened.
    #[oai(
        path = "/transactions/:route/daily",
        method = "get",
        operation_id = "getDailyTransactions"
    )]
    async fn daily(
        &self,
        _caller: Caller,
        /// Flight route, e.g. `AR1133` (any case).
        #[oai(name = "route")]
        route: Path<Route>,
        /// First day, `YYYY-MM-DD` (UTC).
        from: Query<Option<String>>,
        /// Last day, `YYYY-MM-DD` (UTC).
        to: Query<Option<String>>,
    ) -> DailyResponse {
        let route = route.0;
        let read = |from, to| self.ledger.daily(route, from, to);
        match self
            .per_period(from.0.as_deref(), to.0.as_deref(), DEFAULT_DAYS, read)
            .await
        {
            Ok(days) => DailyResponse::Ok(Json(DailyCounts {
                route: route.to_string(),
                days: days
                    .into_iter()
                    .map(|(day, transactions)| DayCount {
                        date: day.to_string(),
                        transactions,
                    })
                    .collect(),
            })),
            Err(PeriodsFailure::Range(message)) => {
                DailyResponse::bad(ErrorCode::InvalidDateRange, message)
            }
            Err(PeriodsFailure::Store(err)) => DailyResponse::failed(err),
        }
    }

    /// Read a route's counts per UTC month.
    ///
    /// Every month from `from` to `to` (inclusive, `YYYY-MM`, UTC), oldest first, with `0` for
    /// months without transactions. `to` defaults to this month, `from` to eleven months before
    /// `to`. Months are kept for 24 months: this month and the 23 before it.
    #[oai(
        path = "/transactions/:route/monthly",
        method = "get",
        operation_id = "getMonthlyTransactions"
    )]
    async fn monthly(
        &self,
        _caller: Caller,
        /// Flight route, e.g. `AR1133` (any case).
        #[oai(name = "route")]
        route: Path<Route>,
        /// First month, `YYYY-MM` (UTC).
        from: Query<Option<String>>,
        /// Last month, `YYYY-MM` (UTC).
        to: Query<Option<String>>,
    ) -> MonthlyResponse {
        let route = route.0;
        let read = |from, to| self.ledger.monthly(route, from, to);
        match self
            .per_period(from.0.as_deref(), to.0.as_deref(), DEFAULT_MONTHS, read)
            .await
        {
            Ok(months) => MonthlyResponse::Ok(Json(MonthlyCounts {
                route: route.to_string(),
                months: months
                    .into_iter()
                    .map(|(month, transactions)| MonthCount {
                        month: month.to_string(),
                        transactions,
                    })
                    .collect(),
            })),
            Err(PeriodsFailure::Range(message)) => {
                MonthlyResponse::bad(ErrorCode::InvalidDateRange, message)
            }
            Err(PeriodsFailure::Store(err)) => MonthlyResponse::failed(err),
        }
    }

    /// Read several routes' counts at once, or list routes.
    ///
    /// With `route` parameters (1 to 100, `?route=AR1133&route=la1`): the answer lists each
    /// route once, in canonical form, in the order first asked, read consistently, as a GET of
    /// each. Without: every route with a count, in route order, a page at a time (`limit`, 1
    /// to 1000, default 100), that airline's only with `airline`; the next page starts at the
    /// answer's `next_cursor`, absent on the last page. Paging while routes are created never
    /// repeats or skips a route that existed when paging began; a new one may or may not
    /// appear. On DynamoDB the names come from the last pass over the table (at most
    /// `--rankings-refresh` old) and the totals are read when the page is.
    #[oai(
        path = "/transactions",
        method = "get",
        operation_id = "getManyTransactions"
    )]
    async fn many(
        &self,
        _caller: Caller,
        /// A flight route, e.g. `AR1133`; repeat the parameter for each route.
        #[oai(validator(max_items = 100))]
        route: Query<Vec<String>>,
        /// Listing: an airline code (2 letters or digits, or 3 letters), e.g. `AR`.
        airline: Query<Option<String>>,
        /// Listing: routes in one page, 1 to 1000 (default 100).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        limit: Query<Option<u32>>,
        /// Listing: the `next_cursor` of the previous page, as it was given.
        cursor: Query<Option<String>>,
    ) -> ManyResponse {
        if route.0.is_empty() {
            return self.list(airline.0, limit.0, cursor.0).await;
        }
        if airline.0.is_some() || limit.0.is_some() || cursor.0.is_some() {
            return ManyResponse::bad(ErrorCode::InvalidQuery, query_rule());
        }
        if route.0.len() > MAX_ROUTES_PER_READ {
            return ManyResponse::bad(ErrorCode::InvalidQuery, query_rule());
        }
        let mut routes: Vec<Route> = Vec::with_capacity(route.0.len());
        for text in &route.0 {
            match Route::parse(text) {
                Ok(parsed) if routes.contains(&parsed) => {}
                Ok(parsed) => routes.push(parsed),
                Err(err) => {
                    let shown: String = text.chars().take(32).collect();
                    return ManyResponse::bad(
                        ErrorCode::InvalidRoute,
                        format!("invalid route {shown:?}: {err}"),
                    );
                }
            }
        }
        match self.ledger.counts(&routes).await {
            Ok(counts) => ManyResponse::Ok(Json(RouteCounts {
                routes: routes
                    .iter()
                    .zip(counts)
                    .map(|(route, transactions)| TransactionCount {
                        route: route.to_string(),
                        transactions,
                    })
                    .collect(),
                next_cursor: None,
            })),
            Err(err) => ManyResponse::failed(err),
        }
    }
}

impl ReportsApi {
    /// One page of the list of routes.
    async fn list(
        &self,
        airline: Option<String>,
        limit: Option<u32>,
        cursor: Option<String>,
    ) -> ManyResponse {
        let airline = match airline.as_deref().map(Airline::parse) {
            None => None,
            Some(Some(code)) => Some(code),
            Some(None) => {
                return ManyResponse::bad(
                    ErrorCode::InvalidQuery,
                    format!("airline: {AIRLINE_RULE}"),
                );
            }
        };
        let after = match cursor.as_deref().map(cursor::parse) {
            None => None,
            Some(Some(route)) => Some(route),
            Some(None) => {
                return ManyResponse::bad(
                    ErrorCode::InvalidQuery,
                    "cursor: not a cursor this service gave; pass next_cursor as it came, or \
                     leave it out to start from the first route",
                );
            }
        };
        let limit = limit.map_or(DEFAULT_LISTED, |n| n as usize);
        match self.rankings.list(after, airline, limit).await {
            Ok(page) => {
                let next_cursor = (page.len() == limit)
                    .then(|| page.last().map(|(route, _)| cursor::after(*route)))
                    .flatten();
                ManyResponse::Ok(Json(RouteCounts {
                    routes: page
                        .into_iter()
                        .map(|(route, transactions)| TransactionCount {
                            route: route.to_string(),
                            transactions,
                        })
                        .collect(),
                    next_cursor,
                }))
            }
            Err(err) => ManyResponse::failed(err),
        }
    }
}
