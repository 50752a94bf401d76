//! Loopback addresses with particular behaviour: one that refuses, one
//! that never completes a handshake.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::time::Duration;

/// Whether `[::1]` can be bound on this machine.
pub fn ipv6_available() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// A free loopback port: bound and released, so another process may take
/// it (for `--listen` on an explicit port).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A loopback address that refuses connections: a socket bound to it but
/// not listening, so the port cannot be taken by anyone else meanwhile.
/// Keep it alive while in use.
#[derive(Debug)]
pub struct Refused {
    /// Where connections are refused.
    pub addr: SocketAddr,
    _socket: std::os::fd::OwnedFd,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.addr.fmt(f)
    }
}

/// A [`Refused`] address on 127.0.0.1.
pub fn refused_addr() -> Refused {
    refused_on(0).expect("a free loopback port")
}

/// A [`Refused`] address on 127.0.0.1:`port`; `None` when that port is
/// taken.
pub fn refused_on(port: u16) -> Option<Refused> {
    use rustix::net::{bind, getsockname, socket, AddressFamily, SocketType};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    bind(&fd, &SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).ok()?;
    let local = getsockname(&fd).expect("getsockname");
    let addr: SocketAddr = SocketAddrV4::try_from(local).expect("IPv4").into();
    Some(Refused { addr, _socket: fd })
}

/// A loopback address whose listener has a full accept queue, so new SYNs
/// are dropped and connecting hangs (Linux drops SYNs to a listener whose
/// accept queue is full rather than refusing them). Keep it alive while
/// in use.
#[derive(Debug)]
pub struct Blackhole {
    /// Where connecting hangs.
    pub addr: SocketAddr,
    _listener: std::os::fd::OwnedFd,
    _fillers: Vec<TcpStream>,
}

/// A [`Blackhole`], if this kernel behaves as needed: verified by a probe
/// connect that must time out. `None` otherwise.
pub fn blackhole() -> Option<Blackhole> {
    blackhole_inner().ok().flatten()
}

fn blackhole_inner() -> io::Result<Option<Blackhole>> {
    use rustix::net::{
        bind, getsockname, listen, socket, AddressFamily, SocketAddrAny, SocketType,
    };
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?;
    listen(&fd, 0)?;
    let local: SocketAddrAny = getsockname(&fd)?;
    let addr: SocketAddr = SocketAddrV4::try_from(local)
        .map_err(|_| io::Error::other("not an IPv4 address"))?
        .into();
    // Fill the accept queue (never accepted), then check that a further
    // connect hangs.
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => fillers.push(s),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                // The queue is full: a probe hung. Confirm once more.
                return Ok(
                    match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => Some(Blackhole {
                            addr,
                            _listener: fd,
                            _fillers: fillers,
                        }),
                        _ => None,
                    },
                );
            }
            Err(_) => return Ok(None),
        }
    }
    Ok(None)
}
