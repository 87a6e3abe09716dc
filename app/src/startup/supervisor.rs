//! The one home of the service's background work: each periodic task (readiness probes, key
//! sweeps, the keys file's reloads, metrics upkeep) is started here, runs its rounds on a timer,
//! and is stopped here, in order, at shutdown.
//!
//! A task stops between two rounds, never in the middle of one: a sweep's store transaction
//! finishes, a reload applies whole. Tasks are never aborted. One that does not finish its
//! round within the stop wait (a network store that hangs) is reported and left to end with
//! the process, rather than cut off halfway.

use std::{future::Future, time::Duration};

use tokio::{sync::watch, task::JoinHandle};

pub struct Supervisor {
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        Self {
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }

    /// Runs `round` every `period`, the first time at once, until [`Supervisor::stop`]. A
    /// round that overruns delays the next one; rounds never overlap.
    pub fn every<F, Fut>(&mut self, name: &'static str, period: Duration, mut round: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut stopped = self.stop.subscribe();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    // Stopping wins over a round that is due at the same moment.
                    biased;
                    _ = stopped.wait_for(|stop| *stop) => return,
                    _ = tick.tick() => {}
                }
                round().await;
            }
        });
        self.tasks.push((name, task));
    }

    /// How many tasks run.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Tells every task to stop after its current round, and waits up to `wait` in all for
    /// them, in the order they were started. Returns the names of those still running.
    pub async fn stop(self, wait: Duration) -> Vec<&'static str> {
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + wait;
        let mut still_running = Vec::new();
        for (name, task) in self.tasks {
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::error!(task = name, error = %err, "a background task ended abnormally")
                }
                Err(_) => {
                    tracing::warn!(
                        task = name,
                        "a background task did not finish its round in time; it ends with the process"
                    );
                    still_running.push(name);
                }
            }
        }
        still_running
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tasks_run_on_their_timer_and_stop_between_rounds() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let mut supervisor = Supervisor::new();
        supervisor.every("counting", Duration::from_secs(1), {
            let (rounds, finished) = (Arc::clone(&rounds), Arc::clone(&finished));
            move || {
                let (rounds, finished) = (Arc::clone(&rounds), Arc::clone(&finished));
                async move {
                    rounds.fetch_add(1, Ordering::SeqCst);
                    // A round that takes time: stopping must wait for it, not cut it.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    finished.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        assert_eq!(supervisor.len(), 1);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 3, "at 0 s, 1 s and 2 s");
        // The third round is under way: stop lets it finish.
        let left = supervisor.stop(Duration::from_secs(1)).await;
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(finished.load(Ordering::SeqCst), 3);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 3, "no round after stop");
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_that_hangs_is_reported_and_not_aborted() {
        let finished = Arc::new(AtomicUsize::new(0));
        let mut supervisor = Supervisor::new();
        supervisor.every("hanging", Duration::from_secs(60), {
            let finished = Arc::clone(&finished);
            move || {
                let finished = Arc::clone(&finished);
                async move {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    finished.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        supervisor.every("quick", Duration::from_secs(60), || async {});
        tokio::time::sleep(Duration::from_millis(10)).await;
        let left = supervisor.stop(Duration::from_secs(2)).await;
        assert_eq!(left, vec!["hanging"]);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            finished.load(Ordering::SeqCst),
            1,
            "the round ran to its end"
        );
    }
}
