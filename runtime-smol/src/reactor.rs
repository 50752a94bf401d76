//! The reactor: one epoll instance per executor thread, sockets registered
//! once and edge-triggered, timers in a per-thread map, and the loop that
//! runs a thread's executor between waits ([`block_on`]).
//!
//! Why not async-io, which smol brings: its one reactor serves every
//! thread, so an event for a task on one executor was taken in by another
//! thread (whichever held the reactor) and handed over through a futex and
//! an eventfd; and its registrations are one-shot, so every wait re-armed
//! its socket (`EPOLL_CTL_MOD`) and every close deregistered it. Here a
//! socket costs one `EPOLL_CTL_ADD` for its whole life, a thread takes in
//! the events of its own sockets (`epoll_wait` when it has nothing left to
//! run), and a wait costs no system call at all: HAProxy's design, and
//! what the new-connection and keep-alive figures of issue 13 asked for.
//!
//! Readiness is remembered per socket and direction ([`Io`]): set by an
//! event, cleared by an operation that came up empty (`WouldBlock`) or by
//! a read that took less than it had room for (a TCP read takes all the
//! socket holds, so the socket is empty). With edge-triggered events that
//! is exact: a socket found empty reports its next bytes as a new event.
//!
//! A socket a task on another thread takes up (an idle upstream
//! connection from the shared pool) moves its registration to that
//! thread's reactor the first time it is used there.

use futures_lite::{ready, AsyncRead, AsyncWrite};
use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, Event, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags, Timespec};
use slab::Slab;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::{self, IoSlice, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// Events taken in per `epoll_wait`.
const EVENTS: usize = 256;

/// The key of the reactor's own eventfd (a cross-thread wake-up); sockets'
/// keys are slab indexes, far below it.
const NOTIFY_KEY: u64 = u64::MAX;

/// Reactor ids, so a socket can tell whether it is on its own thread's.
static NEXT_REACTOR: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's reactor, made on first use.
    static LOCAL: Local = Local::new();
    /// Its id, or 0 before it is made: the cheap check [`Io`] makes on
    /// every operation.
    static LOCAL_ID: Cell<u64> = const { Cell::new(0) };
}

/// What any thread may reach of a reactor: its epoll instance, the
/// sockets registered with it, and the way to wake it.
struct Poller {
    id: u64,
    epoll: OwnedFd,
    /// Written to wake the thread out of `epoll_wait` from elsewhere.
    notify: OwnedFd,
    /// Set while the eventfd has been written and not yet read.
    notified: AtomicBool,
    /// Registered sockets. Locked by its own thread to take in events, by
    /// any thread that drops or moves one of them.
    sources: Mutex<Slab<Arc<Source>>>,
}

/// A thread's reactor.
struct Local {
    poller: Arc<Poller>,
    /// Timers by deadline, with a sequence number to tell equal deadlines
    /// apart.
    timers: RefCell<BTreeMap<(Instant, u64), Waker>>,
    next_timer: Cell<u64>,
    events: RefCell<Vec<Event>>,
    /// Sources with events, taken in under the lock and woken after it.
    woken: RefCell<Vec<(Arc<Source>, EventFlags)>>,
}

impl Local {
    fn new() -> Local {
        // Nothing on this thread can do I/O without it; as async-io does.
        let poller = Poller::new().expect("cannot create the reactor (epoll, eventfd)");
        LOCAL_ID.with(|id| id.set(poller.id));
        Local {
            poller: Arc::new(poller),
            timers: RefCell::new(BTreeMap::new()),
            next_timer: Cell::new(0),
            events: RefCell::new(Vec::with_capacity(EVENTS)),
            woken: RefCell::new(Vec::new()),
        }
    }

