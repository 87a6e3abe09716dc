//! `/transactions/{route}`: record a transaction, read a count.

use std::sync::Arc;

use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, types::Example};

use super::{
    ApiTags,
    error::{ErrorBody, RETRY_AFTER_SECONDS},
    json::JsonBody as Json,
};
use crate::{
    ledger::{Ledger, LedgerError},
    route::Route,
    store::StoreError,
};

/// A route's count of confirmed booking transactions.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
#[oai(example)]
pub struct TransactionCount {
    /// The route in canonical form (upper case, flight number padded to 4 digits).
    pub route: String,
    /// Number of transactions recorded on the route; for a POST, including this one.
    pub transactions: u64,
}

impl Example for TransactionCount {
    fn example() -> Self {
        Self {
            route: "AR1133".into(),
            transactions: 6,
        }
    }
}

#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum CountResponse {
    /// The route's count.
    #[oai(status = 200)]
    Ok(Json<TransactionCount>),
    /// The route is not a valid flight designator (`invalid_route`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The request body is larger than the service accepts (`payload_too_large`); no operation
    /// takes a body. Produced before the operation runs.
    #[oai(status = 413)]
    #[allow(dead_code)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Unexpected failure (`internal`); nothing about it is exposed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The store cannot commit or answer right now (`store_unavailable`); nothing was recorded
    /// unless a later read shows it. Retry after the given number of seconds.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u32,
    ),
}

/// Turns a path-parameter parse failure into the documented `400`.
fn bad_request(err: poem::Error) -> CountResponse {
    use poem_openapi::error::{ParseParamError, ParsePathError};
    let reason = if let Some(path) = err.downcast_ref::<ParsePathError>() {
        path.reason.clone()
    } else if let Some(param) = err.downcast_ref::<ParseParamError>() {
        param.reason.clone()
    } else {
        err.to_string()
    };
    // poem-openapi prefixes the type name; the route's own reason is what helps the caller.
    let message = format!(
        "invalid route: {}",
        reason.trim_start_matches("failed to parse \"Route\": ")
    );
    CountResponse::BadRequest(Json(ErrorBody::new("invalid_route", message)))
}

impl CountResponse {
    fn counted(route: Route, transactions: u64) -> Self {
        CountResponse::Ok(Json(TransactionCount {
            route: route.to_string(),
            transactions,
        }))
    }

    fn failed(route: Route, err: LedgerError) -> Self {
        match err {
            LedgerError::Store(StoreError::Overflow(_)) => {
                tracing::error!(%route, "count overflow");
                CountResponse::Internal(Json(ErrorBody::new(
                    "internal",
                    "internal error; it has been logged",
                )))
            }
            LedgerError::Store(StoreError::Unavailable(_)) | LedgerError::TimedOut(_) => {
                CountResponse::Unavailable(
                    Json(ErrorBody::new(
                        "store_unavailable",
                        "the count store cannot commit right now; retry after the Retry-After delay",
                    )),
                    RETRY_AFTER_SECONDS,
                )
            }
            LedgerError::ShuttingDown => CountResponse::Unavailable(
                Json(ErrorBody::new(
                    "shutting_down",
                    "this instance is shutting down; retry, another instance will answer",
                )),
                RETRY_AFTER_SECONDS,
            ),
        }
    }
}

pub struct TransactionsApi {
    ledger: Arc<Ledger>,
}

impl TransactionsApi {
    pub fn new(ledger: Arc<Ledger>) -> Self {
        Self { ledger }
    }
}

#[OpenApi(tag = "ApiTags::Transactions")]
impl TransactionsApi {
    /// Record one confirmed booking transaction on a route.
    ///
    /// Call once per confirmed booking transaction, however many seats it holds. Answers after
    /// the transaction is durably stored, with the route's count including it. Concurrent calls
    /// each get a distinct count, as if applied one after another.
    #[oai(
        path = "/transactions/:route",
        method = "post",
        operation_id = "recordTransaction"
    )]
    async fn record(
        &self,
        /// Flight route, e.g. `AR1133` (any case; `ar1` means `AR0001`).
        #[oai(name = "route")]
        route: Path<Route>,
    ) -> CountResponse {
        let route = route.0;
        match self.ledger.record(route).await {
            Ok(count) => CountResponse::counted(route, count),
            Err(err) => CountResponse::failed(route, err),
        }
    }

    /// Read a route's count of transactions.
    ///
    /// A route never seen has `0`. Reflects every transaction acknowledged before the read.
    #[oai(
        path = "/transactions/:route",
        method = "get",
        operation_id = "getTransactions"
    )]
    async fn get(
        &self,
        /// Flight route, e.g. `AR1133` (any case; `ar1` means `AR0001`).
        #[oai(name = "route")]
        route: Path<Route>,
    ) -> CountResponse {
        let route = route.0;
        match self.ledger.count(route).await {
            Ok(count) => CountResponse::counted(route, count),
            Err(err) => CountResponse::failed(route, err),
        }
    }
}
