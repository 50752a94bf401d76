//! The parking lot: where connections wait without a thread.
//!
//! A connection thread that has waited `PARK_AFTER` (`crate::conn`) for
//! its sockets with nothing happening hands its whole state here and goes
//! back to the worker pool. One thread watches every parked connection's
//! descriptors with epoll(7), and their deadlines (the core's next timer,
//! a tunnel's idle limit, a connect's timeout); when a socket becomes
//! readable (writable, for a connect under way) or a deadline passes, the
//! connection goes back to a worker and carries on where it stopped. So
//! an idle keep-alive client, a half-sent request head, a quiet tunnel or
//! an origin slow to answer a SYN costs its state and its sockets, not a
//! thread and its stack.
//!
//! Once shutdown begins nothing is parked any more: every parked
//! connection is handed back (so it gets `begin_shutdown`), and later
//! waits block in their threads as before, watching the lifecycle
//! beacons themselves.

use crate::sys::{self, Epoll, EPOLLIN, EPOLLOUT};
use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Event tokens the lot keeps for itself; parked connections count up
/// from [`FIRST_CONN`].
const WAKE: u64 = 0;
const DRAIN: u64 = 1;
const FIRST_CONN: u64 = 2;

/// What a connection waits for while parked.
pub(crate) struct Wait {
    /// Descriptors to watch for readability (or end of stream, or error).
    pub(crate) fds: [Option<RawFd>; 3],
    /// A descriptor to watch for writability (a connect under way).
    pub(crate) writable: Option<RawFd>,
    /// When to hand it back regardless.
    pub(crate) deadline: Option<Instant>,
}

/// The parked connections (each a `T`) and the one thread that watches
/// them.
pub(crate) struct ParkingLot<T> {
    epoll: Epoll,
    /// The lifecycle's drain beacon: shutdown began.
    drain_fd: RawFd,
    state: Mutex<Lot<T>>,
    /// Written to when a newly parked connection's deadline comes before
    /// the watcher's next wake-up.
    wake_tx: UnixStream,
    wake_rx: UnixStream,
}

struct Lot<T> {
    parked: HashMap<u64, Parked<T>>,
    next_token: u64,
    /// The deadlines of the connections parked, earliest first. A
    /// connection woken by its socket takes its entry with it: left to
    /// expire, the entries of 200 busy tunnels (parked ten times a second,
    /// each with `timeouts.tunnel_idle`, 300 s, ahead) piled up to 600,000
    /// and proxy-std's memory grew 2 MiB a minute under a steady load.
    timers: BTreeSet<(Instant, u64)>,
    /// When the watcher will next wake by itself (`None`: not before an
    /// event).
    next_wake: Option<Instant>,
    /// Shutdown began: nothing is parked any more.
    closed: bool,
}

struct Parked<T> {
    conn: T,
    /// Its entry in `Lot::timers`.
    deadline: Option<Instant>,
    /// Every descriptor registered for it.
    fds: [Option<RawFd>; 4],
}

