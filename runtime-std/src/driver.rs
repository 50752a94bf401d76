//! One client connection: both sockets, poll(2), and the core's drain
//! loop (see `proxy_core::Connection` for the contract this follows).
//!
//! A [`Conn`] runs on a worker thread (`crate::workers`) while it has
//! work. When it has waited [`PARK_AFTER`] for its sockets with nothing
//! happening, [`Conn::resume`] returns [`Step::Park`] and the worker hands
//! it to the parking lot (`crate::parking`), which brings it back to a
//! worker when a socket is readable or its deadline is due. Its input
//! buffers go with the wait (an idle connection holds none).
//!
//! Every poll also waits on a lifecycle beacon (`proxy_host::lifecycle`):
//! the drain beacon until shutdown begins, when the connection gets
//! `begin_shutdown`; then the stop beacon, which ends a tunnel (reported
//! as `TunnelEndReason::Shutdown`) or cuts off an exchange still in
//! flight when the grace period is over.

use crate::parking::{ParkingLot, Wait};
use crate::relay::{Relay, RelayStep, Start};
use crate::sys::{self, POLLIN};
use crate::workers::Workers;
use proxy_core::trace::Traced;
use proxy_core::{
    Action, ConnId, ConnectError, Connected, QueryId, ResolveError, Role, Side, TunnelEnd,
    TunnelEndReason, UpstreamId,
};
use proxy_host::buf::InBuf;
use proxy_host::io_error::connect_error;
use proxy_host::lifecycle::{ConnGuard, Lifecycle};
use proxy_host::pool::Pool;
#[cfg(target_os = "linux")]
use proxy_host::splice::{Pipe, PipePool, SPLICE_MAX};
use proxy_host::{Clock, Settings};
use std::collections::VecDeque;
use std::io::{self, Read};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

/// Most unconsumed bytes held per side; past this we stop reading it.
const BUF_CAP: usize = 64 * 1024;
/// Largest single read.
const READ_CHUNK: usize = 16 * 1024;
/// How long a connection waits for its sockets on its worker thread before
/// it is parked. Long enough that a busy keep-alive client (the next
/// request follows within milliseconds) never pays for parking; short
/// enough that idle clients give their threads back at once.
const PARK_AFTER: Duration = Duration::from_millis(25);
/// How long, at most, to read and discard what a client still sends after
/// we closed our side, so that unread bytes do not make the kernel reset
/// the connection before the client has read our last response.
const LINGER: Duration = Duration::from_secs(2);

/// Empty pipes for splicing response bodies and tunnels, shared by every
/// connection; a connection holds one only while bytes are in it.
#[cfg(target_os = "linux")]
pub(crate) static PIPES: PipePool = PipePool::new(64);

/// What every connection thread shares.
pub(crate) struct Shared {
    pub(crate) settings: Arc<Settings>,
    pub(crate) clock: Clock,
    pub(crate) pool: Pool<TcpStream>,
    /// Shutdown state: where the process is, and the beacons to poll.
    pub(crate) life: Lifecycle,
    /// The threads connections run on while busy.
    pub(crate) workers: Workers,
    /// Where connections wait while idle.
    pub(crate) lot: ParkingLot,
}

impl Shared {
    pub(crate) fn new(settings: Settings, life: Lifecycle) -> io::Result<Self> {
        let pool = Pool::new(
            settings.config().timeouts.upstream_idle,
            proxy_host::pool::MAX_IDLE_PER_ADDR,
        );
        let lot = ParkingLot::new(life.drain_fd())?;
        Ok(Shared {
            settings: Arc::new(settings),
            clock: Clock::new(),
            pool,
            life,
            workers: Workers::new(),
            lot,
        })
    }
}

/// What [`Conn::resume`] ended with.
pub(crate) enum Step {
    /// Nothing to do until `Wait` is over: park the connection.
    Park(Wait),
    /// The core is finished with the connection: call [`Conn::finish`].
    Done,
}

