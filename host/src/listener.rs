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
    let listener = TcpListener::from(socket);
    // An optimisation only: without it each accepted socket sets its own.
    let _ = pass_nodelay(&listener);
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
/// `Ok(false)` where they do not inherit it (set it on each). Also for
/// listeners another process made (socket activation, an upgrade).
pub fn pass_nodelay(listener: &TcpListener) -> io::Result<bool> {
    rustix::net::sockopt::set_tcp_nodelay(listener, true)?;
    Ok(cfg!(target_os = "linux"))
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

    #[test]
    fn accepted_connections_have_nagle_off_from_their_listener() {
        let l = bind("127.0.0.1:0".parse().unwrap(), Sharing::Alone, 0).unwrap();
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (accepted, _) = l.accept().unwrap();
        let inherited = pass_nodelay(&l).unwrap();
        assert_eq!(accepted.nodelay().unwrap(), inherited);
        if !inherited {
            return;
        }
        // A listener made elsewhere (passed in) gets the same.
        let passed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(passed.local_addr().unwrap()).unwrap();
        let (before, _) = passed.accept().unwrap();
        assert!(!before.nodelay().unwrap());
        assert!(pass_nodelay(&passed).unwrap());
        let _client = std::net::TcpStream::connect(passed.local_addr().unwrap()).unwrap();
        let (after, _) = passed.accept().unwrap();
        assert!(after.nodelay().unwrap());
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
