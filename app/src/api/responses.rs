//! The answers every read operation shares, declared once: its body on `200`, its `400`s, and
//! `401`, `413`, `429`, `500` and `503`, each in the OpenAPI document.

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
            /// Too many requests from this client to this instance (`rate_limited`): only
            /// with `--client-rate-limit`. A multi-route read costs one token per route, a page
            /// of the list one per hundred routes it may hold; one
            /// that costs more than the client's burst is refused without `Retry-After`, as
            /// waiting never lets it through. Produced before the operation runs.
            #[oai(status = 429)]
            #[allow(dead_code)]
            TooManyRequests(
                $crate::api::json::JsonBody<$crate::api::error::ErrorBody>,
                /// Seconds to wait before retrying (at least 1).
                #[oai(header = "Retry-After")]
                Option<u32>,
                /// The limit, as draft-ietf-httpapi-ratelimit-headers has it:
                /// `"client";q=<tokens>;w=<seconds>`, a bucket of `q` tokens that fills in
                /// `w` seconds.
                #[oai(header = "RateLimit-Policy")]
                String,
                /// What is left: `"client";r=0;t=<seconds>`, none until `t` seconds from now.
                #[oai(header = "RateLimit")]
                Option<String>,
            ),
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
                use $crate::api::error::Failure;
                match Failure::from(err) {
                    Failure::Internal(body) => Self::Internal($crate::api::json::JsonBody(body)),
                    Failure::Unavailable { body, retry_after } => {
                        Self::Unavailable($crate::api::json::JsonBody(body), retry_after)
                    }
                }
            }
        }
    };
}
