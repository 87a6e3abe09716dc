//! poem-openapi glue for the validated string newtypes the operations take as parameters (the
//! route, the idempotency key). The schema publishes the rule (pattern, lengths, example) to
//! clients and to the documentation, while values are parsed by the type's own parser:
//! poem-openapi's `pattern` validator would compile and run a regex on every request.

/// Implements `Type`, `ParseFromParameter` and `ToJSON` for `$ty`, a type with
/// `as_str(&self) -> &str`. `$schema` is its `MetaSchema`; `$parse` turns the raw `&str` into
/// `Result<$ty, impl Display>` (the error becomes the `400` message).
macro_rules! string_parameter {
    ($ty:ident, schema: $schema:expr, parse: $parse:expr $(,)?) => {
        impl poem_openapi::types::Type for $ty {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> std::borrow::Cow<'static, str> {
                stringify!($ty).into()
            }

            fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
                poem_openapi::registry::MetaSchemaRef::Inline(Box::new($schema))
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

        impl poem_openapi::types::ParseFromParameter for $ty {
            fn parse_from_parameter(value: &str) -> poem_openapi::types::ParseResult<Self> {
                ($parse)(value).map_err(poem_openapi::types::ParseError::custom)
            }
        }

        impl poem_openapi::types::ToJSON for $ty {
            fn to_json(&self) -> Option<serde_json::Value> {
                Some(serde_json::Value::String(self.as_str().to_owned()))
            }
        }
    };
}

pub(crate) use string_parameter;
