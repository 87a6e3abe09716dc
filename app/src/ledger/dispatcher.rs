//! The single owner of the queue: it forms commits as the store allows and hears back from
//! them. Every write, keyless or keyed, on every store, goes through here, so the bounds
//! (`--max-batch`, `--max-pending`, the store's commits in flight) hold for all of them.
//!
//! A [`Store::Batch`] gets one commit at a time, holding every waiting route (up to the batch
//! limit), run right in this task: waiting for it here rather than in a task of its own that
//! reports back saves two trips through the scheduler per commit, and the next batch is formed
//! the moment it returns. A [`Store::Item`] gets one route per commit, several routes at once;
//! a hot route may have a few keyless commits in flight (each an atomic add that returns its
//! own total), but a commit with keyed transactions is alone on its route, since it writes the
//! route's item together with the keys. A throttled commit goes back in the queue and its
//! route is paced ([`super::pacing`]).
//!
//! After a keyed commit that took [`SLOW_KEYED_COMMIT`] or more, the route's next commit waits a
//! moment ([`linger`]): the callers just answered are often about to send their next POST, and
//! it joins that commit instead of the one after. Without it, the clients of a route split into
//! two groups that take turns, each commit carrying half of them, however slow the store; with
//! it, batches grow with the store's latency, at a cost of 2% of it.

use std::{sync::Arc, time::Duration};

use rustc_hash::{FxHashMap, FxHashSet};
use tokio::{
    sync::{Notify, mpsc},
    time::Instant,
};

use super::{
    LedgerSettings,
    commit::{CommitContext, ItemDone, commit_batch, commit_item},
    pacing::Pacing,
    queue::{Queue, Waiter},
};
use crate::{
    route::Route,
    store::{BatchStore, ItemStore, Store},
};

/// A keyed commit at least this slow makes the route's next commit linger.
const SLOW_KEYED_COMMIT: Duration = Duration::from_millis(100);
/// The longest a commit lingers.
const MAX_LINGER: Duration = Duration::from_millis(20);

/// How long a route's next commit waits after a keyed commit that took `took`: 2% of it, at
/// most [`MAX_LINGER`]; nothing after a fast one.
fn linger(took: Duration) -> Duration {
    if took < SLOW_KEYED_COMMIT {
        return Duration::ZERO;
    }
    (took / 50).min(MAX_LINGER)
}

/// Commits in flight on one route.
#[derive(Default)]
struct RouteCommits {
    count: usize,
    /// One of them holds keyed transactions: nothing else may run on the route.
    exclusive: bool,
}

struct Finished {
    route: Route,
    done: ItemDone,
}

pub(super) struct Dispatcher {
    store: Store,
    settings: LedgerSettings,
    cx: CommitContext,
    queue: Queue,
    /// Per-item stores: commits in flight, by route and in all.
    committing: FxHashMap<Route, RouteCommits>,
    commits_in_flight: usize,
    pacing: Pacing,
    /// Routes whose next commit waits after a slow keyed commit, and until when.
    lingering: FxHashMap<Route, Instant>,
    finished_tx: mpsc::UnboundedSender<Finished>,
    finished_rx: mpsc::UnboundedReceiver<Finished>,
}

impl Dispatcher {
    pub fn new(store: Store, settings: LedgerSettings, cx: CommitContext) -> Self {
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        Self {
            store,
            settings,
            cx,
            queue: Queue::default(),
            committing: FxHashMap::default(),
            commits_in_flight: 0,
            pacing: Pacing::default(),
            lingering: FxHashMap::default(),
            finished_tx,
            finished_rx,
        }
    }

