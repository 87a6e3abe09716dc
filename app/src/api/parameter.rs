//! poem-openapi glue for the domain types the operations take from a request: the route (a
//! path parameter) and the `Idempotency-Key` (a header). The domain types know nothing of HTTP;
//! this is where they meet it.
//!
//! The schema publishes each rule (pattern, lengths, example) to clients and to the
//! documentation, while values are parsed by the type's own parser: poem-openapi's `pattern`
//! validator would compile and run a regex on every request.

use std::borrow::Cow;

use poem::{Request, RequestBody};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{MetaParamIn, MetaSchema, MetaSchemaRef, Registry},
    types::{ParseError, ParseFromParameter, ParseResult, ToJSON, Type},
};

use crate::{
    idempotency::{IdempotencyKey, KEY_PATTERN, KeyError, MAX_KEY_LEN},
    route::{MAX_ROUTE_LEN, ROUTE_PATTERN, Route},
};

/// The request header that carries an idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";
/// The answer header that marks a replayed outcome.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

impl Type for Route {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "Route".into()
    }

    /// One `Route` component, referred to by the path parameter and the `route=` items alike,
    /// so that generated clients have one route type.
    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::name().into_owned())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |_| MetaSchema {
            description: Some(
                "Flight designator: airline code (2 letters or digits, not both digits, or \
                 3 letters), flight number of 1 to 4 digits, optional letter suffix. Any case \
                 is accepted; answers use the canonical form (upper case, flight number padded \
                 to 4 digits).",
            ),
            pattern: Some(ROUTE_PATTERN.to_owned()),
            min_length: Some(3),
            max_length: Some(MAX_ROUTE_LEN),
            example: Some("AR1133".into()),
            ..MetaSchema::new("string")
        });
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ParseFromParameter for Route {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Route::parse(value).map_err(ParseError::custom)
    }
}

impl ToJSON for Route {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.as_str().to_owned()))
    }
}

/// The `Idempotency-Key` header of a request, parsed once, from the raw header values.
///
/// poem-openapi's `Header<T>` would take the first value that is UTF-8 and skip the others,
/// but a value that is not UTF-8 must be refused, not taken for a missing key, and two keys on
/// one request are ambiguous. So this extractor reads every raw value itself, never fails the
/// request, and hands the operation the verdict to answer.
pub struct IdempotencyKeyHeader(pub Result<Option<IdempotencyKey>, KeyError>);

impl IdempotencyKeyHeader {
    fn schema() -> MetaSchema {
        MetaSchema {
            description: Some(
                "A key of the client's choosing that identifies one transaction: 1 to 255 \
                 visible ASCII characters (0x21-0x7E), taken verbatim.",
            ),
            pattern: Some(KEY_PATTERN.to_owned()),
            min_length: Some(1),
            max_length: Some(MAX_KEY_LEN),
            example: Some("8e03978e-40d5-43e8-bc93-6894a57f9324".into()),
            ..MetaSchema::new("string")
        }
    }

    /// Reads the header's values from a request.
    pub fn of(req: &Request) -> Self {
        let mut values = req.headers().get_all(IDEMPOTENCY_KEY_HEADER).iter();
        let verdict = match (values.next(), values.next()) {
            (None, _) => Ok(None),
            (Some(_), Some(_)) => Err(KeyError::Repeated),
            (Some(value), None) => IdempotencyKey::parse(value.as_bytes()).map(Some),
        };
        Self(verdict)
    }
}

impl<'a> ApiExtractor<'a> for IdempotencyKeyHeader {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
    const PARAM_IS_REQUIRED: bool = false;

    type ParamType = ();
    type ParamRawType = ();

    fn param_in() -> Option<MetaParamIn> {
        Some(MetaParamIn::Header)
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        Some(MetaSchemaRef::Inline(Box::new(Self::schema())))
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        Ok(Self::of(request))
    }
}
