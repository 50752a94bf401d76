//! The tunnel relay: both directions between the client and an upstream,
//! until both are done.
//!
//! A [`Relay`] is resumable: [`Relay::run`] moves bytes until the tunnel
//! ends, or until nothing has moved for the caller's park limit; then it
//! gives its buffers back and returns [`RelayStep::Idle`], and the caller
//! parks the connection until a socket is readable (an idle tunnel holds
//! no buffer and no thread).
//!
//! Each direction adapts to what it carries (`proxy_host::splice::BULK`):
//! small records (interactive HTTPS) are copied through a scratch buffer
//! taken from a small shared pool for each read; once a read brings a
//! buffer's worth or more, the direction splices (on Linux) until a
//! splice moves less than that again.

use crate::sys::{self, POLLIN, POLLOUT};
use proxy_core::{TunnelEnd, TunnelEndReason};
use proxy_host::io_error::tunnel_end;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Mutex;

#[cfg(target_os = "linux")]
use proxy_host::splice::{Pipe, SPLICE_MAX};
#[cfg(target_os = "linux")]
use proxy_host::splice::{BULK, PIPES};
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
    /// The tunnel is over.
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
    /// Starts relaying between `client` and `upstream`, making sure both
    /// sockets are non-blocking (the driver keeps them so anyway).
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
                (Err(e), _) | (_, Err(e)) => return Some(tunnel_end(&e)),
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
                match up.forward(client, upstream) {
                    Ok(true) => self.last = Instant::now(),
                    Ok(false) => {}
                    Err(e) => return Some(tunnel_end(&e)),
                }
            }
            if fds[1].revents != 0 && upstream_events & POLLIN != 0 {
                match down.forward(upstream, client) {
                    Ok(true) => self.last = Instant::now(),
                    Ok(false) => {}
                    Err(e) => return Some(tunnel_end(&e)),
                }
            }
        }
    }
}

/// One direction: bytes from one socket to the other.
///
/// Reads go through a shared scratch buffer and are written on
/// at once; only what the destination does not take now is kept, in
/// `pending`, until it does. So a tunnel holds no buffer of its own
/// except while its destination is slower than its source.
struct Half {
    /// Read, not yet written (the destination was full); nothing more is
    /// read until it is gone.
    pending: Vec<u8>,
    /// Spliced in, not yet out (the destination was full); likewise.
    #[cfg(target_os = "linux")]
    pipe: Option<Pipe>,
    /// The last read moved a buffer's worth or more: splice the next.
    #[cfg(target_os = "linux")]
    bulk: bool,
    /// The source sent its end of stream.
    eof: bool,
    /// We shut down the destination's writing side.
    shut: bool,
    /// Bytes written to the destination.
    moved: u64,
    /// Reads that went through a pipe.
    #[cfg(test)]
    spliced_reads: usize,
}

/// Scratch buffers for relays to read into, shared by every worker: one
/// is taken for a read and its write and given back at once, so there are
/// about as many as relays forwarding at the same instant, not one per
/// tunnel or per thread.
static SCRATCH: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

/// Most scratch buffers kept between uses.
const SCRATCH_KEPT: usize = 16;

/// Runs `f` with a scratch buffer of [`RELAY_BUF`] bytes.
fn with_scratch<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    let taken = SCRATCH.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mut buf = taken.unwrap_or_else(|| vec![0; RELAY_BUF].into_boxed_slice());
    let result = f(&mut buf);
    let mut kept = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
    if kept.len() < SCRATCH_KEPT {
        kept.push(buf);
    }
    result
}

impl Half {
    fn new(start: Start<'_>) -> Self {
        Half {
            pending: start.leftover.to_vec(),
            #[cfg(target_os = "linux")]
            pipe: None,
            #[cfg(target_os = "linux")]
            bulk: false,
            eof: start.eof,
            shut: false,
            moved: 0,
            #[cfg(test)]
            spliced_reads: 0,
        }
    }

    fn pending(&self) -> usize {
        #[cfg(target_os = "linux")]
        let piped = self.pipe.as_ref().map_or(0, Pipe::len);
        #[cfg(not(target_os = "linux"))]
        let piped = 0;
        self.pending.len() + piped
    }

    fn wants_read(&self) -> bool {
        !self.eof && self.pending() == 0
    }

    /// Drops the pending buffer's storage if nothing is in it.
    fn release(&mut self) {
        if self.pending.is_empty() {
            self.pending = Vec::new();
        }
    }

    /// Writes what it can of `pending` without blocking; returns how many
    /// bytes went.
    fn flush_to(&mut self, dst: &TcpStream) -> io::Result<usize> {
        let mut n = write_some(dst, &self.pending)?;
        self.pending.drain(..n);
        #[cfg(target_os = "linux")]
        if self.pending.is_empty() {
            if let Some(mut pipe) = self.pipe.take() {
                n += drain_some(&mut pipe, dst)?;
                if pipe.is_empty() {
                    PIPES.put(pipe);
                } else {
                    self.pipe = Some(pipe);
                }
            }
        }
        self.moved += n as u64;
        Ok(n)
    }

    /// Reads what it can without blocking and writes it on at once,
    /// keeping what `dst` does not take. Returns whether anything happened
    /// (bytes or end of stream).
    ///
    /// Bulk bytes go through a pooled pipe with splice(2) on Linux and
    /// never enter this process; small records, and everything where
    /// splicing is not possible, are copied through a scratch buffer.
    fn forward(&mut self, src: &TcpStream, dst: &TcpStream) -> io::Result<bool> {
        #[cfg(target_os = "linux")]
        if let Some(mut pipe) = self.bulk.then(|| PIPES.take().ok()).flatten() {
            match pipe.fill_from(src, SPLICE_MAX) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    #[cfg(test)]
                    {
                        self.spliced_reads += 1;
                    }
                    self.bulk = n >= BULK;
                    let drained = drain_some(&mut pipe, dst);
                    self.moved += *drained.as_ref().unwrap_or(&0) as u64;
                    // What the destination did not take waits in the pipe.
                    if !pipe.is_empty() {
                        self.pipe = Some(pipe);
                        return drained.map(|_| true);
                    }
                    drained?;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    PIPES.put(pipe);
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
            PIPES.put(pipe);
            return Ok(true);
        }
        self.copy(src, dst)
    }

