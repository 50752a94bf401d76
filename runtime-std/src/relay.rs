//! The tunnel relay: both directions between the client and an upstream,
//! until both are done.
//!
//! A [`Relay`] is resumable: [`Relay::run`] moves bytes until the tunnel
//! ends, or until nothing has moved for the caller's park limit; then it
//! gives its buffers back and returns [`RelayStep::Idle`], and the caller
//! parks the connection until a socket is readable (an idle tunnel holds
//! no buffer and no thread). A plain copy through a user-space buffer.

use crate::sys::{self, POLLIN, POLLOUT};
use proxy_core::{TunnelEnd, TunnelEndReason};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// Per-direction buffer size.
const RELAY_BUF: usize = 64 * 1024;

/// What one side says when the relay begins.
pub(crate) struct Start<'a> {
    /// Bytes already read from this side and not yet forwarded.
    pub(crate) leftover: &'a [u8],
    /// This side already sent its end of stream.
    pub(crate) eof: bool,
}

/// What [`Relay::run`] ended with.
pub(crate) enum RelayStep {
    /// The tunnel is over; the sockets are back in blocking mode.
    Ended(TunnelEnd),
    /// Nothing moved for the park limit: wait for either socket to be
    /// readable, or for [`Relay::deadline`], then run again.
    Idle,
}

/// A tunnel between a client and an upstream, from its start to its end.
pub(crate) struct Relay {
    up: Half,
    down: Half,
    /// Nothing moving for this long ends the tunnel (zero: no limit).
    idle: Duration,
    /// When bytes last moved.
    last: Instant,
    /// The sockets could not be made non-blocking.
    broken: bool,
}

impl Relay {
    /// Starts relaying between `client` and `upstream`: the sockets are
    /// non-blocking until the relay ends.
    pub(crate) fn new(
        client: &TcpStream,
        upstream: &TcpStream,
        from_client: Start<'_>,
        from_upstream: Start<'_>,
        idle: Duration,
    ) -> Relay {
        let broken =
            client.set_nonblocking(true).is_err() || upstream.set_nonblocking(true).is_err();
        Relay {
            up: Half::new(from_client),
            down: Half::new(from_upstream),
            idle,
            last: Instant::now(),
            broken,
        }
    }

