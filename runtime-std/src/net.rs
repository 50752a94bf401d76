//! Socket helpers for the connections: whole writes with a stall limit,
//! splicing a pipe out, and closing a client gracefully. Every socket is
//! non-blocking; waiting is poll(2), always together with the
//! lifecycle's stop beacon, so the end of the shutdown grace period cuts
//! any wait short.

use crate::sys::{self, POLLIN};
use proxy_core::{QueryId, ResolveError};
use proxy_host::lifecycle::Lifecycle;
use proxy_host::offload::Ticket;
use proxy_host::pool::Pool;
use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// How long, at most, to read and discard what a client still sends after
/// we closed our side, so that unread bytes do not make the kernel reset
/// the connection before the client has read our last response.
const LINGER: Duration = Duration::from_secs(2);

/// Writes all of `a` then all of `b` (one vectored write when both are
/// there), waiting while the socket is full, but giving up when `stop`
/// (the lifecycle's stop beacon) becomes readable or the peer takes
/// nothing for `stall` (zero: no limit).
pub(crate) fn write_all<'a>(
    mut stream: &TcpStream,
    mut a: &'a [u8],
    mut b: &'a [u8],
    stop: RawFd,
    stall: Duration,
) -> io::Result<()> {
    loop {
        if a.is_empty() {
            a = std::mem::take(&mut b);
            if a.is_empty() {
                return Ok(());
            }
        }
        let written = if b.is_empty() {
            stream.write(a)
        } else {
            stream.write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(mut n) => {
                let from_a = n.min(a.len());
                a = &a[from_a..];
                n -= from_a;
                b = &b[n.min(b.len())..];
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_writable(stream.as_raw_fd(), stop, stall)?
            }
            Err(e) => return Err(e),
        }
    }
}

/// A live idle connection to `addr` from `pool`, if it has one.
pub(crate) fn reuse(pool: &Pool<TcpStream>, addr: SocketAddr) -> Option<TcpStream> {
    while let Some(stream) = pool.take(addr) {
        if sys::nothing_to_read(stream.as_fd()) {
            return Some(stream);
        }
    }
    None
}

/// A system lookup under way on a lookup thread.
pub(crate) struct Lookup {
    pub(crate) query: QueryId,
    pub(crate) ticket: Ticket<Result<Vec<IpAddr>, ResolveError>>,
    /// Readable once the answer is there.
    pub(crate) signal: UnixStream,
}

impl Lookup {
    /// Starts looking `host` up; if it cannot be waited for like a socket
    /// (no descriptor left), waits for the answer here instead.
    pub(crate) fn start(
        query: QueryId,
        host: String,
    ) -> Result<Lookup, (QueryId, Result<Vec<IpAddr>, ResolveError>)> {
        let ticket = proxy_host::resolver::system_lookup(host);
        match ticket.signal() {
            Ok(signal) => Ok(Lookup {
                query,
                ticket,
                signal,
            }),
            Err(_) => Err((query, ticket.wait())),
        }
    }
}

/// What [`forward`] did.
pub(crate) enum Forward {
    /// Splicing is not possible (another system, no pipe to be had): read
    /// the bytes instead.
    Unavailable,
    /// The upstream had nothing after all.
    Nothing,
    /// The upstream's end of stream.
    Eof,
    /// Reading the upstream failed.
    Failed,
    /// This many bytes went from the upstream; how writing them to the
    /// client went.
    Moved(u64, io::Result<()>),
}

/// Moves up to `max` bytes from `upstream` to `client` through a pipe
/// (splice(2)), without reading them into memory; waits, as
/// [`write_all`] does, while the client's socket is full.
#[cfg(target_os = "linux")]
pub(crate) fn forward(
    upstream: &TcpStream,
    client: &TcpStream,
    max: u64,
    life: &Lifecycle,
    stall: Duration,
) -> Forward {
    use proxy_host::splice::{PIPES, SPLICE_MAX};
    let Ok(mut pipe) = PIPES.take() else {
        return Forward::Unavailable;
    };
    let want = usize::try_from(max).unwrap_or(usize::MAX).min(SPLICE_MAX);
    let outcome = match pipe.fill_from(upstream, want) {
        Ok(0) => Forward::Eof,
        Ok(n) => Forward::Moved(n as u64, drain_pipe(&mut pipe, client, life, stall)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Forward::Nothing
        }
        Err(_) => Forward::Failed,
    };
    // A pipe the client did not empty is closed, not pooled.
    PIPES.put(pipe);
    outcome
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn forward(_: &TcpStream, _: &TcpStream, _: u64, _: &Lifecycle, _: Duration) -> Forward {
    Forward::Unavailable
}

/// Splices everything in `pipe` into `client`, waiting (as `write_all`
/// does) while the client's socket is full.
#[cfg(target_os = "linux")]
fn drain_pipe(
    pipe: &mut proxy_host::splice::Pipe,
    client: &TcpStream,
    life: &Lifecycle,
    stall: Duration,
) -> io::Result<()> {
    while !pipe.is_empty() {
        match pipe.drain_to(client) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                wait_writable(client.as_raw_fd(), life.stop_fd(), stall)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until `fd` is writable; fails when `stop` (the lifecycle's stop
/// beacon) becomes readable first or nothing changes for `stall` (zero:
/// no limit).
pub(crate) fn wait_writable(fd: RawFd, stop: RawFd, stall: Duration) -> io::Result<()> {
    let mut fds = [
        sys::pollfd(Some(fd), sys::POLLOUT),
        sys::pollfd(Some(stop), POLLIN),
    ];
    let timeout = (!stall.is_zero()).then_some(stall);
    match sys::poll(&mut fds, sys::duration_ms(timeout)) {
        Ok(0) => Err(io::ErrorKind::TimedOut.into()),
        Ok(_) if fds[1].revents != 0 => Err(io::Error::other("shutdown grace period over")),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reads and discards until the client closes, for at most [`LINGER`],
/// or until `stop` (the lifecycle's stop beacon) is readable.
pub(crate) fn linger(client: &TcpStream, stop: RawFd) {
    let started = std::time::Instant::now();
    let mut scratch = [0u8; 4096];
    while let Some(left) = LINGER
        .checked_sub(started.elapsed())
        .filter(|d| !d.is_zero())
    {
        let mut fds = [
            sys::pollfd(Some(client.as_raw_fd()), POLLIN),
            sys::pollfd(Some(stop), POLLIN),
        ];
        match sys::poll(&mut fds, sys::duration_ms(Some(left))) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        if fds[1].revents != 0 || fds[0].revents == 0 {
            if fds[1].revents != 0 {
                return;
            }
            continue;
        }
        // Readable: data or end of stream is there; the socket is
        // non-blocking, so this cannot block.
        match (&*client).read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) => {}
            Err(_) => return,
        }
    }
}
