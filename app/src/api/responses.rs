//! The answers every read operation shares, declared once: its body on `200`, its `400`s, and
//! `401`, `413`, `500` and `503`, each in the OpenAPI document.

/// Declares the answers of one read operation: its body on `200`, its `400`s, and the statuses
/// every read shares.
macro_rules! read_response {
    ($name:ident, $body:ty, $ok:literal, $bad:literal, $handler:literal) => {
        #[derive(poem_openapi::ApiResponse)]
        #[oai(bad_request_handler = $handler)]
        pub enum $name {
            #[doc = $ok]
            #[oai(status = 200)]
            Ok($crate::api::json::JsonBody<$body>),
            #[doc = $bad]
            #[oai(status = 400)]
            BadRequest($crate::api::json::JsonBody<$crate::api::error::ErrorBody>),
            /// No API key, a malformed `Authorization` header, or a key that is not valid
            /// (`unauthorized`); only when the service runs with API keys, and reads are not
            /// public. Produced before the operation runs.
            #[oai(status = 401)]
            #[allow(dead_code)]
            Unauthorized(
                $crate::api::json::JsonBody<$crate::api::error::ErrorBody>,
                /// Always `Bearer`.
                #[oai(header = "WWW-Authenticate")]
                String,
            ),
            /// The request body is larger than the service accepts (`payload_too_large`).
            /// Produced before the operation runs.
            #[oai(status = 413)]
            #[allow(dead_code)]
            PayloadTooLarge($crate::api::json::JsonBody<$crate::api::error::ErrorBody>),
            /// Unexpected failure (`internal`); nothing about it is exposed.
            #[oai(status = 500)]
            Internal($crate::api::json::JsonBody<$crate::api::error::ErrorBody>),
            /// The store cannot answer right now (`store_unavailable`, `shutting_down`).
            /// Retry after the given number of seconds.
            #[oai(status = 503)]
            Unavailable(
                $crate::api::json::JsonBody<$crate::api::error::ErrorBody>,
                /// Seconds to wait before retrying.
                #[oai(header = "Retry-After")]
                u32,
            ),
        }

        #[allow(dead_code)]
        impl $name {
            fn bad(code: $crate::api::error::ErrorCode, message: impl Into<String>) -> Self {
                Self::BadRequest($crate::api::json::JsonBody(
                    $crate::api::error::ErrorBody::new(code, message),
                ))
            }

            fn failed(err: $crate::ledger::LedgerError) -> Self {
                use $crate::api::transactions::Failure;
                match Failure::from_ledger(err) {
                    Failure::Internal(body) => Self::Internal($crate::api::json::JsonBody(body)),
                    Failure::Unavailable(body) => Self::Unavailable(
                        $crate::api::json::JsonBody(body),
                        $crate::api::error::RETRY_AFTER_SECONDS,
                    ),
                }
            }
        }
    };
}
