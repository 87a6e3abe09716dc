//! The HTTP surface: the OpenAPI operations, Swagger UI, the OpenAPI document and `/metrics`,
//! assembled into one endpoint with the JSON error shape and request telemetry around it.

mod body_limit;
pub mod error;
pub mod operations;
pub mod transactions;

use std::sync::Arc;

use bytes::Bytes;
use metrics_exporter_prometheus::PrometheusHandle;
use poem::{
    Endpoint, EndpointExt, IntoEndpoint, Route as Router, endpoint::make_sync, get, http::header,
    middleware::CatchPanic,
};
use poem_openapi::{OpenApiService, Tags};

use crate::{ledger::Ledger, lifecycle::Lifecycle, telemetry::request::RequestTelemetry};

#[derive(Tags)]
pub enum ApiTags {
    /// Record and read per-route counts of confirmed booking transactions.
    Transactions,
    /// Health, readiness and version, for orchestrators and operators.
    Operations,
}

pub type Apis = (transactions::TransactionsApi, operations::OperationsApi);

/// The OpenAPI service, with its document metadata.
pub fn openapi(ledger: Arc<Ledger>, lifecycle: Arc<Lifecycle>) -> OpenApiService<Apis, ()> {
    let store_kind = ledger.store_kind();
    OpenApiService::new(
        (
            transactions::TransactionsApi::new(ledger),
            operations::OperationsApi::new(lifecycle, store_kind),
        ),
        "Flight transaction counter",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Counts confirmed booking transactions per flight route. Reservation systems POST once \
         per confirmed transaction; dashboards GET the count. Every error is JSON: \
         `{\"error\": \"<stable_code>\", \"message\": \"...\"}`.",
    )
}

/// Builds the service's whole HTTP endpoint.
pub fn app(
    ledger: Arc<Ledger>,
    lifecycle: Arc<Lifecycle>,
    metrics: PrometheusHandle,
) -> impl Endpoint + 'static {
    let service = openapi(ledger, lifecycle);
    // Rendered once; `Bytes` clones are reference counted, so serving them copies nothing.
    let spec = Bytes::from(service.spec());
    let swagger_ui = Bytes::from(service.swagger_ui_html());
    let metrics_endpoint = make_sync(move |_| {
        poem::Response::builder()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(metrics.render())
    });
    let spec_endpoint = make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(spec.clone())
    });

    // The operations are mounted without stripping their prefix (no `nest("/")` catch-all in
    // front of the API): each request is routed once, and paths stay as the document says.
    let api = Arc::new(service.into_endpoint());
    Router::new()
        .at(
            "/",
            get(make_sync(move |_| {
                poem::Response::builder()
                    .content_type("text/html; charset=utf-8")
                    .body(swagger_ui.clone())
            })),
        )
        .at("/openapi.json", get(spec_endpoint))
        .at("/metrics", get(metrics_endpoint))
        .nest_no_strip("/transactions", api.clone())
        .nest_no_strip("/healthz", api.clone())
        .nest_no_strip("/readyz", api.clone())
        .nest_no_strip("/version", api)
        .with(body_limit::BodyLimit::new(error::MAX_BODY_BYTES))
        .with(CatchPanic::new())
        .with(error::JsonErrors)
        .with(RequestTelemetry)
}
