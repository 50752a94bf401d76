//! Listening sockets, made the same way by both binaries.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};

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
    let listener = TcpListener::from(socket);
    // An optimisation only: a refusal changes nothing else.
    #[cfg(target_os = "linux")]
    let _ = crate::sockopt::defer_accept(&listener, defer_secs);
    #[cfg(not(target_os = "linux"))]
    let _ = defer_secs;
    Ok(listener)
}

/// Turns Nagle off on `listener` so that the connections it accepts have
/// it off from the start: on Linux an accepted socket inherits
/// `TCP_NODELAY` from its listener, which saves a `setsockopt` per
/// connection. `Ok(true)` when accepted sockets need nothing more;
/// `Ok(false)` where they do not inherit it ([`accept`] then sets it on
/// each). Called by each accept loop, so listeners another process made
/// (socket activation, an upgrade) get it too.
pub fn pass_nodelay(listener: &TcpListener) -> io::Result<bool> {
    rustix::net::sockopt::set_tcp_nodelay(listener, true)?;
    Ok(cfg!(target_os = "linux"))
}

/// Accepts a connection, non-blocking and close-on-exec from the start
/// (`accept4`: no `ioctl` per connection, as std's accept and a
/// `set_nonblocking` would spend), with Nagle off: set here unless
/// `nodelay_inherited` ([`pass_nodelay`]'s answer for `listener`).
pub fn accept(
    listener: &TcpListener,
    nodelay_inherited: bool,
) -> io::Result<(TcpStream, SocketAddr)> {
    use rustix::net::{acceptfrom_with, SocketAddrAny, SocketFlags};
    let (fd, peer) = acceptfrom_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC)?;
    let peer = peer
        .and_then(|a: SocketAddrAny| SocketAddr::try_from(a).ok())
        .ok_or_else(|| io::Error::other("accepted a connection without an IP address"))?;
    let stream = TcpStream::from(fd);
    if !nodelay_inherited {
        // An optimisation only: the connection works without it.
        let _ = stream.set_nodelay(true);
    }
    Ok((stream, peer))
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

    /// Connects to `l` and accepts with [`accept`]: the accepted socket,
    /// and the client (kept open).
    fn accepted(l: &TcpListener, nodelay_inherited: bool) -> (TcpStream, TcpStream) {
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (stream, peer) = accept(l, nodelay_inherited).unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        (stream, client)
    }

    /// Whatever made the listener (bound here, or passed in by another
    /// process), accepted connections come non-blocking with Nagle off:
    /// inherited from the listener where the kernel does so, set on each
    /// otherwise.
    #[test]
    fn accepted_connections_are_non_blocking_with_nagle_off() {
        let passed = TcpListener::bind("127.0.0.1:0").unwrap();
        let (plain, _c1) = accepted(&passed, true);
        assert!(!plain.nodelay().unwrap(), "nothing set: Nagle on");
        let (set, _c2) = accepted(&passed, false);
        assert!(set.nodelay().unwrap(), "set on the socket");
        let inherited = pass_nodelay(&passed).unwrap();
        let (stream, _c3) = accepted(&passed, inherited);
        assert!(stream.nodelay().unwrap(), "inherited: {inherited}");
        let mut byte = [0u8; 1];
        let err = stream.peek(&mut byte).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "non-blocking");
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