/// What one read from a socket gave.
enum ReadOutcome {
    /// Bytes were added to the buffer.
    Data,
    /// End of stream.
    Eof,
    /// Nothing now (no room, interrupted, or would block).
    Again,
    /// The socket failed.
    Failed,
}

/// Reads once from `stream` into the spare room of `buf`, within its cap.
fn read_some(mut stream: &TcpStream, buf: &mut InBuf) -> ReadOutcome {
    let room = READ_CHUNK.min(BUF_CAP.saturating_sub(buf.len()));
    if room == 0 {
        return ReadOutcome::Again;
    }
    match stream.read(&mut buf.spare(room)[..room]) {
        Ok(0) => ReadOutcome::Eof,
        Ok(n) => {
            buf.commit(n);
            ReadOutcome::Data
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
            ) =>
        {
            ReadOutcome::Again
        }
        Err(_) => ReadOutcome::Failed,
    }
}

impl Conn {
    /// A newly accepted client, counted as live (by `guard`) until the
    /// connection is dropped.
    pub(crate) fn new(
        shared: &Arc<Shared>,
        id: ConnId,
        client: TcpStream,
        peer: SocketAddr,
        role: Role,
        guard: ConnGuard,
    ) -> Box<Conn> {
        let settings = &shared.settings;
        // Cannot fail on a socket we own; if it did, reads would merely
        // block after a poll that said readable.
        let _ = prepare_socket(&client);
        let conn = Traced::new(
            id,
            peer,
            settings.shared.clone(),
            shared.clock.anchor(),
            shared.clock.now(),
            settings.record.is_some(),
            role,
        );
        Box::new(Conn {
            shared: Arc::clone(shared),
            _guard: guard,
            id,
            conn,
            client,
            cbuf: InBuf::default(),
            c_consumed: 0,
            c_eof_seen: false,
            c_eof_reported: false,
            c_dead: false,
            c_stalled: false,
            up: None,
            ubuf: InBuf::default(),
            u_consumed: 0,
            ubuf_owner: None,
            u_stalled: false,
            out: Vec::new(),
            pending: VecDeque::new(),
            closed: false,
            shutdown_begun: false,
            write_stall: settings.config().timeouts.transfer_idle,
            started: false,
            fired: None,
            relay: None,
            parking: true,
        })
    }

    /// After the connection is done: closes the sockets politely and saves
    /// its trace, if recording.
    pub(crate) fn finish(mut self: Box<Self>) {
        self.close_sockets();
        let settings = Arc::clone(&self.shared.settings);
        if let Some(dir) = &settings.record {
            let id = self.id;
            if let Some(trace) = self.conn.into_trace() {
                if let Err(e) = proxy_host::settings::save_trace(dir, &trace) {
                    eprintln!("proxy-std: cannot save trace of connection {}: {e}", id.0);
                }
            }
        }
    }

    /// From now on, waits block this thread instead of parking (shutdown
    /// began: the lot takes no more connections).
    pub(crate) fn no_parking(&mut self) {
        self.parking = false;
    }
}

/// Nagle off, and non-blocking for good: every read follows a poll(2)
/// that said readable, every write waits with poll(2) and its own stall
/// limit (see `write_all`), so no call ever blocks the worker.
fn prepare_socket(s: &TcpStream) -> io::Result<()> {
    let _ = s.set_nodelay(true);
    s.set_nonblocking(true)
}

/// The current upstream connection.
struct Upstream {
    id: UpstreamId,
    addr: SocketAddr,
    stream: TcpStream,
    /// A read returned end of stream.
    eof_seen: bool,
    eof_reported: bool,
    /// A read or write failed (and was reported).
    dead: bool,
}

/// An input to feed the core once the current drain is finished.
enum Pending {
    Resolved(QueryId, Result<Vec<IpAddr>, ResolveError>),
    Connected(UpstreamId, Result<Connected, ConnectError>),
    ClientError,
    UpstreamError(UpstreamId),
    TunnelEnd(TunnelEnd),
}