    /// When the tunnel ends for idleness, if it does.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        (!self.idle.is_zero()).then(|| self.last + self.idle)
    }

    /// Relays until both directions reached end of stream, a socket
    /// fails, nothing moves for the idle limit, `stop` becomes readable
    /// (the lifecycle's stop beacon: the grace period is over), or nothing
    /// moves for `park_after` (then `Idle`). Byte counts include the
    /// leftovers.
    pub(crate) fn run(
        &mut self,
        client: &TcpStream,
        upstream: &TcpStream,
        stop: RawFd,
        park_after: Option<Duration>,
    ) -> RelayStep {
        let reason = if self.broken {
            TunnelEndReason::Error
        } else {
            match self.pump(client, upstream, stop, park_after) {
                Some(reason) => reason,
                None => {
                    self.up.release();
                    self.down.release();
                    return RelayStep::Idle;
                }
            }
        };
        let _ = client.set_nonblocking(false);
        let _ = upstream.set_nonblocking(false);
        RelayStep::Ended(TunnelEnd {
            to_upstream: self.up.moved,
            to_client: self.down.moved,
            reason,
        })
    }

    /// The relay loop: `Some(reason)` when the tunnel ends, `None` when it
    /// has idled for `park_after`.
    fn pump(
        &mut self,
        client: &TcpStream,
        upstream: &TcpStream,
        stop: RawFd,
        park_after: Option<Duration>,
    ) -> Option<TunnelEndReason> {
        let (up, down) = (&mut self.up, &mut self.down);
        loop {
            match (up.flush_to(upstream), down.flush_to(client)) {
                (Ok(a), Ok(b)) => {
                    if a + b > 0 {
                        self.last = Instant::now();
                    }
                }
                _ => return Some(TunnelEndReason::Error),
            }
            if up.eof && up.pending() == 0 && !up.shut {
                // Ignore failure: the peer may already be gone, which the
                // next read or write reports.
                let _ = upstream.shutdown(Shutdown::Write);
                up.shut = true;
            }
            if down.eof && down.pending() == 0 && !down.shut {
                let _ = client.shutdown(Shutdown::Write);
                down.shut = true;
            }
            if up.shut && down.shut {
                return Some(TunnelEndReason::Closed);
            }

            let client_events = if up.wants_read() { POLLIN } else { 0 }
                | if down.pending() > 0 { POLLOUT } else { 0 };
            let upstream_events = if down.wants_read() { POLLIN } else { 0 }
                | if up.pending() > 0 { POLLOUT } else { 0 };
            let mut fds = [
                sys::pollfd(
                    (client_events != 0).then(|| client.as_raw_fd()),
                    client_events,
                ),
                sys::pollfd(
                    (upstream_events != 0).then(|| upstream.as_raw_fd()),
                    upstream_events,
                ),
                sys::pollfd(Some(stop), POLLIN),
            ];
            let remaining = if self.idle.is_zero() {
                None
            } else {
                match self.idle.checked_sub(self.last.elapsed()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return Some(TunnelEndReason::IdleTimeout),
                }
            };
            // Parked only with nothing in flight: bytes waiting for a full
            // destination need POLLOUT, which the lot does not watch.
            let parks = park_after.filter(|p| {
                up.pending() == 0 && down.pending() == 0 && remaining.map_or(true, |r| r > *p)
            });
            if client_events == 0 && upstream_events == 0 && remaining.is_none() {
                // Nothing can move and nothing will time out: cannot happen
                // while a direction is open, but never sleep forever.
                return Some(TunnelEndReason::Error);
            }
            let timeout = parks.or(remaining);
            match sys::poll(&mut fds, sys::duration_ms(timeout)) {
                Ok(0) if parks.is_some() => return None,
                Ok(0) => continue,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Some(TunnelEndReason::Error),
            }
            if fds[2].revents != 0 {
                return Some(TunnelEndReason::Shutdown);
            }
            if fds[0].revents != 0 && client_events & POLLIN != 0 {
                match up.fill_from(client) {
                    Ok(true) => self.last = Instant::now(),
                    Ok(false) => {}
                    Err(_) => return Some(TunnelEndReason::Error),
                }
            }
            if fds[1].revents != 0 && upstream_events & POLLIN != 0 {
                match down.fill_from(upstream) {
                    Ok(true) => self.last = Instant::now(),
                    Ok(false) => {}
                    Err(_) => return Some(TunnelEndReason::Error),
                }
            }
        }
    }
}

/// One direction: bytes read from one socket, waiting to be written to the
/// other.
struct Half {
    /// Empty (no storage) while nothing is in flight and the relay is
    /// parked; taken again at the next read.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// The source sent its end of stream.
    eof: bool,
    /// We shut down the destination's writing side.
    shut: bool,
    /// Bytes written to the destination.
    moved: u64,
}

impl Half {
    fn new(start: Start<'_>) -> Self {
        Half {
            buf: start.leftover.to_vec(),
            start: 0,
            end: start.leftover.len(),
            eof: start.eof,
            shut: false,
            moved: 0,
        }
    }

    fn pending(&self) -> usize {
        self.end - self.start
    }

    fn wants_read(&self) -> bool {
        !self.eof && (self.end < RELAY_BUF || self.start > 0)
    }

