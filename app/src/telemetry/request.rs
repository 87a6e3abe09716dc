//! One log line and one metric sample per request.

use std::time::Instant;

use poem::http::Method;

use super::metrics;

/// Started when a request arrives; finished with the status of its answer.
pub struct RequestTelemetry {
    started: Instant,
    method: &'static str,
    path: &'static str,
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

impl RequestTelemetry {
    /// `template` is the request's route template (never the raw path).
    pub fn start(method: &Method, template: &'static str) -> Self {
        Self {
            started: Instant::now(),
            method: method_label(method),
            path: template,
        }
    }

    /// The route template this request is known by.
    pub fn template(&self) -> &'static str {
        self.path
    }

    /// `client` is the caller's name from the keys file, or `anonymous`.
    pub fn finish(self, status: u16, client: &str) {
        let elapsed = self.started.elapsed();
        metrics::request_finished(self.method, self.path, status, client, elapsed);
        tracing::info!(
            method = self.method,
            path = self.path,
            status,
            client,
            latency_us = elapsed.as_micros() as u64,
            "request"
        );
    }
}
