//! Socket helpers the driver and the relay share: whole writes with a
//! stall limit, connecting, telling a stale pooled connection from a live
//! one, and closing a client gracefully.

use futures_lite::future::poll_fn;
use futures_lite::{AsyncRead, AsyncWrite};
use smol::{Async, Timer};
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// A connected socket, shared between the driver and the pool.
pub(crate) type Stream = Arc<Async<TcpStream>>;

/// Opens a TCP connection to `addr` with Nagle off.
pub(crate) async fn connect(addr: SocketAddr) -> io::Result<Stream> {
    let stream = Async::<TcpStream>::connect(addr).await?;
    let _ = stream.get_ref().set_nodelay(true);
    Ok(Arc::new(stream))
}

/// Whether an idle pooled connection still looks usable: nothing to read
/// yet. End of stream, an error, or stray bytes from the origin all mean
/// it must not carry another request.
pub(crate) fn is_alive(stream: &Async<TcpStream>) -> bool {
    let mut byte = [0u8; 1];
    // The socket is non-blocking (Async made it so).
    matches!(stream.get_ref().peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Writes all of `a` then all of `b` (one vectored write when both are
/// there). Fails with `TimedOut` when the peer accepts nothing for `stall`.
pub(crate) async fn write_all(
    stream: &Async<TcpStream>,
    mut a: &[u8],
    mut b: &[u8],
    stall: Duration,
) -> io::Result<()> {
    // Armed only while blocked, so fast writes never touch the timer wheel.
    let mut timer: Option<Timer> = None;
    poll_fn(|cx| loop {
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
                timer = None;
                let from_a = n.min(a.len());
                a = &a[from_a..];
                n -= from_a;
                b = &b[n.min(b.len())..];
            }
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {
                let t = timer.get_or_insert_with(|| Timer::after(stall));
                if Pin::new(t).poll(cx).is_ready() {
                    return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
                }
                return Poll::Pending;
            }
        }
    })
    .await
}

/// How long a closing client gets to finish sending before its socket is
/// dropped, and how much of what it sends meanwhile is read and discarded.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Finishes closing a client connection whose write side is already shut
/// down, without losing the answer already written.
///
/// Dropping a socket that still has unread input makes the kernel send a
/// reset, and a reset can destroy the response before the client reads it
/// (an error page sent while the client is still uploading, say). So read
/// and discard until the client closes too, for a bounded time and amount.
pub(crate) async fn linger_close(stream: &Async<TcpStream>) {
    // Harmless if already done.
    let _ = stream.get_ref().shutdown(Shutdown::Write);
    let deadline = Instant::now() + LINGER_TIME;
    let mut timer = Timer::at(deadline);
    let mut scratch = vec![0u8; 16 * 1024];
    let mut discarded = 0usize;
    poll_fn(|cx| loop {
        let mut r = stream;
        match Pin::new(&mut r).poll_read(cx, &mut scratch) {
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(()),
            Poll::Ready(Ok(n)) => {
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
