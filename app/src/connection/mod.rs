//! What every accepted TCP connection passes through beneath HTTP: an idle and a request
//! deadline, so that clients that vanish or send a request a byte at a time do not hold
//! connections forever, and JSON bodies for the answers the HTTP parser gives on its own.

mod protocol_errors;
mod timeouts;

use std::io;

use poem::{
    http::uri::Scheme,
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
};

pub use protocol_errors::JsonProtocolErrors;
pub use timeouts::{ConnectionTimeouts, Timeouts};

/// Hands out the listener's connections wrapped in [`ConnectionTimeouts`] and
/// [`JsonProtocolErrors`].
pub struct ServiceAcceptor<A> {
    inner: A,
    timeouts: Timeouts,
}

impl<A> ServiceAcceptor<A> {
    pub fn new(inner: A, timeouts: Timeouts) -> Self {
        Self { inner, timeouts }
    }
}

impl<A: Acceptor> Acceptor for ServiceAcceptor<A> {
    type Io = JsonProtocolErrors<ConnectionTimeouts<A::Io>>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        let io = JsonProtocolErrors::new(ConnectionTimeouts::new(io, self.timeouts));
        Ok((io, local, remote, scheme))
    }
}
