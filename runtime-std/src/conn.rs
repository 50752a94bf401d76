//! One client connection: performs the ops of its `proxy_core::Driver`
//! with blocking sockets and poll(2), and reports what came of them. Every
//! decision, and all the bookkeeping between the sockets and the protocol,
//! is the driver's; this file is I/O.
//!
//! A [`Conn`] runs on a worker thread (`crate::server`) while it has work.
//! When it has waited [`PARK_AFTER`] for its sockets with nothing
//! happening, [`Conn::resume`] returns [`Step::Park`] and the worker hands
//! it to the parking lot, which brings it back to a worker when a socket
//! is readable or its deadline is due. Its input buffers go with the wait
//! (the driver gives their storage back while they are empty).
//!
//! Every poll also watches a lifecycle beacon (`proxy_host::lifecycle`):
//! the drain beacon until shutdown begins, then the stop beacon. The
//! driver hears of them as `Shutdown` and `ForceShutdown`; a tunnel's
//! relay watches the stop beacon itself.

use crate::net::{self, linger, write_all, Forward, Lookup};
use crate::parking::Wait;
use crate::relay::{Relay, RelayStep, Start};
use crate::sys::{self, POLLIN, POLLOUT};
use proxy_core::driver::{Accepted, Driver, Input, Op, Wait as Waiting};
use proxy_core::{ConnId, Connected, Role, Side, TunnelEnd, TunnelEndReason, UpstreamId};
use proxy_host::buf::Pooled;
use proxy_host::io_error::connect_error;
use proxy_host::lifecycle::{ConnGuard, Lifecycle, Stage};
use proxy_host::pool::Pool;
use proxy_host::{Clock, Settings};
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

/// How long a connection waits for its sockets on its worker thread before
/// it is parked. Long enough that a busy keep-alive client (the next
/// request follows within milliseconds) never pays for parking; short
/// enough that idle clients give their threads back at once.
const PARK_AFTER: Duration = Duration::from_millis(25);

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) settings: Arc<Settings>,
    pub(crate) clock: Clock,
    pub(crate) pool: Pool<TcpStream>,
    /// Shutdown state: where the process is, and the beacons to poll.
    pub(crate) life: Lifecycle,
}

/// What [`Conn::resume`] ended with.
pub(crate) enum Step {
    /// Nothing to do until `Wait` is over: park the connection.
    Park(Wait),
    /// The driver is done: call [`Conn::finish`].
    Done,
}

/// The upstream connection held.
struct Held {
    id: UpstreamId,
    addr: SocketAddr,
    stream: TcpStream,
}

/// An upstream handshake under way.
struct Connecting {
    id: UpstreamId,
    addr: SocketAddr,
    stream: TcpStream,
    /// When it has taken too long (the core's timer, or
    /// `timeouts.connect`).
    deadline: proxy_core::Instant,
}

/// A client connection and what its thread keeps between steps.
pub(crate) struct Conn {
    shared: Arc<Shared>,
    /// Counts the connection as live until it is dropped.
    _guard: ConnGuard,
    id: ConnId,
    driver: Driver<Pooled>,
    client: TcpStream,
    upstream: Option<Held>,
    /// An upstream connection being made (the driver waits for its
    /// `Connected`).
    connecting: Option<Connecting>,
    /// The tunnel being relayed, once the driver asked for one.
    relay: Option<Relay>,
    /// A system lookup under way.
    lookup: Option<Lookup>,
    /// The lifecycle stage the driver was last told of.
    told: Stage,
    /// Read and discard before closing (the driver's last word).
    linger: bool,
    /// A write that makes no progress for this long fails (zero: never).
    write_stall: Duration,
    /// Long waits park the connection (not once shutdown began).
    parking: bool,
}

impl Conn {
    /// A newly accepted client, counted as live (by `guard`) until the
    /// connection is dropped. `client` is non-blocking
    /// (`proxy_host::listener::accept` makes it so): every read follows a
    /// poll(2) that said readable, every write waits with poll(2) and its
    /// own stall limit (see `write_all`), so no call ever blocks the worker.
    pub(crate) fn new(
        shared: &Arc<Shared>,
        id: ConnId,
        client: TcpStream,
        peer: SocketAddr,
        role: Role,
        guard: ConnGuard,
    ) -> Box<Conn> {
        let settings = &shared.settings;
        let accepted = Accepted {
            conn: id,
            client: peer,
            role,
            anchor: shared.clock.anchor(),
            at: shared.clock.now(),
        };
        Box::new(Conn {
            shared: Arc::clone(shared),
            _guard: guard,
            id,
            driver: Driver::new(accepted, settings.shared.clone(), settings.record.is_some()),
            client,
            upstream: None,
            connecting: None,
            relay: None,
            lookup: None,
            told: Stage::Running,
            linger: false,
            write_stall: settings.config().timeouts.transfer_idle,
            parking: true,
        })
    }

