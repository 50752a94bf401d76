//! The tunnel relay: bytes both ways between the client and an upstream
//! until both directions end, one fails, or nothing moves for the idle
//! timeout.
//!
//! Each direction adapts to what it carries (`proxy_host::splice::BULK`):
//! small records (interactive HTTPS) are copied through a pooled
//! [`InBuf`], a read and a write each; once a read fills the buffer the
//! direction is carrying bulk bytes, and on Linux they go socket → pipe →
//! socket with splice(2) and never enter user space, until a splice
//! moves less than a buffer's worth again. Either way a direction holds
//! a pipe or a buffer only while bytes are moving: it takes one when its
//! source has bytes and gives it back once they are all written, so an
//! idle tunnel costs its two sockets and little else. Copying is also
//! the fallback where splice is not available (another system, or no
//! descriptors left for a pipe), and how the leftover bytes the driver
//! already read go out.

use crate::net::poll_read_into;
use crate::reactor::{Io, Timer};
use futures_lite::future::poll_fn;
use futures_lite::AsyncWrite;
use proxy_core::{TunnelEnd, TunnelEndReason};
use proxy_host::buf::{InBuf, Pooled};
use proxy_host::lifecycle::Lifecycle;
#[cfg(target_os = "linux")]
use proxy_host::splice::{BULK, PIPES};
use std::future::Future;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Socket operations one poll may do before yielding to other tasks, so a
/// busy tunnel cannot hog an executor thread.
const BUDGET: usize = 32;

/// Where a relay starts (the driver's `Op::Relay`): what each side already
/// sent, whether a side has already reached end of stream, the idle
/// timeout.
pub(crate) type Start = proxy_core::driver::Relay<Pooled>;

/// Relays until the tunnel is over, or the shutdown grace period is
/// (`TunnelEndReason::Shutdown`), and says how it went. Byte counts
/// include the leftover bytes in `start`. `start` is taken apart before
/// the future is made, so the future holds only the relay's own state.
///
/// A plain function returning one hand-written future, not an `async fn`:
/// this future lives as long as the tunnel, and async wrappers would store
/// their arguments twice.
pub(crate) fn relay<'a>(
    client: &'a Io<TcpStream>,
    upstream: &'a Io<TcpStream>,
    start: Start,
    life: &'a Lifecycle,
) -> impl Future<Output = TunnelEnd> + 'a {
    relay_with(client, upstream, start, life, true)
}

/// [`relay`], splicing only if `splice` (and on Linux): tests turn it off
/// to exercise copying.
fn relay_with<'a>(
    client: &'a Io<TcpStream>,
    upstream: &'a Io<TcpStream>,
    start: Start,
    life: &'a Lifecycle,
    splice: bool,
) -> impl Future<Output = TunnelEnd> + 'a {
    let idle = start.idle_timeout;
    let now = Instant::now();
    let mut relay = Relay {
        up: Direction::new(start.to_upstream, start.client_eof, splice),
        down: Direction::new(start.to_client, start.upstream_eof, splice),
        last_progress: now,
        timer: Timer::at(now + idle),
        idle,
    };
    // Notified at every lifecycle change; the stage is looked at after
    // listening, so a change in between is not lost.
    let mut stop = life.changed();
    poll_fn(move |cx| {
        // First, so a tunnel always busy still notices.
        while Pin::new(&mut stop).poll(cx).is_ready() {
            stop = life.changed();
        }
        let reason = if life.is_stopping() {
            Some(TunnelEndReason::Shutdown)
        } else {
            relay.poll(cx, client, upstream)
        };
        match reason {
            Some(reason) => Poll::Ready(TunnelEnd {
                to_upstream: relay.up.count,
                to_client: relay.down.count,
                reason,
            }),
            None => Poll::Pending,
        }
    })
}

/// Both directions of a tunnel and its idle timer.
struct Relay {
    /// Client to upstream.
    up: Direction,
    /// Upstream to client.
    down: Direction,
    /// When bytes last moved either way.
    last_progress: Instant,
    /// Fires at or before `last_progress + idle`.
    timer: Timer,
    idle: Duration,
}

