//! The listening socket and the process's descriptor limit.
//!
//! The standard library (and so tokio and poem) listens with a backlog of 128: a burst of
//! connects beyond it waits for the kernel to retry its SYN, about a second later. The
//! service listens with a backlog of its own (the kernel caps it at `net.core.somaxconn`).

use std::{io, net::SocketAddr};

use poem::listener::TcpAcceptor;
use tokio::net::TcpSocket;

/// Connections the kernel queues for `accept` before refusing more.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with [`LISTEN_BACKLOG`].
pub fn bind(addr: SocketAddr) -> io::Result<TcpAcceptor> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted process can bind while the previous one's connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    let listener = socket.listen(LISTEN_BACKLOG)?;
    TcpAcceptor::from_tokio(listener).map_err(io::Error::other)
}

/// Raises the soft limit of open descriptors to the hard limit (every connection is one), and
/// returns the limit in force.
pub fn raise_open_files_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}