    /// From now on, waits block this thread instead of parking (shutdown
    /// began: the lot takes no more connections).
    pub(crate) fn no_parking(&mut self) {
        self.parking = false;
    }

    fn now(&self) -> proxy_core::Instant {
        self.shared.clock.now()
    }

    /// Performs ops until the connection must wait a while (park it) or
    /// is done. `crowded`: whether connections queue for a worker, when a
    /// connection with nothing to do parks at once.
    pub(crate) fn resume(&mut self, crowded: &dyn Fn() -> bool) -> Step {
        loop {
            if self.relay.is_some() {
                match self.relay_step(crowded) {
                    Some(wait) => return Step::Park(wait),
                    None => continue,
                }
            }
            if self.connecting.is_some() {
                match self.connect_step(crowded) {
                    Some(wait) => return Step::Park(wait),
                    None => continue,
                }
            }
            for input in self.shared.life.news(&mut self.told) {
                self.driver.handle(self.shared.clock.now(), input);
            }
            let stop = self.shared.life.stop_fd();
            match self.driver.poll() {
                Op::Write { to, head, body } => {
                    let result = match (to, &self.upstream) {
                        (Side::Client, _) => {
                            write_all(&self.client, head, body, stop, self.write_stall)
                        }
                        (Side::Upstream, Some(up)) => {
                            write_all(&up.stream, head, body, stop, self.write_stall)
                        }
                        (Side::Upstream, None) => Ok(()),
                    };
                    if result.is_err() {
                        self.failed(to);
                    }
                }
                Op::Resolve { query, host, .. } => {
                    let now = self.now();
                    match self.shared.settings.resolver.lookup_static(&host) {
                        Some(result) => self.driver.handle(now, Input::Resolved(query, result)),
                        // On a lookup thread: the answer is waited for
                        // like a socket, parked or not.
                        None => match Lookup::start(query, host) {
                            Ok(lookup) => self.lookup = Some(lookup),
                            Err((query, result)) => {
                                self.driver.handle(now, Input::Resolved(query, result))
                            }
                        },
                    }
                }
                Op::Connect {
                    upstream,
                    addr,
                    allow_pooled,
                    deadline,
                } => {
                    if let Some(input) = self.connect(upstream, addr, allow_pooled, deadline) {
                        self.driver.handle(self.now(), input);
                    }
                }
                Op::Release { upstream, reuse } => {
                    if let Some(up) = self.upstream.take() {
                        if up.id != upstream {
                            self.upstream = Some(up);
                        } else if reuse {
                            self.shared.pool.put(up.addr, up.stream);
                        }
                    }
                }
                Op::Relay(r) => {
                    let relay = match &self.upstream {
                        Some(up) if up.id == r.upstream => Some(Relay::new(
                            &self.client,
                            &up.stream,
                            Start {
                                leftover: r.to_upstream.bytes(),
                                eof: r.client_eof,
                            },
                            Start {
                                leftover: r.to_client.bytes(),
                                eof: r.upstream_eof,
                            },
                            r.idle_timeout,
                        )),
                        _ => None,
                    };
                    match relay {
                        Some(relay) => self.relay = Some(relay),
                        None => self.driver.handle(
                            self.now(),
                            Input::TunnelEnded(TunnelEnd {
                                to_upstream: 0,
                                to_client: 0,
                                reason: TunnelEndReason::Error,
                            }),
                        ),
                    }
                }
                Op::Verify(job) => {
                    let ok = proxy_host::hashing::verify(job).wait();
                    self.driver.handle(self.now(), Input::Verified(ok));
                }
                Op::Log(record) => self.shared.settings.access_log.write(&record),
                Op::Close(_) => {
                    let _ = self.client.shutdown(Shutdown::Write);
                }
                Op::Wait(w) => {
                    if let Some(park) = self.wait(w, crowded) {
                        return Step::Park(park);
                    }
                }
                Op::Done { linger } => {
                    self.linger = linger;
                    return Step::Done;
                }
            }
        }
    }

    /// A write to `side` failed: cut off at the end of the grace period,
    /// or the peer is gone.
    fn failed(&mut self, side: Side) {
        let input = if self.shared.life.is_stopping() {
            Input::ForceShutdown
        } else {
            Input::Failed(side)
        };
        self.driver.handle(self.now(), input);
    }