/// Where the bytes of a write come from.
#[derive(Clone, Copy)]
enum Src {
    Out,
    Client,
    Upstream,
}

/// A client connection and everything its driver keeps between steps.
pub(crate) struct Conn {
    shared: Arc<Shared>,
    /// Counts the connection as live until it is dropped.
    _guard: ConnGuard,
    id: ConnId,
    conn: Traced,
    client: TcpStream,
    /// Client bytes read and not yet consumed; the slice last offered to
    /// `handle_client_data` until the drain that follows it ends.
    cbuf: InBuf,
    /// How much of `cbuf` the last offer consumed, dropped after the drain.
    c_consumed: usize,
    /// A client read returned end of stream.
    c_eof_seen: bool,
    c_eof_reported: bool,
    /// A client read or write failed (and was reported).
    c_dead: bool,
    /// The core consumed nothing of a non-empty offer although it wanted
    /// client data; do not offer again until something changes.
    c_stalled: bool,
    up: Option<Upstream>,
    /// Upstream bytes read and not yet consumed, from `ubuf_owner`.
    ubuf: InBuf,
    u_consumed: usize,
    ubuf_owner: Option<UpstreamId>,
    u_stalled: bool,
    /// Scratch space for `Write` actions.
    out: Vec<u8>,
    pending: VecDeque<Pending>,
    /// The core asked to close.
    closed: bool,
    /// `begin_shutdown` was called (shutdown began).
    shutdown_begun: bool,
    /// A write that makes no progress for this long fails (zero: never).
    write_stall: Duration,
    /// The first drain (a refusal over a cap is queued from birth) is done.
    started: bool,
    /// The last deadline handled, so a timer the core keeps is not fired
    /// over and over.
    fired: Option<proxy_core::Instant>,
    /// The tunnel being relayed, once the core asked for one.
    relay: Option<Relay>,
    /// Long waits park the connection (false once shutdown began).
    parking: bool,
}

impl Conn {
    fn now(&self) -> proxy_core::Instant {
        self.shared.clock.now()
    }

    fn stop_fd(&self) -> RawFd {
        self.shared.life.stop_fd()
    }

