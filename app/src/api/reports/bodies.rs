//! The bodies the reads answer with, each with the example the OpenAPI document shows.

use poem_openapi::{Object, types::Example};

use crate::api::transactions::TransactionCount;

/// One day's count.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct DayCount {
    /// The UTC day, `YYYY-MM-DD`.
    pub date: String,
    /// Transactions recorded on the route that day.
    pub transactions: u64,
}

/// A route's counts per day, oldest first, every day of the range listed.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
#[oai(example)]
pub struct DailyCounts {
    /// The route in canonical form.
    pub route: String,
    pub days: Vec<DayCount>,
}

impl Example for DailyCounts {
    fn example() -> Self {
        Self {
            route: "AR1133".into(),
            days: vec![
                DayCount {
                    date: "2026-11-20".into(),
                    transactions: 0,
                },
                DayCount {
                    date: "2026-11-21".into(),
                    transactions: 42,
                },
            ],
        }
    }
}

/// One month's count.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct MonthCount {
    /// The UTC month, `YYYY-MM`.
    pub month: String,
    /// Transactions recorded on the route that month.
    pub transactions: u64,
}

/// A route's counts per month, oldest first, every month of the range listed.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
#[oai(example)]
pub struct MonthlyCounts {
    /// The route in canonical form.
    pub route: String,
    pub months: Vec<MonthCount>,
}

impl Example for MonthlyCounts {
    fn example() -> Self {
        Self {
            route: "AR1133".into(),
            months: vec![
                MonthCount {
                    month: "2026-10".into(),
                    transactions: 870,
                },
                MonthCount {
                    month: "2026-11".into(),
                    transactions: 913,
                },
            ],
        }
    }
}

/// Several routes' counts, in the order asked, each route once.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
#[oai(example)]
pub struct RouteCounts {
    pub routes: Vec<TransactionCount>,
    /// Listing only: where the next page starts (pass it as `cursor`); absent on the last
    /// page, and with `route` parameters.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub next_cursor: Option<String>,
}

impl Example for RouteCounts {
    fn example() -> Self {
        Self {
            routes: vec![
                TransactionCount {
                    route: "AR1133".into(),
                    transactions: 5,
                },
                TransactionCount {
                    route: "LA0001".into(),
                    transactions: 0,
                },
            ],
            next_cursor: None,
        }
    }
}
