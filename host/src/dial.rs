//! Outgoing connections that never block the thread that starts them,
//! made the same way by both binaries.

use std::io;
use std::net::{SocketAddr, TcpStream};

/// Starts a connection to `addr` on a non-blocking socket with Nagle off:
/// the socket becomes writable when the handshake is done ([`finish`]
/// says how it went).
///
/// A blocking connect would hold its thread for as long as the origin
/// takes to answer the SYN, and an origin whose accept queue overflows
/// drops SYNs that come back only after 1, 3, 7 s; under a burst of
/// thousands of new clients every worker was soon waiting so (the
/// 8,000-client soak: requests of 5-34 s).
pub fn start(addr: SocketAddr) -> io::Result<TcpStream> {
    use rustix::net::{SocketFlags, SocketType};
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let socket = rustix::net::socket_with(
        crate::listener::family(addr),
        SocketType::STREAM,
        flags,
        None,
    )?;
    match rustix::net::connect(&socket, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    let stream = TcpStream::from(socket);
    // An optimisation only: the connection works without it.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// How a connection [`start`]ed ended, once its socket polled writable
/// (or in error).
pub fn finish(stream: &TcpStream) -> io::Result<()> {
    match stream.take_error()? {
        Some(e) => Err(e),
        // Writable with no error: connected, which the peer's address
        // confirms (it fails with ENOTCONN otherwise).
        None => stream.peer_addr().map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    /// Polls `stream` until it is writable (the handshake is over).
    fn writable(stream: &TcpStream) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut fds = [rustix::event::PollFd::new(
            stream,
            rustix::event::PollFlags::OUT,
        )];
        while rustix::event::poll(&mut fds, None).unwrap_or(0) == 0 {
            assert!(Instant::now() < deadline, "never writable");
        }
    }

    #[test]
    fn a_started_connection_finishes_connected_and_non_blocking() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = start(listener.local_addr().unwrap()).unwrap();
        writable(&stream);
        finish(&stream).unwrap();
        assert!(stream.nodelay().unwrap());
        let mut byte = [0u8; 1];
        let err = stream.peek(&mut byte).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "non-blocking");
    }

    #[test]
    fn a_refused_connection_finishes_in_error() {
        // A port nobody listens on: bound, then closed.
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let stream = start(addr).unwrap();
        writable(&stream);
        let err = finish(&stream).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    }
}
