//! The one error shape of the service: `{"error": "<stable_code>", "message": "<what to do>"}`.
//!
//! Handlers return it through their `ApiResponse` enums. Everything poem answers on its own
//! (unknown path, wrong method, undecodable path, oversized body, a panic) comes out as plain
//! text; [`into_json_error`] rewrites those into the same shape, so clients parse one format.
//! The connection layer's own answers take their bodies from [`connection_error_body`].

use poem::{
    Request, Response,
    http::{HeaderValue, StatusCode, header},
};
use poem_openapi::Object;

use super::routes::{self, RouteEntry};
use crate::ledger::{LedgerError, Unavailability};

/// Largest request body accepted. No operation takes a body; this only bounds what a client can
/// make the server read.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Seconds a client is asked to wait before retrying after a `503`.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// How a transaction that could not be recorded (or a count that could not be read) is
/// answered: the one conversion from the ledger's errors, for every operation.
pub enum Failure {
    Internal(ErrorBody),
    Unavailable { body: ErrorBody, retry_after: u32 },
}

/// Whole seconds, rounded up, and at least one: what `Retry-After` can say.
fn retry_after_seconds(delay: std::time::Duration) -> u32 {
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    u32::try_from(seconds).unwrap_or(u32::MAX).max(1)
}

impl From<LedgerError> for Failure {
    fn from(err: LedgerError) -> Self {
        let unavailable = |code, message: &str, retry_after| Failure::Unavailable {
            body: ErrorBody::new(code, message),
            retry_after: retry_after_seconds(retry_after),
        };
        match err {
            LedgerError::Full(route) => {
                tracing::error!(%route, "count overflow");
                Failure::Internal(ErrorBody::new(
                    ErrorCode::CountOverflow,
                    format!(
                        "the count of route {route} is at its largest value and cannot grow; \
                         nothing was recorded, and other routes are not affected"
                    ),
                ))
            }
            LedgerError::Unavailable { retry_after, cause } => {
                if let Unavailability::WrongOutcomes { .. } = cause {
                    tracing::error!(error = %cause, "the store broke its contract");
                }
                unavailable(
                    ErrorCode::StoreUnavailable,
                    "the count store cannot commit right now; retry after the Retry-After delay",
                    retry_after,
                )
            }
            LedgerError::Throttled { retry_after, .. } => unavailable(
                ErrorCode::StoreUnavailable,
                "the count store is throttling requests; retry after the Retry-After delay",
                retry_after,
            ),
            LedgerError::ShuttingDown => unavailable(
                ErrorCode::ShuttingDown,
                "this instance is shutting down; retry, another instance will answer",
                crate::ledger::RETRY_AFTER,
            ),
        }
    }
}

/// Every stable error code the service answers, in one place: a new code is a new variant.
/// Serialised (and published in the OpenAPI document) in snake_case, e.g. `invalid_route`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum, serde::Serialize, serde::Deserialize,
)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRoute,
    InvalidDateRange,
    InvalidQuery,
    InvalidIdempotencyKey,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    UriTooLong,
    UnsupportedMediaType,
    IdempotencyKeyReused,
    RateLimited,
    IdempotencyKeyQuota,
    RequestHeaderFieldsTooLarge,
    MalformedRequest,
    HttpVersionNotSupported,
    CountOverflow,
    Internal,
    Unavailable,
    StoreUnavailable,
    ShuttingDown,
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        serde_json::to_value(self).is_ok_and(|code| code == *other)
    }
}

/// An error answer.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// Stable, machine-readable code, e.g. `invalid_route`.
    pub error: ErrorCode,
    /// What was wrong and how to fix it.
    pub message: String,
}

impl ErrorBody {
    pub fn new(error: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
        }
    }
}

/// An error answer with `body`.
pub fn error_response(status: StatusCode, body: &ErrorBody) -> Response {
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::to_vec(body).unwrap_or_default())
}

