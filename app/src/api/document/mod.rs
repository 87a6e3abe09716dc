//! The OpenAPI document as served: what poem-openapi renders from the operations' types,
//! finished with what those types cannot say, so that the document is exactly true of the
//! running service and the clients generated from it take it as it is.
//!
//! - **Security from the running configuration.** With authentication off no operation needs a
//!   key and none can answer `401`/`403`; with `--public-reads` a read takes a key or none; the
//!   health endpoints never take one (`security: []`).
//! - **Plain references and media types.** The error code is a plain `$ref` (a description
//!   beside it made poem-openapi wrap it in `allOf`, which some generators refuse), and every
//!   answer's media type key is `application/json` (the answers keep their charset).
//! - **Types generators read.** Days are `format: date`, months carry their pattern, counts are
//!   `int64` with `minimum: 0` (not the non-standard `uint64`), closed sets of values are enums.
//! - **Every answer documented.** A `default` error answer on every operation (the connection
//!   layer's `408`, `414`, `431` among them), `Retry-After` on every `503` and `429`, an example
//!   on every error answer, and links from a POST to the reads of the route it counted.
//!
//! - **Conditional reads.** Every read takes `If-None-Match` and documents its `ETag`,
//!   `Cache-Control` and `304` ([`parameters`], with the parameters' formats and patterns).
//!
//! The document is rendered once, at start, so none of this costs anything per request.

use serde_json::{Value, json};

mod parameters;

pub use parameters::{AIRLINE_PATTERN, MONTH_PATTERN};

use super::error::ErrorCode;
use crate::{auth::AuthMode, config::StoreKind, lifecycle::NotReady};

/// The media type key poem-openapi writes for the service's JSON answers.
const JSON_WITH_CHARSET: &str = "application/json; charset=utf-8";
const JSON: &str = "application/json";
/// Codes that never reach an HTTP answer: the HTTP/2 refusal carries its code in a GOAWAY frame.
const CODES_NOT_ANSWERED: [&str; 1] = ["http_version_not_supported"];
/// Operations anyone may call, whatever the configuration.
const OPEN_OPERATIONS: [&str; 3] = ["healthz", "readyz", "version"];
/// The one operation `--public-reads` never opens: it reads the whole store.
const ADMIN_EXPORT: &str = "exportSnapshot";
/// The document for `spec` (poem-openapi's rendering) under `auth`. Falls back to `spec` as it
/// is if it is not the JSON poem-openapi writes, which a test rules out.
pub fn finish(spec: &str, auth: &AuthMode) -> String {
    let Ok(mut doc) = serde_json::from_str::<Value>(spec) else {
        return spec.to_owned();
    };
    rename_media_types(&mut doc);
    standard_formats(&mut doc);
    if let Some(schemas) = doc.pointer_mut("/components/schemas") {
        finish_schemas(schemas);
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in item.iter_mut() {
                finish_operation(method, operation, auth);
            }
        }
    }
    if matches!(auth, AuthMode::Off)
        && let Some(components) = doc.get_mut("components").and_then(Value::as_object_mut)
    {
        components.remove("securitySchemes");
    }
    if let Some(root) = doc.as_object_mut() {
        root.insert(
            "servers".into(),
            json!([{"url": "/", "description": "this instance (the address the document was read from)"}]),
        );
    }
    serde_json::to_string(&doc).unwrap_or_else(|_| spec.to_owned())
}

/// Every `content` map's `application/json; charset=utf-8` key becomes `application/json`.
fn rename_media_types(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(body) = map.remove(JSON_WITH_CHARSET) {
                map.insert(JSON.into(), body);
            }
            map.values_mut().for_each(rename_media_types);
        }
        Value::Array(items) => items.iter_mut().for_each(rename_media_types),
        _ => {}
    }
}