impl Relay {
    /// Moves bytes both ways; says how the tunnel ended if it did.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        client: &Io<TcpStream>,
        upstream: &Io<TcpStream>,
    ) -> Option<TunnelEndReason> {
        // Each direction gets its own budget, so neither starves the other.
        let (mut b1, mut b2) = (BUDGET, BUDGET);
        let r1 = self.up.poll(cx, client, upstream, &mut b1);
        let r2 = self.down.poll(cx, upstream, client, &mut b2);
        if let Err(e) = r1.and(r2) {
            return Some(proxy_host::io_error::tunnel_end(&e));
        }
        if self.up.done && self.down.done {
            return Some(TunnelEndReason::Closed);
        }
        if std::mem::take(&mut self.up.moved) | std::mem::take(&mut self.down.moved) {
            self.last_progress = Instant::now();
        }
        if (b1 == 0 && !self.up.done) || (b2 == 0 && !self.down.done) {
            // Out of budget with work left: come back after other tasks.
            cx.waker().wake_by_ref();
            return None;
        }
        // The timer is re-armed only when it fires early, not on every
        // byte: progress just moves `last_progress`.
        while Pin::new(&mut self.timer).poll(cx).is_ready() {
            let due = self.last_progress + self.idle;
            if Instant::now() >= due {
                return Some(TunnelEndReason::IdleTimeout);
            }
            self.timer.set_at(due);
        }
        None
    }
}

/// One direction of the relay: move what the source has to the
/// destination, repeat; on end of stream, shut down the destination's
/// sending side.
///
/// Bytes in flight sit in `buf` (copied) or in `pipe` (spliced), never
/// both: `buf` is written out first, then the pipe; a new read happens
/// only when both are empty.
struct Direction {
    /// Copied bytes not yet written: the leftovers at the start, and
    /// everything when splicing is not possible. Holds storage only while
    /// it holds bytes.
    buf: InBuf,
    /// Spliced bytes not yet written; `None` whenever the pipe would be
    /// empty (it is back in the pool then).
    #[cfg(target_os = "linux")]
    pipe: Option<proxy_host::splice::Pipe>,
    /// Whether to splice at all (tests turn it off).
    #[cfg(target_os = "linux")]
    splice: bool,
    /// The last read moved a buffer's worth or more: splice the next.
    #[cfg(target_os = "linux")]
    bulk: bool,
    /// The source reached end of stream.
    eof: bool,
    /// End of stream was passed on: this direction is finished.
    done: bool,
    /// Bytes written to the destination.
    count: u64,
    /// Something was read or written since the relay last looked.
    moved: bool,
    /// Reads that went through a pipe.
    #[cfg(test)]
    spliced_reads: usize,
}

/// What one step of a direction came to.
enum Step {
    /// Progress, or nothing yet but worth trying again at once.
    Again,
    /// Blocked: a waker is registered.
    Blocked,
}

impl Direction {
    fn new(mut leftover: InBuf, eof: bool, splice: bool) -> Self {
        leftover.release();
        #[cfg(not(target_os = "linux"))]
        let _ = splice;
        Direction {
            buf: leftover,
            #[cfg(target_os = "linux")]
            pipe: None,
            #[cfg(target_os = "linux")]
            splice,
            #[cfg(target_os = "linux")]
            bulk: false,
            eof,
            done: false,
            count: 0,
            moved: false,
            #[cfg(test)]
            spliced_reads: 0,
        }
    }