    /// Takes a pooled connection to `addr` or starts a new one; says what
    /// came of it, or nothing while the handshake is under way
    /// ([`Conn::connect_step`] carries on with it).
    fn connect(
        &mut self,
        id: UpstreamId,
        addr: SocketAddr,
        allow_pooled: bool,
        deadline: Option<proxy_core::Instant>,
    ) -> Option<Input> {
        // Whatever was held before is finished with.
        self.upstream = None;
        let now = self.now();
        let deadline =
            deadline.unwrap_or_else(|| now + self.shared.settings.config().timeouts.connect);
        if let Some(stream) = allow_pooled
            .then(|| net::reuse(&self.shared.pool, addr))
            .flatten()
        {
            self.upstream = Some(Held { id, addr, stream });
            return Some(Input::Connected(id, Ok(Connected { reused: true })));
        }
        if deadline <= now {
            // The core's timer answers (504).
            return Some(Input::Timeout);
        }
        match proxy_host::dial::start(addr) {
            Ok(stream) => {
                self.connecting = Some(Connecting {
                    id,
                    addr,
                    stream,
                    deadline,
                });
                None
            }
            Err(e) => Some(Input::Connected(id, Err(connect_error(&e)))),
        }
    }

    /// Waits for the handshake under way and reports how it ended; or,
    /// when the wait would be long, says to park until the socket is
    /// writable or the deadline passes.
    fn connect_step(&mut self, crowded: &dyn Fn() -> bool) -> Option<Wait> {
        let c = self.connecting.as_ref()?;
        let now = self.now();
        let parks = self.parking
            && self.told == Stage::Running
            && c.deadline.saturating_since(now) > PARK_AFTER;
        let timeout = match parks {
            true if crowded() => 0,
            true => sys::duration_ms(Some(PARK_AFTER)),
            false => sys::timeout_ms(Some(c.deadline), now),
        };
        let stop = self.shared.life.stop_fd();
        let mut fds = [
            sys::pollfd(Some(c.stream.as_raw_fd()), POLLOUT),
            sys::pollfd(Some(stop), POLLIN),
        ];
        let ready = match sys::poll(&mut fds, timeout) {
            Ok(0) if parks => {
                return Some(Wait {
                    fds: [None; 3],
                    writable: Some(c.stream.as_raw_fd()),
                    deadline: Some(self.shared.clock.to_std(c.deadline)),
                })
            }
            Ok(_) => fds[0].revents != 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return None,
            Err(e) => {
                eprintln!("proxy-std: poll failed: {e}");
                self.connecting = None;
                self.driver.handle(now, Input::ForceShutdown);
                return None;
            }
        };
        let stopped = fds[1].revents != 0;
        let now = self.now();
        let timed_out = c.deadline <= now;
        if ready {
            let Connecting {
                id, addr, stream, ..
            } = self.connecting.take()?;
            let input = match proxy_host::dial::finish(&stream) {
                Ok(()) => {
                    self.upstream = Some(Held { id, addr, stream });
                    Input::Connected(id, Ok(Connected { reused: false }))
                }
                Err(e) => Input::Connected(id, Err(connect_error(&e))),
            };
            self.driver.handle(now, input);
        } else if stopped {
            // The grace period is over.
            self.connecting = None;
            self.driver.handle(now, Input::ForceShutdown);
        } else if timed_out {
            // The core's timer answers (504).
            self.connecting = None;
            self.driver.handle(now, Input::Timeout);
        }
        None
    }