    /// [`forward`](Half::forward) through a scratch buffer.
    fn copy(&mut self, mut src: &TcpStream, dst: &TcpStream) -> io::Result<bool> {
        with_scratch(|scratch| {
            let n = loop {
                match src.read(scratch) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                self.eof = true;
                return Ok(true);
            }
            #[cfg(target_os = "linux")]
            {
                self.bulk = n >= BULK;
            }
            let written = write_some(dst, &scratch[..n])?;
            self.moved += written as u64;
            self.pending.extend_from_slice(&scratch[written..n]);
            Ok(true)
        })
    }
}

/// Splices as much of `pipe` into `dst` as it takes without blocking.
#[cfg(target_os = "linux")]
fn drain_some(pipe: &mut Pipe, dst: &TcpStream) -> io::Result<usize> {
    let mut done = 0;
    while !pipe.is_empty() {
        match pipe.drain_to(dst) {
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Writes as much of `data` as `dst` takes without blocking.
fn write_some(mut dst: &TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        match dst.write(&data[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
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
    use proxy_host::lifecycle::Lifecycle;
    use std::net::TcpListener;

    /// A side that has sent `leftover` and not closed.
    fn open(leftover: &[u8]) -> Start<'_> {
        Start {
            leftover,
            eof: false,
        }
    }

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
                open(b"hello "),
                open(b"hi "),
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
        let mut relay = Relay::new(
            &client_sock,
            &upstream_sock,
            open(b""),
            open(b""),
            Duration::from_secs(5),
        );
        let park = Some(Duration::from_millis(20));
        client_app.write_all(b"ping").unwrap();
        // Moves the bytes, then idles and parks with no storage held.
        assert!(matches!(
            relay.run(&client_sock, &upstream_sock, life.stop_fd(), park),
            RelayStep::Idle
        ));
        assert_eq!(
            (relay.up.pending.capacity(), relay.down.pending.capacity()),
            (0, 0)
        );
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

    /// A small record is copied (no pipe is taken); a burst of a buffer's
    /// worth or more switches the direction to splicing; small records
    /// after it switch it back. Every byte arrives, in order.
    #[cfg(target_os = "linux")]
    #[test]
    fn small_records_are_copied_and_bulk_is_spliced() {
        let (mut writer, src) = pair();
        let (dst, mut reader) = pair();
        src.set_nonblocking(true).unwrap();
        dst.set_nonblocking(true).unwrap();
        let mut half = Half::new(open(b""));
        let record: Vec<u8> = (0..1024).map(|i| (i % 241) as u8).collect();
        let big: Vec<u8> = (0..4usize << 20).map(|i| (i % 251) as u8).collect();
        let mut sent = record.clone();
        sent.extend_from_slice(&big);
        sent.extend_from_slice(&record);
        sent.extend_from_slice(&record);
        let total = sent.len();
        let r = std::thread::spawn(move || {
            let mut all = vec![0; total];
            reader.read_exact(&mut all).unwrap();
            all
        });
        // Moves bytes until `until` are written, each step once
        // `until`'s bytes or two buffers' worth wait at the source (so a
        // burst shows as one: a full copy, then a splice).
        let pump = |half: &mut Half, until: u64| {
            let mut scratch = vec![0; 2 * BULK];
            while half.moved < until {
                let want = ((until - half.moved) as usize).min(2 * BULK);
                let deadline = Instant::now() + Duration::from_secs(10);
                while !matches!(src.peek(&mut scratch[..want]), Ok(k) if k >= want) {
                    assert!(Instant::now() < deadline, "the bytes never arrived");
                    std::thread::sleep(Duration::from_millis(1));
                }
                half.flush_to(&dst).unwrap();
                half.forward(&src, &dst).unwrap();
                half.flush_to(&dst).unwrap();
                if half.pending() > 0 || half.bulk {
                    half.forward(&src, &dst).unwrap();
                }
            }
        };

        writer.write_all(&record).unwrap();
        pump(&mut half, 1024);
        assert!(
            !half.bulk && half.pipe.is_none(),
            "a small record is copied"
        );
        assert_eq!(half.spliced_reads, 0);

        let w = std::thread::spawn(move || {
            writer.write_all(&big).unwrap();
            writer
        });
        let bulk_end = 1024 + (4u64 << 20);
        pump(&mut half, bulk_end);
        assert!(half.spliced_reads > 0, "bulk bytes are spliced");
        let mut writer = w.join().unwrap();
        for k in 1..3 {
            writer.write_all(&record).unwrap();
            let spliced = half.spliced_reads;
            pump(&mut half, bulk_end + k * 1024);
            assert!(!half.bulk, "back to copying");
            if k == 2 {
                assert_eq!(half.spliced_reads, spliced, "a small record is copied");
            }
        }
        assert!(r.join().unwrap() == sent, "the bytes, in order");
    }

    #[test]
    fn idle_timeout_ends_the_relay() {
        let (_client_app, client_sock) = pair();
        let (upstream_sock, _origin) = pair();
        let life = Lifecycle::new().unwrap();
        let end = relay(
            &client_sock,
            &upstream_sock,
            open(b""),
            open(b""),
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
                open(b""),
                open(b""),
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
