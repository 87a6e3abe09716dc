//! `GET /top-routes`: the routes with the most transactions on a day or in a month, from the
//! rankings kept in memory between passes over the store (see `crate::rankings`).

use std::{sync::Arc, time::UNIX_EPOCH};

use poem_openapi::{Object, OpenApi, param::Query, types::Example};

use super::{
    ApiTags, auth::Caller, error::ErrorCode, json::JsonBody as Json, transactions::TransactionCount,
};
use crate::{
    calendar::{Day, Month, Period},
    rankings::{MAX_RANKED, RankedPeriod, Ranking, RankingKey, Rankings},
    route::{AIRLINE_RULE, Airline},
};

/// The path of the rankings, as the route table spells it.
pub const PATH: &str = "/top-routes";
/// Routes in a ranking when `limit` is not given.
const DEFAULT_RANKED: u32 = 10;

/// The leading routes of one day or one month.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
#[oai(example)]
pub struct TopRoutes {
    /// `day` or `month`.
    pub period: String,
    /// The day (`YYYY-MM-DD`) or month (`YYYY-MM`) ranked, UTC.
    pub date: String,
    /// When the store was read for this ranking (RFC 3339, UTC): rankings are rebuilt at most
    /// once per `--rankings-refresh` (60 s by default), so a transaction recorded since then
    /// may not show yet.
    pub as_of: String,
    /// Most transactions first, ties by route; routes with none in the period are left out.
    pub routes: Vec<TransactionCount>,
}

impl Example for TopRoutes {
    fn example() -> Self {
        Self {
            period: "day".into(),
            date: "2026-12-06".into(),
            as_of: "2026-12-06T10:15:00Z".into(),
            routes: vec![
                TransactionCount {
                    route: "AR1133".into(),
                    transactions: 42,
                },
                TransactionCount {
                    route: "LA0001".into(),
                    transactions: 17,
                },
            ],
        }
    }
}

read_response!(
    TopRoutesResponse,
    TopRoutes,
    "The period's leading routes. `Cache-Control: max-age` says how long until the next \
     ranking may be built.",
    "A parameter that cannot be read (`invalid_query`): both `day` and `month`, a malformed \
     date, a `limit` outside 1 to 100, a malformed `airline`; or a period that is not kept \
     (`invalid_date_range`: days are kept for 62 days, months for 24, up to today).",
    "top_routes_bad_request"
);

fn top_routes_bad_request(_: poem::Error) -> TopRoutesResponse {
    TopRoutesResponse::bad(ErrorCode::InvalidQuery, query_rule())
}

fn query_rule() -> String {
    format!(
        "give day=YYYY-MM-DD or month=YYYY-MM (not both; neither: today), limit from 1 to \
         {MAX_RANKED} and optionally airline, e.g. /top-routes?month=2026-12&limit=5&airline=AR"
    )
}

/// Whether `period` is kept, when today is `today`.
fn kept<P: Period>(period: P, current: P) -> Result<(), String> {
    let first = current.first_kept();
    if period > current || period < first {
        return Err(format!(
            "{period} is not kept; {first} to {current} (UTC) can be ranked"
        ));
    }
    Ok(())
}

pub struct RankingsApi {
    rankings: Arc<Rankings>,
}

impl RankingsApi {
    pub fn new(rankings: Arc<Rankings>) -> Self {
        Self { rankings }
    }
}

/// `epoch` seconds as RFC 3339.
pub fn rfc3339(epoch: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_secs(epoch))
        .to_string()
}

#[OpenApi(tag = "ApiTags::Transactions")]
impl RankingsApi {
    /// Rank routes by their transactions on a day or in a month.
    ///
    /// The `limit` routes (default 10, at most 100) with the most transactions on `day`
    /// (`YYYY-MM-DD`) or in `month` (`YYYY-MM`), UTC; neither: today. Ties are ordered by
    /// route. With `airline`, that airline's routes only. Rankings are built by one pass over
    /// the whole store and served from memory for `--rankings-refresh` (60 s by default):
    /// `as_of` says when the store was read.
    #[oai(path = "/top-routes", method = "get", operation_id = "getTopRoutes")]
    async fn top_routes(
        &self,
        _caller: Caller,
        /// A UTC day, `YYYY-MM-DD`, within the last 62 days.
        day: Query<Option<String>>,
        /// A UTC month, `YYYY-MM`, within the last 24 months.
        month: Query<Option<String>>,
        /// How many routes, 1 to 100 (default 10).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// An airline code (2 letters or digits, or 3 letters), e.g. `AR`: its routes only.
        airline: Query<Option<String>>,
    ) -> TopRoutesResponse {
        let today = self.rankings.today();
        let period = match (day.0.as_deref(), month.0.as_deref()) {
            (Some(_), Some(_)) => {
                return TopRoutesResponse::bad(ErrorCode::InvalidQuery, query_rule());
            }
            (Some(text), None) => match Day::parse(text) {
                Ok(day) => kept(day, today).map(|()| RankedPeriod::Day(day)),
                Err(err) => {
                    return TopRoutesResponse::bad(ErrorCode::InvalidQuery, format!("day: {err}"));
                }
            },
            (None, Some(text)) => match Month::parse(text) {
                Ok(month) => kept(month, today.month()).map(|()| RankedPeriod::Month(month)),
                Err(err) => {
                    return TopRoutesResponse::bad(
                        ErrorCode::InvalidQuery,
                        format!("month: {err}"),
                    );
                }
            },
            (None, None) => Ok(RankedPeriod::Day(today)),
        };
        let period = match period {
            Ok(period) => period,
            Err(message) => return TopRoutesResponse::bad(ErrorCode::InvalidDateRange, message),
        };
        let airline = match airline.0.as_deref().map(Airline::parse) {
            None => None,
            Some(Some(code)) => Some(code),
            Some(None) => {
                return TopRoutesResponse::bad(
                    ErrorCode::InvalidQuery,
                    format!("airline: {AIRLINE_RULE}"),
                );
            }
        };
        let limit = limit.0.unwrap_or(DEFAULT_RANKED) as usize;
        match self
            .rankings
            .top(RankingKey { period, airline }, limit)
            .await
        {
            Ok(ranking) => TopRoutesResponse::Ok(Json(body(period, &ranking))),
            Err(err) => TopRoutesResponse::failed(err),
        }
    }
}

fn body(period: RankedPeriod, ranking: &Ranking) -> TopRoutes {
    let (kind, date) = match period {
        RankedPeriod::Day(day) => ("day", day.to_string()),
        RankedPeriod::Month(month) => ("month", month.to_string()),
    };
    TopRoutes {
        period: kind.into(),
        date,
        as_of: rfc3339(ranking.as_of),
        routes: ranking
            .routes
            .iter()
            .map(|(route, transactions)| TransactionCount {
                route: route.to_string(),
                transactions: *transactions,
            })
            .collect(),
    }
}
