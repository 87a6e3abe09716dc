//! Cross-origin reads and writes for dashboards served from other origins
//! (`--cors-allow-origin`), with poem's CORS middleware around the service's endpoint. Off by
//! default: a browser page elsewhere can then read nothing, which is right for a service that
//! only reservation systems call.
//!
//! - A list of origins: those pages may read and record, with a key in `Authorization` and an
//!   `Idempotency-Key`.
//! - `*`: any page may read; none may record (the preflight of a POST is refused).
//!
//! Answers expose `ETag`, `Retry-After`, `Idempotent-Replayed` and the rate-limit headers, so
//! that a page can poll cheaply (`If-None-Match` is allowed), back off and tell a replay. No cookies are involved, so credentials are never
//! allowed.

use poem::{
    Endpoint, EndpointExt, Response,
    http::{Method, header},
    middleware::Cors,
};

use super::{error, parameter};

/// What `--cors-allow-origin` allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsPolicy {
    /// No cross-origin access (the default).
    Off,
    /// Any origin, reads only.
    AnyOriginReads,
    /// These origins (`scheme://host[:port]`), reads and writes.
    Origins(Vec<String>),
}

impl CorsPolicy {
    /// The policy of the flag's values: none, `*` alone, or origins.
    pub fn from_values(values: &[String]) -> Result<Self, InvalidOrigin> {
        match values {
            [] => Ok(CorsPolicy::Off),
            [any] if any == "*" => Ok(CorsPolicy::AnyOriginReads),
            origins => {
                for origin in origins {
                    valid_origin(origin)?;
                }
                Ok(CorsPolicy::Origins(origins.to_vec()))
            }
        }
    }
}

/// `scheme://host[:port]` with no path, as browsers send it in `Origin`.
fn valid_origin(origin: &str) -> Result<(), InvalidOrigin> {
    let invalid = || InvalidOrigin(origin.to_owned());
    let (scheme, rest) = origin.split_once("://").ok_or_else(invalid)?;
    let host_ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !matches!(scheme, "http" | "https") || !host_ok {
        return Err(invalid());
    }
    Ok(())
}

/// A `--cors-allow-origin` value that is not an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--cors-allow-origin {0:?} is not an origin: give scheme://host[:port] with no path (e.g. \
     https://dash.example.com), several separated by commas, or * alone for reads from any origin"
)]
pub struct InvalidOrigin(pub String);

/// The middleware for `policy`, if it allows anything.
pub fn middleware(policy: &CorsPolicy) -> Option<Cors> {
    let cors = Cors::new()
        .allow_credentials(false)
        .allow_headers([
            header::AUTHORIZATION.as_str(),
            parameter::IDEMPOTENCY_KEY_HEADER,
            header::CONTENT_TYPE.as_str(),
            header::IF_NONE_MATCH.as_str(),
        ])
        .expose_headers([
            header::ETAG.as_str(),
            header::RETRY_AFTER.as_str(),
            parameter::REPLAYED_HEADER,
            "ratelimit",
            "ratelimit-policy",
        ])
        .max_age(600);
    match policy {
        CorsPolicy::Off => None,
        CorsPolicy::AnyOriginReads => Some(cors.allow_methods([Method::GET, Method::HEAD])),
        CorsPolicy::Origins(origins) => Some(
            cors.allow_methods([Method::GET, Method::HEAD, Method::POST])
                .allow_origins(origins.iter().map(String::as_str)),
        ),
    }
}

/// `endpoint` behind `cors`, its refusals (an origin, method or header not allowed) in the
/// JSON error shape like every other error.
pub fn around<E: Endpoint + 'static>(endpoint: E, cors: Cors) -> impl Endpoint<Output = Response> {
    endpoint
        .with(cors)
        .catch_all_error(|err| async move { error::into_json_error(err.into_response(), None) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_takes_origins_or_a_lone_star() {
        let values = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(CorsPolicy::from_values(&[]), Ok(CorsPolicy::Off));
        assert_eq!(
            CorsPolicy::from_values(&values(&["*"])),
            Ok(CorsPolicy::AnyOriginReads)
        );
        assert!(matches!(
            CorsPolicy::from_values(&values(&["https://dash.example.com", "http://127.0.0.1:3000"])),
            Ok(CorsPolicy::Origins(o)) if o.len() == 2
        ));
        for bad in [
            &["*", "https://a.example"][..],
            &["dash.example.com"],
            &["https://dash.example.com/path"],
            &["ftp://x"],
            &["https://"],
        ] {
            assert!(CorsPolicy::from_values(&values(bad)).is_err(), "{bad:?}");
        }
    }
}
