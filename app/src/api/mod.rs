//! The HTTP surface: the OpenAPI operations, Swagger UI, the dashboard, the OpenAPI document
//! and `/metrics`, assembled into one endpoint with the JSON error shape and request telemetry
//! around it.

#[macro_use]
mod responses;
pub mod admin;
pub mod auth;
mod conditional;
pub mod cors;
mod cursor;
mod dashboard;
pub mod document;
pub mod error;
mod json;
pub mod limits;
pub mod operations;
pub mod parameter;
pub mod rankings;
pub mod reports;
mod request_target;
pub mod routes;
mod security_headers;
pub mod transactions;

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::FutureExt as _;
use metrics_exporter_prometheus::PrometheusHandle;
use poem::{
    Endpoint, IntoEndpoint, Request, Response,
    endpoint::BoxEndpoint,
    http::{Method, StatusCode, header},
};
use poem_openapi::{OpenApiService, Tags};

use self::{
    auth::Caller,
    routes::{Access, Handler, RouteEntry},
};
use crate::{
    auth::AuthMode, ledger::Ledger, lifecycle::Lifecycle, limits::ClientLimits, rankings::Rankings,
    telemetry::request::RequestTelemetry,
};

#[derive(Tags)]
pub enum ApiTags {
    /// Record and read per-route counts of confirmed booking transactions.
    Transactions,
    /// Health, readiness and version, for orchestrators and operators.
    Operations,
    /// What operators do: export a snapshot of the store.
    Admin,
}

pub type Apis = (
    transactions::TransactionsApi,
    reports::ReportsApi,
    rankings::RankingsApi,
    operations::OperationsApi,
    admin::AdminApi,
);

