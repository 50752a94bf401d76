//! Graceful shutdown, the same in both binaries.
//!
//! A [`Lifecycle`] is one process-wide handle, cloned into every thread
//! and task that must notice a shutdown. It moves through three
//! [`Stage`]s, never back:
//!
//! - **Running**: serving.
//! - **Draining** (first SIGINT/SIGTERM, see [`crate::signals::watch`]):
//!   the accept loops stop and drop their listeners, so new connections
//!   are refused; every live connection gets
//!   `Connection::begin_shutdown` (idle ones close at once, an exchange
//!   in flight finishes and its response says `Connection: close`);
//!   tunnels keep relaying.
//! - **Stopping** (the grace period is over): tunnels end (reported to
//!   the core as `TunnelEndReason::Shutdown`, so they are logged), every
//!   other connection is closed as it stands.
//!
//! How waiters learn of a change, for either kind of runtime:
//!
//! - **Blocking threads** (`proxy-std`) put a *beacon* descriptor in their
//!   poll(2) set: [`drain_fd`](Lifecycle::drain_fd) becomes readable when
//!   draining starts, [`stop_fd`](Lifecycle::stop_fd) when stopping does.
//!   Each is one end of a socket pair; the lifecycle writes one byte to the
//!   other end and nobody ever reads it, so it stays readable for good and
//!   wakes every poller, however many and whenever they look.
//! - **Async tasks** (`proxy-smol`) await [`changed`](Lifecycle::changed)
//!   (an `event_listener` listener notified on every change) or the
//!   convenience futures [`draining`](Lifecycle::draining) and
//!   [`stopping`](Lifecycle::stopping).
//!
//! The lifecycle also counts live connections ([`track`](Lifecycle::track)
//! hands out a guard per connection), so the main thread can wait for
//! them with [`wait_idle`](Lifecycle::wait_idle); and
//! [`run_until_shutdown`](Lifecycle::run_until_shutdown) is that main
//! thread's whole job once the proxy is serving.

use crate::settings::Settings;
use event_listener::Event;
/// What [`Lifecycle::changed`] returns, re-exported so async runtimes
/// need not depend on `event-listener` themselves.
pub use event_listener::EventListener;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Where a process is in its life. Ordered: a later stage includes the
/// earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// Serving.
    Running,
    /// No new connections; finishing what is in flight.
    Draining,
    /// The grace period is over: ending whatever is left.
    Stopping,
}

impl Stage {
    fn from_u8(v: u8) -> Stage {
        match v {
            0 => Stage::Running,
            1 => Stage::Draining,
            _ => Stage::Stopping,
        }
    }
}

/// How long, after the grace period, the connections that are still
/// there get to notice and wind up (end their tunnels and log them)
/// before the process exits regardless.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// The longest the access log gets to write out what it holds at exit.
pub const LOG_FLUSH: Duration = Duration::from_secs(5);

/// The shutdown state of the process: a cheap, cloneable handle.
#[derive(Debug, Clone)]
pub struct Lifecycle {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    stage: AtomicU8,
    /// Live connections; the condvar is signalled whenever the count
    /// reaches zero or the stage changes.
    live: Mutex<usize>,
    changed_cv: Condvar,
    /// Notified (all listeners) on every stage change.
    event: Event,
    drain: Beacon,
    stop: Beacon,
}

/// A socket pair: [`light`](Beacon::light) writes a byte into one end,
/// and the other end is readable from then on.
#[derive(Debug)]
struct Beacon {
    polled: UnixStream,
    writer: UnixStream,
    lit: Mutex<bool>,
}

impl Beacon {
    fn new() -> std::io::Result<Beacon> {
        let (polled, writer) = UnixStream::pair()?;
        Ok(Beacon {
            polled,
            writer,
            lit: Mutex::new(false),
        })
    }

