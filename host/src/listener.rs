//! Listening sockets, made the same way by both binaries.

use std::io;
use std::net::{SocketAddr, TcpListener};

/// Connections the kernel queues on a listening socket before they are
/// accepted (capped by `net.core.somaxconn`).
///
/// A burst of clients (a CI fleet starting, a balancer reconnecting after
/// a restart) arrives faster than any accept loop runs; past the queue the
/// kernel drops SYNs, which clients send again only after 1, 3, 7 s.
/// std's `TcpListener::bind` asks for 128, which 8,000 clients connecting
/// at once overflowed thousands of times (`nstat`:
/// `TcpExtListenOverflows`). 4096 overflowed least but, with every client
/// let in at once, left proxy-smol 32 MiB larger after the soak's
/// warm-up (117 against 85 MiB); 1024 per socket (proxy-smol has one per
/// executor) is what it always had. nginx asks for 511.
pub const BACKLOG: i32 = 1024;

/// Whether other sockets of this process may listen on the same address
/// (`SO_REUSEPORT`, one per executor thread; the kernel lets only the
/// same user join).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sharing {
    Alone,
    ReusePort,
}

/// The socket family `addr` needs (for a listener, or an outgoing
/// socket made by hand).
pub fn family(addr: SocketAddr) -> rustix::net::AddressFamily {
    match addr {
        SocketAddr::V4(_) => rustix::net::AddressFamily::INET,
        SocketAddr::V6(_) => rustix::net::AddressFamily::INET6,
    }
}

/// A listening socket on `addr`, with [`BACKLOG`] and, on Linux,
/// `TCP_DEFER_ACCEPT` for `defer_secs` (`crate::sockopt::defer_accept`).
pub fn bind(addr: SocketAddr, sharing: Sharing, defer_secs: u32) -> io::Result<TcpListener> {
    use rustix::net::{sockopt, SocketFlags, SocketType};
    let socket =
        rustix::net::socket_with(family(addr), SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    // As std's `TcpListener::bind` does: a restart need not wait for the
    // old connections' TIME_WAIT.
    sockopt::set_socket_reuseaddr(&socket, true)?;
    if sharing == Sharing::ReusePort {
        sockopt::set_socket_reuseport(&socket, true)?;
    }
    rustix::net::bind(&socket, &addr)?;
    rustix::net::listen(&socket, BACKLOG)?;
    // An optimisation only: a refusal changes nothing else.
    #[cfg(target_os = "linux")]
    let _ = crate::sockopt::defer_accept(&socket, defer_secs);
    #[cfg(not(target_os = "linux"))]
    let _ = defer_secs;
    Ok(TcpListener::from(socket))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_takes_connections_and_refuses_a_taken_address_unless_shared() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let first = bind(any, Sharing::ReusePort, 1).unwrap();
        let addr = first.local_addr().unwrap();
        let second = bind(addr, Sharing::ReusePort, 1).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        assert!(bind(addr, Sharing::Alone, 1).is_err());
        let alone = bind(any, Sharing::Alone, 1).unwrap();
        assert!(bind(alone.local_addr().unwrap(), Sharing::ReusePort, 1).is_err());
        let _client = std::net::TcpStream::connect(alone.local_addr().unwrap()).unwrap();
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_is_asked_for_the_whole_backlog() {
        // Nobody accepts: past the queue's limit the kernel drops the
        // SYN and the connect waits a second for its retransmission.
        // Filling it past std's 128 must not come to that.
        let l = bind("127.0.0.1:0".parse().unwrap(), Sharing::Alone, 0).unwrap();
        let addr = l.local_addr().unwrap();
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(128);
        let n = somaxconn.min(400);
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500))
            {
                Ok(c) => clients.push(c),
                Err(e) => panic!("connection {i} of {n} queued: {e}"),
            }
        }
    }
}
