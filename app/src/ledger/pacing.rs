//! Per-route commit pacing: additive increase, multiplicative decrease (AIMD), as TCP does with
//! its congestion window.
//!
//! A networked store limits the write rate of one item (DynamoDB: about 1,000 write units a
//! second on one partition), across every instance of the service. When it throttles a route's
//! commit, nothing was applied: the ledger puts the transactions back in the queue and from then
//! on starts that route's commits no more often than its pace allows. Transactions that arrive
//! meanwhile wait and join the next commit, so batches grow instead of requests failing. Every
//! throttle halves the route's pace (once per round: commits that started before the last
//! decrease say nothing about the new pace); every successful commit raises it a little,
//! in proportion to the time since the last change, so it probes back up and the route runs
//! free again once the pace is far above what it needs. Instances do this independently and
//! converge on sharing the item's limit, as TCP flows share a link.

use std::time::Duration;

use rustc_hash::FxHashMap;
use tokio::time::Instant;

use crate::{route::Route, telemetry::metrics as m};

/// The pace a route gets at its first throttle, in commits per second (halved at once).
const FIRST_PACE: f64 = 128.0;
/// The slowest a route is ever paced.
const MIN_PACE: f64 = 1.0;
/// How fast the pace of a route that commits without throttling rises, per second.
const PACE_INCREASE_PER_SECOND: f64 = 8.0;
/// A route paced above this has no limit worth keeping.
const RELEASE_PACE: f64 = 2048.0;

struct RoutePace {
    /// Commits per second.
    pace: f64,
    /// When the pace last changed (increases are proportional to the time since).
    changed: Instant,
    /// When it was last halved.
    decreased: Instant,
    /// The earliest start of the route's next commit.
    next_start: Instant,
}

impl RoutePace {
    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.pace)
    }
}

#[derive(Default)]
pub(super) struct Pacing {
    routes: FxHashMap<Route, RoutePace>,
    /// Paced routes with waiters, and when each may start its next commit.
    waiting: Vec<(Instant, Route)>,
}

impl Pacing {
    /// When the route may start a commit, if not now.
    pub fn not_before(&self, route: Route, now: Instant) -> Option<Instant> {
        let pace = self.routes.get(&route)?;
        (pace.next_start > now).then_some(pace.next_start)
    }

    /// Remembers that `route` waits for its pace, to be woken at `at`.
    pub fn wait(&mut self, route: Route, at: Instant) {
        if !self.waiting.iter().any(|(_, r)| *r == route) {
            self.waiting.push((at, route));
        }
    }

    /// The earliest moment a waiting route may start a commit.
    pub fn next_wake(&self) -> Option<Instant> {
        self.waiting.iter().map(|(at, _)| *at).min()
    }

    /// Takes the routes whose turn has come.
    pub fn due(&mut self, now: Instant) -> Vec<Route> {
        let mut due = Vec::new();
        self.waiting.retain(|(at, route)| {
            let ready = *at <= now;
            if ready {
                due.push(*route);
            }
            !ready
        });
        due
    }

    /// A commit of `route` starts now.
    pub fn started(&mut self, route: Route, now: Instant) {
        if let Some(pace) = self.routes.get_mut(&route) {
            pace.next_start = now + pace.interval();
        }
    }

    /// The store throttled a commit of `route` that started at `started`.
    pub fn throttled(&mut self, route: Route, started: Instant, now: Instant) {
        let pace = self.routes.entry(route).or_insert_with(|| RoutePace {
            pace: FIRST_PACE,
            changed: now,
            // Far enough back that this first throttle halves the pace.
            decreased: started
                .checked_sub(Duration::from_secs(1))
                .unwrap_or(started),
            next_start: now,
        });
        if started >= pace.decreased {
            let before = pace.pace;
            pace.pace = (pace.pace / 2.0).max(MIN_PACE);
            pace.decreased = now;
            pace.changed = now;
            tracing::info!(
                %route,
                from = before,
                to = pace.pace,
                "store throttled the route; pacing its commits (per second)"
            );
        }
        pace.next_start = now + pace.interval();
        self.publish();
    }

    /// A commit of `route` went through.
    pub fn succeeded(&mut self, route: Route, now: Instant) {
        let Some(pace) = self.routes.get_mut(&route) else {
            return;
        };
        let elapsed = now.saturating_duration_since(pace.changed).as_secs_f64();
        pace.pace += PACE_INCREASE_PER_SECOND * elapsed;
        pace.changed = now;
        if pace.pace >= RELEASE_PACE {
            tracing::info!(%route, "the route commits freely again");
            self.routes.remove(&route);
        }
        self.publish();
    }

    /// Publishes how many routes are paced and the slowest pace.
    fn publish(&self) {
        let slowest = self
            .routes
            .values()
            .map(|p| p.pace)
            .fold(f64::INFINITY, f64::min);
        m::pacing(
            self.routes.len(),
            if slowest.is_finite() { slowest } else { 0.0 },
        );
    }

    #[cfg(test)]
    pub fn pace(&self, route: Route) -> Option<f64> {
        self.routes.get(&route).map(|p| p.pace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_halve_the_pace_once_per_round_and_successes_raise_it() {
        let route = Route::parse("AR1").expect("route");
        let mut pacing = Pacing::default();
        let t0 = Instant::now();
        assert_eq!(pacing.not_before(route, t0), None);
        pacing.throttled(route, t0, t0 + Duration::from_millis(5));
        assert_eq!(pacing.pace(route), Some(FIRST_PACE / 2.0));
        // A commit that started before that decrease says nothing new.
        pacing.throttled(route, t0, t0 + Duration::from_millis(6));
        assert_eq!(pacing.pace(route), Some(FIRST_PACE / 2.0));
        // One that started after it halves again.
        let t1 = t0 + Duration::from_millis(20);
        pacing.throttled(route, t1, t1);
        assert_eq!(pacing.pace(route), Some(FIRST_PACE / 4.0));
        // The next commit waits one interval.
        assert_eq!(
            pacing.not_before(route, t1),
            Some(t1 + Duration::from_secs_f64(4.0 / FIRST_PACE))
        );
        // Two seconds of successes raise it by twice the increase.
        pacing.succeeded(route, t1 + Duration::from_secs(2));
        let raised = pacing.pace(route).expect("paced");
        assert!((raised - (FIRST_PACE / 4.0 + 2.0 * PACE_INCREASE_PER_SECOND)).abs() < 1e-6);
        // Far above any limit: released.
        pacing.succeeded(route, t1 + Duration::from_secs(600));
        assert_eq!(pacing.pace(route), None);
        assert_eq!(
            pacing.not_before(route, t1 + Duration::from_secs(600)),
            None
        );
    }

    #[test]
    fn the_pace_never_drops_below_the_floor() {
        let route = Route::parse("AR1").expect("route");
        let mut pacing = Pacing::default();
        let mut now = Instant::now();
        for _ in 0..20 {
            now += Duration::from_secs(2);
            pacing.throttled(route, now, now);
        }
        assert_eq!(pacing.pace(route), Some(MIN_PACE));
    }
}
