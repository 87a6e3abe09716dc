//! What every accepted TCP connection passes through beneath HTTP: a bound on how many are
//! open, an idle and a request deadline, so that clients that vanish or send a request a byte
//! at a time do not hold connections forever, and JSON bodies for the answers the HTTP parser
//! gives on its own. Also the listening socket itself, and an accept loop that survives running
//! out of descriptors.

mod limits;
mod listener;
mod protocol_errors;
mod timeouts;

use std::io;

use poem::{
    http::uri::Scheme,
    listener::Acceptor,
    web::{LocalAddr, RemoteAddr},
};

pub use limits::{Limited, OpenConnections};
pub use listener::{LISTEN_BACKLOG, bind, raise_open_files_limit};
pub use protocol_errors::JsonProtocolErrors;
pub use timeouts::{ConnectionTimeouts, Timeouts};

use crate::telemetry::metrics as m;
use limits::{AcceptBackoff, resource_shortage};

/// Hands out the listener's connections, as many as `--max-connections` allows, wrapped in
/// [`Limited`], [`ConnectionTimeouts`] and [`JsonProtocolErrors`].
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
    type Io = JsonProtocolErrors<ConnectionTimeouts<Limited<A::Io>>>;

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
            let io = JsonProtocolErrors::new(ConnectionTimeouts::new(io, self.timeouts));
            return Ok((io, local, remote, scheme));
        }
    }
}
