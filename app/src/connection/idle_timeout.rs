//! Closes a connection on which nothing has been read or written for a while.
//!
//! A client that disappears without closing (a crashed host, a NAT entry dropped on the way)
//! would otherwise keep its connection, with its socket and buffers, for as long as the
//! process lives. hyper closes the connection when a read fails, so the timeout surfaces as a
//! `TimedOut` error from the read (or write) that is waiting when it expires.
//!
//! The clock is read when an operation completes, not a timer re-armed per operation: the one
//! timer per connection is moved forward only when it fires early, at most once per timeout.

use std::{
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

pub struct IdleTimeout<S> {
    inner: S,
    limit: Duration,
    last_activity: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<S> IdleTimeout<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            limit,
            last_activity: now,
            timer: Box::pin(tokio::time::sleep_until(now + limit)),
        }
    }

    fn active(&mut self) {
        self.last_activity = Instant::now();
    }

    /// Ready with an error once the connection has been idle for the whole limit; pending
    /// (with the timer armed) otherwise.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let deadline = self.last_activity + self.limit;
            if Instant::now() >= deadline {
                tracing::debug!(limit = ?self.limit, "closing an idle connection");
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for longer than the idle timeout",
                ));
            }
            self.timer.as_mut().reset(deadline);
        }
    }

    /// Records activity when `poll` completes; while it waits, watches the idle timer.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(result) => {
                self.active();
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_expired(cx).map(Err),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.watch(cx, poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const LIMIT: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_after_the_limit() {
        let (_client, server) = tokio::io::duplex(64);
        let mut conn = IdleTimeout::new(server, LIMIT);
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let err = conn.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), LIMIT);
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_keeps_the_connection_open_and_restarts_the_clock() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = IdleTimeout::new(server, LIMIT);
        let mut buf = [0u8; 8];
        // A byte every 40 s for 4 minutes: never 60 s of silence.
        let talker = tokio::spawn(async move {
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_secs(40)).await;
                client.write_all(b"x").await.expect("write");
            }
            client
        });
        for _ in 0..6 {
            assert_eq!(conn.read(&mut buf).await.expect("read"), 1);
        }
        let _client = talker.await.expect("join");
        // Then silence: closed 60 s after the last byte, not earlier.
        let last = Instant::now();
        let err = conn.read(&mut buf).await.expect_err("times out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(last.elapsed(), LIMIT);
    }
}
