//! The one clock of the service. Everything that asks what time it is (which day and month a
//! commit counts on, when an idempotency key expires, whether a DynamoDB marker was abandoned,
//! when upkeep deletes what fell out of the window) asks the [`Clock`] it was given, never the
//! system directly. Tests hand in a [`ManualClock`] and move it, instead of waiting for time
//! to pass.
//!
//! Timers (how often a background task runs, how long a connection may idle) are not read
//! from it: they measure elapsed time on tokio's monotonic clock, which tests may pause.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::calendar::{Day, Month};

/// What time it is.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> SystemTime;

    /// Whole seconds since the Unix epoch (0 for a clock set before it).
    fn epoch_seconds(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// The UTC day it is.
    fn today(&self) -> Day {
        Day::of(self.now())
    }

    /// The UTC month it is.
    fn this_month(&self) -> Month {
        self.today().month()
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    pub fn shared() -> SharedClock {
        Arc::new(Self)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    pub fn at(t: SystemTime) -> Arc<Self> {
        Arc::new(Self(Mutex::new(t)))
    }

    /// A clock at the system's time now, that then moves only when told to.
    pub fn starting_now() -> Arc<Self> {
        Self::at(SystemTime::now())
    }

    pub fn set(&self, t: SystemTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = t;
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = ManualClock::at(start);
        assert_eq!(clock.epoch_seconds(), 1_800_000_000);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.epoch_seconds(), 1_800_000_001);
        clock.set(UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(clock.epoch_seconds(), 0, "before the epoch reads as 0");
    }
}
