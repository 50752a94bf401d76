//! Socket helpers the connection and the relay share: reads into pooled
//! buffers and waiting for readiness, splicing through pooled pipes,
//! whole writes with a stall limit, connecting, telling a stale pooled
//! connection from a live one, and closing a client gracefully.

use crate::reactor::{Io, Timer};
use futures_lite::future::{self, poll_fn};
use futures_lite::ready;
use futures_lite::AsyncWrite;
use proxy_core::ResolveError;
use proxy_host::buf::InBuf;
use proxy_host::lifecycle::{EventListener, Lifecycle};
use proxy_host::pool::Pool;
use proxy_host::resolver::{system_resolve, Resolver};
#[cfg(target_os = "linux")]
use proxy_host::splice::{Pipe, PIPES, SPLICE_MAX};
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// A connected socket, shared between the driver and the pool.
pub(crate) type Stream = Arc<Io<TcpStream>>;

/// Opens a TCP connection to `addr` with Nagle off.
pub(crate) async fn connect(addr: SocketAddr) -> io::Result<Stream> {
    Ok(Arc::new(Io::connect(addr).await?))
}

/// A live idle connection to `addr` from `pools` (if given: every
/// thread's, and the index of this thread's, which is looked in first),
/// or a new one; says which. `None` if `at` passes first.
pub(crate) async fn connect_or_reuse(
    pools: Option<(&[Pool<Stream>], usize)>,
    addr: SocketAddr,
    at: Option<Instant>,
) -> Option<io::Result<(Stream, bool)>> {
    if let Some((pools, mine)) = pools {
        // This thread's pool first, then the others in turn.
        let order = (0..pools.len()).map(|k| (mine + k) % pools.len());
        for pool in order.filter_map(|i| pools.get(i)) {
            while let Some(stream) = pool.take(addr) {
                if is_alive(&stream) {
                    return Some(Ok((stream, true)));
                }
            }
        }
    }
    let connected = before(at, connect(addr)).await?;
    Some(connected.map(|stream| (stream, false)))
}

/// The addresses of `host`: from the `--resolve` overrides, or the system
/// resolver on the blocking pool. `None` if `at` passes first.
pub(crate) async fn resolve(
    resolver: &Resolver,
    host: String,
    at: Option<Instant>,
) -> Option<Result<Vec<IpAddr>, ResolveError>> {
    match resolver.lookup_static(&host) {
        Some(answer) => Some(answer),
        None => before(at, smol::unblock(move || system_resolve(&host))).await,
    }
}

/// Runs `fut` until `at`; `None` if `at` came first.
async fn before<T>(at: Option<Instant>, fut: impl Future<Output = T>) -> Option<T> {
    match at {
        None => Some(fut.await),
        Some(at) => {
            future::or(async { Some(fut.await) }, async {
                Timer::at(at).await;
                None
            })
            .await
        }
    }
}

/// A connection's timer, for the deadline of its waits.
///
/// The timer is moved only when a deadline comes *earlier* than the one
/// it is set for: every move costs the reactor a wake-up, and the deadline
/// changes several times per request (head read, response, transfer,
/// client idle). A later deadline just lets the timer fire early; the
/// next poll then sets it again, at most once per timeout period.
#[derive(Debug)]
pub(crate) struct Alarm {
    timer: Timer,
    /// The deadline the timer is set for; `None` once it fired.
    armed: Option<proxy_core::Instant>,
}

impl Default for Alarm {
    fn default() -> Self {
        Alarm {
            timer: Timer::never(),
            armed: None,
        }
    }
}

impl Alarm {
    /// Makes sure the timer fires no later than `due` (at `at`); returns
    /// `at`.
    pub(crate) fn arm(&mut self, due: proxy_core::Instant, at: Instant) -> Instant {
        if self.armed.map_or(true, |armed| due < armed) {
            self.timer.set_at(at);
            self.armed = Some(due);
        }
        at
    }

