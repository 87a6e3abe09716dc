//! One log line and one metric sample per request.

use std::time::Instant;

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, http::Method};

use super::{metrics, path_template};

/// Wraps the whole app: times each request, logs it, counts it.
pub struct RequestTelemetry;

impl<E: Endpoint> Middleware<E> for RequestTelemetry {
    type Output = RequestTelemetryEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RequestTelemetryEndpoint { inner }
    }
}

pub struct RequestTelemetryEndpoint<E> {
    inner: E,
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

impl<E: Endpoint> Endpoint for RequestTelemetryEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Self::Output> {
        let started = Instant::now();
        let method = method_label(req.method());
        let path = path_template(req.uri().path());
        let response = match self.inner.call(req).await {
            Ok(resp) => resp.into_response(),
            Err(err) => err.into_response(),
        };
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        metrics::request_finished(method, path, status, elapsed);
        tracing::info!(
            method,
            path,
            status,
            latency_us = elapsed.as_micros() as u64,
            "request"
        );
        Ok(response)
    }
}