/// The OpenAPI service, with its document metadata.
pub fn openapi(
    ledger: Arc<Ledger>,
    lifecycle: Arc<Lifecycle>,
    auth: &AuthMode,
    limits: &Arc<ClientLimits>,
    rankings: Arc<Rankings>,
) -> OpenApiService<Apis, ()> {
    let store_kind = ledger.store_kind();
    OpenApiService::new(
        (
            transactions::TransactionsApi::new(Arc::clone(&ledger), Arc::clone(limits)),
            reports::ReportsApi::new(Arc::clone(&ledger), Arc::clone(&rankings)),
            rankings::RankingsApi::new(rankings),
            operations::OperationsApi::new(lifecycle, store_kind, auth.as_str()),
            admin::AdminApi::new(ledger),
        ),
        "Flight transaction counter",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Counts confirmed booking transactions per flight route. Reservation systems POST once \
         per confirmed transaction; dashboards GET the count. When the service runs with API \
         keys, the transactions API needs `Authorization: Bearer <key>`: a `write` key to \
         record, a `read` or `write` key to read (use \"Authorize\"). Every error is JSON: \
         `{\"error\": \"<stable_code>\", \"message\": \"...\"}`.\n\n\
         Dashboard: [/dashboard](/dashboard).",
    )
}

/// The service's whole HTTP endpoint.
///
/// One hand-written endpoint in front of the OpenAPI service instead of a router plus a stack of
/// middleware: every layer of poem's router and middleware moves the request into a future of
/// its own, and on a request that does little else those copies were a large share of the CPU.
/// It looks the path up in the route table once, authenticates the request against the access
/// the table gives it, serves the fixed documents itself, hands everything else to the
/// OpenAPI service, and wraps every answer the same way: body-size limit, JSON errors, panic
/// guard, telemetry.
pub struct ServiceEndpoint {
    api: BoxEndpoint<'static>,
    auth: AuthMode,
    swagger_ui: Bytes,
    /// The Swagger UI page's Content Security Policy, made from the page.
    swagger_ui_headers: security_headers::PageHeaders,
    dashboard: dashboard::Dashboard,
    spec: Bytes,
    /// `None` when `/metrics` has a listener of its own (`--metrics-bind`): the API port then
    /// answers `404` for it, so that whoever reaches the API sees no client names or traffic.
    metrics: Option<PrometheusHandle>,
    /// Per-client limits: the request rate is checked here, the idempotency-key cap by the
    /// operation that records.
    limits: Arc<ClientLimits>,
    /// How long the rankings answered now stay fresh, for their `Cache-Control`.
    rankings: Arc<Rankings>,
}

/// Builds the service's whole HTTP endpoint; `metrics` is served at `/metrics` when given.
pub fn app(
    ledger: Arc<Ledger>,
    lifecycle: Arc<Lifecycle>,
    metrics: Option<PrometheusHandle>,
    auth: AuthMode,
    limits: ClientLimits,
    rankings_refresh: Duration,
) -> ServiceEndpoint {
    let limits = Arc::new(limits);
    let rankings = Arc::new(Rankings::new(Arc::clone(&ledger), rankings_refresh));
    let service = openapi(ledger, lifecycle, &auth, &limits, Arc::clone(&rankings));
    // Rendered once; `Bytes` clones are reference counted, so serving them copies nothing.
    let rendered = service.spec();
    let finished = document::finish(&rendered, &auth);
    // Swagger UI's page embeds the document it shows: the finished one, in place of poem's.
    let swagger_ui_html = service.swagger_ui_html().replacen(&rendered, &finished, 1);
    let spec = Bytes::from(finished);
    let swagger_ui_headers = security_headers::PageHeaders::for_page(&swagger_ui_html);
    let swagger_ui = Bytes::from(swagger_ui_html);
    ServiceEndpoint {
        api: service.into_endpoint(),
        auth,
        swagger_ui,
        swagger_ui_headers,
        dashboard: dashboard::Dashboard::default(),
        spec,
        metrics,
        limits,
        rankings,
    }
}

fn document(content_type: &'static str, body: Bytes) -> Response {
    let mut resp = Response::builder()
        .content_type(content_type)
        .header(header::CACHE_CONTROL, "no-cache")
        .body(body);
    security_headers::apply_document_headers(&mut resp);
    resp
}

/// The Prometheus exposition of every metric.
fn metrics_document(metrics: &PrometheusHandle) -> Response {
    document(
        "text/plain; version=0.0.4; charset=utf-8",
        Bytes::from(metrics.render()),
    )
}

/// The endpoint of the metrics listener (`--metrics-bind`): `/metrics`, and a JSON `404` for
/// anything else.
pub fn metrics_app(metrics: PrometheusHandle) -> impl Endpoint<Output = Response> {
    poem::endpoint::make_sync(move |req: Request| {
        if req.uri().path() == "/metrics" && req.method() == poem::http::Method::GET {
            metrics_document(&metrics)
        } else {
            error::json_error(StatusCode::NOT_FOUND, None)
        }
    })
}

impl ServiceEndpoint {
    /// Answers a request; `caller` is set to who made it, once known.
    async fn route(
        &self,
        mut req: Request,
        entry: Option<&'static RouteEntry>,
        caller: &mut Caller,
    ) -> Response {
        let Some(access) = routes::access_for(entry, req.method()) else {
            return error::json_error(StatusCode::METHOD_NOT_ALLOWED, entry);
        };
        match auth::check(&self.auth, &mut req, access) {
            Ok(known) => *caller = known,
            Err(refusal) => return refusal.response(),
        }
        // After authentication, so that each client spends its own tokens; open paths (health,
        // readiness, version, metrics and the documents) never spend any.
        if access != Access::Open
            && let Some(rates) = &self.limits.rates
            && let Some(refused) = limits::charge(rates, caller, entry, &req)
        {
            return refused;
        }
        if let Err(status) = error::check_body_size(&req) {
            return error::json_error(status, entry);
        }
        if let Err(body) = request_target::check(req.uri().path(), req.uri().query(), entry) {
            return error::error_response(StatusCode::BAD_REQUEST, &body);
        }
        match entry.map(|entry| entry.handler) {
            Some(Handler::SwaggerUi) => {
                let mut page = document("text/html; charset=utf-8", self.swagger_ui.clone());
                self.swagger_ui_headers.apply(&mut page);
                page
            }
            Some(Handler::Dashboard) => self.dashboard.response(),
            Some(Handler::OpenApiDocument) => document(json::JSON_CONTENT_TYPE, self.spec.clone()),
            Some(Handler::Metrics) => match &self.metrics {
                Some(metrics) => metrics_document(metrics),
                None => error::json_error(StatusCode::NOT_FOUND, None),
            },
            Some(Handler::Operation) | None => {
                // Reads are tagged for conditional requests (see `conditional`).
                let read = (access == Access::Read && req.method() == Method::GET)
                    .then(|| conditional::requested_tags(req.headers()));
                let resp = match self.api.call(req).await {
                    Ok(resp) => error::into_json_error(resp, entry),
                    Err(err) => {
                        if err.status().is_server_error() {
                            tracing::error!(error = %err, "request failed");
                        }
                        error::into_json_error(err.into_response(), entry)
                    }
                };
                match read {
                    Some(tags) => {
                        let fresh = if entry.is_some_and(|e| e.template == rankings::PATH) {
                            conditional::Freshness::For(self.rankings.fresh_for())
                        } else {
                            conditional::Freshness::Revalidate
                        };
                        conditional::finish_read(resp, tags.as_deref(), fresh).await
                    }
                    None => resp,
                }
            }
        }
    }
}

impl Endpoint for ServiceEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let entry = routes::find(req.uri().path());
        let telemetry = RequestTelemetry::start(req.method(), routes::template_of(entry));
        let mut caller = Caller::default();
        let resp = match AssertUnwindSafe(self.route(req, entry, &mut caller))
            .catch_unwind()
            .await
        {
            Ok(resp) => resp,
            Err(_) => {
                tracing::error!(path = telemetry.template(), "request handler panicked");
                error::json_error(StatusCode::INTERNAL_SERVER_ERROR, entry)
            }
        };
        telemetry.finish(resp.status().as_u16(), caller.label());
        Ok(resp)
    }
}
