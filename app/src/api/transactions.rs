//! `/transactions/{route}`: record a transaction, read a count.

use std::sync::Arc;

use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, types::Example};

use super::{
    ApiTags,
    auth::Caller,
    error::{ErrorBody, ErrorCode, RETRY_AFTER_SECONDS},
    json::JsonBody as Json,
    limits,
    parameter::IdempotencyKeyHeader,
};
use crate::{
    idempotency::KeyError,
    ledger::{Ledger, LedgerError},
    limits::{ClientLimits, KeyAdmission},
    route::Route,
    store::StoreError,
    telemetry::metrics as m,
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

read_response!(
    CountResponse,
    TransactionCount,
    "The route's count.",
    "The route is not a valid flight designator (`invalid_route`).",
    "bad_request"
);

/// The answer to a POST: a count (maybe replayed), or why not.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "record_bad_request")]
pub enum RecordResponse {
    /// The transaction is recorded; the body is the route's count including it. With an
    /// `Idempotency-Key` already used on this route within the retention window, nothing is
    /// recorded and the body is the first POST's answer, marked by `Idempotent-Replayed: true`.
    #[oai(status = 200)]
    Ok(
        Json<TransactionCount>,
        /// `true` when the answer is the stored outcome of an earlier POST with the same
        /// `Idempotency-Key` (nothing was recorded this time); absent otherwise.
        #[oai(header = "Idempotent-Replayed")]
        Option<bool>,
    ),
    /// The route is not a valid flight designator (`invalid_route`), or the `Idempotency-Key`
    /// is not 1 to 255 visible ASCII characters (`invalid_idempotency_key`).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No API key, a malformed `Authorization` header, or a key that is not valid
    /// (`unauthorized`); only when the service runs with API keys. Nothing was recorded.
    /// Produced before the operation runs.
    #[oai(status = 401)]
    #[allow(dead_code)]
    Unauthorized(
        Json<ErrorBody>,
        /// Always `Bearer`.
        #[oai(header = "WWW-Authenticate")]
        String,
    ),
    /// The API key has the `read` scope; recording needs a `write` key (`forbidden`).
    /// Nothing was recorded. Produced before the operation runs.
    #[oai(status = 403)]
    #[allow(dead_code)]
    Forbidden(Json<ErrorBody>),
    /// The request body is larger than the service accepts (`payload_too_large`); no operation
    /// takes a body. Produced before the operation runs.
    #[oai(status = 413)]
    #[allow(dead_code)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The `Idempotency-Key` was first used with another route (`idempotency_key_reused`);
    /// nothing was recorded. A key identifies one transaction on one route.
    #[oai(status = 422)]
    KeyReused(Json<ErrorBody>),
    /// Too many requests from this client to this instance (`rate_limited`, with
    /// `--client-rate-limit`; produced before the operation runs), or a new `Idempotency-Key`
    /// past the client's cap of keys created within the retention window
    /// (`idempotency_key_quota`, with `--client-max-idempotency-keys`; a replay of a key already
    /// used is still answered). Nothing was recorded. Retry after the given number of seconds.
    #[oai(status = 429)]
    TooManyRequests(
        Json<ErrorBody>,
        /// Seconds to wait before retrying (at least 1).
        #[oai(header = "Retry-After")]
        Option<u32>,
        /// The limit, as draft-ietf-httpapi-ratelimit-headers has it:
        /// `"client";q=<tokens>;w=<seconds>` (a bucket of `q` requests that fills in `w`
        /// seconds) or `"idempotency-keys";q=<keys>;w=<retention seconds>`.
        #[oai(header = "RateLimit-Policy")]
        String,
        /// What is left: `"<policy>";r=0;t=<seconds>`, none until `t` seconds from now.
        #[oai(header = "RateLimit")]
        Option<String>,
    ),
    /// Unexpected failure (`internal`); nothing about it is exposed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// The store cannot commit or answer right now (`store_unavailable`); nothing was recorded
    /// unless a later read shows it. Retry after the given number of seconds (with the same
    /// `Idempotency-Key`, a retry is never counted twice).
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u32,
    ),
}

pub(super) fn invalid_route(err: &poem::Error) -> ErrorBody {
    let reason = match err.downcast_ref::<poem_openapi::error::ParsePathError>() {
        Some(path) => path.reason.clone(),
        None => err.to_string(),
    };
    // poem-openapi prefixes the type name; the route's own reason is what helps the caller.
    let message = format!(
        "invalid route: {}",
        reason.trim_start_matches("failed to parse \"Route\": ")
    );
    ErrorBody::new(ErrorCode::InvalidRoute, message)
}

fn invalid_key(err: &KeyError) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidIdempotencyKey, err.to_string())
}

/// Turns a path-parameter parse failure into the documented `400`.
fn bad_request(err: poem::Error) -> CountResponse {
    CountResponse::BadRequest(Json(invalid_route(&err)))
}

/// Turns a path-parameter parse failure of a POST into the documented `400`. (The
/// `Idempotency-Key` never fails extraction: the operation answers for it.)
fn record_bad_request(err: poem::Error) -> RecordResponse {
    RecordResponse::BadRequest(Json(invalid_route(&err)))
}

/// How a transaction that could not be recorded (or a count that could not be read) is
/// answered; every operation shares it.
pub(super) enum Failure {
    Internal(ErrorBody),
    Unavailable(ErrorBody),
}