    /// Runs the connection until it must wait a while (park it) or is
    /// done.
    pub(crate) fn resume(&mut self) -> Step {
        if !self.started {
            self.started = true;
            self.pump();
        }
        while !self.closed {
            if self.relay.is_some() {
                match self.relay_step() {
                    Some(wait) => return Step::Park(wait),
                    None => continue,
                }
            }
            let life = &self.shared.life;
            if life.is_stopping() {
                // The grace period is over and this exchange is still in
                // flight: cut it off, logged (a tunnel never gets here;
                // its relay ends on the same beacon).
                let now = self.now();
                self.conn.force_shutdown(now);
                self.pump();
                break;
            }
            if !self.shutdown_begun && life.is_draining() {
                self.shutdown_begun = true;
                let now = self.now();
                self.conn.begin_shutdown(now);
                self.pump();
                continue;
            }
            // Wakes the poll below when the next stage begins.
            let beacon = if self.shutdown_begun {
                life.stop_fd()
            } else {
                life.drain_fd()
            };
            let now = self.now();
            let mut deadline = self.conn.poll_timeout();
            if let Some(due) = deadline.filter(|&d| d <= now) {
                if self.fired != Some(due) {
                    self.fired = Some(due);
                    self.conn.handle_timeout(now);
                    self.c_stalled = false;
                    self.u_stalled = false;
                    self.pump();
                    continue;
                }
                // The core kept a timer it has already handled: waking for
                // it again would only spin.
                deadline = None;
            }
            let want_client = !self.c_eof_seen && !self.c_dead && self.cbuf.len() < BUF_CAP;
            let polled_up = self
                .up
                .as_ref()
                .filter(|u| !u.eof_seen && !u.dead && self.ubuf.len() < BUF_CAP)
                .map(|u| (u.id, u.stream.as_raw_fd()));
            if !want_client && polled_up.is_none() && deadline.is_none() {
                // Nothing to read and no timer: waiting would be forever.
                // The core never leaves a connection so; give up on it.
                break;
            }
            let client_fd = want_client.then(|| self.client.as_raw_fd());
            let up_fd = polled_up.map(|(_, fd)| fd);
            let mut fds = [
                sys::pollfd(client_fd, POLLIN),
                sys::pollfd(up_fd, POLLIN),
                sys::pollfd(Some(beacon), POLLIN),
            ];
            let parks = self.parking
                && !self.shutdown_begun
                && deadline.map_or(true, |d| d.saturating_since(now) > PARK_AFTER);
            let timeout = if parks && self.shared.workers.crowded() {
                0
            } else if parks {
                sys::duration_ms(Some(PARK_AFTER))
            } else {
                sys::timeout_ms(deadline, now)
            };
            match sys::poll(&mut fds, timeout) {
                Ok(0) if parks => {
                    self.release_buffers();
                    return Step::Park(Wait {
                        fds: [client_fd, up_fd],
                        deadline: deadline.map(|d| self.shared.clock.to_std(d)),
                    });
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("proxy-std: poll failed: {e}");
                    break;
                }
            }
            if fds[0].revents != 0 {
                self.read_client();
            }
            if let Some((id, _)) = polled_up {
                let still_current = self.up.as_ref().is_some_and(|u| u.id == id);
                if fds[1].revents != 0 && !self.closed && still_current {
                    self.read_upstream();
                }
            }
        }
        Step::Done
    }

