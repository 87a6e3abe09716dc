//! The HTTP surface: the OpenAPI operations, Swagger UI, the OpenAPI document and `/metrics`,
//! assembled into one endpoint with the JSON error shape and request telemetry around it.

pub mod error;
mod json;
pub mod operations;
pub(crate) mod parameter;
pub mod transactions;

use std::{panic::AssertUnwindSafe, sync::Arc};

use bytes::Bytes;
use futures_util::FutureExt as _;
use metrics_exporter_prometheus::PrometheusHandle;
use poem::{
    Endpoint, IntoEndpoint, Request, Response,
    endpoint::BoxEndpoint,
    http::{Method, StatusCode, header},
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

/// The service's whole HTTP endpoint.
///
/// One hand-written endpoint in front of the OpenAPI service instead of a router plus a stack of
/// middleware: every layer of poem's router and middleware moves the request into a future of
/// its own, and on a request that does little else those copies were a large share of the CPU.
/// It serves the three fixed documents itself, hands everything else to the OpenAPI service,
/// and wraps every answer the same way: body-size limit, JSON errors, panic guard, telemetry.
pub struct ServiceEndpoint {
    api: BoxEndpoint<'static>,
    swagger_ui: Bytes,
    spec: Bytes,
    metrics: PrometheusHandle,
}

/// Builds the service's whole HTTP endpoint.
pub fn app(
    ledger: Arc<Ledger>,
    lifecycle: Arc<Lifecycle>,
    metrics: PrometheusHandle,
) -> ServiceEndpoint {
    let service = openapi(ledger, lifecycle);
    // Rendered once; `Bytes` clones are reference counted, so serving them copies nothing.
    let spec = Bytes::from(service.spec());
    let swagger_ui = Bytes::from(service.swagger_ui_html());
    ServiceEndpoint {
        api: service.into_endpoint(),
        swagger_ui,
        spec,
        metrics,
    }
}

fn document(content_type: &'static str, body: Bytes) -> Response {
    Response::builder()
        .content_type(content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body)
}

impl ServiceEndpoint {
    async fn route(&self, req: Request, template: &'static str) -> Response {
        if let Err(status) = error::check_body_size(&req) {
            return error::json_error(status, template);
        }
        let fixed = match req.uri().path() {
            "/" => Some(document(
                "text/html; charset=utf-8",
                self.swagger_ui.clone(),
            )),
            "/openapi.json" => Some(document(json::JSON_CONTENT_TYPE, self.spec.clone())),
            "/metrics" => Some(document(
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(self.metrics.render()),
            )),
            _ => None,
        };
        if let Some(resp) = fixed {
            return if req.method() == Method::GET || req.method() == Method::HEAD {
                resp
            } else {
                error::json_error(StatusCode::METHOD_NOT_ALLOWED, template)
            };
        }
        match self.api.call(req).await {
            Ok(resp) => error::into_json_error(resp, template),
            Err(err) => {
                if err.status().is_server_error() {
                    tracing::error!(error = %err, "request failed");
                }
                error::into_json_error(err.into_response(), template)
            }
        }
    }
}

impl Endpoint for ServiceEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let telemetry = RequestTelemetry::start(req.method(), req.uri().path());
        let template = telemetry.template();
        let resp = match AssertUnwindSafe(self.route(req, template))
            .catch_unwind()
            .await
        {
            Ok(resp) => resp,
            Err(_) => {
                tracing::error!(path = template, "request handler panicked");
                error::json_error(StatusCode::INTERNAL_SERVER_ERROR, template)
            }
        };
        telemetry.finish(resp.status().as_u16());
        Ok(resp)
    }
}