    /// Waits up to `timeout` (`None`: until something happens) for events,
    /// calls `awake`, then wakes the tasks the events concern and fires
    /// due timers.
    fn react(&self, timeout: Option<Duration>, awake: impl FnOnce()) {
        let timeout = match (timeout, self.next_deadline()) {
            (t, None) => t,
            (None, Some(at)) => Some(at.saturating_duration_since(Instant::now())),
            (Some(t), Some(at)) => Some(t.min(at.saturating_duration_since(Instant::now()))),
        };
        let timespec = timeout.map(|t| Timespec {
            tv_sec: t.as_secs().try_into().unwrap_or(i64::MAX),
            tv_nsec: t.subsec_nanos().into(),
        });
        let mut events = self.events.borrow_mut();
        events.clear();
        // EINTR and the like: the caller loops and comes back.
        let _ = epoll::wait(
            &self.poller.epoll,
            spare_capacity(&mut *events),
            timespec.as_ref(),
        );
        awake();
        let mut woken = self.woken.borrow_mut();
        if !events.is_empty() {
            let sources = self.poller.sources();
            for event in events.iter() {
                let key = event.data.u64();
                if key == NOTIFY_KEY {
                    self.poller.notified.store(false, Ordering::Release);
                    let mut count = [0u8; 8];
                    let _ = rustix::io::read(&self.poller.notify, &mut count);
                } else if let Some(source) = usize::try_from(key).ok().and_then(|k| sources.get(k))
                {
                    woken.push((source.clone(), event.flags));
                }
            }
        }
        drop(events);
        for (source, flags) in woken.drain(..) {
            source.ready(flags);
        }
        drop(woken);
        self.fire_timers();
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.timers
            .borrow()
            .first_key_value()
            .map(|((at, _), _)| *at)
    }

    fn fire_timers(&self) {
        let mut timers = self.timers.borrow_mut();
        if timers.is_empty() {
            return;
        }
        let now = Instant::now();
        // Everything at or before `now`: split off what comes after.
        let later = timers.split_off(&(now, u64::MAX));
        let due = std::mem::replace(&mut *timers, later);
        drop(timers);
        for (_, waker) in due {
            waker.wake();
        }
    }
}

impl Poller {
    fn new() -> io::Result<Poller> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let notify = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &epoll,
            &notify,
            EventData::new_u64(NOTIFY_KEY),
            EventFlags::IN | EventFlags::ET,
        )?;
        Ok(Poller {
            id: NEXT_REACTOR.fetch_add(1, Ordering::Relaxed),
            epoll,
            notify,
            notified: AtomicBool::new(false),
            sources: Mutex::new(Slab::new()),
        })
    }

    fn sources(&self) -> MutexGuard<'_, Slab<Arc<Source>>> {
        lock(&self.sources)
    }

    /// Wakes the thread out of `epoll_wait`.
    fn wake(&self) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            // Only fails if the counter is full, which means it is set.
            let _ = rustix::io::write(&self.notify, &1u64.to_ne_bytes());
        }
    }

    /// Registers `fd` for every event, edge-triggered, under a new key.
    fn register(&self, fd: BorrowedFd<'_>, source: &Arc<Source>) -> io::Result<usize> {
        let key = self.sources().insert(source.clone());
        let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
        if let Err(e) = epoll::add(&self.epoll, fd, EventData::new_u64(key as u64), flags) {
            self.sources().remove(key);
            return Err(e.into());
        }
        Ok(key)
    }
}

/// Which reactor a socket is registered with, under which key.
struct Registration {
    poller: Arc<Poller>,
    key: usize,
}