    fn light(&self) {
        let mut lit = lock(&self.lit);
        if !*lit {
            *lit = true;
            // One byte into an empty socket buffer cannot block; should it
            // fail anyway, the stage flag is set and every poll loop also
            // rechecks it after each wake-up.
            let _ = (&self.writer).write_all(&[1]);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Holds one connection's place in the live count; dropping it (when the
/// connection's thread or task ends) releases it.
#[derive(Debug)]
pub struct ConnGuard {
    inner: Arc<Inner>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut live = lock(&self.inner.live);
        *live = live.saturating_sub(1);
        if *live == 0 {
            self.inner.changed_cv.notify_all();
        }
    }
}

impl Lifecycle {
    /// A lifecycle in the running stage.
    pub fn new() -> std::io::Result<Lifecycle> {
        Ok(Lifecycle {
            inner: Arc::new(Inner {
                stage: AtomicU8::new(Stage::Running as u8),
                live: Mutex::new(0),
                changed_cv: Condvar::new(),
                event: Event::new(),
                drain: Beacon::new()?,
                stop: Beacon::new()?,
            }),
        })
    }

    /// The current stage.
    pub fn stage(&self) -> Stage {
        Stage::from_u8(self.inner.stage.load(Ordering::Acquire))
    }

    /// What a connection's driver must be told about the stages reached
    /// since `told` (what it was told last): `Input::Shutdown` when
    /// draining began, then `Input::ForceShutdown` when the grace period
    /// ended. Moves `told` on.
    pub fn news(&self, told: &mut Stage) -> impl Iterator<Item = proxy_core::Input> {
        let now = self.stage();
        let before = std::mem::replace(told, now.max(*told));
        let shutdown = (before < Stage::Draining && now >= Stage::Draining)
            .then_some(proxy_core::Input::Shutdown);
        let force = (before < Stage::Stopping && now >= Stage::Stopping)
            .then_some(proxy_core::Input::ForceShutdown);
        shutdown.into_iter().chain(force)
    }

    /// Whether shutdown has begun (draining or stopping).
    pub fn is_draining(&self) -> bool {
        self.stage() >= Stage::Draining
    }

    /// Whether the grace period is over.
    pub fn is_stopping(&self) -> bool {
        self.stage() >= Stage::Stopping
    }

    /// Readable (POLLIN) once draining has begun, for good.
    pub fn drain_fd(&self) -> RawFd {
        self.inner.drain.polled.as_raw_fd()
    }

    /// Readable (POLLIN) once the grace period is over, for good.
    pub fn stop_fd(&self) -> RawFd {
        self.inner.stop.polled.as_raw_fd()
    }

    /// Moves to `stage` if that is later than the current one; true if
    /// this call moved it.
    fn advance(&self, stage: Stage) -> bool {
        let prev = self.inner.stage.fetch_max(stage as u8, Ordering::AcqRel);
        if prev >= stage as u8 {
            return false;
        }
        // Light every beacon up to `stage`, the earlier first.
        if stage >= Stage::Draining {
            self.inner.drain.light();
        }
        if stage >= Stage::Stopping {
            self.inner.stop.light();
        }
        {
            // Under the lock, so a waiter between its check and its wait
            // cannot miss the signal.
            let _live = lock(&self.inner.live);
            self.inner.changed_cv.notify_all();
        }
        self.inner.event.notify(usize::MAX);
        true
    }

    /// Starts draining (the first SIGINT/SIGTERM). True if this call
    /// started it.
    pub fn begin_drain(&self) -> bool {
        self.advance(Stage::Draining)
    }

    /// Ends the grace period. True if this call ended it.
    pub fn stop(&self) -> bool {
        self.advance(Stage::Stopping)
    }

    /// Counts a new connection (or other work shutdown must wait for,
    /// such as saving a trace) as live until the guard is dropped.
    pub fn track(&self) -> ConnGuard {
        *lock(&self.inner.live) += 1;
        ConnGuard {
            inner: Arc::clone(&self.inner),
        }
    }

    /// Connections live now.
    pub fn live(&self) -> usize {
        *lock(&self.inner.live)
    }

    /// Blocks until draining has begun.
    pub fn wait_for_drain(&self) {
        let mut live = lock(&self.inner.live);
        while !self.is_draining() {
            live = self
                .inner
                .changed_cv
                .wait(live)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Blocks until no connection is live or `deadline` passes; true if
    /// none is live.
    pub fn wait_idle(&self, deadline: Instant) -> bool {
        let mut live = lock(&self.inner.live);
        while *live > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            live = self
                .inner
                .changed_cv
                .wait_timeout(live, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// A listener notified at the next stage change. Check the stage
    /// *after* creating it, then await it, so no change is missed.
    pub fn changed(&self) -> EventListener {
        self.inner.event.listen()
    }

    /// Completes once draining has begun.
    pub async fn draining(&self) {
        self.reached(Stage::Draining).await
    }

    /// Completes once the grace period is over.
    pub async fn stopping(&self) {
        self.reached(Stage::Stopping).await
    }

    async fn reached(&self, stage: Stage) {
        loop {
            if self.stage() >= stage {
                return;
            }
            let listener = self.changed();
            if self.stage() >= stage {
                return;
            }
            listener.await;
        }
    }

    /// The main thread's part once the proxy serves: waits for the first
    /// SIGINT/SIGTERM ([`begin_drain`](Lifecycle::begin_drain)), then
    ///
    /// 1. calls `stop_accepting`, which must return only once every
    ///    listener is closed (so a connection attempt from then on is
    ///    refused);
    /// 2. says on stderr how long it waits for how many connections;
    /// 3. waits until none is live, or the grace period
    ///    (`timeouts.shutdown_grace` in force when the signal came) is
    ///    over; in the latter case ends it ([`stop`](Lifecycle::stop)),
    ///    which ends tunnels and closes the rest, and waits a little more
    ///    for them to log;
    /// 4. flushes the access log, and says on stderr how many records it
    ///    wrote and dropped in all (`access log: 1234 records written, 0
    ///    dropped`), so whoever stopped the proxy knows whether its log is
    ///    whole.
    ///
    /// Returns then; the caller exits with status 0. A second signal
    /// meanwhile exits at once (see [`crate::signals::watch`]).
    pub fn run_until_shutdown(&self, settings: &Settings, stop_accepting: impl FnOnce()) {
        self.wait_for_drain();
        let grace = settings.config().timeouts.shutdown_grace;
        let deadline = Instant::now() + grace;
        stop_accepting();
        let live = self.live();
        eprintln!(
            "shutting down: waiting up to {grace:?} for {live} connection{}",
            plural(live)
        );
        if !self.wait_idle(deadline) {
            let left = self.live();
            eprintln!(
                "shutdown: grace period over, closing {left} connection{}",
                plural(left)
            );
            self.stop();
            self.wait_idle(Instant::now() + STOP_WAIT);
        }
        let log = &settings.access_log;
        if !log.flush(LOG_FLUSH) {
            eprintln!("shutdown: the access log could not be flushed in {LOG_FLUSH:?}");
        }
        eprintln!(
            "access log: {} records written, {} dropped",
            log.written(),
            log.dropped()
        );
        let _ = std::io::stdout().flush();
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut fds = [libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        }];
        poll0(&mut fds) == 1
    }

    #[allow(unsafe_code)]
    fn poll0(fds: &mut [libc::pollfd; 1]) -> i32 {
        // SAFETY: one initialised pollfd, exclusively borrowed.
        unsafe { libc::poll(fds.as_mut_ptr(), 1, 0) }
    }

    #[test]
    fn stages_light_beacons_and_only_move_forward() {
        let life = Lifecycle::new().unwrap();
        assert_eq!(life.stage(), Stage::Running);
        assert!(!readable(life.drain_fd()) && !readable(life.stop_fd()));
        assert!(life.begin_drain());
        assert!(!life.begin_drain());
        assert!(life.is_draining() && !life.is_stopping());
        assert!(readable(life.drain_fd()) && !readable(life.stop_fd()));
        // Still readable for the next poller.
        assert!(readable(life.drain_fd()));
        assert!(life.stop());
        assert!(!life.begin_drain() && !life.stop());
        assert_eq!(life.stage(), Stage::Stopping);
        assert!(readable(life.stop_fd()));
    }

    #[test]
    fn stopping_lights_the_drain_beacon_too() {
        let life = Lifecycle::new().unwrap();
        assert!(life.stop());
        assert!(life.is_draining());
        assert!(readable(life.drain_fd()));
    }

    #[test]
    fn wait_idle_returns_when_the_last_guard_goes() {
        let life = Lifecycle::new().unwrap();
        assert!(life.wait_idle(Instant::now()));
        let a = life.track();
        let b = life.track();
        assert_eq!(life.live(), 2);
        assert!(!life.wait_idle(Instant::now() + Duration::from_millis(20)));
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            drop(a);
            drop(b);
        });
        let started = Instant::now();
        assert!(life.wait_idle(Instant::now() + Duration::from_secs(5)));
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(life.live(), 0);
        t.join().unwrap();
    }

    #[test]
    fn async_waiters_wake_on_each_stage() {
        let life = Lifecycle::new().unwrap();
        let l2 = life.clone();
        let t = std::thread::spawn(move || {
            futures_block_on(async {
                l2.draining().await;
                assert!(l2.is_draining());
                l2.stopping().await;
                assert!(l2.is_stopping());
            })
        });
        std::thread::sleep(Duration::from_millis(20));
        life.begin_drain();
        std::thread::sleep(Duration::from_millis(20));
        life.stop();
        t.join().unwrap();
    }

    #[test]
    fn wait_for_drain_wakes() {
        let life = Lifecycle::new().unwrap();
        let l2 = life.clone();
        let t = std::thread::spawn(move || l2.wait_for_drain());
        std::thread::sleep(Duration::from_millis(20));
        life.begin_drain();
        t.join().unwrap();
    }

    /// A minimal executor for one future (no async runtime in this
    /// crate's dependencies).
    fn futures_block_on(fut: impl std::future::Future<Output = ()>) {
        use std::task::{Context, Poll, Wake, Waker};
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut fut = std::pin::pin!(fut);
        while fut.as_mut().poll(&mut cx) == Poll::Pending {
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }
}
