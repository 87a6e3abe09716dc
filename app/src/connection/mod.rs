//! What every accepted TCP connection passes through beneath HTTP: HTTP/1.1 only, a bound on
//! how many are open, an idle and a request deadline and a bound on the bytes of an unanswered
//! request, so that clients that vanish, send a request a byte at a time or send endless
//! headers hold neither connections nor memory for long, and JSON bodies for the answers the
//! HTTP parser gives on its own. Also the listening socket itself, and an accept loop that
//! survives running out of descriptors.

/// Implements `AsyncWrite` for a wrapper whose writes all go straight through to its `inner`
/// field: the wrappers that only watch reads, or only hold something for the connection's life.
macro_rules! write_through {
    ($wrapper:ident) => {
        impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $wrapper<S> {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }

            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
            }
        }
    };
}

mod guard;
mod http1_only;
mod limits;
mod listener;
mod protocol_errors;
mod request_head;

use std::io;

use poem::{
    http::uri::Scheme,
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
};

pub use guard::{ConnectionGuard, Timeouts};
pub use http1_only::Http1Only;
pub use limits::{Limited, OpenConnections};
pub use listener::{LISTEN_BACKLOG, bind, raise_open_files_limit};
pub use protocol_errors::JsonProtocolErrors;
pub use request_head::{MAX_HEAD, MAX_REQUEST_LINE, MAX_UNANSWERED};

use crate::telemetry::metrics as m;
use limits::{AcceptBackoff, resource_shortage};

/// Hands out the listener's connections, as many as `--max-connections` allows, wrapped in
/// [`Limited`], [`ConnectionGuard`], [`JsonProtocolErrors`] and [`Http1Only`].
pub struct ServiceAcceptor<A> {
    inner: A,
    timeouts: Timeouts,
    open: OpenConnections,
    backoff: AcceptBackoff,
}

impl<A> ServiceAcceptor<A> {
    pub fn new(inner: A, timeouts: Timeouts, max_connections: usize) -> Self {
        Self {
            inner,
            timeouts,
            open: OpenConnections::new(max_connections),
            backoff: AcceptBackoff::default(),
        }
    }
}

impl<A: Acceptor> Acceptor for ServiceAcceptor<A> {
    type Io = Http1Only<JsonProtocolErrors<ConnectionGuard<Limited<A::Io>>>>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        // The server loop calls this again at once after an error: every failure is handled
        // here, so that it never spins.
        loop {
            let (io, local, remote, scheme) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    if let Some(reason) = resource_shortage(&err) {
                        self.backoff.wait(reason, &err, self.open.open()).await;
                    }
                    continue;
                }
            };
            self.backoff.reset();
            let Some(place) = self.open.admit() else {
                // Closed at once: the client sees the connection end and can try another
                // instance.
                m::connection_refused("max_connections");
                drop(io);
                continue;
            };
            let io = Limited::new(io, place);
            let io = Http1Only::new(JsonProtocolErrors::new(ConnectionGuard::new(
                io,
                self.timeouts,
            )));
            return Ok((io, local, remote, scheme));
        }
    }
}