    /// Whether `due` (at `at`) has passed; registers for a wake-up if not.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        due: proxy_core::Instant,
        at: Instant,
    ) -> bool {
        while Pin::new(&mut self.timer).poll(cx).is_ready() {
            if Instant::now() >= at {
                self.armed = None;
                return true;
            }
            // Set for an earlier deadline than the one now asked for.
            self.timer.set_at(at);
            self.armed = Some(due);
        }
        false
    }
}

/// Whether an idle pooled connection still looks usable: nothing to read
/// yet. End of stream, an error, or stray bytes from the origin all mean
/// it must not carry another request.
///
/// The reactor usually knows without a system call: the response's last
/// read left the socket empty and no event has come since. That is as
/// fresh as this thread's last `epoll_wait`, so an origin's close can
/// still cross the next request, as it can after any check; the core
/// retries a safe request once on a reused connection that fails before
/// answering. Otherwise the socket is peeked at, and a live one is known
/// empty from then on (the first wait for its response waits for an
/// event without a read first).
pub(crate) fn is_alive(stream: &Io<TcpStream>) -> bool {
    if stream.known_empty() {
        return true;
    }
    let mut byte = [0u8; 1];
    let alive = matches!(
        stream.get_ref().peek(&mut byte),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock
    );
    if alive {
        stream.clear_readable();
    }
    alive
}

/// Reads from `stream` straight into `buf`'s spare room and commits what
/// arrived.
///
/// The buffer's storage is taken only for a read that may find bytes and,
/// when the socket turns out to have nothing (or the read ends the
/// stream) and no bytes are held, given straight back: a connection
/// waiting for its client holds no buffer.
pub(crate) fn poll_read_into(
    cx: &mut Context<'_>,
    stream: &Io<TcpStream>,
    buf: &mut InBuf,
) -> Poll<io::Result<usize>> {
    loop {
        if let Poll::Ready(r) = stream.poll_readable(cx) {
            r?;
        } else {
            buf.release();
            return Poll::Pending;
        }
        match stream.read_some(buf.room()) {
            Ok(n) => {
                if n > 0 {
                    buf.commit(n);
                } else {
                    buf.release();
                }
                return Poll::Ready(Ok(n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                buf.release();
                return Poll::Ready(Err(e));
            }
        }
    }
}

/// Splices what `stream` has, up to `max` bytes, into a pipe from
/// [`PIPES`]: `Ready(Ok(Some(pipe)))` with the bytes (an empty pipe at end
/// of stream), `Ready(Ok(None))` when no pipe can be had (read instead).
/// A pipe is taken only for a splice that may find bytes.
#[cfg(target_os = "linux")]
pub(crate) fn poll_splice_in(
    cx: &mut Context<'_>,
    stream: &Io<TcpStream>,
    max: usize,
) -> Poll<io::Result<Option<Pipe>>> {
    ready!(stream.poll_readable(cx))?;
    let Ok(mut pipe) = PIPES.take() else {
        return Poll::Ready(Ok(None));
    };
    let filled = stream.poll_read_with(cx, |s| loop {
        match pipe.fill_from(s, max.min(SPLICE_MAX)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    });
    match filled {
        Poll::Ready(Ok(_)) => Poll::Ready(Ok(Some(pipe))),
        Poll::Ready(Err(e)) => {
            PIPES.put(pipe);
            Poll::Ready(Err(e))
        }
        Poll::Pending => {
            PIPES.put(pipe);
            Poll::Pending
        }
    }
}

/// Splices everything in `pipe` into `stream`. Fails like [`write_all`]:
/// `TimedOut` when the peer accepts nothing for `stall` or the shutdown
/// grace period ends. What is left in the pipe on failure stays there.
#[cfg(target_os = "linux")]
pub(crate) fn splice_out<'a>(
    stream: &'a Io<TcpStream>,
    pipe: &'a mut Pipe,
    stall: Duration,
    life: &'a Lifecycle,
) -> impl Future<Output = io::Result<()>> + 'a {
    let mut blocked = Blocked::default();
    poll_fn(move |cx| loop {
        if pipe.is_empty() {
            return Poll::Ready(Ok(()));
        }
        match stream.poll_write_with(cx, |s| pipe.drain_to(s)) {
            Poll::Ready(Ok(_)) => blocked.timer = None,
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return blocked.poll(cx, stall, life),
        }
    })
}

/// The limits on a blocked write: the stall timer and the end of the
/// shutdown grace period, both set up only once a write blocks, so fast
/// writes never touch the timer wheel or the lifecycle's listeners.
#[derive(Default)]
struct Blocked {
    timer: Option<Timer>,
    stop: Option<EventListener>,
}

impl Blocked {
    /// `Pending` while the write may keep waiting; `TimedOut` once it may
    /// not.
    fn poll<T>(
        &mut self,
        cx: &mut Context<'_>,
        stall: Duration,
        life: &Lifecycle,
    ) -> Poll<io::Result<T>> {
        let t = self.timer.get_or_insert_with(|| Timer::after(stall));
        if Pin::new(t).poll(cx).is_ready() {
            return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
        }
        // Listen first, then look, so a change in between is not lost; a
        // notification only means "look again".
        loop {
            let listener = self.stop.get_or_insert_with(|| life.changed());
            if life.is_stopping() {
                return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
            }
            if Pin::new(listener).poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.stop = None;
        }
    }
}

/// Writes all of `a` then all of `b` (one vectored write when both are
/// there). Fails with `TimedOut` when the peer accepts nothing for
/// `stall`, or when the shutdown grace period ends, so a peer that stopped
/// reading cannot hold the process.
///
/// A plain function returning one hand-written future, not an `async fn`
/// around other futures: this future is part of every connection's task
/// (the driver awaits it inside its loop), and async wrappers would store
/// their arguments and inner futures more than once.
pub(crate) fn write_all<'a>(
    stream: &'a Io<TcpStream>,
    mut a: &'a [u8],
    mut b: &'a [u8],
    stall: Duration,
    life: &'a Lifecycle,
) -> impl Future<Output = io::Result<()>> + 'a {
    let mut blocked = Blocked::default();
    poll_fn(move |cx| loop {
        if a.is_empty() {
            a = std::mem::take(&mut b);
            if a.is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
        let mut w = stream;
        let res = if b.is_empty() {
            Pin::new(&mut w).poll_write(cx, a)
        } else {
            Pin::new(&mut w).poll_write_vectored(cx, &[IoSlice::new(a), IoSlice::new(b)])
        };
        match res {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(mut n)) => {
                blocked.timer = None;
                let from_a = n.min(a.len());
                a = &a[from_a..];
                n -= from_a;
                b = &b[n.min(b.len())..];
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return blocked.poll(cx, stall, life),
        }
    })
}

