//! The per-client limits at the edge: a request's cost in tokens, and the `429` a refusal is
//! answered with.
//!
//! A `429` carries `Retry-After` (whole seconds, at least 1) and the `RateLimit-Policy` and
//! `RateLimit` fields of the IETF draft on rate-limit headers
//! (draft-ietf-httpapi-ratelimit-headers-10): `RateLimit-Policy: "client";q=400;w=2` (a bucket
//! of `q` tokens that fills in `w` seconds) and `RateLimit: "client";r=0;t=1` (none left; enough
//! again in `t` seconds). A refused idempotency key names its own policy, `"idempotency-keys"`,
//! the cap of keys over the retention window. They are sent on `429`s only.

use std::time::Duration;

use poem::{
    Request, Response,
    http::{HeaderValue, Method, StatusCode, header},
};

use super::{
    auth::Caller,
    error::{ErrorBody, ErrorCode},
    json::JSON_CONTENT_TYPE,
    reports,
    routes::RouteEntry,
};
use crate::{
    limits::{Charge, ClientKey, ClientRates, KeyQuota},
    telemetry::metrics as m,
};

/// The policy names of the `RateLimit` fields.
const REQUESTS_POLICY: &str = "client";
const KEYS_POLICY: &str = "idempotency-keys";

/// The `reason` labels of the refusal counter.
pub const RATE_LIMITED: &str = "rate_limited";
pub const KEY_QUOTA: &str = "key_quota";

/// A `429`'s parts: its body and headers, for the edge to send and for the operations to
/// declare in the OpenAPI document.
pub struct TooMany {
    pub body: ErrorBody,
    pub retry_after: Option<u32>,
    pub policy: String,
    pub state: Option<String>,
}

/// Whole seconds to wait: rounded up, at least 1.
fn whole_seconds(wait: Duration) -> u32 {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    u32::try_from(seconds.max(1)).unwrap_or(u32::MAX)
}

impl TooMany {
    pub fn into_response(self) -> Response {
        let mut resp = Response::builder()
            .status(StatusCode::TOO_MANY_REQUESTS)
            .content_type(JSON_CONTENT_TYPE)
            .body(serde_json::to_vec(&self.body).unwrap_or_default());
        let headers = resp.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Ok(policy) = HeaderValue::from_str(&self.policy) {
            headers.insert("ratelimit-policy", policy);
        }
        if let Some(state) = self.state.and_then(|s| HeaderValue::from_str(&s).ok()) {
            headers.insert("ratelimit", state);
        }
        resp
    }
}

/// The tokens a request costs: one per route a multi-route read reads, one for anything else.
pub fn cost(entry: Option<&RouteEntry>, req: &Request) -> u32 {
    let read = *req.method() == Method::GET || *req.method() == Method::HEAD;
    match entry {
        Some(entry) if read && entry.template == reports::MANY_ROUTES_PATH => {
            reports::routes_read(req)
        }
        _ => 1,
    }
}

/// Takes a request's tokens from its client's bucket; `Some` is the `429` of a refusal (and
/// the refusal is counted).
pub fn charge(
    rates: &ClientRates,
    caller: &Caller,
    entry: Option<&RouteEntry>,
    req: &Request,
) -> Option<Response> {
    let client: ClientKey = caller.client().cloned();
    let charge = rates.charge(&client, cost(entry, req));
    if charge == Charge::Allowed {
        return None;
    }
    // Only refusals pay for the formatting below.
    let limit = rates.limit();
    let policy = format!(
        "\"{REQUESTS_POLICY}\";q={};w={}",
        limit.burst(),
        limit.window_seconds()
    );
    let who = caller.label();
    let refused = match charge {
        Charge::Allowed => return None,
        Charge::Limited { retry_after } => {
            let seconds = whole_seconds(retry_after);
            TooMany {
                body: ErrorBody::new(
                    ErrorCode::RateLimited,
                    format!(
                        "client {who} sent more requests than this instance takes from it \
                         ({limit}; a multi-route read counts each route); retry after \
                         {seconds} s"
                    ),
                ),
                retry_after: Some(seconds),
                policy,
                state: Some(format!("\"{REQUESTS_POLICY}\";r=0;t={seconds}")),
            }
        }
        Charge::TooCostly { cost } => TooMany {
            body: ErrorBody::new(
                ErrorCode::RateLimited,
                format!(
                    "this read of {cost} routes costs {cost} tokens, more than the {} that \
                     client {who}'s bucket holds ({limit}); read at most {} routes at once",
                    limit.burst(),
                    limit.burst()
                ),
            ),
            // Waiting never lets it through.
            retry_after: None,
            policy,
            state: None,
        },
    };
    m::client_refused(who, RATE_LIMITED);
    Some(refused.into_response())
}

/// The `429` of a new idempotency key past its client's cap (the refusal is counted).
pub fn key_quota_refused(quota: &KeyQuota, caller: &Caller, retry_after: Duration) -> TooMany {
    let who = caller.label();
    m::client_refused(who, KEY_QUOTA);
    let seconds = whole_seconds(retry_after);
    TooMany {
        body: ErrorBody::new(
            ErrorCode::IdempotencyKeyQuota,
            format!(
                "client {who} has created {} idempotency keys through this instance within the \
                 retention window, its cap; nothing was recorded. Replays of keys already used \
                 are still answered; a new key can be created in {seconds} s",
                quota.max()
            ),
        ),
        retry_after: Some(seconds),
        policy: format!(
            "\"{KEYS_POLICY}\";q={};w={}",
            quota.max(),
            quota.window_seconds()
        ),
        state: Some(format!("\"{KEYS_POLICY}\";r=0;t={seconds}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_whole_seconds_rounded_up_and_at_least_one() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(5)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1001)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}