/// A socket's readiness and the tasks waiting on it.
struct Source {
    registration: Mutex<Option<Registration>>,
    /// The id of the reactor it is registered with (0: none).
    owner: AtomicU64,
    readable: AtomicBool,
    writable: AtomicBool,
    /// The peer closed its side, or the socket is in error: reads (and,
    /// on an error or a hang-up, writes) end at once from now on, so their
    /// readiness is never cleared. A read that stops short before the end
    /// of stream leaves the end unread with no event to come for it.
    read_closed: AtomicBool,
    write_closed: AtomicBool,
    reader: Mutex<Option<Waker>>,
    writer: Mutex<Option<Waker>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Source {
    /// Takes in an event.
    fn ready(&self, flags: EventFlags) {
        let any = EventFlags::ERR | EventFlags::HUP;
        if flags.intersects(EventFlags::RDHUP | any) {
            self.read_closed.store(true, Ordering::Release);
        }
        if flags.intersects(any) {
            self.write_closed.store(true, Ordering::Release);
        }
        if flags.intersects(EventFlags::IN | EventFlags::RDHUP | EventFlags::PRI | any) {
            self.readable.store(true, Ordering::Release);
            if let Some(w) = lock(&self.reader).take() {
                w.wake();
            }
        }
        if flags.intersects(EventFlags::OUT | any) {
            self.writable.store(true, Ordering::Release);
            if let Some(w) = lock(&self.writer).take() {
                w.wake();
            }
        }
    }

    /// `Ready` if `flag` is set; else registers `cx` in `waiter`.
    fn poll(flag: &AtomicBool, waiter: &Mutex<Option<Waker>>, cx: &mut Context<'_>) -> Poll<()> {
        if flag.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let mut w = lock(waiter);
        match &mut *w {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        drop(w);
        // Set meanwhile by another thread's reactor (a socket just moved).
        if flag.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// A non-blocking socket registered with the reactor of the thread that
/// uses it: readiness waits, and reads and writes that keep track of it.
pub(crate) struct Io<T: AsFd> {
    source: Arc<Source>,
    inner: T,
}

impl<T: AsFd> std::fmt::Debug for Io<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io")
            .field("fd", &self.inner.as_fd())
            .finish()
    }
}

impl<T: AsFd> Io<T> {
    /// Registers `inner`, which must already be non-blocking (an accepted
    /// socket with `SOCK_NONBLOCK`, say), with this thread's reactor.
    /// Both directions start out ready: the first operation is tried.
    pub(crate) fn new(inner: T) -> io::Result<Io<T>> {
        Self::with_readiness(inner, true, true)
    }

    fn with_readiness(inner: T, readable: bool, writable: bool) -> io::Result<Io<T>> {
        let source = Arc::new(Source {
            registration: Mutex::new(None),
            owner: AtomicU64::new(0),
            readable: AtomicBool::new(readable),
            writable: AtomicBool::new(writable),
            read_closed: AtomicBool::new(false),
            write_closed: AtomicBool::new(false),
            reader: Mutex::new(None),
            writer: Mutex::new(None),
        });
        let io = Io { source, inner };
        LOCAL.with(|local| io.register_with(&local.poller))?;
        Ok(io)
    }

    /// Registers with `poller` (taking the socket off any other reactor).
    fn register_with(&self, poller: &Arc<Poller>) -> io::Result<()> {
        let mut reg = lock(&self.source.registration);
        if let Some(old) = reg.take() {
            if old.poller.id == poller.id {
                *reg = Some(old);
                return Ok(());
            }
            // Its events must stop going to the old thread.
            let _ = epoll::delete(&old.poller.epoll, self.inner.as_fd());
            old.poller.sources().remove(old.key);
        }
        let key = poller.register(self.inner.as_fd(), &self.source)?;
        *reg = Some(Registration {
            poller: poller.clone(),
            key,
        });
        self.source.owner.store(poller.id, Ordering::Release);
        Ok(())
    }

    /// Makes sure this thread's reactor is the one that takes in the
    /// socket's events; the readiness remembered so far is forgotten
    /// (both directions count as ready) when it moves.
    fn here(&self) -> io::Result<()> {
        let id = LOCAL_ID.with(Cell::get);
        if id != 0 && self.source.owner.load(Ordering::Acquire) == id {
            return Ok(());
        }
        LOCAL.with(|local| self.register_with(&local.poller))?;
        self.source.readable.store(true, Ordering::Release);
        self.source.writable.store(true, Ordering::Release);
        Ok(())
    }

    pub(crate) fn get_ref(&self) -> &T {
        &self.inner
    }

    /// `Ready` when a read may find something: none has come up empty
    /// since the socket's last readiness event.
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.here()?;
        Source::poll(&self.source.readable, &self.source.reader, cx).map(Ok)
    }

    /// `Ready` when a write may take something.
    pub(crate) fn poll_writable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.here()?;
        Source::poll(&self.source.writable, &self.source.writer, cx).map(Ok)
    }

    /// The socket has nothing to read: an operation came up empty, or a
    /// read took less than it had room for. The next
    /// [`Io::poll_readable`] waits for an event.
    pub(crate) fn clear_readable(&self) {
        if self.here().is_ok() && !self.source.read_closed.load(Ordering::Acquire) {
            self.source.readable.store(false, Ordering::Release);
        }
    }

    /// Whether the socket is known to hold nothing to read, not even an
    /// end of stream: a read came up empty or short, and no event has
    /// come for it since. Only as fresh as this thread's last look at its
    /// events; `false` for a socket registered with another thread.
    pub(crate) fn known_empty(&self) -> bool {
        let id = LOCAL_ID.with(Cell::get);
        id != 0
            && self.source.owner.load(Ordering::Acquire) == id
            && !self.source.readable.load(Ordering::Acquire)
            && !self.source.read_closed.load(Ordering::Acquire)
    }

    /// The socket takes nothing more for now: a write came up empty.
    pub(crate) fn clear_writable(&self) {
        if self.here().is_ok() && !self.source.write_closed.load(Ordering::Acquire) {
            self.source.writable.store(false, Ordering::Release);
        }
    }