/// Builds the JSON error answer for a status poem produced on its own. `route` is the path's
/// entry in the route table, if any (its methods make the `Allow` header of a `405`).
pub fn json_error(status: StatusCode, route: Option<&RouteEntry>) -> Response {
    let template = routes::template_of(route);
    let allow = route.map(RouteEntry::allow);
    let body = match status {
        StatusCode::NOT_FOUND => ErrorBody::new(
            ErrorCode::NotFound,
            "no such resource; the API is described at /openapi.json and explorable at /",
        ),
        StatusCode::METHOD_NOT_ALLOWED => ErrorBody::new(
            ErrorCode::MethodNotAllowed,
            format!(
                "{template} does not accept this method; allowed: {}",
                allow.as_deref().unwrap_or("none")
            ),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ErrorBody::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "request bodies are limited to {MAX_BODY_BYTES} bytes; these operations take no body"
            ),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorBody::new(
            ErrorCode::UnsupportedMediaType,
            "this operation does not accept that content type",
        ),
        StatusCode::BAD_REQUEST => ErrorBody::new(
            ErrorCode::BadRequest,
            "the request could not be parsed; check the path and headers against /openapi.json",
        ),
        StatusCode::SERVICE_UNAVAILABLE => ErrorBody::new(
            ErrorCode::Unavailable,
            "the service cannot answer right now; retry shortly",
        ),
        s if s.is_server_error() => ErrorBody::new(
            ErrorCode::Internal,
            "internal error; it has been logged, retry later",
        ),
        // No other status is produced without an operation; should one appear, it is still a
        // documented code, with the status's own reason in the message.
        s => ErrorBody::new(
            ErrorCode::BadRequest,
            format!(
                "the request was refused ({}); check it against /openapi.json",
                s.canonical_reason().unwrap_or("client error")
            ),
        ),
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(json);
    if status == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = allow.and_then(|allow| HeaderValue::from_str(&allow).ok())
    {
        resp.headers_mut().insert(header::ALLOW, allow);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    resp
}

/// The error bodies of answers the connection layer gives itself, before any endpoint runs:
/// requests the HTTP parser or the connection's bounds refuse (`400`, `414`, `431`), requests
/// that do not arrive in time (`408`), and cleartext HTTP/2 (`505`, carried in a GOAWAY frame).
pub fn connection_error_body(status: StatusCode) -> ErrorBody {
    match status {
        StatusCode::REQUEST_TIMEOUT => ErrorBody::new(
            ErrorCode::RequestTimeout,
            "the request was not received in full within the server's request timeout; send it \
             again",
        ),
        StatusCode::URI_TOO_LONG => ErrorBody::new(
            ErrorCode::UriTooLong,
            "the request target is longer than the server reads; the request was not processed",
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ErrorBody::new(
            ErrorCode::RequestHeaderFieldsTooLarge,
            "the request's header section is larger than the server reads; the request was not \
             processed",
        ),
        StatusCode::HTTP_VERSION_NOT_SUPPORTED => ErrorBody::new(
            ErrorCode::HttpVersionNotSupported,
            "this port speaks HTTP/1.1 only; send the request again over HTTP/1.1",
        ),
        _ => ErrorBody::new(
            ErrorCode::MalformedRequest,
            "the request is not a valid HTTP request (for example, a control character in a \
             header value); it was not processed",
        ),
    }
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Rewrites a non-JSON error answer (one poem produced on its own) into the JSON error shape.
pub fn into_json_error(resp: Response, route: Option<&RouteEntry>) -> Response {
    let status = resp.status();
    if (status.is_client_error() || status.is_server_error()) && !is_json(&resp) {
        return json_error(status, route);
    }
    resp
}

/// Refuses a request that announces a body larger than the service accepts. No operation
/// reads a body, so this only stops clients from making the server receive large uploads.
/// (poem's own `SizeLimit` also rejects every request without `Content-Length`.)
pub fn check_body_size(req: &Request) -> Result<(), StatusCode> {
    let Some(length) = req.headers().get(header::CONTENT_LENGTH) else {
        return Ok(());
    };
    match length
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        Some(n) if n <= MAX_BODY_BYTES as u64 => Ok(()),
        Some(_) => Err(StatusCode::PAYLOAD_TOO_LARGE),
        None => Err(StatusCode::BAD_REQUEST),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes clients match on never change spelling; the document publishes the same ones.
    #[test]
    fn error_codes_serialise_to_their_stable_snake_case_names() {
        use poem_openapi::types::ToJSON as _;
        let cases = [
            (ErrorCode::InvalidRoute, "invalid_route"),
            (ErrorCode::InvalidIdempotencyKey, "invalid_idempotency_key"),
            (ErrorCode::BadRequest, "bad_request"),
            (ErrorCode::Unauthorized, "unauthorized"),
            (ErrorCode::Forbidden, "forbidden"),
            (ErrorCode::NotFound, "not_found"),
            (ErrorCode::MethodNotAllowed, "method_not_allowed"),
            (ErrorCode::RequestTimeout, "request_timeout"),
            (ErrorCode::PayloadTooLarge, "payload_too_large"),
            (ErrorCode::UriTooLong, "uri_too_long"),
            (ErrorCode::UnsupportedMediaType, "unsupported_media_type"),
            (ErrorCode::IdempotencyKeyReused, "idempotency_key_reused"),
            (ErrorCode::RateLimited, "rate_limited"),
            (ErrorCode::IdempotencyKeyQuota, "idempotency_key_quota"),
            (
                ErrorCode::RequestHeaderFieldsTooLarge,
                "request_header_fields_too_large",
            ),
            (ErrorCode::MalformedRequest, "malformed_request"),
            (ErrorCode::Internal, "internal"),
            (ErrorCode::Unavailable, "unavailable"),
            (ErrorCode::StoreUnavailable, "store_unavailable"),
            (ErrorCode::ShuttingDown, "shutting_down"),
        ];
        for (code, name) in cases {
            assert_eq!(serde_json::to_value(code).expect("json"), name);
            assert_eq!(code.to_json(), Some(serde_json::Value::from(name)));
            assert_eq!(code, name);
        }
    }
}