    pub async fn run(mut self, mut intake: mpsc::Receiver<Waiter>, stop: Arc<Notify>) {
        let mut intake_open = true;
        loop {
            // Everything that queued up meanwhile joins the next commit.
            if intake_open {
                intake_open = self.absorb(&mut intake);
            }
            match self.store.clone() {
                Store::Batch(store) => {
                    if self.commit_next_batch(&store).await {
                        continue;
                    }
                }
                Store::Item(store) => self.start_item_commits(&store),
            }
            if !intake_open && self.queue.total() == 0 && self.commits_in_flight == 0 {
                break;
            }
            let room = self.queue.total() < self.settings.max_pending;
            let wake = self.pacing.next_wake();
            tokio::select! {
                biased;
                Some(finished) = self.finished_rx.recv() => self.item_finished(finished),
                _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                    for route in self.pacing.due(Instant::now()) {
                        self.queue.mark_ready(route);
                    }
                }
                _ = stop.notified(), if intake_open => {
                    // No new senders get in; what is already queued is still received.
                    intake.close();
                }
                waiter = intake.recv(), if intake_open && room => match waiter {
                    Some(waiter) => self.queue.push(waiter),
                    None => intake_open = false,
                },
            }
        }
    }

    /// Takes every waiter already queued, up to the pending limit. Returns whether the intake
    /// is still open.
    fn absorb(&mut self, intake: &mut mpsc::Receiver<Waiter>) -> bool {
        while self.queue.total() < self.settings.max_pending {
            match intake.try_recv() {
                Ok(waiter) => self.queue.push(waiter),
                Err(mpsc::error::TryRecvError::Empty) => return true,
                Err(mpsc::error::TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    /// Commits the waiting routes, oldest first, up to the batch limit, in one transaction.
    /// Returns whether there was anything to commit.
    async fn commit_next_batch(&mut self, store: &Arc<dyn BatchStore>) -> bool {
        let mut room = self.settings.commit_room();
        let mut batch = Vec::new();
        let mut in_batch = FxHashSet::default();
        let mut seen_twice = Vec::new();
        while room > 0 {
            let Some(route) = self.queue.pop_ready() else {
                break;
            };
            if !in_batch.insert(route) {
                // Listed again after a partial take: the next batch's.
                seen_twice.push(route);
                break;
            }
            if let Some(taken) = self.queue.take(route, room, usize::MAX) {
                room -= taken.len();
                batch.push(taken);
            }
        }
        for route in seen_twice {
            self.queue.mark_ready(route);
        }
        if batch.is_empty() {
            return false;
        }
        commit_batch(store, batch, &self.cx).await;
        true
    }

    /// Starts commits of waiting routes, as many as the store takes at once.
    fn start_item_commits(&mut self, store: &Arc<dyn ItemStore>) {
        let limits = store.limits();
        let room = self.settings.commit_room();
        let now = Instant::now();
        while self.commits_in_flight < limits.max_in_flight.max(1) {
            let Some(route) = self.queue.pop_ready() else {
                break;
            };
            if !self.queue.has_waiters(route) {
                continue;
            }
            let keyed = self.queue.has_keyed(route);
            let free = match self.committing.get(&route) {
                None => true,
                Some(running) => {
                    !running.exclusive && !keyed && running.count < limits.per_route.max(1)
                }
            };
            if !free {
                // Listed again when one of its commits finishes.
                continue;
            }
            if let Some(&until) = self.lingering.get(&route) {
                if until > now {
                    // Woken with the paced routes.
                    self.pacing.wait(route, until);
                    continue;
                }
                self.lingering.remove(&route);
            }
            if let Some(at) = self.pacing.not_before(route, now) {
                self.pacing.wait(route, at);
                continue;
            }
            let Some(taken) = self.queue.take(route, room, limits.max_keyed.max(1)) else {
                continue;
            };
            let running = self.committing.entry(route).or_default();
            running.count += 1;
            running.exclusive = !taken.keyed.is_empty();
            self.commits_in_flight += 1;
            self.pacing.started(route, now);
            let commit = commit_item(Arc::clone(store), taken, self.cx.clone());
            let finished = self.finished_tx.clone();
            tokio::spawn(async move {
                let done = commit.await;
                // The dispatcher outlives every commit it starts, unless the runtime itself is
                // going away, and then nobody is left to tell.
                let _ = finished.send(Finished { route, done });
            });
        }
    }

    fn item_finished(&mut self, Finished { route, done }: Finished) {
        self.commits_in_flight -= 1;
        let mut keyed = false;
        if let Some(running) = self.committing.get_mut(&route) {
            running.count -= 1;
            keyed = running.exclusive;
            running.exclusive = false;
            if running.count == 0 {
                self.committing.remove(&route);
            }
        }
        let now = Instant::now();
        let wait = if keyed {
            linger(now.saturating_duration_since(done.started))
        } else {
            Duration::ZERO
        };
        if !wait.is_zero() {
            if self.lingering.len() >= 1024 {
                // Routes that had no commit since: their wait is long over.
                self.lingering.retain(|_, until| *until > now);
            }
            self.lingering.insert(route, now + wait);
        }
        match done.throttled {
            Some(taken) => {
                self.pacing.throttled(route, done.started, now);
                self.queue.put_back(taken);
            }
            None => {
                self.pacing.succeeded(route, now);
                self.queue.mark_ready(route);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slow_keyed_commits_make_the_next_one_linger_and_never_long() {
        assert_eq!(linger(Duration::from_millis(5)), Duration::ZERO);
        assert_eq!(linger(Duration::from_millis(99)), Duration::ZERO);
        assert_eq!(linger(Duration::from_millis(100)), Duration::from_millis(2));
        assert_eq!(
            linger(Duration::from_millis(500)),
            Duration::from_millis(10)
        );
        assert_eq!(linger(Duration::from_secs(5)), MAX_LINGER);
    }
}
