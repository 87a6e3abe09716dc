//! Authentication at the edge: every request's `Authorization: Bearer <key>` is checked here,
//! against the access the route table gives its operation, before the request reaches an
//! operation (so before its route or `Idempotency-Key` is looked at). A refused request learns
//! nothing and changes nothing.
//!
//! The operations declare the bearer scheme in the OpenAPI document through [`Caller`], an
//! extractor that only reads what this check found; it never refuses anything itself.

use std::sync::Arc;

use poem::{
    Request, RequestBody, Response,
    http::{HeaderValue, StatusCode, header},
};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{MetaSecurityScheme, Registry},
};

use super::{
    error::{ErrorBody, ErrorCode},
    json::JSON_CONTENT_TYPE,
    routes::Access,
};
use crate::{
    auth::{AuthMode, Client, ClientName, Scope},
    telemetry::metrics as m,
};

/// The name of the security scheme in the OpenAPI document.
pub const SECURITY_SCHEME: &str = "ApiKey";
/// The `client` label of requests made without a key.
pub const ANONYMOUS: &str = "anonymous";
/// The longest `Authorization` value read: a generated key is 47 characters; anything this
/// long is not a key of this service.
const MAX_AUTHORIZATION_LEN: usize = 512;

/// Who made a request: a client of the keys file, or nobody known.
#[derive(Debug, Clone, Default)]
pub struct Caller(Option<Arc<Client>>);

impl Caller {
    /// The client, if the request presented a valid key.
    pub fn client(&self) -> Option<&ClientName> {
        self.0.as_ref().map(|client| &client.name)
    }

    /// The `client` label of logs and metrics: the client's name or `anonymous`, a set
    /// bounded by the keys file.
    pub fn label(&self) -> &str {
        self.client().map_or(ANONYMOUS, ClientName::as_str)
    }
}

/// Why a request was refused; also the `reason` label of the refusal counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization` header.
    Missing,
    /// An `Authorization` header that is not `Bearer <key>`.
    Malformed,
    /// A key that is not in the keys file.
    Unknown,
    /// A valid key without the scope the operation needs.
    Forbidden(Scope),
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::Malformed => "malformed",
            Refusal::Unknown => "unknown",
            Refusal::Forbidden(_) => "forbidden",
        }
    }

    /// The answer: `401` with `WWW-Authenticate: Bearer`, or `403`. The messages depend only
    /// on what the request carried, never on which keys exist.
    pub fn response(self) -> Response {
        let (status, body) = match self {
            Refusal::Missing => (
                StatusCode::UNAUTHORIZED,
                ErrorBody::new(
                    ErrorCode::Unauthorized,
                    "this operation needs an API key: send `Authorization: Bearer <key>`",
                ),
            ),
            Refusal::Malformed => (
                StatusCode::UNAUTHORIZED,
                ErrorBody::new(
                    ErrorCode::Unauthorized,
                    "the Authorization header must be exactly one `Bearer <key>`, the key in \
                     visible ASCII",
                ),
            ),
            Refusal::Unknown => (
                StatusCode::UNAUTHORIZED,
                ErrorBody::new(
                    ErrorCode::Unauthorized,
                    "the API key is not valid; check it, or ask for a new one if it was rotated",
                ),
            ),
            Refusal::Forbidden(needed) => (
                StatusCode::FORBIDDEN,
                ErrorBody::new(
                    ErrorCode::Forbidden,
                    match needed {
                        Scope::Admin => {
                            "exporting the store needs a key with the admin scope; this key's \
                             scope does not allow it"
                        }
                        _ => {
                            "this API key may only read; recording a transaction needs a key \
                             with the write scope"
                        }
                    },
                ),
            ),
        };
        let mut resp = Response::builder()
            .status(status)
            .content_type(JSON_CONTENT_TYPE)
            .body(serde_json::to_vec(&body).unwrap_or_default());
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The key of a request's `Authorization: Bearer <key>` header, if it has one.
fn bearer_key(req: &Request) -> Result<Option<&[u8]>, Refusal> {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::Malformed);
    }
    let raw = value.as_bytes();
    if raw.len() > MAX_AUTHORIZATION_LEN {
        return Err(Refusal::Malformed);
    }
    let Some(space) = raw.iter().position(|b| *b == b' ') else {
        return Err(Refusal::Malformed);
    };
    let (scheme, rest) = raw.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(Refusal::Malformed);
    }
    let key = rest.trim_ascii();
    if key.is_empty() || !key.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(Refusal::Malformed);
    }
    Ok(Some(key))
}

/// Decides who a request is and whether it may go on.
pub fn authenticate(mode: &AuthMode, req: &Request, access: Access) -> Result<Caller, Refusal> {
    let (keys, public_reads) = match mode {
        AuthMode::Off => return Ok(Caller::default()),
        AuthMode::ApiKeys { keys, public_reads } => (keys, *public_reads),
    };
    if access == Access::Open {
        return Ok(Caller::default());
    }
    let key = match bearer_key(req) {
        Ok(Some(key)) => key,
        // A public read needs no key; a key that is sent is still checked, so that a client
        // with a wrong key hears of it.
        Ok(None) if access == Access::Read && public_reads => return Ok(Caller::default()),
        Ok(None) => return Err(Refusal::Missing),
        Err(refusal) => return Err(refusal),
    };
    let client = keys.client(key).ok_or(Refusal::Unknown)?;
    let needed = match access {
        Access::Open | Access::Read => Scope::Read,
        Access::Write => Scope::Write,
        Access::Admin => Scope::Admin,
    };
    if client.scope < needed {
        return Err(Refusal::Forbidden(needed));
    }
    Ok(Caller(Some(client)))
}

