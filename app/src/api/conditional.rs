//! Cheap polling for dashboards: every successful read carries an `ETag` (a digest of its
//! body) and a `Cache-Control` that says how fresh it is; a read sent with `If-None-Match`
//! naming the current tag is answered `304 Not Modified` with no body.
//!
//! The tag is computed from the answer itself, so any instance behind the load balancer gives
//! the same tag for the same counts, and a tag changes exactly when the body would. Counts can
//! change at any moment, so their answers are `no-cache` (a cache keeps them but asks again
//! each time, and a `304` costs a few bytes); a ranking is only rebuilt every
//! `--rankings-refresh`, so its answer may be kept until the next one is due (`max-age`).

use std::time::Duration;

use poem::{
    Body, Response,
    http::{HeaderMap, HeaderValue, StatusCode, header},
};
use sha2::{Digest as _, Sha256};

/// How long a cache may keep an answer.
pub enum Freshness {
    /// Ask again every time (`no-cache`).
    Revalidate,
    /// Keep for this long (`max-age`), then ask again.
    For(Duration),
}

impl Freshness {
    fn header(&self) -> HeaderValue {
        match self {
            Self::Revalidate => HeaderValue::from_static("private, no-cache"),
            Self::For(age) => HeaderValue::from_str(&format!("private, max-age={}", age.as_secs()))
                .unwrap_or_else(|_| HeaderValue::from_static("private, no-cache")),
        }
    }
}

/// The tags an `If-None-Match` header names (`None`: the header is absent or unreadable,
/// which is as if absent).
pub fn requested_tags(headers: &HeaderMap) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// Whether `tags` (an `If-None-Match` value) names `etag`, by the weak comparison RFC 9110
/// asks of `If-None-Match`.
fn names(tags: &str, etag: &str) -> bool {
    tags.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Tags a successful read and answers `304` when the client holds it already; any other
/// answer passes as it is.
pub async fn finish_read(
    resp: Response,
    if_none_match: Option<&str>,
    fresh: Freshness,
) -> Response {
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = body.into_bytes().await else {
        return crate::api::error::json_error(StatusCode::INTERNAL_SERVER_ERROR, None);
    };
    let digest = Sha256::digest(&bytes);
    let etag = format!("\"{}\"", hex::encode(&digest[..16]));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        parts.headers.insert(header::ETAG, value);
    }
    parts.headers.insert(header::CACHE_CONTROL, fresh.header());
    if if_none_match.is_some_and(|tags| names(tags, &etag)) {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(header::CONTENT_TYPE);
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_is_compared_weakly_and_star_matches_anything() {
        let etag = "\"abc\"";
        assert!(names("\"abc\"", etag));
        assert!(names("W/\"abc\"", etag));
        assert!(names("\"x\", \"abc\"", etag));
        assert!(names("*", etag));
        assert!(!names("\"abd\"", etag));
        assert!(!names("abc", etag));
        assert!(!names("", etag));
    }

    #[tokio::test]
    async fn a_read_is_tagged_and_the_same_tag_back_is_a_304_without_a_body() {
        let read = || {
            Response::builder()
                .content_type("application/json")
                .body("{\"n\":1}")
        };
        let first = finish_read(read(), None, Freshness::Revalidate).await;
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers()[header::ETAG]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_eq!(first.headers()[header::CACHE_CONTROL], "private, no-cache");
        assert_eq!(
            first.into_body().into_string().await.expect("body"),
            "{\"n\":1}"
        );

        let again = finish_read(read(), Some(&etag), Freshness::For(Duration::from_secs(42))).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], etag.as_str());
        assert_eq!(
            again.headers()[header::CACHE_CONTROL],
            "private, max-age=42"
        );
        assert!(
            again
                .into_body()
                .into_bytes()
                .await
                .expect("body")
                .is_empty()
        );

        let changed = Response::builder().body("{\"n\":2}");
        let changed = finish_read(changed, Some(&etag), Freshness::Revalidate).await;
        assert_eq!(changed.status(), StatusCode::OK);
        assert_ne!(changed.headers()[header::ETAG], etag.as_str());
    }
}