impl<T> ParkingLot<T> {
    pub(crate) fn new(drain_fd: RawFd) -> io::Result<ParkingLot<T>> {
        let epoll = Epoll::new()?;
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        epoll.add(wake_rx.as_raw_fd(), EPOLLIN, WAKE)?;
        epoll.add(drain_fd, EPOLLIN, DRAIN)?;
        Ok(ParkingLot {
            epoll,
            drain_fd,
            state: Mutex::new(Lot {
                parked: HashMap::new(),
                next_token: FIRST_CONN,
                timers: BTreeSet::new(),
                next_wake: None,
                closed: false,
            }),
            wake_tx,
            wake_rx,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Lot<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Parks `conn` until `wait` is over. Gives it back if it cannot be
    /// parked (shutdown began, or epoll refused a descriptor): the caller
    /// then keeps running it on its own thread.
    pub(crate) fn park(&self, conn: T, wait: Wait) -> Result<(), T> {
        let mut lot = self.lock();
        if lot.closed {
            return Err(conn);
        }
        let token = lot.next_token;
        lot.next_token += 1;
        let [a, b, c] = wait.fds;
        let fds = [a, b, c, wait.writable];
        let watched = [EPOLLIN, EPOLLIN, EPOLLIN, EPOLLOUT];
        let mut added = Vec::with_capacity(4);
        for (fd, events) in fds.iter().zip(watched) {
            let Some(fd) = fd else { continue };
            if self.epoll.add(*fd, events, token).is_err() {
                for fd in added {
                    let _ = self.epoll.delete(fd);
                }
                return Err(conn);
            }
            added.push(*fd);
        }
        // Inserted before the lock goes, so an event the watcher already
        // has for this token finds the connection.
        lot.parked.insert(
            token,
            Parked {
                conn,
                fds,
                deadline: wait.deadline,
            },
        );
        if let Some(at) = wait.deadline {
            lot.timers.insert((at, token));
            if lot.next_wake.map_or(true, |w| at < w) {
                lot.next_wake = Some(at);
                // A full socket means a wake-up is pending anyway.
                let _ = (&self.wake_tx).write(&[1]);
            }
        }
        Ok(())
    }

    /// The watcher's loop: hands connections back (to `wake`) as their
    /// sockets become readable or their deadlines pass, and all of them
    /// once shutdown begins. Never returns.
    pub(crate) fn watch(&self, wake: impl Fn(T)) {
        let mut events = vec![sys::epoll_event(); 256];
        let mut woken = Vec::new();
        loop {
            let timeout = {
                let mut lot = self.lock();
                let next = lot.earliest();
                lot.next_wake = next;
                match next {
                    None => -1,
                    Some(at) => {
                        sys::duration_ms(Some(at.saturating_duration_since(Instant::now())))
                    }
                }
            };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("proxy-std: epoll_wait failed: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    continue;
                }
            };
            {
                let mut lot = self.lock();
                for event in &events[..n] {
                    match event.u64 {
                        WAKE => {
                            let mut sink = [0u8; 64];
                            while matches!((&self.wake_rx).read(&mut sink), Ok(n) if n > 0) {}
                        }
                        DRAIN => {
                            lot.closed = true;
                            let _ = self.epoll.delete(self.drain_fd);
                        }
                        token => {
                            if let Some(p) = lot.take(token) {
                                woken.push(self.unwatch(p));
                            }
                        }
                    }
                }
                let now = Instant::now();
                while let Some(&(at, token)) = lot.timers.first() {
                    if at > now {
                        break;
                    }
                    if let Some(p) = lot.take(token) {
                        woken.push(self.unwatch(p));
                    }
                }
                if lot.closed {
                    let all: Vec<Parked<T>> = lot.parked.drain().map(|(_, p)| p).collect();
                    lot.timers.clear();
                    woken.extend(all.into_iter().map(|p| self.unwatch(p)));
                }
            }
            for conn in woken.drain(..) {
                wake(conn);
            }
        }
    }

    fn unwatch(&self, parked: Parked<T>) -> T {
        for fd in parked.fds.iter().flatten() {
            let _ = self.epoll.delete(*fd);
        }
        parked.conn
    }
}

impl<T> Lot<T> {
    /// The earliest deadline of a connection parked.
    fn earliest(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// Unparks the connection of `token`, with its deadline.
    fn take(&mut self, token: u64) -> Option<Parked<T>> {
        let parked = self.parked.remove(&token)?;
        if let Some(at) = parked.deadline {
            self.timers.remove(&(at, token));
        }
        Some(parked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{mpsc, Arc};
    use std::time::Duration;

    /// A lot with its watcher running; woken connections arrive on the
    /// receiver. The second stream is the drain beacon's other end.
    fn watched() -> (
        Arc<ParkingLot<UnixStream>>,
        mpsc::Receiver<UnixStream>,
        UnixStream,
    ) {
        let (drain, beacon) = UnixStream::pair().unwrap();
        let lot = Arc::new(ParkingLot::new(beacon.as_raw_fd()).unwrap());
        std::mem::forget(beacon);
        let (woke_tx, woke_rx) = mpsc::channel();
        let watcher = Arc::clone(&lot);
        std::thread::spawn(move || watcher.watch(|conn| woke_tx.send(conn).unwrap()));
        (lot, woke_rx, drain)
    }

    #[test]
    fn a_connection_woken_by_its_socket_leaves_no_timer_behind() {
        let (lot, woke, _drain) = watched();
        let far = Instant::now() + Duration::from_secs(300);
        let mut peers = Vec::new();
        for _ in 0..100 {
            let (ours, theirs) = UnixStream::pair().unwrap();
            let wait = Wait {
                fds: [Some(ours.as_raw_fd()), None, None],
                writable: None,
                deadline: Some(far),
            };
            assert!(lot.park(ours, wait).is_ok());
            peers.push(theirs);
        }
        assert_eq!(lot.lock().timers.len(), 100);
        for peer in &mut peers {
            peer.write_all(b"x").unwrap();
        }
        for _ in 0..100 {
            woke.recv_timeout(Duration::from_secs(5)).unwrap();
        }
        let state = lot.lock();
        assert!(state.parked.is_empty());
        assert!(
            state.timers.is_empty(),
            "{} timers left",
            state.timers.len()
        );
    }

    #[test]
    fn a_connect_wakes_when_writable_and_a_deadline_wakes_the_rest() {
        let (lot, woke, _drain) = watched();
        // Nobody writes to either: the first is writable at once, the
        // second is due in 50 ms.
        let (writable, _peer) = UnixStream::pair().unwrap();
        let wait = Wait {
            fds: [None; 3],
            writable: Some(writable.as_raw_fd()),
            deadline: Some(Instant::now() + Duration::from_secs(300)),
        };
        assert!(lot.park(writable, wait).is_ok());
        woke.recv_timeout(Duration::from_secs(5)).unwrap();
        let (quiet, _peer) = UnixStream::pair().unwrap();
        let started = Instant::now();
        let wait = Wait {
            fds: [Some(quiet.as_raw_fd()), None, None],
            writable: None,
            deadline: Some(started + Duration::from_millis(50)),
        };
        assert!(lot.park(quiet, wait).is_ok());
        woke.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(lot.lock().timers.is_empty());
    }
}
