//! What every accepted TCP connection passes through beneath HTTP: an idle timeout, so clients
//! that vanish without closing do not hold connections forever, and JSON bodies for the answers
//! the HTTP parser gives on its own.

mod idle_timeout;
mod protocol_errors;

use std::{io, time::Duration};

use poem::{
    http::uri::Scheme,
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
};

pub use idle_timeout::IdleTimeout;
pub use protocol_errors::JsonProtocolErrors;

/// Hands out the listener's connections wrapped in [`IdleTimeout`] and [`JsonProtocolErrors`].
pub struct ServiceAcceptor<A> {
    inner: A,
    idle_timeout: Duration,
}

impl<A> ServiceAcceptor<A> {
    pub fn new(inner: A, idle_timeout: Duration) -> Self {
        Self {
            inner,
            idle_timeout,
        }
    }
}

impl<A: Acceptor> Acceptor for ServiceAcceptor<A> {
    type Io = JsonProtocolErrors<IdleTimeout<A::Io>>;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (io, local, remote, scheme) = self.inner.accept().await?;
        let io = JsonProtocolErrors::new(IdleTimeout::new(io, self.idle_timeout));
        Ok((io, local, remote, scheme))
    }
}