    /// Moves bytes until blocked, finished or out of budget. `Err` on a
    /// socket error either end.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        src: &Io<TcpStream>,
        dst: &Io<TcpStream>,
        budget: &mut usize,
    ) -> io::Result<()> {
        while !self.done && *budget > 0 {
            *budget -= 1;
            let step = if !self.buf.is_empty() {
                self.write_copied(cx, dst)?
            } else if self.has_spliced() {
                self.write_spliced(cx, dst)?
            } else if self.eof {
                // The peer may already be gone; its own reads will say so.
                let _ = dst.get_ref().shutdown(Shutdown::Write);
                self.done = true;
                Step::Blocked
            } else {
                self.read(cx, src)?
            };
            if let Step::Blocked = step {
                break;
            }
        }
        Ok(())
    }

    #[cfg(target_os = "linux")]
    fn has_spliced(&self) -> bool {
        self.pipe.is_some()
    }

    fn written(&mut self, n: usize) {
        self.count += n as u64;
        self.moved = true;
    }

    /// Writes copied bytes out of `buf`, giving its storage back once
    /// they are all out.
    fn write_copied(&mut self, cx: &mut Context<'_>, dst: &Io<TcpStream>) -> io::Result<Step> {
        let mut w = dst;
        match Pin::new(&mut w).poll_write(cx, self.buf.bytes()) {
            Poll::Ready(Ok(0)) => Err(io::ErrorKind::WriteZero.into()),
            Poll::Ready(Ok(n)) => {
                self.buf.consume(n);
                self.buf.release();
                self.written(n);
                Ok(Step::Again)
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => Ok(Step::Again),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(Step::Blocked),
        }
    }

    /// Reads what the source has: spliced into a pipe when one can be
    /// had, copied into `buf` otherwise.
    fn read(&mut self, cx: &mut Context<'_>, src: &Io<TcpStream>) -> io::Result<Step> {
        // A socket known to be empty gets neither a pipe nor a buffer.
        match src.poll_readable(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => return Ok(Step::Blocked),
        }
        #[cfg(target_os = "linux")]
        if self.splice && self.bulk {
            // Out of descriptors, say: copy this burst instead.
            if let Ok(pipe) = PIPES.take() {
                return self.read_spliced(cx, src, pipe);
            }
        }
        match poll_read_into(cx, src, &mut self.buf) {
            Poll::Ready(Ok(0)) => {
                self.eof = true;
                self.moved = true;
                Ok(Step::Again)
            }
            Poll::Ready(Ok(n)) => {
                #[cfg(target_os = "linux")]
                {
                    self.bulk = n >= BULK;
                }
                self.moved = true;
                Ok(Step::Again)
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => Ok(Step::Again),
            Poll::Ready(Err(e)) => Err(e),
            // Nothing to read (and no buffer held meanwhile).
            Poll::Pending => Ok(Step::Blocked),
        }
    }
}

#[cfg(target_os = "linux")]
impl Direction {
    /// Splices what the source has into `pipe` (an empty one), keeping
    /// the pipe if anything arrived and returning it to the pool if not.
    /// (A short splice does not mean the source is empty, as a short read
    /// does: a pipe takes whole pages.)
    fn read_spliced(
        &mut self,
        cx: &mut Context<'_>,
        src: &Io<TcpStream>,
        mut pipe: proxy_host::splice::Pipe,
    ) -> io::Result<Step> {
        use proxy_host::splice::SPLICE_MAX;
        match pipe.fill_from(src, SPLICE_MAX) {
            Ok(0) => {
                PIPES.put(pipe);
                self.eof = true;
                self.moved = true;
                Ok(Step::Again)
            }
            Ok(n) => {
                #[cfg(test)]
                {
                    self.spliced_reads += 1;
                }
                self.bulk = n >= BULK;
                self.pipe = Some(pipe);
                self.moved = true;
                Ok(Step::Again)
            }
            Err(e) => {
                PIPES.put(pipe);
                match e.kind() {
                    io::ErrorKind::Interrupted => Ok(Step::Again),
                    io::ErrorKind::WouldBlock => {
                        src.clear_readable();
                        ready(src.poll_readable(cx))
                    }
                    _ => Err(e),
                }
            }
        }
    }

    /// Splices bytes from the pipe to the destination, returning the pipe
    /// to the pool once it is empty; while the destination is full, the
    /// direction keeps the pipe and waits until it is writable.
    fn write_spliced(&mut self, cx: &mut Context<'_>, dst: &Io<TcpStream>) -> io::Result<Step> {
        let Some(pipe) = self.pipe.as_mut() else {
            return Ok(Step::Again);
        };
        match pipe.drain_to(dst) {
            Ok(n) => {
                if pipe.is_empty() {
                    if let Some(pipe) = self.pipe.take() {
                        PIPES.put(pipe);
                    }
                }
                self.written(n);
                Ok(Step::Again)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(Step::Again),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                dst.clear_writable();
                ready(dst.poll_writable(cx))
            }
            Err(e) => Err(e),
        }
    }
}

/// Elsewhere nothing is spliced.
#[cfg(not(target_os = "linux"))]
impl Direction {
    fn has_spliced(&self) -> bool {
        false
    }

    fn write_spliced(&mut self, _: &mut Context<'_>, _: &Io<TcpStream>) -> io::Result<Step> {
        Ok(Step::Again)
    }
}

/// A readiness wait as a step: ready means try the operation again.
#[cfg(target_os = "linux")]
fn ready(poll: Poll<io::Result<()>>) -> io::Result<Step> {
    match poll {
        Poll::Ready(Ok(())) => Ok(Step::Again),
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => Ok(Step::Blocked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::tests::pair;
    use std::io::{Read, Write};

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
    }

    fn leftover(bytes: &[u8]) -> InBuf {
        let mut b = InBuf::default();
        b.spare(bytes.len())[..bytes.len()].copy_from_slice(bytes);
        b.commit(bytes.len());
        b
    }

    /// Each peer sends `len` bytes and half-closes, and reads until the
    /// other side's end; the relay's result and what each peer got.
    fn run(splice: bool, len: usize) -> (TunnelEnd, Vec<u8>, Vec<u8>) {
        let (client, client_peer) = pair();
        let (upstream, upstream_peer) = pair();
        let peer = |mut s: TcpStream, seed: u8| {
            std::thread::spawn(move || {
                let mut reader = s.try_clone().unwrap();
                let got = std::thread::spawn(move || {
                    let mut all = Vec::new();
                    reader.read_to_end(&mut all).unwrap();
                    all
                });
                s.write_all(&pattern(len, seed)).unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                got.join().unwrap()
            })
        };
        let c = peer(client_peer, 1);
        let u = peer(upstream_peer, 2);
        let life = Lifecycle::new().unwrap();
        let start = Start {
            upstream: proxy_core::UpstreamId(0),
            idle_timeout: Duration::from_secs(10),
            to_upstream: leftover(b"early"),
            to_client: leftover(b"hello"),
            client_eof: false,
            upstream_eof: false,
        };
        let end = crate::reactor::block_on(relay_with(&client, &upstream, start, &life, splice));
        // The relay shut down both ways; now the peers' reads end.
        drop((client, upstream));
        (end, c.join().unwrap(), u.join().unwrap())
    }

    fn check(splice: bool) {
        let len = 3 << 20;
        let (end, to_client, to_upstream) = run(splice, len);
        assert!(
            matches!(end.reason, TunnelEndReason::Closed),
            "{:?}",
            end.reason
        );
        let mut want = b"hello".to_vec();
        want.extend(pattern(len, 2));
        assert!(to_client == want, "bytes to the client");
        let mut want = b"early".to_vec();
        want.extend(pattern(len, 1));
        assert!(to_upstream == want, "bytes to the upstream");
        assert_eq!(end.to_client, (len + 5) as u64);
        assert_eq!(end.to_upstream, (len + 5) as u64);
    }

    #[test]
    fn splices_exact_bytes_both_ways_and_counts_them() {
        check(true);
    }

    #[test]
    fn copies_exact_bytes_both_ways_and_counts_them() {
        check(false);
    }

    /// Polls `dir` once (moving what can be moved now).
    fn step(dir: &mut Direction, src: &Io<TcpStream>, dst: &Io<TcpStream>) {
        crate::reactor::block_on(poll_fn(|cx| {
            let mut budget = BUDGET;
            dir.poll(cx, src, dst, &mut budget).unwrap();
            Poll::Ready(())
        }));
    }

    fn holds_nothing(dir: &Direction) -> bool {
        !dir.buf.has_storage() && !dir.has_spliced()
    }

    /// An idle direction holds neither a buffer nor a pipe; one whose
    /// destination is full keeps what it could not write (in a pipe when
    /// splicing) and lets go of it once all of it is written.
    fn holds_only_while_bytes_move(splice: bool) {
        let (src, mut writer) = pair();
        let (dst, mut reader) = pair();
        let mut dir = Direction::new(InBuf::default(), false, splice);
        step(&mut dir, &src, &dst);
        assert!(holds_nothing(&dir), "idle");

        // Nobody reads `reader`: the destination fills up.
        let data = pattern(32 << 20, 7);
        let sent = data.clone();
        let w = std::thread::spawn(move || {
            writer.write_all(&sent).unwrap();
            writer.shutdown(Shutdown::Write).unwrap();
        });
        // Until nothing moves for a while: the destination is full.
        let mut still = 0;
        while still < 20 {
            let before = dir.count;
            step(&mut dir, &src, &dst);
            still = if dir.count == before { still + 1 } else { 0 };
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(dir.count > 0 && dir.count < data.len() as u64);
        assert!(
            if splice {
                dir.has_spliced() && dir.buf.is_empty()
            } else {
                !dir.buf.is_empty()
            },
            "a full destination: what it refused is kept"
        );
        let r = std::thread::spawn(move || {
            let mut all = Vec::new();
            reader.read_to_end(&mut all).unwrap();
            all
        });
        while !dir.done {
            step(&mut dir, &src, &dst);
        }
        assert!(holds_nothing(&dir), "all written");
        w.join().unwrap();
        drop(dst);
        assert!(r.join().unwrap() == data);
        assert_eq!(dir.count, data.len() as u64);
    }

    /// Waits until `src` holds at least `n` unread bytes.
    #[cfg(target_os = "linux")]
    fn wait_for(src: &Io<TcpStream>, n: usize) {
        let mut scratch = vec![0; n];
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(src.get_ref().peek(&mut scratch), Ok(k) if k >= n) {
            assert!(Instant::now() < deadline, "{n} bytes never arrived");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A small record is copied (no pipe is taken); a burst that fills
    /// the buffer switches the direction to splicing; a small record
    /// after it switches back.
    #[cfg(target_os = "linux")]
    #[test]
    fn small_records_are_copied_and_bulk_is_spliced() {
        let (src, mut writer) = pair();
        let (dst, mut reader) = pair();
        let mut dir = Direction::new(InBuf::default(), false, true);
        let record = pattern(1024, 3);
        let big = pattern(4 << 20, 4);
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

        writer.write_all(&record).unwrap();
        while dir.count < 1024 {
            assert!(!dir.has_spliced(), "a small record takes no pipe");
            step(&mut dir, &src, &dst);
        }
        assert!(!dir.bulk && holds_nothing(&dir));

        let w = std::thread::spawn(move || {
            writer.write_all(&big).unwrap();
            writer
        });
        // Whenever two buffers' worth wait at the source, a step reads a
        // full buffer (copied), and its next read is a splice.
        while dir.count < 1024 + (4 << 20) {
            let left = (1024 + (4 << 20) - dir.count) as usize;
            wait_for(&src, left.min(2 * BULK));
            step(&mut dir, &src, &dst);
        }
        assert!(dir.spliced_reads > 0, "bulk bytes went through a pipe");
        let mut writer = w.join().unwrap();

        // The first small read after the burst is a short splice, which
        // turns splicing off; the next one is copied.
        for k in 2..4u64 {
            writer.write_all(&record).unwrap();
            let spliced = dir.spliced_reads;
            while dir.count < k * 1024 + (4 << 20) {
                step(&mut dir, &src, &dst);
            }
            assert!(!dir.bulk, "back to copying");
            if k == 3 {
                assert_eq!(dir.spliced_reads, spliced, "a small record is copied");
            }
        }
        assert!(holds_nothing(&dir));
        assert!(r.join().unwrap() == sent, "the bytes, in order");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_spliced_direction_holds_a_pipe_only_while_bytes_move() {
        holds_only_while_bytes_move(true);
    }

    #[test]
    fn a_copying_direction_holds_a_buffer_only_while_bytes_move() {
        holds_only_while_bytes_move(false);
    }
}
