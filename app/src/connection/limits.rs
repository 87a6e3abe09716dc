//! Bounds on connections: at most `--max-connections` open at once (past it, a new connection
//! is closed at once), and an accept loop that backs off when the process runs out of
//! descriptors instead of spinning.
//!
//! When `accept` fails with `EMFILE`/`ENFILE`, the pending connection stays in the kernel's
//! queue and the listener stays readable: retrying at once fails again at once, forever, at
//! 100% of a core, and starves the connections already open. So the acceptor waits (10 ms,
//! doubling up to 1 s) before it tries again, logs the condition once per interval rather than
//! per attempt, and counts it; connections already open are served meanwhile.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use tokio::io::{AsyncRead, ReadBuf};

use crate::telemetry::metrics as m;

const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one log line per this interval about failing accepts.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Open connections, shared by the acceptor and every connection it handed out.
#[derive(Clone)]
pub struct OpenConnections {
    open: Arc<AtomicUsize>,
    max: usize,
}

impl OpenConnections {
    pub fn new(max: usize) -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// Takes a place for a new connection, if one is free.
    pub fn admit(&self) -> Option<Counted> {
        let admitted = self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .is_ok();
        if admitted {
            m::open_connections(self.open.load(Ordering::Relaxed));
            Some(Counted {
                open: Arc::clone(&self.open),
            })
        } else {
            None
        }
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

/// A connection's place, given back when the connection is dropped.
pub struct Counted {
    open: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let open = self.open.fetch_sub(1, Ordering::AcqRel) - 1;
        m::open_connections(open);
    }
}

/// A connection that holds its place among the open ones for as long as it lives.
pub struct Limited<IO> {
    inner: IO,
    _place: Counted,
}

impl<IO> Limited<IO> {
    pub fn new(inner: IO, place: Counted) -> Self {
        Self {
            inner,
            _place: place,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Limited<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

write_through!(Limited);

/// What the acceptor does after a failed `accept`.
pub struct AcceptBackoff {
    next: Duration,
    last_logged: Option<Instant>,
    failed_since_log: u64,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self {
            next: FIRST_BACKOFF,
            last_logged: None,
            failed_since_log: 0,
        }
    }
}

/// Why an accept failed, as a metric label; `None` for failures of one connection only
/// (reset before it was accepted), which are retried at once.
pub fn resource_shortage(err: &io::Error) -> Option<&'static str> {
    match err.raw_os_error() {
        Some(libc::EMFILE) => Some("process_descriptor_limit"),
        Some(libc::ENFILE) => Some("system_descriptor_limit"),
        Some(libc::ENOBUFS | libc::ENOMEM) => Some("memory"),
        _ => None,
    }
}

impl AcceptBackoff {
    /// Waits before the next accept after a shortage, logging at most once per interval.
    pub async fn wait(&mut self, reason: &'static str, err: &io::Error, open: usize) {
        m::accept_failed(reason);
        self.failed_since_log += 1;
        if self
            .last_logged
            .is_none_or(|at| at.elapsed() >= LOG_INTERVAL)
        {
            tracing::error!(
                error = %err,
                reason,
                open_connections = open,
                failed_accepts = self.failed_since_log,
                "cannot accept connections; backing off, open connections are still served"
            );
            self.last_logged = Some(Instant::now());
            self.failed_since_log = 0;
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(MAX_BACKOFF);
    }

    /// An accept succeeded: the next shortage starts from the shortest wait again.
    pub fn reset(&mut self) {
        self.next = FIRST_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_bounded_and_given_back() {
        let open = OpenConnections::new(2);
        let a = open.admit().expect("first");
        let b = open.admit().expect("second");
        assert!(open.admit().is_none(), "the third is refused");
        drop(a);
        assert_eq!(open.open(), 1);
        let _c = open.admit().expect("a freed place is taken again");
        drop(b);
        assert_eq!(open.open(), 1);
    }

    #[test]
    fn descriptor_and_memory_shortages_are_told_from_other_failures() {
        let os = io::Error::from_raw_os_error;
        assert_eq!(
            resource_shortage(&os(libc::EMFILE)),
            Some("process_descriptor_limit")
        );
        assert_eq!(
            resource_shortage(&os(libc::ENFILE)),
            Some("system_descriptor_limit")
        );
        assert_eq!(resource_shortage(&os(libc::ECONNABORTED)), None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_wait_doubles_up_to_a_second_and_resets() {
        let mut backoff = AcceptBackoff::default();
        let err = io::Error::from_raw_os_error(libc::EMFILE);
        let mut waits = Vec::new();
        for _ in 0..9 {
            let started = tokio::time::Instant::now();
            backoff.wait("process_descriptor_limit", &err, 0).await;
            waits.push(started.elapsed().as_millis());
        }
        assert_eq!(waits, vec![10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        backoff.reset();
        let started = tokio::time::Instant::now();
        backoff.wait("process_descriptor_limit", &err, 0).await;
        assert_eq!(started.elapsed().as_millis(), 10);
    }
}