    /// Drops the buffer's storage if nothing is in it.
    fn release(&mut self) {
        if self.pending() == 0 {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }

    /// Writes what it can without blocking; returns how many bytes went.
    fn flush_to(&mut self, mut dst: &TcpStream) -> io::Result<usize> {
        let mut total = 0;
        while self.start < self.end {
            match dst.write(&self.buf[self.start..self.end]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.start += n;
                    self.moved += n as u64;
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(total)
    }

    /// Reads what it can without blocking; returns whether anything
    /// happened (bytes or end of stream).
    fn fill_from(&mut self, mut src: &TcpStream) -> io::Result<bool> {
        if self.buf.len() < RELAY_BUF {
            // Zeroed once per wake-up from parking, not per read.
            self.buf.resize(RELAY_BUF, 0);
        }
        if self.end == self.buf.len() && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(false);
        }
        loop {
            match src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(true);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Relays on this thread until the tunnel ends, never parking.
#[cfg(test)]
fn relay(
    client: &TcpStream,
    upstream: &TcpStream,
    from_client: Start<'_>,
    from_upstream: Start<'_>,
    idle: Duration,
    stop: RawFd,
) -> TunnelEnd {
    let mut relay = Relay::new(client, upstream, from_client, from_upstream, idle);
    loop {
        if let RelayStep::Ended(end) = relay.run(client, upstream, stop, None) {
            return end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_std::lifecycle::Lifecycle;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn relays_both_ways_with_leftovers_and_half_close() {
        // client_app <-> (client_sock | proxy | upstream_sock) <-> origin
        let (mut client_app, client_sock) = pair();
        let (upstream_sock, mut origin) = pair();
        let life = Lifecycle::new().unwrap();
        let stop = life.stop_fd();
        let t = std::thread::spawn(move || {
            relay(
                &client_sock,
                &upstream_sock,
                Start {
                    leftover: b"hello ",
                    eof: false,
                },
                Start {
                    leftover: b"hi ",
                    eof: false,
                },
                Duration::from_secs(5),
                stop,
            )
        });
        client_app.write_all(b"world").unwrap();
        client_app.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        origin.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello world");
        origin.write_all(b"there").unwrap();
        origin.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        client_app.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hi there");
        let end = t.join().unwrap();
        drop(life);
        assert_eq!(end.reason, TunnelEndReason::Closed);
        assert_eq!(end.to_upstream, 11);
        assert_eq!(end.to_client, 8);
    }

    #[test]
    fn an_idle_relay_parks_without_buffers_and_resumes() {
        let (mut client_app, client_sock) = pair();
        let (upstream_sock, mut origin) = pair();
        let life = Lifecycle::new().unwrap();
        let none = || Start {
            leftover: b"",
            eof: false,
        };
        let mut relay = Relay::new(
            &client_sock,
            &upstream_sock,
            none(),
            none(),
            Duration::from_secs(5),
        );
        let park = Some(Duration::from_millis(20));
        client_app.write_all(b"ping").unwrap();
        // Moves the bytes, then idles and parks with no storage held.
        assert!(matches!(
            relay.run(&client_sock, &upstream_sock, life.stop_fd(), park),
            RelayStep::Idle
        ));
        assert_eq!((relay.up.buf.capacity(), relay.down.buf.capacity()), (0, 0));
        let mut got = [0u8; 4];
        origin.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        assert!(relay.deadline().is_some());

        // Resumed: carries on where it stopped, counts included.
        origin.write_all(b"pong").unwrap();
        origin.shutdown(Shutdown::Write).unwrap();
        client_app.shutdown(Shutdown::Write).unwrap();
        let end = loop {
            if let RelayStep::Ended(end) =
                relay.run(&client_sock, &upstream_sock, life.stop_fd(), park)
            {
                break end;
            }
        };
        let mut got = Vec::new();
        client_app.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"pong");
        assert_eq!(end.reason, TunnelEndReason::Closed);
        assert_eq!((end.to_upstream, end.to_client), (4, 4));
    }

    #[test]
    fn idle_timeout_ends_the_relay() {
        let (_client_app, client_sock) = pair();
        let (upstream_sock, _origin) = pair();
        let life = Lifecycle::new().unwrap();
        let end = relay(
            &client_sock,
            &upstream_sock,
            Start {
                leftover: b"",
                eof: false,
            },
            Start {
                leftover: b"",
                eof: false,
            },
            Duration::from_millis(50),
            life.stop_fd(),
        );
        assert_eq!(end.reason, TunnelEndReason::IdleTimeout);
        assert_eq!((end.to_upstream, end.to_client), (0, 0));
    }

    #[test]
    fn the_stop_beacon_ends_the_relay() {
        let (mut client_app, client_sock) = pair();
        let (upstream_sock, mut origin) = pair();
        let life = Lifecycle::new().unwrap();
        let stop = life.stop_fd();
        let t = std::thread::spawn(move || {
            relay(
                &client_sock,
                &upstream_sock,
                Start {
                    leftover: b"",
                    eof: false,
                },
                Start {
                    leftover: b"",
                    eof: false,
                },
                Duration::ZERO,
                stop,
            )
        });
        client_app.write_all(b"ping").unwrap();
        let mut got = [0u8; 4];
        origin.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ping");
        life.stop();
        let end = t.join().unwrap();
        assert_eq!(end.reason, TunnelEndReason::Shutdown);
        assert_eq!((end.to_upstream, end.to_client), (4, 0));
    }
}
