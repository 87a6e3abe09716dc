//! One log line and one metric sample per request; refused requests (`401`, `403`, `429`)
//! are logged at a sampled rate, as a client refused without end must not fill the logs.

use std::{
    num::NonZeroU32,
    sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::{InMemoryState, NotKeyed},
};

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
        if let Some(sampler) = REFUSALS.iter().find(|s| s.status == status) {
            // Metrics count every refusal; the log shows a sample, and how many it left out.
            if let Some(suppressed) = sampler.admit() {
                tracing::info!(
                    method = self.method,
                    path = self.path,
                    status,
                    client,
                    latency_us = elapsed.as_micros() as u64,
                    suppressed,
                    "request"
                );
            }
            return;
        }
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

/// Log lines per second, per refusal status, at most.
pub const REFUSALS_LOGGED_PER_SECOND: u32 = 10;

/// The sample of one refusal status's log lines (on the system's clock; tests hand in one
/// they move).
struct RefusalSampler<C: Clock = DefaultClock> {
    status: u16,
    lines: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    /// Refusals left out of the log since its last line of this status.
    suppressed: AtomicU64,
}

impl RefusalSampler {
    fn new(status: u16) -> Self {
        Self::with_clock(status, DefaultClock::default())
    }
}

impl<C: Clock> RefusalSampler<C> {
    fn with_clock(status: u16, clock: C) -> Self {
        let per_second = NonZeroU32::new(REFUSALS_LOGGED_PER_SECOND).unwrap_or(NonZeroU32::MIN);
        Self {
            status,
            lines: RateLimiter::direct_with_clock(Quota::per_second(per_second), clock),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(refusals left out since the last line)` when this one is logged.
    fn admit(&self) -> Option<u64> {
        if self.lines.check().is_ok() {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

static REFUSALS: LazyLock<[RefusalSampler; 3]> = LazyLock::new(|| {
    [
        RefusalSampler::new(401),
        RefusalSampler::new(403),
        RefusalSampler::new(429),
    ]
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_logged_at_a_sampled_rate_with_the_count_left_out() {
        let clock = governor::clock::FakeRelativeClock::default();
        let sampler = RefusalSampler::with_clock(429, clock.clone());
        let burst = REFUSALS_LOGGED_PER_SECOND as usize;
        let logged: Vec<Option<u64>> = (0..burst + 25).map(|_| sampler.admit()).collect();
        assert!(logged[..burst].iter().all(|l| *l == Some(0)), "{logged:?}");
        assert!(logged[burst..].iter().all(Option::is_none), "{logged:?}");
        // One line a tenth of a second comes back.
        clock.advance(std::time::Duration::from_millis(100));
        assert_eq!(
            sampler.admit(),
            Some(25),
            "the next line says how many were left out"
        );
    }
}