    /// Waits for what `w` names and reports it; or, when the wait would
    /// be long, says to park until it is over.
    fn wait(&mut self, w: Waiting, crowded: &dyn Fn() -> bool) -> Option<Wait> {
        let life = &self.shared.life;
        // Wakes the poll below when the next stage begins.
        let beacon = if self.told >= Stage::Draining {
            life.stop_fd()
        } else {
            life.drain_fd()
        };
        let now = self.now();
        let client_fd = w.client.then(|| self.client.as_raw_fd());
        let up = self
            .upstream
            .as_ref()
            .filter(|u| w.upstream.is_some_and(|wu| wu.id == u.id));
        let up_fd = up.map(|u| u.stream.as_raw_fd());
        let lookup_fd = self.lookup.as_ref().map(|l| l.signal.as_raw_fd());
        let mut fds = [
            sys::pollfd(client_fd, POLLIN),
            sys::pollfd(up_fd, POLLIN),
            sys::pollfd(Some(beacon), POLLIN),
            sys::pollfd(lookup_fd, POLLIN),
        ];
        let parks = self.parking
            && self.told == Stage::Running
            && w.deadline
                .map_or(true, |d| d.saturating_since(now) > PARK_AFTER);
        let timeout = match parks {
            true if crowded() => 0,
            true => sys::duration_ms(Some(PARK_AFTER)),
            false => sys::timeout_ms(w.deadline, now),
        };
        match sys::poll(&mut fds, timeout) {
            Ok(0) if parks => {
                return Some(Wait {
                    fds: [client_fd, up_fd, lookup_fd],
                    writable: None,
                    deadline: w.deadline.map(|d| self.shared.clock.to_std(d)),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return None,
            Err(e) => {
                eprintln!("proxy-std: poll failed: {e}");
                self.driver.handle(now, Input::ForceShutdown);
                return None;
            }
        }
        let now = self.now();
        if w.deadline.is_some_and(|d| d <= now) {
            self.driver.handle(now, Input::Timeout);
        }
        if fds[3].revents != 0 {
            if let Some(lookup) = self.lookup.take() {
                match lookup.ticket.try_take() {
                    Some(result) => self
                        .driver
                        .handle(now, Input::Resolved(lookup.query, result)),
                    None => self.lookup = Some(lookup),
                }
            }
        }
        if fds[0].revents != 0 {
            let client = &self.client;
            let _ = self
                .driver
                .read_from(now, Side::Client, |room| (&*client).read(room));
        }
        let forward = w.upstream.map_or(0, |u| u.forward);
        if fds[1].revents != 0 {
            if forward > 0 {
                self.forward(forward);
            } else if let Some(up) = self.upstream.as_ref() {
                let stream = &up.stream;
                let _ = self
                    .driver
                    .read_from(now, Side::Upstream, |room| (&*stream).read(room));
            }
        }
        None
    }

    /// Moves up to `max` response body bytes from the upstream to the
    /// client without reading them (splice), and reports them; reads them
    /// instead when that cannot be done.
    fn forward(&mut self, max: u64) {
        let Some(up) = self.upstream.as_ref() else {
            return;
        };
        let now = self.now();
        let life = &self.shared.life;
        match net::forward(&up.stream, &self.client, max, life, self.write_stall) {
            Forward::Unavailable => {
                let stream = &up.stream;
                let _ = self
                    .driver
                    .read_from(now, Side::Upstream, |room| (&*stream).read(room));
            }
            Forward::Nothing => {}
            Forward::Eof => self.driver.handle(now, Input::Eof(Side::Upstream)),
            Forward::Failed => self.driver.handle(now, Input::Failed(Side::Upstream)),
            Forward::Moved(n, delivered) => {
                self.driver.handle(self.now(), Input::Forwarded(n));
                if delivered.is_err() {
                    self.failed(Side::Client);
                }
            }
        }
    }

    /// Relays the tunnel until it ends (its end is then reported) or idles
    /// long enough to park: then returns what to wait for.
    fn relay_step(&mut self, crowded: &dyn Fn() -> bool) -> Option<Wait> {
        let (Some(relay), Some(up)) = (self.relay.as_mut(), self.upstream.as_ref()) else {
            self.relay = None;
            return None;
        };
        let park_after = self.parking.then(|| {
            if crowded() {
                Duration::ZERO
            } else {
                PARK_AFTER
            }
        });
        match relay.run(
            &self.client,
            &up.stream,
            self.shared.life.stop_fd(),
            park_after,
        ) {
            RelayStep::Idle => Some(Wait {
                fds: [
                    Some(self.client.as_raw_fd()),
                    Some(up.stream.as_raw_fd()),
                    None,
                ],
                writable: None,
                deadline: relay.deadline(),
            }),
            RelayStep::Ended(end) => {
                self.relay = None;
                self.driver.handle(self.now(), Input::TunnelEnded(end));
                None
            }
        }
    }

    /// After the driver is done: closes the sockets politely and saves the
    /// trace, if recording.
    pub(crate) fn finish(self: Box<Self>) {
        let Conn {
            shared,
            id,
            driver,
            client,
            upstream,
            linger: lingers,
            ..
        } = *self;
        drop(upstream);
        if lingers {
            let _ = client.shutdown(Shutdown::Write);
            linger(&client, shared.life.stop_fd());
        }
        let _ = client.shutdown(Shutdown::Both);
        if let (Some(dir), Some(trace)) = (&shared.settings.record, driver.into_trace()) {
            if let Err(e) = proxy_host::settings::save_trace(dir, &trace) {
                eprintln!("proxy-std: cannot save trace of connection {}: {e}", id.0);
            }
        }
    }
}