/// How long a closing client gets to finish sending before its socket is
/// dropped, and how much of what it sends meanwhile is read and discarded.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Finishes closing a client connection (shutting its write side down
/// unless `already_shut`), without losing the answer already written.
///
/// Dropping a socket that still has unread input makes the kernel send a
/// reset, and a reset can destroy the response before the client reads it
/// (an error page sent while the client is still uploading, say). So read
/// and discard until the client closes too, for a bounded time and amount.
pub(crate) async fn linger_close(stream: &Io<TcpStream>, already_shut: bool) {
    if !already_shut {
        let _ = stream.get_ref().shutdown(Shutdown::Write);
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut timer = Timer::at(deadline);
    // A pooled buffer, held only while a read is under way: most clients
    // have closed already, and zeroing a fresh 16 KiB per connection
    // (memset alone) was 2.8 % of proxy-smol's CPU with a new connection
    // per request.
    let mut scratch = InBuf::default();
    let mut discarded = 0usize;
    poll_fn(|cx| loop {
        match poll_read_into(cx, stream, &mut scratch) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Ready(Ok(n)) => {
                scratch.consume(n);
                scratch.release();
                discarded += n;
                if discarded >= LINGER_BYTES {
                    return Poll::Ready(());
                }
            }
            Poll::Pending => {
                return match Pin::new(&mut timer).poll(cx) {
                    Poll::Ready(_) => Poll::Ready(()),
                    Poll::Pending => Poll::Pending,
                };
            }
        }
    })
    .await;
}
