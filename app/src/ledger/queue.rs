//! The transactions waiting for a commit, per route, in arrival order, and how a commit's
//! result is handed back to them.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;
use tokio::sync::oneshot;

use super::LedgerError;
use crate::{
    calendar::Day,
    idempotency::{KeyedIncrement, KeyedOutcome},
    route::Route,
    store::{RouteOutcome, RouteWrite},
};

pub(super) type Reply = oneshot::Sender<Result<u64, LedgerError>>;
pub(super) type KeyedReply = oneshot::Sender<Result<KeyedOutcome, LedgerError>>;

/// One caller waiting for its transaction to be committed.
pub(super) enum Waiter {
    Plain { route: Route, reply: Reply },
    Keyed(KeyedIncrement, KeyedReply),
}

/// One route's transactions taken for one commit.
pub(super) struct Taken {
    pub route: Route,
    pub plain: Vec<Reply>,
    pub keyed: Vec<(KeyedIncrement, KeyedReply)>,
}

impl Taken {
    /// What the store is asked to write, on `day`.
    pub fn write(&self, day: Day) -> RouteWrite {
        RouteWrite {
            route: self.route,
            keyless: self.plain.len() as u64,
            keyed: self.keyed.iter().map(|(k, _)| k.clone()).collect(),
            day,
        }
    }

    pub fn len(&self) -> usize {
        self.plain.len() + self.keyed.len()
    }

    /// Hands every caller its count: the keyless ones `keyless_total - n + 1 ..= keyless_total`
    /// in arrival order, exactly as if they had been applied one after another; the keyed ones
    /// their outcome. Returns how many transactions were recorded (replays are not).
    pub fn answer(self, outcome: RouteOutcome) -> u64 {
        let recorded =
            self.plain.len() as u64 + outcome.keyed.iter().filter(|o| !o.replayed).count() as u64;
        let first = outcome
            .keyless_total
            .saturating_sub(self.plain.len() as u64)
            + 1;
        for (offset, reply) in self.plain.into_iter().enumerate() {
            // A caller that gave up (timed out, disconnected) no longer listens.
            let _ = reply.send(Ok(first + offset as u64));
        }
        for ((_, reply), outcome) in self.keyed.into_iter().zip(outcome.keyed) {
            let _ = reply.send(Ok(outcome));
        }
        recorded
    }

    pub fn fail(self, err: &LedgerError) {
        for reply in self.plain {
            let _ = reply.send(Err(err.clone()));
        }
        for (_, reply) in self.keyed {
            let _ = reply.send(Err(err.clone()));
        }
    }
}

#[derive(Default)]
struct RouteQueue {
    plain: VecDeque<Reply>,
    keyed: VecDeque<(KeyedIncrement, KeyedReply)>,
}

impl RouteQueue {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.keyed.is_empty()
    }

    fn len(&self) -> usize {
        self.plain.len() + self.keyed.len()
    }
}

/// Waiting transactions by route, and the order in which routes are served.
#[derive(Default)]
pub(super) struct Queue {
    routes: FxHashMap<Route, RouteQueue>,
    /// Transactions waiting, all routes together.
    total: usize,
    /// Routes to look at, oldest first. A route may be listed more than once, or after its
    /// waiters are gone: whoever pops it checks.
    ready: VecDeque<Route>,
}

impl Queue {
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn push(&mut self, waiter: Waiter) {
        let route = match &waiter {
            Waiter::Plain { route, .. } => *route,
            Waiter::Keyed(increment, _) => increment.route,
        };
        let queue = self.routes.entry(route).or_default();
        if queue.is_empty() {
            self.ready.push_back(route);
        }
        match waiter {
            Waiter::Plain { reply, .. } => queue.plain.push_back(reply),
            Waiter::Keyed(increment, reply) => queue.keyed.push_back((increment, reply)),
        }
        self.total += 1;
    }

    /// Puts a commit's transactions back at the front of their route (the store refused it
    /// and applied nothing), ahead of those that arrived meanwhile.
    pub fn put_back(&mut self, taken: Taken) {
        let queue = self.routes.entry(taken.route).or_default();
        self.total += taken.len();
        for reply in taken.plain.into_iter().rev() {
            queue.plain.push_front(reply);
        }
        for keyed in taken.keyed.into_iter().rev() {
            queue.keyed.push_front(keyed);
        }
        self.ready.push_front(taken.route);
    }

    /// The next route to look at.
    pub fn pop_ready(&mut self) -> Option<Route> {
        self.ready.pop_front()
    }

    /// Lists a route to be looked at again, if it has waiters.
    pub fn mark_ready(&mut self, route: Route) {
        if self.has_waiters(route) {
            self.ready.push_back(route);
        }
    }

    pub fn has_waiters(&self, route: Route) -> bool {
        self.routes.get(&route).is_some_and(|q| !q.is_empty())
    }

    pub fn has_keyed(&self, route: Route) -> bool {
        self.routes.get(&route).is_some_and(|q| !q.keyed.is_empty())
    }

    /// Takes up to `room` of a route's transactions, at most `max_keyed` of them keyed, oldest
    /// first. Callers that gave up meanwhile are dropped, not committed. If the route keeps
    /// waiters, it is listed as ready again.
    pub fn take(&mut self, route: Route, room: usize, max_keyed: usize) -> Option<Taken> {
        let queue = self.routes.get_mut(&route)?;
        let before = queue.len();
        let mut keyed = Vec::new();
        while keyed.len() < room.min(max_keyed) {
            let Some((increment, reply)) = queue.keyed.pop_front() else {
                break;
            };
            if !reply.is_closed() {
                keyed.push((increment, reply));
            }
        }
        let mut plain = Vec::new();
        while plain.len() + keyed.len() < room {
            let Some(reply) = queue.plain.pop_front() else {
                break;
            };
            if !reply.is_closed() {
                plain.push(reply);
            }
        }
        self.total -= before - queue.len();
        if queue.is_empty() {
            self.routes.remove(&route);
        } else {
            self.ready.push_back(route);
        }
        let taken = Taken {
            route,
            plain,
            keyed,
        };
        (taken.len() > 0).then_some(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(s: &str) -> Route {
        Route::parse(s).expect("route")
    }

    fn plain(queue: &mut Queue, r: Route) -> oneshot::Receiver<Result<u64, LedgerError>> {
        let (reply, answer) = oneshot::channel();
        queue.push(Waiter::Plain { route: r, reply });
        answer
    }

    #[test]
    fn takes_oldest_first_skips_callers_that_left_and_puts_back_in_front() {
        let mut queue = Queue::default();
        let r = route("AR1");
        let _a = plain(&mut queue, r);
        drop(plain(&mut queue, r));
        let _c = plain(&mut queue, r);
        let _d = plain(&mut queue, r);
        assert_eq!(queue.total(), 4);
        assert_eq!(queue.pop_ready(), Some(r));
        let taken = queue.take(r, 2, 0).expect("taken");
        // The one that left was dropped: two live callers taken, one left.
        assert_eq!(taken.len(), 2);
        assert_eq!(queue.total(), 1);
        queue.put_back(taken);
        assert_eq!(queue.total(), 3);
        assert_eq!(queue.pop_ready(), Some(r));
        assert_eq!(queue.take(r, 10, 0).map(|t| t.len()), Some(3));
        assert_eq!(queue.total(), 0);
        assert!(!queue.has_waiters(r));
    }
}
