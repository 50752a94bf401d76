//! The tunnel relay: bytes both ways between the client and an upstream
//! until both directions end, one fails, or nothing moves for the idle
//! timeout. Kept apart from the driver so a splice(2) version can replace
//! it without touching the drive loop.

use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncWrite};
use proxy_core::{TunnelEnd, TunnelEndReason};
use proxy_std::lifecycle::Lifecycle;
use smol::{Async, Timer};
use std::future::Future;
use std::io;
use std::net::{Shutdown, TcpStream};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Bytes read per call in each direction.
const CHUNK: usize = 32 * 1024;

/// Socket operations one poll may do before yielding to other tasks, so a
/// busy tunnel cannot hog an executor thread.
const BUDGET: usize = 32;

/// Where a relay starts: what each side already sent that the runtime
/// holds, and whether a side has already reached end of stream.
pub(crate) struct Start<'a> {
    /// Client bytes not yet forwarded (they go upstream first).
    pub(crate) to_upstream: &'a [u8],
    /// Upstream bytes not yet forwarded (they go to the client first).
    pub(crate) to_client: &'a [u8],
    /// The client already closed its sending side.
    pub(crate) client_eof: bool,
    /// The upstream already closed its sending side.
    pub(crate) upstream_eof: bool,
}

/// Relays until the tunnel is over, or the shutdown grace period is
/// (`TunnelEndReason::Shutdown`), and says how it went. Byte counts
/// include the leftover bytes in `start`.
pub(crate) async fn relay(
    client: &Async<TcpStream>,
    upstream: &Async<TcpStream>,
    start: Start<'_>,
    idle: Duration,
    life: &Lifecycle,
) -> TunnelEnd {
    let mut up = Direction::new(start.to_upstream, start.client_eof);
    let mut down = Direction::new(start.to_client, start.upstream_eof);
    let mut last_progress = Instant::now();
    let mut timer = Timer::at(last_progress + idle);
    let mut stop = std::pin::pin!(life.stopping());
    let reason = poll_fn(|cx| {
        // First, so a tunnel always busy still notices.
        if stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(TunnelEndReason::Shutdown);
        }
        // Each direction gets its own budget, so neither starves the other.
        let (mut b1, mut b2) = (BUDGET, BUDGET);
        let r1 = up.poll(cx, client, upstream, &mut b1);
        let r2 = down.poll(cx, upstream, client, &mut b2);
        if r1.is_err() || r2.is_err() {
            return Poll::Ready(TunnelEndReason::Error);
        }
        if up.done && down.done {
            return Poll::Ready(TunnelEndReason::Closed);
        }
        if std::mem::take(&mut up.moved) | std::mem::take(&mut down.moved) {
            last_progress = Instant::now();
        }
        if (b1 == 0 && !up.done) || (b2 == 0 && !down.done) {
            // Out of budget with work left: come back after other tasks.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        // The timer is re-armed only when it fires early, not on every
        // byte: progress just moves `last_progress`.
        while Pin::new(&mut timer).poll(cx).is_ready() {
            let due = last_progress + idle;
            if Instant::now() >= due {
                return Poll::Ready(TunnelEndReason::IdleTimeout);
            }
            timer.set_at(due);
        }
        Poll::Pending
    })
    .await;
    TunnelEnd {
        to_upstream: up.count,
        to_client: down.count,
        reason,
    }
}

/// One direction of the relay: read into `buf`, write it out, repeat; on
/// end of stream, shut down the destination's sending side.
struct Direction {
    buf: Vec<u8>,
    /// Unwritten bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// The source reached end of stream.
    eof: bool,
    /// End of stream was passed on: this direction is finished.
    done: bool,
    /// Bytes written to the destination.
    count: u64,
    /// Something was read or written since the relay last looked.
    moved: bool,
}

impl Direction {
    fn new(leftover: &[u8], eof: bool) -> Self {
        let mut buf = leftover.to_vec();
        buf.resize(leftover.len().max(CHUNK), 0);
        Direction {
            buf,
            start: 0,
            end: leftover.len(),
            eof,
            done: false,
            count: 0,
            moved: false,
        }
    }

    /// Moves bytes until blocked, finished or out of budget. `Err` on a
    /// socket error either end.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        src: &Async<TcpStream>,
        dst: &Async<TcpStream>,
        budget: &mut usize,
    ) -> io::Result<()> {
        while !self.done && *budget > 0 {
            *budget -= 1;
            if self.start < self.end {
                let mut w = dst;
                match Pin::new(&mut w).poll_write(cx, &self.buf[self.start..self.end]) {
                    Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(n)) => {
                        self.start += n;
                        self.count += n as u64;
                        self.moved = true;
                    }
                    Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Poll::Ready(Err(e)) => return Err(e),
                    Poll::Pending => return Ok(()),
                }
                continue;
            }
            if self.eof {
                // The peer may already be gone; its own reads will say so.
                let _ = dst.get_ref().shutdown(Shutdown::Write);
                self.done = true;
                return Ok(());
            }
            self.start = 0;
            self.end = 0;
            let mut r = src;
            match Pin::new(&mut r).poll_read(cx, &mut self.buf) {
                Poll::Ready(Ok(0)) => {
                    self.eof = true;
                    self.moved = true;
                }
                Poll::Ready(Ok(n)) => {
                    self.end = n;
                    self.moved = true;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
        }
        Ok(())
    }
}