    /// Calls `op` (a non-blocking read-side operation: a read, an
    /// accept, a splice out of the socket) once the socket may be
    /// readable, until it does not come up empty.
    pub(crate) fn poll_read_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&Self) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            ready!(self.poll_readable(cx))?;
            match op(self) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear_readable(),
                other => return Poll::Ready(other),
            }
        }
    }

    /// [`Io::poll_read_with`] as a future.
    pub(crate) async fn read_with<R>(
        &self,
        mut op: impl FnMut(&Self) -> io::Result<R>,
    ) -> io::Result<R> {
        std::future::poll_fn(|cx| self.poll_read_with(cx, &mut op)).await
    }

    /// Calls `op` (a non-blocking write-side operation) once the socket
    /// may be writable, until it does not come up empty.
    pub(crate) fn poll_write_with<R>(
        &self,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            ready!(self.poll_writable(cx))?;
            match op(&self.inner) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear_writable(),
                other => return Poll::Ready(other),
            }
        }
    }
}

impl<T: AsFd> AsFd for Io<T> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl<T: AsFd> Drop for Io<T> {
    fn drop(&mut self) {
        // Closing the descriptor takes it out of the epoll set (unless it
        // was duplicated: a stale event then finds its key gone, or some
        // other socket's, which only tries that one's next operation).
        if let Some(reg) = lock(&self.source.registration).take() {
            reg.poller.sources().remove(reg.key);
        }
    }
}

impl Io<TcpStream> {
    /// Connects to `addr` without blocking the thread.
    pub(crate) async fn connect(addr: SocketAddr) -> io::Result<Io<TcpStream>> {
        let stream = proxy_host::dial::start(addr)?;
        // Nothing to read before the handshake, and not writable until it
        // is done.
        let io = Io::with_readiness(stream, false, false)?;
        std::future::poll_fn(|cx| io.poll_writable(cx)).await?;
        proxy_host::dial::finish(&io.inner)?;
        Ok(io)
    }

    /// Reads into `buf`, keeping track of readiness: a read that comes up
    /// empty or takes less than `buf` has room for leaves the socket
    /// known empty. (End of stream does not: it stays readable.)
    pub(crate) fn read_some(&self, buf: &mut [u8]) -> io::Result<usize> {
        match (&self.inner).read(buf) {
            Ok(n) => {
                if n > 0 && n < buf.len() {
                    self.clear_readable();
                }
                Ok(n)
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::WouldBlock {
                    self.clear_readable();
                }
                Err(e)
            }
        }
    }
}

impl AsyncRead for &Io<TcpStream> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_read_with(cx, |s| s.read_some(buf))
    }
}

impl AsyncWrite for &Io<TcpStream> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |mut s| s.write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |mut s| s.write_vectored(bufs))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.inner.shutdown(Shutdown::Write))
    }
}

/// A timer on this thread's reactor: a future that completes at its
/// deadline (and then never again, until set anew).
#[derive(Debug)]
pub(crate) struct Timer {
    when: Option<Instant>,
    /// Its entry in the reactor's map, once polled.
    entry: Option<(Instant, u64)>,
}

impl Timer {
    pub(crate) fn at(when: Instant) -> Timer {
        Timer {
            when: Some(when),
            entry: None,
        }
    }

    pub(crate) fn after(after: Duration) -> Timer {
        Timer::at(Instant::now() + after)
    }

    pub(crate) fn never() -> Timer {
        Timer {
            when: None,
            entry: None,
        }
    }

    pub(crate) fn set_at(&mut self, when: Instant) {
        self.remove();
        self.when = Some(when);
    }

    fn remove(&mut self) {
        if let Some(entry) = self.entry.take() {
            // Gone with the thread, if it is ending.
            let _ = LOCAL.try_with(|local| local.timers.borrow_mut().remove(&entry));
        }
    }
}

