//! What each client connection may take from the service while a request is unanswered:
//! time, through two deadlines, and memory, through the bounds of [`RequestHead`].
//!
//! - **idle**: nothing that advances a request read, and nothing written, for
//!   `--idle-timeout`. A client that disappears without closing (a crashed host, a NAT entry
//!   dropped on the way) would otherwise keep its connection, with its socket and buffers, for
//!   as long as the process lives. Bare line ends, which HTTP/1 lets a client send between
//!   requests, are not progress: a client that sends only those is idle.
//! - **request**: bytes arrived, of any kind, and no answer has started within
//!   `--request-timeout` of the first of them. This stops clients that send a request a byte
//!   at a time (slowloris) or keep a connection open with empty lines, which the idle deadline
//!   never catches, and bounds the time a request can hold a connection. The commit timeout is
//!   shorter, so a request waiting on the store is answered (`503`) before this deadline.
//! - **bytes**: a request's head must end within the bounds of [`RequestHead`] (else `414` or
//!   `431`, then close), and reading pauses once a request's bytes fill its share, until the
//!   answer starts.
//!
//! When the request deadline passes, a `408` in the JSON error shape is sent if the socket takes
//! it at once; either way the connection is then closed. hyper closes a connection whose read
//! fails, so both deadlines surface as a `TimedOut` error from the read (or write) that waits.
//!
//! The clock is read when an operation completes, and there is one timer per connection, which
//! wakes at most once per request limit to look at both deadlines: no timer work per read or
//! write.

use std::{
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, Waker, ready},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

use poem::http::StatusCode;

use super::request_head::{RequestHead, Verdict};
use crate::{api::error::connection_error_body, telemetry};

/// The deadlines of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub idle: Duration,
    pub request: Duration,
}

pub struct ConnectionGuard<S> {
    inner: S,
    limits: Timeouts,
    /// When a read or write last completed.
    last_activity: Instant,
    /// When the first byte arrived that no answer has followed yet.
    unanswered_since: Option<Instant>,
    /// The bytes of the request under way.
    head: RequestHead,
    /// The reader paused at the byte bound, woken when the answer starts.
    paused_reader: Option<Waker>,
    timer: Pin<Box<Sleep>>,
}

impl<S> ConnectionGuard<S> {
    pub fn new(inner: S, limits: Timeouts) -> Self {
        let now = Instant::now();
        Self {
            inner,
            limits,
            last_activity: now,
            unanswered_since: None,
            head: RequestHead::default(),
            paused_reader: None,
            timer: Box::pin(tokio::time::sleep_until(
                now + limits.idle.min(limits.request),
            )),
        }
    }

    /// Bytes arrived: the request deadline runs from the first of any kind, and only bytes
    /// that advance a request count as activity.
    fn read_done(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let now = Instant::now();
        if self.unanswered_since.is_none() {
            self.unanswered_since = Some(now);
        }
        if bytes.iter().any(|&b| b != b'\r' && b != b'\n') {
            self.last_activity = now;
        }
    }

    fn write_done(&mut self) {
        self.last_activity = Instant::now();
        self.unanswered_since = None;
        self.head.answered();
        if let Some(reader) = self.paused_reader.take() {
            reader.wake();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expired {
    Idle,
    Request,
}

impl Expired {
    /// The `deadline` label of the timeout metric.
    fn label(self) -> &'static str {
        match self {
            Expired::Idle => "idle",
            Expired::Request => "request",
        }
    }
}

impl<S: AsyncWrite + Unpin> ConnectionGuard<S> {
    /// Ready once a deadline has passed (with the error that closes the connection); pending,
    /// with the timer armed, otherwise.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let now = Instant::now();
            let idle_at = self.last_activity + self.limits.idle;
            let expired = if now >= idle_at {
                Expired::Idle
            } else if let Some(since) = self.unanswered_since {
                let request_at = since + self.limits.request;
                if now >= request_at {
                    Expired::Request
                } else {
                    self.timer.as_mut().reset(idle_at.min(request_at));
                    continue;
                }
            } else {
                // No request under way: look again within one request limit, so that the
                // deadline of a request that begins meanwhile is armed before it passes.
                self.timer
                    .as_mut()
                    .reset(idle_at.min(now + self.limits.request));
                continue;
            };
            if expired == Expired::Request {
                self.try_send(cx, StatusCode::REQUEST_TIMEOUT);
            }
            let deadline = expired.label();
            telemetry::metrics::connection_timed_out(deadline);
            tracing::debug!(deadline, "closing a connection past its deadline");
            return Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connection past its {deadline} deadline"),
            ));
        }
    }

    /// Best effort: the answer goes out only if the socket takes all of it now. Nothing of an
    /// answer has been written since the request began, so it cannot interleave with one.
    fn try_send(&mut self, cx: &mut Context<'_>, status: StatusCode) {
        let answer = closing_answer(status);
        if let Poll::Ready(Ok(n)) = Pin::new(&mut self.inner).poll_write(cx, &answer)
            && n < answer.len()
        {
            tracing::debug!(
                status = status.as_u16(),
                "the answer was cut short by a full socket"
            );
        }
    }
}

/// A complete answer in the JSON error shape; the connection closes after it.
fn closing_answer(status: StatusCode) -> Vec<u8> {
    let body = serde_json::to_vec(&connection_error_body(status)).unwrap_or_default();
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\nconnection: close\r\n\
         content-type: application/json; charset=utf-8\r\ncontent-length: {}\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ConnectionGuard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let room = this.head.room();
        if room == 0 {
            // The request's bytes fill its share: read on once the answer starts, or close at
            // a deadline.
            this.paused_reader = Some(cx.waker().clone());
            return this.poll_expired(cx).map(Err);
        }
        let before = buf.filled().len();
        let poll = if buf.remaining() > room {
            // Read no further than the bound; the parser's buffer is usually smaller.
            let mut limited = ReadBuf::new(buf.initialize_unfilled_to(room));
            let poll = Pin::new(&mut this.inner).poll_read(cx, &mut limited);
            let n = limited.filled().len();
            buf.advance(n);
            poll
        } else {
            Pin::new(&mut this.inner).poll_read(cx, buf)
        };
        match poll {
            Poll::Ready(result) => {
                let bytes = &buf.filled()[before..];
                this.read_done(bytes);
                if let Verdict::Refuse(status) = this.head.observe(bytes) {
                    telemetry::metrics::malformed_request(status.as_u16());
                    tracing::debug!(status = status.as_u16(), "request head over its bound");
                    this.try_send(cx, status);
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "request head over its bound",
                    )));
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_expired(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> ConnectionGuard<S> {
    fn watch_write(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match poll {
            Poll::Ready(result) => {
                self.write_done();
                Poll::Ready(result)
            }
            Poll::Pending => self.poll_expired(cx).map(Err),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ConnectionGuard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch_write(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch_write(cx, poll)
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
mod tests;