impl Failure {
    pub(super) fn from_ledger(err: LedgerError) -> Self {
        match err {
            // Only a store altered by hand can hold such a count; the other routes go on.
            LedgerError::Store(StoreError::Overflow(overflowing)) => {
                tracing::error!(route = %overflowing, "count overflow");
                Failure::Internal(ErrorBody::new(
                    ErrorCode::CountOverflow,
                    format!(
                        "the count of route {overflowing} is at its largest value and cannot \
                         grow; nothing was recorded, and other routes are not affected"
                    ),
                ))
            }
            LedgerError::Store(StoreError::Unavailable { .. } | StoreError::Throttled { .. })
            | LedgerError::TimedOut(_) => Failure::Unavailable(ErrorBody::new(
                ErrorCode::StoreUnavailable,
                "the count store cannot commit right now; retry after the Retry-After delay",
            )),
            LedgerError::ShuttingDown => Failure::Unavailable(ErrorBody::new(
                ErrorCode::ShuttingDown,
                "this instance is shutting down; retry, another instance will answer",
            )),
        }
    }
}

impl RecordResponse {
    fn failed(err: LedgerError) -> Self {
        match Failure::from_ledger(err) {
            Failure::Internal(body) => RecordResponse::Internal(Json(body)),
            Failure::Unavailable(body) => {
                RecordResponse::Unavailable(Json(body), RETRY_AFTER_SECONDS)
            }
        }
    }
}

impl CountResponse {
    fn counted(route: Route, transactions: u64) -> Self {
        CountResponse::Ok(Json(TransactionCount {
            route: route.to_string(),
            transactions,
        }))
    }
}

pub struct TransactionsApi {
    ledger: Arc<Ledger>,
    limits: Arc<ClientLimits>,
}

impl TransactionsApi {
    pub fn new(ledger: Arc<Ledger>, limits: Arc<ClientLimits>) -> Self {
        Self { ledger, limits }
    }
}

#[OpenApi(tag = "ApiTags::Transactions")]
impl TransactionsApi {
    /// Record one confirmed booking transaction on a route.
    ///
    /// Call once per confirmed booking transaction, however many seats it holds. Answers after
    /// the transaction is durably stored, with the route's count including it. Concurrent calls
    /// each get a distinct count, as if applied one after another.
    ///
    /// Send an `Idempotency-Key` to make retries safe: each key is counted once, however often
    /// it is sent and whichever instance answers; repeats within the retention window (24 h by
    /// default) get the first answer again, with `Idempotent-Replayed: true`.
    #[oai(
        path = "/transactions/:route",
        method = "post",
        operation_id = "recordTransaction"
    )]
    async fn record(
        &self,
        caller: Caller,
        /// Flight route, e.g. `AR1133` (any case; `ar1` means `AR0001`).
        #[oai(name = "route")]
        route: Path<Route>,
        /// A key of the client's choosing (a UUID, say) that identifies this transaction: the
        /// first POST with it is counted, later ones with the same key and route are answered
        /// the first POST's count and count nothing. 1 to 255 visible ASCII characters, taken
        /// verbatim. Reusing a key on another route is refused with `422`.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: IdempotencyKeyHeader,
    ) -> RecordResponse {
        let route = route.0;
        let key = match idempotency_key.0 {
            // Each client has its own keys: the same key from two clients is two transactions.
            Ok(Some(key)) => match caller.client() {
                Some(client) => key.scoped(client),
                None => key,
            },
            Ok(None) => {
                return match self.ledger.record(route).await {
                    Ok(count) => RecordResponse::Ok(
                        Json(TransactionCount {
                            route: route.to_string(),
                            transactions: count,
                        }),
                        None,
                    ),
                    Err(err) => RecordResponse::failed(err),
                };
            }
            Err(err) => return RecordResponse::BadRequest(Json(invalid_key(&err))),
        };
        // Only a new key counts against the client's cap; the store says which it was.
        let reservation = match self
            .limits
            .keys
            .as_ref()
            .map(|quota| (quota, quota.admit(&caller.client().cloned(), &key)))
        {
            None | Some((_, KeyAdmission::Known)) => None,
            Some((_, KeyAdmission::Admitted(reservation))) => Some(reservation),
            Some((quota, KeyAdmission::Refused { retry_after })) => {
                let refused = limits::key_quota_refused(quota, &caller, retry_after);
                return RecordResponse::TooManyRequests(
                    Json(refused.body),
                    refused.retry_after,
                    refused.policy,
                    refused.state,
                );
            }
        };
        let recorded = self.ledger.record_keyed(route, key).await;
        if let (Ok(outcome), Some(reservation)) = (&recorded, reservation)
            && !outcome.replayed
        {
            reservation.created();
        }
        match recorded {
            Ok(outcome) if outcome.route != route => {
                m::idempotency_conflict();
                RecordResponse::KeyReused(Json(ErrorBody::new(
                    ErrorCode::IdempotencyKeyReused,
                    format!(
                        "this Idempotency-Key was first used for route {}, not {route}; a key \
                         identifies one transaction on one route: use a new key for a new \
                         transaction",
                        outcome.route
                    ),
                )))
            }
            Ok(outcome) => {
                if outcome.replayed {
                    m::idempotent_replay();
                }
                RecordResponse::Ok(
                    Json(TransactionCount {
                        route: route.to_string(),
                        transactions: outcome.count,
                    }),
                    outcome.replayed.then_some(true),
                )
            }
            Err(err) => RecordResponse::failed(err),
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
        _caller: Caller,
        /// Flight route, e.g. `AR1133` (any case; `ar1` means `AR0001`).
        #[oai(name = "route")]
        route: Path<Route>,
    ) -> CountResponse {
        let route = route.0;
        match self.ledger.count(route).await {
            Ok(count) => CountResponse::counted(route, count),
            Err(err) => CountResponse::failed(err),
        }
    }
}