impl Future for Timer {
    type Output = Instant;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Instant> {
        let Some(when) = self.when else {
            return Poll::Pending;
        };
        if Instant::now() >= when {
            self.remove();
            self.when = None;
            return Poll::Ready(when);
        }
        let entry = self.entry;
        let entry = LOCAL.with(|local| {
            let mut timers = local.timers.borrow_mut();
            if let Some(waker) = entry.and_then(|e| timers.get_mut(&e)) {
                if !waker.will_wake(cx.waker()) {
                    *waker = cx.waker().clone();
                }
                return entry;
            }
            // New, or fired and taken out (its deadline just passed).
            let seq = local.next_timer.get();
            local.next_timer.set(seq.wrapping_add(1));
            timers.insert((when, seq), cx.waker().clone());
            Some((when, seq))
        });
        self.entry = entry;
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Wakes a thread in [`block_on`]: a flag when it is busy, its reactor's
/// eventfd when it is asleep in `epoll_wait`.
struct Unparker {
    woken: AtomicBool,
    sleeping: AtomicBool,
    poller: Arc<Poller>,
}

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Each side stores, then looks at the other's flag: one of them
        // sees the other (sequentially consistent), so a wake-up is never
        // lost between "nothing to run" and going to sleep.
        if !self.woken.swap(true, Ordering::SeqCst) && self.sleeping.load(Ordering::SeqCst) {
            self.poller.wake();
        }
    }
}

