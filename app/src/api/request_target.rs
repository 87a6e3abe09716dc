//! Checks of a request's target (path and query) at the edge, before an operation reads it, so
//! that what the framework would refuse in its own words is refused in the service's:
//!
//! - a `%` not followed by two hex digits, or percent-encoding that decodes to bytes that are
//!   not UTF-8, in the path or the query: `400 bad_request`, naming where (the framework
//!   answered `invalid_route` and, for bad UTF-8, leaked its own text);
//! - a parameter that takes one value given twice (`from=...&from=...`), or one the operation
//!   does not take at all: `400 invalid_query`, rather than a value taken or dropped silently.

use super::{
    error::{ErrorBody, ErrorCode},
    routes::RouteEntry,
};

/// What is wrong with a piece of a target, if anything.
fn encoding_problem(piece: &str) -> Option<&'static str> {
    let bytes = piece.as_bytes();
    // The usual target has no percent-encoding: then it is the text it already is, with nothing
    // to decode and nothing to allocate.
    memchr::memchr(b'%', bytes)?;
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let Some(byte) = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            else {
                return Some("a `%` not followed by two hex digits");
            };
            decoded.push(byte);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    std::str::from_utf8(&decoded)
        .is_err()
        .then_some("percent-encoding that is not UTF-8 once decoded")
}

/// Refuses a target whose path or query the operations cannot read as text, or which repeats
/// a parameter that takes one value.
pub fn check(path: &str, query: Option<&str>, entry: Option<&RouteEntry>) -> Result<(), ErrorBody> {
    if let Some(why) = encoding_problem(path) {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!("the path has {why}; percent-encode each byte of UTF-8 text as %XX"),
        ));
    }
    let Some(query) = query else {
        return Ok(());
    };
    let taken = entry.and_then(|entry| entry.query);
    let mut seen: Vec<&str> = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        if let Some(why) = encoding_problem(pair) {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!("the query has {why}; percent-encode each byte of UTF-8 text as %XX"),
            ));
        }
        let Some(taken) = taken else {
            continue;
        };
        let shown: String = name.chars().take(32).collect();
        let Some(parameter) = taken.iter().find(|p| p.name == name) else {
            let known: Vec<&str> = taken.iter().map(|p| p.name).collect();
            return Err(ErrorBody::new(
                ErrorCode::InvalidQuery,
                format!(
                    "this operation takes no query parameter {shown:?}; it takes {}",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        if !parameter.repeatable {
            if seen.contains(&name) {
                return Err(ErrorBody::new(
                    ErrorCode::InvalidQuery,
                    format!("the parameter {name} takes one value and was given more than once"),
                ));
            }
            seen.push(name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::routes::find;

    fn code(path: &str, query: Option<&str>) -> Option<ErrorCode> {
        check(path, query, find(path)).err().map(|body| body.error)
    }

    #[test]
    fn well_formed_targets_pass() {
        assert_eq!(code("/transactions/AR1133", None), None);
        assert_eq!(code("/transactions/%41R1133", None), None);
        assert_eq!(code("/transactions/%C3%A9", None), None);
        assert_eq!(
            code("/transactions", Some("route=AR1&route=LA1&route=%41R2")),
            None
        );
        assert_eq!(
            code(
                "/transactions/AR1/daily",
                Some("from=2026-11-01&to=2026-11-02")
            ),
            None
        );
    }

    #[test]
    fn broken_percent_encoding_is_a_bad_request() {
        for (path, query) in [
            ("/transactions/%ZZ", None),
            ("/transactions/%C3%28", None),
            ("/transactions/AR1%", None),
            ("/transactions/AR1%4", None),
            ("/transactions", Some("route=%FF")),
            ("/transactions", Some("route=AR1%2")),
        ] {
            assert_eq!(
                code(path, query),
                Some(ErrorCode::BadRequest),
                "{path} {query:?}"
            );
        }
    }

    #[test]
    fn a_repeated_single_valued_parameter_is_refused() {
        assert_eq!(
            code(
                "/transactions/AR1/monthly",
                Some("from=2026-01&from=2025-01")
            ),
            Some(ErrorCode::InvalidQuery)
        );
        // `route` of the multi-route read takes many values.
        assert_eq!(code("/transactions", Some("route=AR1&route=AR1")), None);
    }

    #[test]
    fn a_parameter_the_operation_does_not_take_is_refused() {
        for (path, query) in [
            ("/transactions", "=null&route=A00"),
            ("/transactions/AR1", "x=1"),
            ("/transactions/AR1/daily", "month=2026-01"),
        ] {
            assert_eq!(
                code(path, Some(query)),
                Some(ErrorCode::InvalidQuery),
                "{path}?{query}"
            );
        }
        // The documents and health endpoints do not look at their query.
        assert_eq!(code("/healthz", Some("probe=1")), None);
        assert_eq!(code("/", Some("url=/openapi.json")), None);
    }
}