/// Checks a request and counts a refusal; the caller is put in the request's extensions for
/// the operation.
pub fn check(mode: &AuthMode, req: &mut Request, access: Access) -> Result<Caller, Refusal> {
    let caller = authenticate(mode, req, access).inspect_err(|refusal| {
        m::auth_failure(refusal.as_str());
    })?;
    req.extensions_mut().insert(caller.clone());
    Ok(caller)
}

/// The authenticated caller, as an operation parameter. Declares the bearer security scheme
/// in the OpenAPI document (so Swagger UI offers "Authorize"); enforcement happened at the edge.
impl<'a> ApiExtractor<'a> for Caller {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            SECURITY_SCHEME,
            MetaSecurityScheme {
                ty: "http",
                description: Some(
                    "An API key, sent as `Authorization: Bearer <key>`. Keys are made with \
                     `flight-counter api-key`; `write` keys record and read, `read` keys read. \
                     Needed only when the service runs with an API keys file.",
                ),
                name: None,
                key_in: None,
                scheme: Some("bearer"),
                bearer_format: Some("fck_<43 base64url characters>"),
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![SECURITY_SCHEME]
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        // Only the edge puts a caller there; an operation reached any other way refuses
        // rather than run unauthenticated.
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ApiKeys, digest_hex};

    fn mode(public_reads: bool) -> (tempfile::TempDir, AuthMode) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("api-keys");
        std::fs::write(
            &path,
            format!(
                "writer write {}\nreader read {}\nops admin {}\n",
                digest_hex("w-key"),
                digest_hex("r-key"),
                digest_hex("a-key")
            ),
        )
        .expect("write");
        let keys = Arc::new(ApiKeys::load(&path).expect("keys"));
        (dir, AuthMode::ApiKeys { keys, public_reads })
    }

    fn with(authorization: &[&[u8]]) -> Request {
        let mut builder = Request::builder();
        for value in authorization {
            builder = builder.header(
                header::AUTHORIZATION,
                HeaderValue::from_bytes(value).expect("header"),
            );
        }
        builder.finish()
    }

    fn verdict(
        mode: &AuthMode,
        authorization: &[&[u8]],
        access: Access,
    ) -> Result<String, Refusal> {
        authenticate(mode, &with(authorization), access).map(|c| c.label().to_owned())
    }

    #[test]
    fn only_an_admin_key_may_export_and_it_may_do_everything_else() {
        let (_dir, keys) = mode(true);
        for access in [Access::Read, Access::Write, Access::Admin] {
            assert_eq!(verdict(&keys, &[b"Bearer a-key"], access), Ok("ops".into()));
        }
        for key in [&b"Bearer w-key"[..], b"Bearer r-key"] {
            assert_eq!(
                verdict(&keys, &[key], Access::Admin),
                Err(Refusal::Forbidden(Scope::Admin))
            );
        }
        // Public reads open reads, never the export.
        assert_eq!(verdict(&keys, &[], Access::Admin), Err(Refusal::Missing));
        let body = Refusal::Forbidden(Scope::Admin).response();
        assert_eq!(body.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn keys_are_checked_against_the_access_an_operation_needs() {
        let (_dir, keys) = mode(false);
        assert_eq!(
            verdict(&keys, &[b"Bearer w-key"], Access::Write),
            Ok("writer".into())
        );
        assert_eq!(
            verdict(&keys, &[b"bearer  w-key "], Access::Read),
            Ok("writer".into())
        );
        assert_eq!(
            verdict(&keys, &[b"Bearer r-key"], Access::Read),
            Ok("reader".into())
        );
        assert_eq!(
            verdict(&keys, &[b"Bearer r-key"], Access::Write),
            Err(Refusal::Forbidden(Scope::Write))
        );
        assert_eq!(verdict(&keys, &[], Access::Read), Err(Refusal::Missing));
        assert_eq!(verdict(&keys, &[], Access::Open), Ok(ANONYMOUS.into()));
        assert_eq!(
            verdict(&keys, &[b"Bearer nope"], Access::Read),
            Err(Refusal::Unknown)
        );
        let long = [b"Bearer ".as_slice(), &[b'k'; 600]].concat();
        for malformed in [
            &b"w-key"[..],
            b"Basic dzprZXk=",
            b"Bearer",
            b"Bearer ",
            b"Bearerw-key",
            b"Bearer w-key extra",
            b"Bearer caf\xc3\xa9",
            &long,
        ] {
            assert_eq!(
                verdict(&keys, &[malformed], Access::Read),
                Err(Refusal::Malformed),
                "{malformed:?}"
            );
        }
        assert_eq!(
            verdict(&keys, &[b"Bearer w-key", b"Bearer w-key"], Access::Write),
            Err(Refusal::Malformed)
        );
    }

    #[test]
    fn public_reads_need_no_key_but_a_sent_key_is_checked() {
        let (_dir, keys) = mode(true);
        assert_eq!(verdict(&keys, &[], Access::Read), Ok(ANONYMOUS.into()));
        assert_eq!(
            verdict(&keys, &[b"Bearer r-key"], Access::Read),
            Ok("reader".into())
        );
        assert_eq!(
            verdict(&keys, &[b"Bearer nope"], Access::Read),
            Err(Refusal::Unknown)
        );
        assert_eq!(verdict(&keys, &[], Access::Write), Err(Refusal::Missing));
    }

    #[test]
    fn without_keys_everyone_is_anonymous() {
        for access in [Access::Open, Access::Read, Access::Write] {
            assert_eq!(
                verdict(&AuthMode::Off, &[b"Bearer anything"], access),
                Ok(ANONYMOUS.into())
            );
        }
    }
}