    /// Relays the tunnel until it ends (its end is then fed to the core)
    /// or idles long enough to park: then returns what to wait for.
    fn relay_step(&mut self) -> Option<Wait> {
        let (Some(relay), Some(up)) = (self.relay.as_mut(), self.up.as_ref()) else {
            self.relay = None;
            return None;
        };
        let park_after = self.parking.then(|| {
            if self.shared.workers.crowded() {
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
            RelayStep::Idle => {
                let wait = Wait {
                    fds: [Some(self.client.as_raw_fd()), Some(up.stream.as_raw_fd())],
                    deadline: relay.deadline(),
                };
                self.release_buffers();
                Some(wait)
            }
            RelayStep::Ended(end) => {
                self.relay = None;
                self.pending.push_back(Pending::TunnelEnd(end));
                self.pump();
                None
            }
        }
    }

    /// Gives back the input buffers' storage if they hold nothing, so a
    /// parked connection holds none.
    fn release_buffers(&mut self) {
        self.cbuf.release();
        self.ubuf.release();
        if self.out.capacity() > 0 {
            self.out = Vec::new();
        }
    }

    fn read_client(&mut self) {
        match read_some(&self.client, &mut self.cbuf) {
            ReadOutcome::Again => return,
            ReadOutcome::Eof => self.c_eof_seen = true,
            ReadOutcome::Data => self.c_stalled = false,
            ReadOutcome::Failed => {
                self.c_dead = true;
                let now = self.now();
                self.conn.handle_client_error(now);
            }
        }
        self.pump();
    }

    fn read_upstream(&mut self) {
        if self.ubuf.is_empty() && !self.c_dead {
            let forwardable = self.conn.conn().forwardable_upstream();
            if forwardable > 0 {
                return self.forward_upstream(forwardable);
            }
        }
        self.read_upstream_to_buffer();
    }

    /// Moves up to `max` response body bytes from the upstream to the
    /// client with splice(2), without reading them into memory (the core
    /// only counts them: `Connection::forwardable_upstream`), then tells
    /// the core. Falls back to reading them when no pipe can be had.
    #[cfg(target_os = "linux")]
    fn forward_upstream(&mut self, max: u64) {
        let Some(up) = self.up.as_mut() else {
            return;
        };
        let Ok(mut pipe) = PIPES.take() else {
            self.read_upstream_to_buffer();
            return;
        };
        let want = usize::try_from(max).unwrap_or(usize::MAX).min(SPLICE_MAX);
        let id = up.id;
        match pipe.fill_from(&up.stream, want) {
            Ok(0) => up.eof_seen = true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                PIPES.put(pipe);
                return;
            }
            Err(_) => {
                up.dead = true;
                let now = self.now();
                self.conn
                    .handle_upstream_error(now, id, ConnectError::Reset);
                PIPES.put(pipe);
                self.pump();
                return;
            }
        }
        let moved = pipe.len() as u64;
        let delivered = self.drain_pipe(&mut pipe);
        // A pipe the client did not empty is closed, not pooled.
        PIPES.put(pipe);
        if moved > 0 {
            let now = self.now();
            self.conn.handle_upstream_forwarded(now, id, moved);
            if delivered.is_err() {
                if self.shared.life.is_stopping() {
                    // Cut off at the end of the shutdown grace period.
                    self.closed = true;
                } else if !self.c_dead {
                    self.c_dead = true;
                    self.conn.handle_client_error(now);
                }
            }
        }
        self.pump();
    }

    /// Splices everything in `pipe` into the client, waiting (as
    /// `write_all` does) while the client's socket is full.
    #[cfg(target_os = "linux")]
    fn drain_pipe(&mut self, pipe: &mut Pipe) -> io::Result<()> {
        let fd = self.client.as_raw_fd();
        let stop = self.stop_fd();
        while !pipe.is_empty() {
            match pipe.drain_to(&self.client) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_writable(fd, stop, self.write_stall)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn forward_upstream(&mut self, _max: u64) {
        self.read_upstream_to_buffer();
    }

    /// Reads the upstream's next bytes into the buffer, for the core to
    /// take as usual.
    fn read_upstream_to_buffer(&mut self) {
        let Some(up) = self.up.as_mut() else {
            return;
        };
        match read_some(&up.stream, &mut self.ubuf) {
            ReadOutcome::Again => return,
            ReadOutcome::Eof => up.eof_seen = true,
            ReadOutcome::Data => self.u_stalled = false,
            ReadOutcome::Failed => {
                up.dead = true;
                let id = up.id;
                let now = self.now();
                self.conn
                    .handle_upstream_error(now, id, ConnectError::Reset);
            }
        }
        self.pump();
    }

    /// Drains the core, feeds back results, and offers held bytes again,    /// Drains the core, feeds back results, and offers held bytes again,
    /// until nothing more happens without new input.
    fn pump(&mut self) {
        loop {
            self.settle();
            if self.closed {
                return;
            }
            if !self.c_dead
                && !self.c_stalled
                && !self.cbuf.is_empty()
                && self.conn.conn().wants_client_data()
            {
                let now = self.now();
                let n = self.conn.handle_client_data(now, self.cbuf.bytes());
                self.c_consumed = n.min(self.cbuf.len());
                self.c_stalled = n == 0;
                continue;
            }
            let current = self.up.as_ref().filter(|u| !u.dead).map(|u| u.id);
            if let Some(id) = current {
                if !self.u_stalled
                    && !self.ubuf.is_empty()
                    && self.ubuf_owner == Some(id)
                    && self.conn.conn().wants_upstream_data()
                {
                    let now = self.now();
                    let n = self.conn.handle_upstream_data(now, id, self.ubuf.bytes());
                    self.u_consumed = n.min(self.ubuf.len());
                    self.u_stalled = n == 0;
                    continue;
                }
            }
            if self.c_eof_seen && !self.c_eof_reported && !self.c_dead && self.cbuf.is_empty() {
                self.c_eof_reported = true;
                let now = self.now();
                self.conn.handle_client_eof(now);
                continue;
            }
            let wants_upstream = self.conn.conn().wants_upstream_data();
            let ubuf_empty = self.ubuf.is_empty();
            if let Some(up) = self.up.as_mut() {
                if up.eof_seen && !up.eof_reported && !up.dead && (ubuf_empty || !wants_upstream) {
                    up.eof_reported = true;
                    let id = up.id;
                    let now = self.now();
                    self.conn.handle_upstream_eof(now, id);
                    continue;
                }
            }
            return;
        }
    }

    /// Drains the actions, then feeds the results they produced, one at a
    /// time, draining after each.
    fn settle(&mut self) {
        self.drain();
        while let Some(p) = self.pending.pop_front() {
            if self.closed {
                self.pending.clear();
                return;
            }
            let now = self.now();
            // A blocking resolve or connect may have outlasted its timer:
            // the timer wins, and the core then ignores the late result.
            if self.conn.poll_timeout().is_some_and(|d| d <= now) {
                self.conn.handle_timeout(now);
                self.drain();
            }
            match p {
                Pending::Resolved(query, result) => {
                    let result = match &result {
                        Ok(addrs) => Ok(addrs.as_slice()),
                        Err(e) => Err(e.clone()),
                    };
                    self.conn.handle_resolved(now, query, result);
                }
                Pending::Connected(id, result) => self.conn.handle_connected(now, id, result),
                Pending::ClientError => self.conn.handle_client_error(now),
                Pending::UpstreamError(id) => {
                    self.conn
                        .handle_upstream_error(now, id, ConnectError::Reset);
                }
                Pending::TunnelEnd(end) => self.conn.handle_tunnel_end(now, end),
            }
            self.c_stalled = false;
            self.u_stalled = false;
            self.drain();
        }
    }

    /// Performs every queued action in order, then drops what the last
    /// offers consumed.
    fn drain(&mut self) {
        loop {
            self.out.clear();
            let Some(action) = self.conn.poll_action(&mut self.out) else {
                break;
            };
            self.perform(action);
        }
        let n = self.c_consumed.min(self.cbuf.len());
        self.cbuf.consume(n);
        self.c_consumed = 0;
        let n = self.u_consumed.min(self.ubuf.len());
        self.ubuf.consume(n);
        self.u_consumed = 0;
        let current = self.up.as_ref().map(|u| u.id);
        if self.ubuf_owner != current {
            // Bytes from a connection we no longer hold mean nothing.
            self.ubuf.clear();
            self.ubuf_owner = current;
            self.u_stalled = false;
        }
    }

    fn perform(&mut self, action: Action) {
        match action {
            Action::Resolve { query, host } => {
                let result = self.shared.settings.resolver.resolve_blocking(&host);
                self.pending.push_back(Pending::Resolved(query, result));
            }
            Action::Connect {
                upstream,
                addr,
                allow_pooled,
            } => self.connect(upstream, addr, allow_pooled),
            Action::Write { to, len } => {
                let start = self.out.len().saturating_sub(len);
                self.deliver(to, Src::Out, start, len);
            }
            Action::Pass { from, offset, len } => {
                let (src, to) = match from {
                    Side::Client => (Src::Client, Side::Upstream),
                    Side::Upstream => (Src::Upstream, Side::Client),
                };
                self.deliver(to, src, offset, len);
            }
            Action::Tunnel {
                upstream,
                idle_timeout,
            } => self.tunnel(upstream, idle_timeout),
            Action::Release { upstream, reuse } => self.release(upstream, reuse),
            Action::Close { .. } => self.closed = true,
            Action::Log(record) => self.shared.settings.access_log.write(&record),
        }
    }

    /// Writes `src[start..start + len]` to `to`, blocking; a failure is
    /// reported after the drain.
    fn deliver(&mut self, to: Side, src: Src, start: usize, len: usize) {
        let buf: &[u8] = match src {
            Src::Out => &self.out,
            Src::Client => self.cbuf.bytes(),
            Src::Upstream => self.ubuf.bytes(),
        };
        let data = start.checked_add(len).and_then(|end| buf.get(start..end));
        let result = match to {
            Side::Client if self.c_dead => return,
            Side::Client => match data {
                Some(d) => write_all(&self.client, d, self.stop_fd(), self.write_stall),
                None => Err(io::ErrorKind::InvalidInput.into()),
            },
            Side::Upstream => match (&self.up, data) {
                (Some(up), _) if up.dead => return,
                (Some(up), Some(d)) => write_all(&up.stream, d, self.stop_fd(), self.write_stall),
                (Some(_), None) => Err(io::ErrorKind::InvalidInput.into()),
                (None, _) => return,
            },
        };
        if let Err(e) = result {
            if self.shared.life.is_stopping() {
                // Cut off at the end of the shutdown grace period (the
                // write gave up on the stop beacon): nothing more to do.
                self.closed = true;
                return;
            }
            if e.kind() == io::ErrorKind::InvalidInput {
                eprintln!(
                    "proxy-std: core asked to send {len} bytes at {start} of a {}-byte buffer",
                    buf_len(src, self)
                );
            }
            match to {
                Side::Client => {
                    self.c_dead = true;
                    self.pending.push_back(Pending::ClientError);
                }
                Side::Upstream => {
                    if let Some(up) = self.up.as_mut() {
                        up.dead = true;
                        self.pending.push_back(Pending::UpstreamError(up.id));
                    }
                }
            }
        }
    }

    fn connect(&mut self, id: UpstreamId, addr: SocketAddr, allow_pooled: bool) {
        // The core has moved on from any connection it has not released.
        self.up = None;
        if allow_pooled {
            while let Some(stream) = self.shared.pool.take(addr) {
                if is_alive(&stream) {
                    self.up = Some(Upstream::new(id, addr, stream));
                    self.pending
                        .push_back(Pending::Connected(id, Ok(Connected { reused: true })));
                    return;
                }
            }
        }
        let now = self.now();
        let limit = match self.conn.poll_timeout() {
            Some(deadline) => deadline.saturating_since(now),
            None => self.shared.settings.config().timeouts.connect,
        };
        if limit.is_zero() {
            // Already past the deadline: the core's Connect timer answers.
            return;
        }
        match TcpStream::connect_timeout(&addr, limit) {
            Ok(stream) => {
                let _ = prepare_socket(&stream);
                self.up = Some(Upstream::new(id, addr, stream));
                self.pending
                    .push_back(Pending::Connected(id, Ok(Connected { reused: false })));
            }
            // Not reported: the core's Connect timer fires and answers 504.
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            Err(e) => self
                .pending
                .push_back(Pending::Connected(id, Err(connect_error(&e)))),
        }
    }

    fn tunnel(&mut self, id: UpstreamId, idle: Duration) {
        let c_start = self.c_consumed.min(self.cbuf.len());
        let from_client = Start {
            leftover: &self.cbuf.bytes()[c_start..],
            eof: self.c_eof_seen,
        };
        let u_start = self.u_consumed.min(self.ubuf.len());
        let leftover: &[u8] = if self.ubuf_owner == Some(id) {
            &self.ubuf.bytes()[u_start..]
        } else {
            &[]
        };
        // Relayed by `resume`, once this drain is over.
        match &self.up {
            Some(up) if up.id == id && !up.dead && !self.c_dead => {
                self.relay = Some(Relay::new(
                    &self.client,
                    &up.stream,
                    from_client,
                    Start {
                        leftover,
                        eof: up.eof_seen,
                    },
                    idle,
                ));
            }
            _ => self.pending.push_back(Pending::TunnelEnd(TunnelEnd {
                to_upstream: 0,
                to_client: 0,
                reason: TunnelEndReason::Error,
            })),
        }
        // Everything held went into the tunnel; neither side is read again.
        self.c_consumed = self.cbuf.len();
        self.u_consumed = self.ubuf.len();
        self.c_eof_seen = true;
        self.c_eof_reported = true;
        if let Some(up) = self.up.as_mut() {
            up.eof_seen = true;
            up.eof_reported = true;
        }
    }

    fn release(&mut self, id: UpstreamId, reuse: bool) {
        if !self.up.as_ref().is_some_and(|u| u.id == id) {
            return;
        }
        let Some(up) = self.up.take() else {
            return;
        };
        let unconsumed = if self.ubuf_owner == Some(id) {
            self.ubuf.len() - self.u_consumed.min(self.ubuf.len())
        } else {
            0
        };
        if reuse && unconsumed == 0 && !up.eof_seen && !up.dead {
            self.shared.pool.put(up.addr, up.stream);
        }
        // Otherwise dropping it closes it.
    }

    /// The core is finished (or gave up): close the upstream, then the
    /// client, politely.
    fn close_sockets(&mut self) {
        self.up = None;
        if self.c_dead {
            return;
        }
        let _ = self.client.shutdown(Shutdown::Write);
        if !self.c_eof_seen {
            linger(&self.client, self.shared.life.stop_fd());
        }
        let _ = self.client.shutdown(Shutdown::Both);
    }
}

impl Upstream {
    fn new(id: UpstreamId, addr: SocketAddr, stream: TcpStream) -> Self {
        Upstream {
            id,
            addr,
            stream,
            eof_seen: false,
            eof_reported: false,
            dead: false,
        }
    }
}

fn buf_len(src: Src, d: &Conn) -> usize {
    match src {
        Src::Out => d.out.len(),
        Src::Client => d.cbuf.len(),
        Src::Upstream => d.ubuf.len(),
    }
}

/// Writes all of `data`, blocking, but giving up when `stop` (the
/// lifecycle's stop beacon) becomes readable or the peer takes nothing
/// for `stall` (zero: no limit). The common case, a socket with room, is
/// one send(2).
fn write_all(stream: &TcpStream, mut data: &[u8], stop: RawFd, stall: Duration) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    while !data.is_empty() {
        match sys::send_nowait(fd, data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(fd, stop, stall)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until `fd` is writable; fails when `stop` (the lifecycle's stop
/// beacon) becomes readable first or nothing changes for `stall` (zero:
/// no limit).
fn wait_writable(fd: RawFd, stop: RawFd, stall: Duration) -> io::Result<()> {
    let mut fds = [
        sys::pollfd(Some(fd), sys::POLLOUT),
        sys::pollfd(Some(stop), POLLIN),
    ];
    let timeout = (!stall.is_zero()).then_some(stall);
    match sys::poll(&mut fds, sys::duration_ms(timeout)) {
        Ok(0) => Err(io::ErrorKind::TimedOut.into()),
        Ok(_) if fds[1].revents != 0 => Err(io::Error::other("shutdown grace period over")),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether an idle pooled connection is still open: nothing to read and
/// no end of stream.
fn is_alive(stream: &TcpStream) -> bool {
    sys::nothing_to_read(stream.as_raw_fd())
}

/// Reads and discards until the client closes, for at most [`LINGER`],
/// or until `stop` (the lifecycle's stop beacon) is readable.
fn linger(client: &TcpStream, stop: RawFd) {
    let started = std::time::Instant::now();
    let mut scratch = [0u8; 4096];
    while let Some(left) = LINGER
        .checked_sub(started.elapsed())
        .filter(|d| !d.is_zero())
    {
        let mut fds = [
            sys::pollfd(Some(client.as_raw_fd()), POLLIN),
            sys::pollfd(Some(stop), POLLIN),
        ];
        match sys::poll(&mut fds, sys::duration_ms(Some(left))) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        if fds[1].revents != 0 {
            return;
        }
        if fds[0].revents == 0 {
            continue;
        }
        // Readable: data or end of stream is there, so this does not
        // block (the timeout is a safeguard).
        if client.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*client).read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}
