//! The one error shape of the service: `{"error": "<stable_code>", "message": "<what to do>"}`.
//!
//! Handlers return it through their `ApiResponse` enums. Everything poem answers on its own
//! (unknown path, wrong method, undecodable path, oversized body, a panic) comes out as plain
//! text; [`JsonErrors`] rewrites those into the same shape, so clients parse one format.

use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response,
    http::{HeaderValue, StatusCode, header},
};
use poem_openapi::Object;

use crate::telemetry::path_template;

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
fn allowed_methods(template: &str) -> Option<&'static str> {
    match template {
        "/transactions/{route}" => Some("GET, POST"),
        "unmatched" => None,
        _ => Some("GET"),
    }
}

/// Builds the JSON error answer for a status poem produced on its own.
fn json_error(status: StatusCode, template: &'static str) -> Response {
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
    if status == StatusCode::METHOD_NOT_ALLOWED {
        if let Some(allow) = allowed_methods(template) {
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
        }
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    resp
}

fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Rewrites every non-JSON error answer into the JSON error shape.
pub struct JsonErrors;

impl<E: Endpoint> Middleware<E> for JsonErrors {
    type Output = JsonErrorsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        JsonErrorsEndpoint { inner }
    }
}

pub struct JsonErrorsEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for JsonErrorsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let template = path_template(req.uri().path());
        let resp = match self.inner.call(req).await {
            Ok(resp) => resp.into_response(),
            Err(err) => {
                if err.status().is_server_error() {
                    tracing::error!(error = %err, "request failed");
                }
                err.into_response()
            }
        };
        let status = resp.status();
        if (status.is_client_error() || status.is_server_error()) && !is_json(&resp) {
            return Ok(json_error(status, template));
        }
        Ok(resp)
    }
}