/// Runs `fut` to completion on this thread, taking in this thread's
/// socket events and timers whenever it has nothing left to do.
///
/// Events that have already happened are taken in before the first poll.
/// A future that stays busy (an executor that yields after a batch of
/// tasks) is polled again after a look at the reactor that does not wait,
/// so sockets are never starved.
pub(crate) fn block_on<T>(fut: impl Future<Output = T>) -> T {
    LOCAL.with(|local| {
        let unparker = Arc::new(Unparker {
            woken: AtomicBool::new(true),
            sleeping: AtomicBool::new(false),
            poller: local.poller.clone(),
        });
        let waker = Waker::from(unparker.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = pin!(fut);
        local.react(Some(Duration::ZERO), || {});
        loop {
            if unparker.woken.swap(false, Ordering::SeqCst) {
                if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                    return out;
                }
            }
            unparker.sleeping.store(true, Ordering::SeqCst);
            let idle = !unparker.woken.load(Ordering::SeqCst);
            if !idle {
                unparker.sleeping.store(false, Ordering::SeqCst);
            }
            // Awake again before the events wake tasks on this thread:
            // their wake-ups then cost no system call.
            local.react(if idle { None } else { Some(Duration::ZERO) }, || {
                unparker.sleeping.store(false, Ordering::SeqCst)
            });
        }
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use futures_lite::{AsyncReadExt as _, AsyncWriteExt as _};
    use std::net::TcpListener;

    /// A connected loopback pair: the proxy's end (registered with this
    /// thread's reactor) and the peer's.
    pub(crate) fn pair() -> (Io<TcpStream>, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        (Io::new(ours).unwrap(), peer)
    }

    /// A read that waits is woken by the peer's bytes, sent from another
    /// thread while this one sleeps in the reactor.
    #[test]
    fn a_waiting_read_wakes_for_bytes_that_arrive_later() {
        let (ours, mut peer) = pair();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            peer.write_all(b"late").unwrap();
            peer
        });
        let mut buf = [0u8; 16];
        let n = block_on(async { (&ours).read(&mut buf).await }).unwrap();
        assert_eq!(&buf[..n], b"late");
        drop(sender.join().unwrap());
        // The peer closed: end of stream, and it stays readable.
        for _ in 0..2 {
            assert_eq!(block_on(async { (&ours).read(&mut buf).await }).unwrap(), 0);
        }
    }

    /// A short read leaves the socket known empty, and the next bytes are
    /// still seen: a new event sets it ready again.
    #[test]
    fn a_short_read_clears_readiness_until_the_next_event() {
        let (ours, mut peer) = pair();
        peer.write_all(b"one").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(block_on(async { (&ours).read(&mut buf).await }).unwrap(), 3);
        assert!(!ours.source.readable.load(Ordering::Acquire), "known empty");
        peer.write_all(b"two").unwrap();
        let n = block_on(async { (&ours).read(&mut buf).await }).unwrap();
        assert_eq!(&buf[..n], b"two");
    }

    /// Reads `buf`, or `None` if nothing comes within two seconds.
    fn read_within(ours: &Io<TcpStream>, buf: &mut [u8]) -> Option<usize> {
        block_on(futures_lite::future::or(
            async { Some((&*ours).read(buf).await.unwrap()) },
            async {
                Timer::after(Duration::from_secs(2)).await;
                None
            },
        ))
    }

    /// Bytes and the end of stream arriving together: the read that takes
    /// the bytes stops short of the end, and the end, whose event came
    /// with the bytes', is still seen.
    #[test]
    fn the_end_of_stream_after_a_short_read_is_not_lost() {
        let (ours, mut peer) = pair();
        peer.write_all(b"last").unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut buf = [0u8; 16];
        assert_eq!(read_within(&ours, &mut buf), Some(4));
        assert_eq!(read_within(&ours, &mut buf), Some(0), "the end of stream");
    }

    /// A socket whose last read was short is known empty until its next
    /// event: bytes, or the end of stream.
    #[test]
    fn a_socket_is_known_empty_until_its_next_event() {
        let (ours, mut peer) = pair();
        assert!(!ours.known_empty(), "nothing read yet");
        peer.write_all(b"response").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(read_within(&ours, &mut buf), Some(8));
        assert!(ours.known_empty());
        peer.write_all(b"x").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        block_on(async {});
        assert!(!ours.known_empty(), "stray bytes");
        assert_eq!(read_within(&ours, &mut buf), Some(1));
        assert!(ours.known_empty());
        drop(peer);
        std::thread::sleep(Duration::from_millis(20));
        block_on(async {});
        assert!(!ours.known_empty(), "closed by the peer");
    }

    /// A full socket's write waits until the peer reads, then finishes.
    #[test]
    fn a_blocked_write_finishes_once_the_peer_reads() {
        let (ours, mut peer) = pair();
        let data = vec![7u8; 16 << 20];
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let mut all = Vec::new();
            peer.read_to_end(&mut all).unwrap();
            all.len()
        });
        block_on(async {
            (&ours).write_all(&data).await.unwrap();
            (&ours).close().await.unwrap();
        });
        assert_eq!(reader.join().unwrap(), data.len());
    }

    /// Timers fire in deadline order, none early; a moved timer fires at
    /// its new deadline; a dropped one leaves nothing behind.
    #[test]
    fn timers_fire_at_their_deadlines() {
        let start = Instant::now();
        let fired = block_on(async {
            let mut late = Timer::after(Duration::from_millis(60));
            let early = Timer::after(Duration::from_millis(20));
            let dropped = Timer::after(Duration::from_millis(10));
            drop(dropped);
            let first = futures_lite::future::or(
                async {
                    (&mut late).await;
                    1
                },
                async {
                    early.await;
                    0
                },
            )
            .await;
            let at_early = start.elapsed();
            late.set_at(Instant::now() + Duration::from_millis(30));
            (&mut late).await;
            (first, at_early, start.elapsed())
        });
        assert_eq!(fired.0, 0, "the earlier timer first");
        assert!(fired.1 >= Duration::from_millis(20), "{:?}", fired.1);
        assert!(
            fired.2 >= fired.1 + Duration::from_millis(30),
            "{:?}",
            fired.2
        );
        LOCAL.with(|l| assert!(l.timers.borrow().is_empty(), "no entry left"));
    }

    /// A socket used on another thread moves to that thread's reactor,
    /// and its events follow it there.
    #[test]
    fn a_socket_taken_up_by_another_thread_moves_its_registration() {
        let (ours, mut peer) = pair();
        let first = LOCAL_ID.with(Cell::get);
        let ours = Arc::new(ours);
        let theirs = ours.clone();
        let other = std::thread::spawn(move || {
            let mut buf = [0u8; 8];
            let n = block_on(async { (&*theirs).read(&mut buf).await }).unwrap();
            (
                buf[..n].to_vec(),
                theirs.source.owner.load(Ordering::Acquire),
            )
        });
        std::thread::sleep(Duration::from_millis(50));
        peer.write_all(b"moved").unwrap();
        let (got, owner) = other.join().unwrap();
        assert_eq!(got, b"moved");
        assert_ne!(owner, first, "registered with the other thread's reactor");
        LOCAL.with(|l| assert!(l.poller.sources().is_empty(), "none left here"));
    }

    /// A wake-up from another thread reaches a thread asleep in the
    /// reactor.
    #[test]
    fn a_wake_from_another_thread_ends_the_sleep() {
        let (sender, receiver) = std::sync::mpsc::channel::<Waker>();
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let waker_thread = std::thread::spawn(move || {
            let waker = receiver.recv().unwrap();
            std::thread::sleep(Duration::from_millis(50));
            flag.store(true, Ordering::SeqCst);
            waker.wake();
        });
        block_on(std::future::poll_fn(|cx| {
            if done.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            let _ = sender.send(cx.waker().clone());
            Poll::Pending
        }));
        waker_thread.join().unwrap();
    }
}