/// Formats generators understand, wherever a schema has one that they do not.
fn standard_formats(value: &mut Value) {
    match value {
        Value::Object(map) => {
            match map.get("format").and_then(Value::as_str) {
                Some("uint64") => {
                    map.insert("format".into(), json!("int64"));
                    map.insert("minimum".into(), json!(0));
                }
                Some("uint32") => {
                    map.insert("format".into(), json!("int64"));
                    map.insert("minimum".into(), json!(0));
                    map.insert("maximum".into(), json!(u32::MAX));
                }
                _ => {}
            }
            map.values_mut().for_each(standard_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(standard_formats),
        _ => {}
    }
}

fn set(schemas: &mut Value, pointer: &str, key: &str, value: Value) {
    if let Some(Value::Object(target)) = schemas.pointer_mut(pointer) {
        target.insert(key.into(), value);
    }
}

fn finish_schemas(schemas: &mut Value) {
    // A plain reference: OpenAPI 3.0 ignores siblings of `$ref`, so the description goes.
    set(
        schemas,
        "/ErrorBody/properties",
        "error",
        json!({"$ref": "#/components/schemas/ErrorCode"}),
    );
    if let Some(codes) = schemas
        .pointer_mut("/ErrorCode/enum")
        .and_then(Value::as_array_mut)
    {
        codes.retain(|code| {
            code.as_str()
                .is_none_or(|code| !CODES_NOT_ANSWERED.contains(&code))
        });
    }
    set(
        schemas,
        "/DayCount/properties/date",
        "format",
        json!("date"),
    );
    set(
        schemas,
        "/MonthCount/properties/month",
        "pattern",
        json!(MONTH_PATTERN),
    );
    let statuses: Vec<&str> = ["ok", "ready"]
        .into_iter()
        .chain(NotReady::ALL.iter().map(|why| why.code()))
        .collect();
    set(
        schemas,
        "/InstanceStatus/properties/status",
        "enum",
        json!(statuses),
    );
    let stores: Vec<&str> = [StoreKind::Embedded, StoreKind::Memory, StoreKind::Dynamodb]
        .into_iter()
        .map(StoreKind::as_str)
        .collect();
    set(schemas, "/Version/properties/store", "enum", json!(stores));
    set(
        schemas,
        "/Version/properties/auth",
        "enum",
        json!(AuthMode::NAMES),
    );
}

/// Whether an operation reads (any key, or none with `--public-reads`) rather than writes.
fn is_read(method: &str) -> bool {
    method.eq_ignore_ascii_case("get")
}

fn finish_operation(method: &str, operation: &mut Value, auth: &AuthMode) {
    let Some(op) = operation.as_object_mut() else {
        return;
    };
    let id = op
        .get("operationId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let open = OPEN_OPERATIONS.contains(&id.as_str());
    let security = match auth {
        _ if open => json!([]),
        AuthMode::Off => json!([]),
        AuthMode::ApiKeys {
            public_reads: true, ..
        } if is_read(method) && id != ADMIN_EXPORT => json!([{}, {"ApiKey": []}]),
        AuthMode::ApiKeys { .. } => json!([{"ApiKey": []}]),
    };
    op.insert("security".into(), security);
    parameters::finish_parameters(&id, op);
    parameters::if_none_match(&id, op);
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    if matches!(auth, AuthMode::Off) || open {
        responses.remove("401");
        responses.remove("403");
    }
    for (status, response) in responses.iter_mut() {
        finish_response(&id, status, response, !open);
    }
    if !open {
        responses.insert(
            "default".into(),
            json!({
                "description": "Any other error, in the same JSON shape: among them `408` (a \
                    request not received within the request timeout), `414` and `431` (a request \
                    line or header section over the service's bounds), `405` and `404`.",
                "content": {JSON: {
                    "schema": {"$ref": "#/components/schemas/ErrorBody"},
                    "example": example(ErrorCode::RequestTimeout, "the request was not received in full within the server's request timeout; send it again"),
                }},
            }),
        );
    }
    parameters::conditional_answers(&id, responses);
    if id == "recordTransaction"
        && let Some(ok) = responses.get_mut("200").and_then(Value::as_object_mut)
    {
        let route = json!({"route": "$response.body#/route"});
        ok.insert(
            "links".into(),
            json!({
                "GetCount": {"operationId": "getTransactions", "parameters": route, "description": "The route's count, as this POST left it or later."},
                "GetDaily": {"operationId": "getDailyTransactions", "parameters": route, "description": "The route's counts per day."},
                "GetMonthly": {"operationId": "getMonthlyTransactions", "parameters": route, "description": "The route's counts per month."},
            }),
        );
    }
}

fn example(code: ErrorCode, message: &str) -> Value {
    json!({"error": code, "message": message})
}

/// The example of an error answer: the code that status most often carries on that operation.
fn error_example(id: &str, status: &str) -> Option<Value> {
    let (code, message) = match status {
        "400" if id == "recordTransaction" || id == "getTransactions" => (
            ErrorCode::InvalidRoute,
            "invalid route: the route has no flight number (e.g. AR1133)",
        ),
        "400" if id == "getManyTransactions" => (
            ErrorCode::InvalidQuery,
            "give 1 to 100 routes as route=AR1133&route=LA0001",
        ),
        "400" => (
            ErrorCode::InvalidDateRange,
            "from is after to; give from <= to",
        ),
        "401" => (
            ErrorCode::Unauthorized,
            "this operation needs an API key: send `Authorization: Bearer <key>`",
        ),
        "403" => (
            ErrorCode::Forbidden,
            "this API key may only read; recording a transaction needs a key with the write scope",
        ),
        "404" => (ErrorCode::NotFound, "no such resource"),
        "413" => (
            ErrorCode::PayloadTooLarge,
            "request bodies are limited to 16384 bytes; these operations take no body",
        ),
        "422" => (
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was first used for route AR1133, not LA0001",
        ),
        "429" => (
            ErrorCode::RateLimited,
            "this client is over its request rate; retry after the Retry-After delay",
        ),
        "500" if id == "recordTransaction" => (
            ErrorCode::CountOverflow,
            "the count of route AR1133 is at its largest value and cannot grow",
        ),
        "500" => (ErrorCode::Internal, "internal error; it has been logged"),
        "503" => (
            ErrorCode::StoreUnavailable,
            "the count store cannot commit right now; retry after the Retry-After delay",
        ),
        _ => return None,
    };
    Some(example(code, message))
}

/// `retry_after`: whether this operation's `503` and `429` answers carry `Retry-After` (the
/// transactions API's do; readiness's `503` does not).
fn finish_response(id: &str, status: &str, response: &mut Value, retry_after: bool) {
    let Some(response) = response.as_object_mut() else {
        return;
    };
    if retry_after && matches!(status, "429" | "503") {
        let headers = response
            .entry("headers")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(headers) = headers {
            let present = headers
                .keys()
                .any(|name| name.eq_ignore_ascii_case("retry-after"));
            if !present {
                headers.insert(
                    "Retry-After".into(),
                    json!({
                        "description": "Seconds to wait before trying again.",
                        "required": true,
                        "schema": {"type": "integer", "format": "int32", "minimum": 1},
                    }),
                );
            }
        }
    }
    let is_error = status.starts_with('4') || status.starts_with('5');
    if let Some(example) = error_example(id, status).filter(|_| is_error)
        && let Some(body) = response
            .get_mut("content")
            .and_then(|content| content.get_mut(JSON))
            .and_then(Value::as_object_mut)
        && body
            .get("schema")
            .and_then(|s| s.get("$ref"))
            .and_then(Value::as_str)
            == Some("#/components/schemas/ErrorBody")
    {
        body.insert("example".into(), example);
    }
}
