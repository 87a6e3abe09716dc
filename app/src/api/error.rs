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

/// Largest request body accepted. No operation takes a body; this only bounds what a client can
/// make the server read.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Seconds a client is asked to wait before retrying after a `503`.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// An error answer.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct ErrorBody {
    /// Stable, machine-readable code, e.g. `invalid_route`.
    pub error: String,
    /// What was wrong and how to fix it.
    pub message: String,
}

impl ErrorBody {
    pub fn new(error: &str, message: impl Into<String>) -> Self {
        Self {
            error: error.to_owned(),
            message: message.into(),
        }
    }
}

/// The methods a path template answers, for the `Allow` header of a `405`.
pub fn allowed_methods(template: &str) -> Option<&'static str> {
    match template {
        "/transactions/{route}" => Some("GET, POST"),
        "unmatched" => None,
        _ => Some("GET"),
    }
}

/// Builds the JSON error answer for a status poem produced on its own.
pub fn json_error(status: StatusCode, template: &'static str) -> Response {
    let body = match status {
        StatusCode::NOT_FOUND => ErrorBody::new(
            "not_found",
            "no such resource; the API is described at /openapi.json and explorable at /",
        ),
        StatusCode::METHOD_NOT_ALLOWED => ErrorBody::new(
            "method_not_allowed",
            format!(
                "{template} does not accept this method; allowed: {}",
                allowed_methods(template).unwrap_or("none")
            ),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ErrorBody::new(
            "payload_too_large",
            format!(
                "request bodies are limited to {MAX_BODY_BYTES} bytes; these operations take no body"
            ),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorBody::new(
            "unsupported_media_type",
            "this operation does not accept that content type",
        ),
        StatusCode::BAD_REQUEST => ErrorBody::new(
            "bad_request",
            "the request could not be parsed; check the path and headers against /openapi.json",
        ),
        StatusCode::SERVICE_UNAVAILABLE => ErrorBody::new(
            "unavailable",
            "the service cannot answer right now; retry shortly",
        ),
        s if s.is_server_error() => ErrorBody::new(
            "internal",
            "internal error; it has been logged, retry later",
        ),
        s => ErrorBody::new(
            &s.canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase()
                .replace([' ', '-'], "_"),
            s.canonical_reason().unwrap_or("the request failed"),
        ),
    };
    let json = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(json);
    if status == StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = allowed_methods(template)
    {
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    resp
}

/// The error bodies of answers the connection layer gives itself, before any endpoint runs:
/// requests the HTTP parser refuses (`400`, `414`, `431`) and requests that do not arrive in
/// time (`408`).
pub fn connection_error_body(status: StatusCode) -> ErrorBody {
    match status {
        StatusCode::REQUEST_TIMEOUT => ErrorBody::new(
            "request_timeout",
            "the request was not received in full within the server's request timeout; send it \
             again",
        ),
        StatusCode::URI_TOO_LONG => ErrorBody::new(
            "uri_too_long",
            "the request target is longer than the server reads; the request was not processed",
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ErrorBody::new(
            "request_header_fields_too_large",
            "the request's header section is larger than the server reads; the request was not \
             processed",
        ),
        _ => ErrorBody::new(
            "malformed_request",
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
pub fn into_json_error(resp: Response, template: &'static str) -> Response {
    let status = resp.status();
    if (status.is_client_error() || status.is_server_error()) && !is_json(&resp) {
        return json_error(status, template);
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
