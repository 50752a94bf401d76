//! The one drive loop: everything between a connection's sockets and its
//! protocol state machine, decided once, for every runtime.
//!
//! A [`Driver`] owns one client connection's [`Connection`] together with
//! the bookkeeping every runtime used to copy: the input buffers of both
//! sides and how much of each the connection consumed, end-of-stream and
//! failure flags, offers the connection refused (stalls), the results
//! waiting for the current drain to end, the guard against a timer left
//! in the past, the hand-off to a tunnel relay, and the trace. A runtime
//! is left with I/O: it performs the [`Op`]s the driver gives and reports
//! what happened as [`Input`]s.
//!
//! # The loop
//!
//! ```text
//! loop {
//!     match driver.poll() {
//!         Op::Write { to, head, body } => write both; on failure handle(Failed(to)),
//!         Op::Resolve { .. } / Op::Connect { .. } => do it; handle(Resolved / Connected / Timeout),
//!         Op::Release { .. } => pool or drop the upstream socket,
//!         Op::Relay(r) => relay both ways; handle(TunnelEnded(end)),
//!         Op::Verify(job) => job.run() on a thread of its own; handle(Verified(ok)),
//!         Op::Log(record) => write it,
//!         Op::Close(_) => shut down the client's write side,
//!         Op::Wait(w) => wait for w.client / w.upstream / w.deadline; then
//!             read_from(side, ..), handle(Forwarded(n)) or handle(Timeout),
//!         Op::Done { linger } => break,
//!     }
//! }
//! ```
//!
//! [`handle`](Driver::handle) and [`read_from`](Driver::read_from) may be
//! called at any time (a write that fails in the middle of a drain, a
//! shutdown signal): an input that arrives while the connection still has
//! actions queued waits in the driver until they are all performed, so
//! the connection's contract (drain after every input) holds whatever the
//! runtime does. Time comes only with inputs: each one's `now` is the time
//! the core sees until the next.
//!
//! The replay of golden traces ([`crate::trace::replay`]), the core's
//! tests and the whole-connection fuzz target run this same code, so a
//! trace checks the bookkeeping as well as the protocol.
//!
//! ```
//! use proxy_core::driver::{Accepted, Driver, Input, Op};
//! use proxy_core::{Config, ConnId, Instant, Role, Shared, Side, WallAnchor};
//!
//! let (shared, _report) = Shared::new(Config::default(), Default::default()).unwrap();
//! let accepted = Accepted {
//!     conn: ConnId(1),
//!     client: "127.0.0.1:40000".parse().unwrap(),
//!     role: Role::Proxy,
//!     anchor: WallAnchor::default(),
//!     at: Instant::ZERO,
//! };
//! let mut driver: Driver = Driver::new(accepted, shared, false);
//! assert!(matches!(driver.poll(), Op::Wait(w) if w.client));
//!
//! // 192.0.2.7 is documentation space, not private, so the default
//! // policy lets it go; an IP literal needs no resolution.
//! let request = b"GET http://192.0.2.7/ HTTP/1.1\r\nHost: 192.0.2.7\r\n\r\n";
//! driver.handle(Instant::from_micros(10), Input::Read(Side::Client, request[..].into()));
//! assert!(matches!(driver.poll(), Op::Connect { .. }));
//! ```

mod input;
mod op;
pub(crate) mod record;

pub use input::{Bytes, Input};
pub use op::{Op, Relay, UpstreamWait, Wait};

use crate::buf::{Heap, InBuf, Storage};
use crate::conn::{Action, Connection, Next};
use crate::id::{ConnId, QueryId, UpstreamId};
use crate::io::TunnelEndReason;
use crate::io::{CloseReason, ConnectError, Connected, ResolveError, Role, Side, TunnelEnd};
use crate::log::AccessRecord;
use crate::policy::auth::VerifyJob;
use crate::shared::Shared;
use crate::time::{Instant, WallAnchor};
use record::{Output, Step, Trace};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// Without the `faults` feature no fault exists: `has_fault` is always
/// false and the checks compile away.
#[cfg(not(feature = "faults"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    DropFiredTimer,
    KeepConsumed,
    PassOneMore,
}

/// Most unconsumed bytes held per side; a side is not read while its
/// buffer holds this many.
pub const BUF_CAP: usize = 64 * 1024;

/// How long after handling a deadline the core left in place (it never
/// should) the driver asks to be woken for it again, rather than spin.
const TIMER_BACKOFF: Duration = Duration::from_millis(50);

/// A connection as it was accepted: who, where, when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The connection's id.
    pub conn: ConnId,
    /// The client's address.
    pub client: SocketAddr,
    /// What the listener it came in on is for.
    #[serde(default)]
    pub role: Role,
    /// Ties the runtime's clock to the calendar (for `Date`).
    pub anchor: WallAnchor,
    /// When it was accepted.
    pub at: Instant,
}

/// One client connection, driven. See the module docs.
#[derive(Debug)]
pub struct Driver<S: Storage = Heap> {
    conn: Connection,
    /// The time of the latest input: what the connection is told.
    now: Instant,
    client: Inlet<S>,
    upstream: Option<Upstream<S>>,
    /// The upstream the latest `Connect` op asked for, until it is
    /// answered.
    connecting: Option<UpstreamId>,
    /// The bytes of the `Write` op last given out (its `head`).
    out: Vec<u8>,
    /// The stored body of the `Write` op last given out, if it had one.
    stored: Option<Arc<[u8]>>,
    /// Inputs waiting for the current drain to end.
    pending: VecDeque<Pending>,
    state: State,
    /// When the connection's timers were last handled: a deadline at or
    /// before this has fired already.
    fired_at: Option<Instant>,
    shutdown: Shutdown,
    trace: Option<Box<Trace>>,
    /// A bug put in on purpose, to show that replay catches it.
    #[cfg(feature = "faults")]
    fault: Option<Fault>,
}

/// Bugs a driver can be given on purpose (feature `faults`), so a test
/// can show that replaying a trace tells a broken driver from a sound one.
#[cfg(feature = "faults")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Timers that fire are dropped instead of handled.
    DropFiredTimer,
    /// What the connection consumed is never dropped from the buffers.
    KeepConsumed,
    /// Bytes passed on from the upstream run one byte past the range the
    /// connection gave, when the buffer holds one: an extra byte after a
    /// body, for the `connection` fuzz target to find.
    PassOneMore,
}

/// One side's bytes on their way into the connection.
#[derive(Debug)]
struct Inlet<S: Storage> {
    /// Read and not yet consumed; during a drain, the consumed prefix
    /// too (`Pass` actions point into it).
    buf: InBuf<S>,
    /// How much of `buf` the current drain's input consumed.
    consumed: usize,
    /// The side reached end of stream.
    eof: bool,
    /// ... and the connection was told.
    eof_reported: bool,
    /// A read or write failed: neither is tried again.
    dead: bool,
    /// The connection took nothing of the last offer although it wanted
    /// data: no new offer until something changes.
    stalled: bool,
}

#[derive(Debug)]
struct Upstream<S: Storage> {
    id: UpstreamId,
    inlet: Inlet<S>,
    /// The connection released it in the current drain; it goes when the
    /// drain ends (a `Pass` before the release may still point into its
    /// buffer).
    released: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Performing actions and waiting for inputs.
    Running,
    /// A relay is under way: nothing happens until it ends.
    Relaying,
    /// The connection closed: perform what it queued, then done.
    Closing,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Shutdown {
    No,
    Begun,
    Forced,
}

/// An input held until the drain in progress is over.
#[derive(Debug)]
enum Pending {
    ClientError,
    UpstreamError(UpstreamId),
    Forwarded(UpstreamId, u64),
    Resolved(QueryId, Result<Vec<IpAddr>, ResolveError>),
    Connected(UpstreamId, Result<Connected, ConnectError>),
    TunnelEnded(TunnelEnd),
    Verified(bool),
    Timeout,
    Shutdown,
    ForceShutdown,
}

/// The bytes a write carries after the head the connection made.
#[derive(Debug)]
enum Body {
    None,
    /// Passed bytes: whose, and where in that side's buffer.
    Passed(Side, Range<usize>),
    /// Part of a stored response body.
    Stored(Arc<[u8]>, Range<usize>),
}

impl Body {
    fn is_empty(&self) -> bool {
        match self {
            Body::None => true,
            Body::Passed(_, r) => r.is_empty(),
            Body::Stored(_, r) => r.is_empty(),
        }
    }
}

/// An op decided but not yet handed out (it borrows nothing, so deciding
/// can loop freely).
enum Planned<S: Storage> {
    Write { to: Side, body: Body },
    Resolve(QueryId, String),
    Connect(UpstreamId, SocketAddr, bool),
    Release(UpstreamId, bool),
    Relay(Relay<S>),
    Verify(VerifyJob),
    Log(Box<AccessRecord>),
    Close(CloseReason),
    Wait(Wait),
    Done,
}

impl<S: Storage> Inlet<S> {
    fn new() -> Self {
        Inlet {
            buf: InBuf::default(),
            consumed: 0,
            eof: false,
            eof_reported: false,
            dead: false,
            stalled: false,
        }
    }

    /// Drops what the drain that just ended consumed.
    fn settle(&mut self) {
        self.buf.consume(std::mem::take(&mut self.consumed));
        if self.buf.is_empty() {
            self.buf.release();
        }
    }

    /// Whether to read more from this side.
    fn readable(&self) -> bool {
        !self.eof && !self.dead && self.buf.len() < BUF_CAP
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Client => Side::Upstream,
        Side::Upstream => Side::Client,
    }
}

impl<S: Storage> Driver<S> {
    /// Drives a newly accepted connection; records a [`Trace`] if
    /// `record`. Over a connection cap it answers 503 at once: poll it.
    pub fn new(accepted: Accepted, shared: Arc<Shared>, record: bool) -> Self {
        let trace = record.then(|| {
            let snapshot = shared.snapshot();
            Box::new(Trace {
                note: String::new(),
                config: (*snapshot.config).clone(),
                sources: (*snapshot.sources).clone(),
                accepted,
                opening: Vec::new(),
                steps: Vec::new(),
            })
        });
        let conn = Connection::new(
            accepted.conn,
            accepted.client,
            shared,
            accepted.anchor,
            accepted.at,
            accepted.role,
        );
        Driver {
            conn,
            now: accepted.at,
            client: Inlet::new(),
            upstream: None,
            connecting: None,
            out: Vec::new(),
            stored: None,
            pending: VecDeque::new(),
            state: State::Running,
            fired_at: None,
            shutdown: Shutdown::No,
            trace,
            #[cfg(feature = "faults")]
            fault: None,
        }
    }

    /// Gives the driver a bug on purpose (see [`Fault`]).
    #[cfg(feature = "faults")]
    pub fn break_on_purpose(&mut self, fault: Fault) {
        self.fault = Some(fault);
    }

    #[cfg(feature = "faults")]
    fn has_fault(&self, fault: Fault) -> bool {
        self.fault == Some(fault)
    }

    #[cfg(not(feature = "faults"))]
    fn has_fault(&self, _: Fault) -> bool {
        false
    }

    /// The trace recorded so far, if recording.
    pub fn into_trace(self) -> Option<Trace> {
        self.trace.map(|t| *t)
    }

    /// Whether the driver is finished ([`Op::Done`] was given).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The connection, for tests of the protocol.
    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    // ----- inputs -----------------------------------------------------------

    /// Something happened. See [`Input`] for what each kind means.
    pub fn handle(&mut self, now: Instant, input: Input) {
        self.record_input(now, || input.clone());
        self.now = self.now.max(now);
        // Things changed: offers refused before may be taken now.
        self.client.stalled = false;
        if let Some(up) = self.upstream.as_mut() {
            up.inlet.stalled = false;
        }
        match input {
            Input::Read(side, bytes) => {
                if let Some(inlet) = self.inlet(side) {
                    inlet.buf.extend(&bytes.0);
                }
            }
            Input::Eof(side) => {
                if let Some(inlet) = self.inlet(side) {
                    inlet.eof = true;
                }
            }
            Input::Failed(side) => self.fail(side),
            Input::Forwarded(n) => {
                if let Some(id) = self.current_upstream() {
                    self.pending.push_back(Pending::Forwarded(id, n));
                }
            }
            Input::Resolved(query, result) => {
                self.pending.push_back(Pending::Resolved(query, result));
            }
            Input::Connected(id, result) => {
                if result.is_ok() && self.connecting == Some(id) {
                    self.upstream = Some(Upstream {
                        id,
                        inlet: Inlet::new(),
                        released: false,
                    });
                }
                if self.connecting == Some(id) {
                    self.connecting = None;
                }
                self.pending.push_back(Pending::Connected(id, result));
            }
            Input::TunnelEnded(end) => {
                if self.state == State::Relaying {
                    self.state = State::Running;
                }
                self.pending.push_back(Pending::TunnelEnded(end));
            }
            Input::Verified(ok) => self.pending.push_back(Pending::Verified(ok)),
            Input::Timeout => self.pending.push_back(Pending::Timeout),
            Input::Shutdown => {
                if self.shutdown == Shutdown::No {
                    self.shutdown = Shutdown::Begun;
                    self.pending.push_back(Pending::Shutdown);
                }
            }
            Input::ForceShutdown => {
                if self.shutdown != Shutdown::Forced {
                    self.shutdown = Shutdown::Forced;
                    self.pending.push_back(Pending::ForceShutdown);
                }
            }
        }
    }

    /// Reads from `side` straight into its buffer: `read` is given the
    /// room and says how many bytes it put there (a non-blocking read
    /// from the socket). The same as [`handle`](Driver::handle)`(now,
    /// Input::Read(..))` with those bytes, or `Eof` for `Ok(0)`, or
    /// `Failed` for an error other than `WouldBlock` or `Interrupted`
    /// (those change nothing; wait and try again). Returns what `read`
    /// returned.
    ///
    /// The buffer's storage is taken for the read and given back when
    /// nothing came and nothing is held, so a connection waiting for its
    /// client holds no buffer.
    pub fn read_from(
        &mut self,
        now: Instant,
        side: Side,
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let Some(inlet) = self.inlet(side) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let held = inlet.buf.len();
        let result = read(inlet.buf.room());
        match &result {
            Ok(0) => {
                inlet.buf.release();
                self.handle(now, Input::Eof(side));
            }
            Ok(n) => {
                let n = *n;
                inlet.buf.commit(n);
                let got = held..held + n;
                if self.trace.is_some() {
                    let bytes = self.inlet(side).map(|i| Bytes::from(&i.buf.bytes()[got]));
                    self.record_input(now, || Input::Read(side, bytes.unwrap_or_default()));
                }
                self.now = self.now.max(now);
                self.client.stalled = false;
                if let Some(up) = self.upstream.as_mut() {
                    up.inlet.stalled = false;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                inlet.buf.release();
            }
            Err(_) => {
                inlet.buf.release();
                self.handle(now, Input::Failed(side));
            }
        }
        result
    }

    /// The inlet of `side`: the client's, or the current upstream's.
    fn inlet(&mut self, side: Side) -> Option<&mut Inlet<S>> {
        match side {
            Side::Client => Some(&mut self.client),
            Side::Upstream => self
                .upstream
                .as_mut()
                .filter(|u| !u.released)
                .map(|u| &mut u.inlet),
        }
    }

    fn current_upstream(&self) -> Option<UpstreamId> {
        self.upstream.as_ref().filter(|u| !u.released).map(|u| u.id)
    }

    /// `side` failed: it is used no more, and the connection hears of it
    /// once the drain is over.
    fn fail(&mut self, side: Side) {
        match side {
            Side::Client if !self.client.dead => {
                self.client.dead = true;
                self.pending.push_back(Pending::ClientError);
            }
            Side::Upstream => {
                if let Some(up) = self.upstream.as_mut().filter(|u| !u.released) {
                    if !up.inlet.dead {
                        up.inlet.dead = true;
                        self.pending.push_back(Pending::UpstreamError(up.id));
                    }
                }
            }
            Side::Client => {}
        }
    }

    // ----- outputs ----------------------------------------------------------

    /// The next operation. Perform it before polling again.
    pub fn poll(&mut self) -> Op<'_, S> {
        let planned = self.plan();
        self.record_output(&planned);
        match planned {
            Planned::Write { to, body } => {
                let body = match body {
                    Body::Passed(from, range) => self.bytes_of(from, range),
                    Body::Stored(bytes, range) => {
                        self.stored.insert(bytes).get(range).unwrap_or_default()
                    }
                    Body::None => &[],
                };
                Op::Write {
                    to,
                    head: &self.out,
                    body,
                }
            }
            Planned::Resolve(query, host) => Op::Resolve {
                query,
                host,
                deadline: self.conn.poll_timeout(),
            },
            Planned::Connect(upstream, addr, allow_pooled) => Op::Connect {
                upstream,
                addr,
                allow_pooled,
                deadline: self.conn.poll_timeout(),
            },
            Planned::Release(upstream, reuse) => Op::Release { upstream, reuse },
            Planned::Relay(relay) => Op::Relay(Box::new(relay)),
            Planned::Verify(job) => Op::Verify(job),
            Planned::Log(record) => Op::Log(record),
            Planned::Close(reason) => Op::Close(reason),
            Planned::Wait(wait) => Op::Wait(wait),
            Planned::Done => Op::Done {
                linger: self.linger(),
            },
        }
    }

    /// Whether the client may still be sending when we close: the
    /// connection closed it (rather than the client) and it still works.
    fn linger(&self) -> bool {
        self.conn.is_closed() && !self.client.eof && !self.client.dead
    }

    fn bytes_of(&self, side: Side, range: Range<usize>) -> &[u8] {
        let buf = match side {
            Side::Client => Some(&self.client.buf),
            Side::Upstream => self.upstream.as_ref().map(|u| &u.inlet.buf),
        };
        let Some(bytes) = buf.map(|b| b.bytes()) else {
            return &[];
        };
        let mut range = range;
        if side == Side::Upstream && self.has_fault(Fault::PassOneMore) {
            range.end = (range.end + 1).min(bytes.len().max(range.end));
        }
        // The connection only passes what it consumed of what it was
        // offered, which is still held: the range is always there.
        bytes.get(range).unwrap_or_default()
    }

    fn plan(&mut self) -> Planned<S> {
        self.out.clear();
        self.stored = None;
        loop {
            match self.state {
                State::Done => return Planned::Done,
                // The runtime is to report the relay's end first.
                State::Relaying => {
                    return Planned::Wait(Wait {
                        client: false,
                        upstream: None,
                        deadline: None,
                    })
                }
                State::Running | State::Closing => {}
            }
            if let Some(planned) = self.next_action() {
                return planned;
            }
            // The drain is over.
            self.settle();
            if self.state == State::Closing {
                self.state = State::Done;
                return Planned::Done;
            }
            if self.timer_due() {
                self.fire_timer();
                continue;
            }
            if let Some(p) = self.pending.pop_front() {
                self.feed(p);
                continue;
            }
            if self.offer() {
                continue;
            }
            return self.plan_wait();
        }
    }

    /// The connection's next action as an op, skipping what needs no op.
    /// `None` once none is queued.
    fn next_action(&mut self) -> Option<Planned<S>> {
        loop {
            let action = self.conn.poll_action(&mut self.out)?;
            let planned = match action {
                Action::Write { to, .. } => self.gather(to, Body::None),
                Action::Pass { from, offset, len } => {
                    self.gather(other(from), Body::Passed(from, offset..offset + len))
                }
                Action::Stored { body, range } => {
                    self.gather(Side::Client, Body::Stored(body, range))
                }
                Action::Resolve { query, host } => Some(Planned::Resolve(query, host)),
                Action::Connect {
                    upstream,
                    addr,
                    allow_pooled,
                } => {
                    // Whatever was held before is finished with.
                    self.upstream = None;
                    self.connecting = Some(upstream);
                    Some(Planned::Connect(upstream, addr, allow_pooled))
                }
                Action::Release { upstream, reuse } => self.release(upstream, reuse),
                Action::Tunnel {
                    upstream,
                    idle_timeout,
                } => self.relay(upstream, idle_timeout),
                Action::Close { reason } => {
                    self.state = State::Closing;
                    self.pending.clear();
                    Some(Planned::Close(reason))
                }
                Action::Verify(job) => Some(Planned::Verify(job)),
                Action::Log(record) => Some(Planned::Log(record)),
            };
            if planned.is_some() {
                return planned;
            }
        }
    }

    /// A write to `to`: the bytes the connection just made (in `out`),
    /// then those of further writes to the same side, then the passed
    /// bytes that follow them, as one op. `None` if `to` is gone.
    fn gather(&mut self, to: Side, mut body: Body) -> Option<Planned<S>> {
        while let Body::None = body {
            match self.conn.peek_action() {
                Some(Next::Write(side)) if side == to => {
                    let _ = self.conn.poll_action(&mut self.out);
                }
                Some(Next::Pass(from)) if other(from) == to => {
                    if let Some(Action::Pass { from, offset, len }) =
                        self.conn.poll_action(&mut self.out)
                    {
                        body = Body::Passed(from, offset..offset + len);
                    }
                }
                Some(Next::Stored) if to == Side::Client => {
                    if let Some(Action::Stored { body: bytes, range }) =
                        self.conn.poll_action(&mut self.out)
                    {
                        body = Body::Stored(bytes, range);
                    }
                }
                _ => break,
            }
        }
        let gone = match to {
            Side::Client => self.client.dead,
            Side::Upstream => self
                .upstream
                .as_ref()
                .map_or(true, |u| u.inlet.dead || u.released),
        };
        if gone || (self.out.is_empty() && body.is_empty()) {
            self.out.clear();
            return None;
        }
        Some(Planned::Write { to, body })
    }

    fn release(&mut self, id: UpstreamId, reuse: bool) -> Option<Planned<S>> {
        // Only a connection that was established is the runtime's to
        // release.
        let up = self
            .upstream
            .as_mut()
            .filter(|u| u.id == id && !u.released)?;
        up.released = true;
        let i = &up.inlet;
        let unread = i.buf.len() > i.consumed;
        Some(Planned::Release(id, reuse && !unread && !i.eof && !i.dead))
    }

    /// Hands the connection to a relay, with what each side already sent.
    fn relay(&mut self, id: UpstreamId, idle_timeout: Duration) -> Option<Planned<S>> {
        // Nothing is passed after a tunnel starts: what this drain
        // consumed can go now, and the rest goes to the relay.
        self.client.settle();
        let usable = !self.client.dead
            && self
                .upstream
                .as_ref()
                .is_some_and(|u| u.id == id && !u.released && !u.inlet.dead);
        let up = match self.upstream.as_mut() {
            Some(up) if usable => up,
            _ => {
                self.pending.push_back(Pending::TunnelEnded(TunnelEnd {
                    to_upstream: 0,
                    to_client: 0,
                    reason: TunnelEndReason::Error,
                }));
                return None;
            }
        };
        up.inlet.settle();
        let relay = Relay {
            upstream: id,
            idle_timeout,
            to_upstream: std::mem::take(&mut self.client.buf),
            to_client: std::mem::take(&mut up.inlet.buf),
            client_eof: self.client.eof,
            upstream_eof: up.inlet.eof,
        };
        // Neither side is read here again: the relay has both sockets.
        for inlet in [&mut self.client, &mut up.inlet] {
            inlet.eof = true;
            inlet.eof_reported = true;
        }
        // A tunnel may idle for hours: what only exchanges needed goes.
        if self.pending.is_empty() {
            self.pending = VecDeque::new();
        }
        self.out = Vec::new();
        self.state = State::Relaying;
        Some(Planned::Relay(relay))
    }

    /// The drain is over: drop what it consumed, and an upstream it
    /// released.
    fn settle(&mut self) {
        if self.has_fault(Fault::KeepConsumed) {
            self.client.consumed = 0;
        }
        self.client.settle();
        match self.upstream.as_mut() {
            Some(up) if up.released => self.upstream = None,
            Some(up) => up.inlet.settle(),
            None => {}
        }
    }

    /// A deadline has passed that was not handled yet.
    fn timer_due(&self) -> bool {
        self.conn
            .poll_timeout()
            .is_some_and(|d| d <= self.now && self.fired_at.map_or(true, |f| d > f))
    }

    fn fire_timer(&mut self) {
        self.fired_at = Some(self.now);
        if !self.has_fault(Fault::DropFiredTimer) {
            self.conn.handle_timeout(self.now);
        }
    }

    fn feed(&mut self, p: Pending) {
        let now = self.now;
        let c = &mut self.conn;
        match p {
            Pending::ClientError => c.handle_client_error(now),
            Pending::UpstreamError(id) => c.handle_upstream_error(now, id, ConnectError::Reset),
            Pending::Forwarded(id, n) => c.handle_upstream_forwarded(now, id, n),
            Pending::Resolved(query, result) => {
                c.handle_resolved(now, query, result.as_deref().map_err(Clone::clone))
            }
            Pending::Connected(id, result) => c.handle_connected(now, id, result),
            Pending::TunnelEnded(end) => c.handle_tunnel_end(now, end),
            Pending::Verified(ok) => c.handle_verified(now, ok),
            // Spurious or early wake-ups do nothing (the connection acts
            // only on timers that are due).
            Pending::Timeout => self.fire_timer(),
            Pending::Shutdown => c.begin_shutdown(now),
            Pending::ForceShutdown => c.force_shutdown(now),
        }
    }

    /// Offers held bytes, or reports an end of stream, if the connection
    /// is ready for it. True if it did.
    fn offer(&mut self) -> bool {
        let now = self.now;
        let c = &mut self.client;
        if !c.dead && !c.stalled && !c.buf.is_empty() && self.conn.wants_client_data() {
            let n = self.conn.handle_client_data(now, c.buf.bytes());
            debug_assert!(n > 0, "the connection wanted client bytes but took none");
            c.consumed = n.min(c.buf.len());
            c.stalled = n == 0;
            return true;
        }
        let wants_upstream = self.conn.wants_upstream_data();
        if let Some(up) = self.upstream.as_mut().filter(|u| !u.released) {
            let i = &mut up.inlet;
            if !i.dead && !i.stalled && !i.buf.is_empty() && wants_upstream {
                let n = self.conn.handle_upstream_data(now, up.id, i.buf.bytes());
                debug_assert!(n > 0, "the connection wanted upstream bytes but took none");
                i.consumed = n.min(i.buf.len());
                i.stalled = n == 0;
                return true;
            }
        }
        let c = &mut self.client;
        if c.eof && !c.eof_reported && !c.dead && c.buf.is_empty() {
            c.eof_reported = true;
            self.conn.handle_client_eof(now);
            return true;
        }
        if let Some(up) = self.upstream.as_mut().filter(|u| !u.released) {
            let i = &mut up.inlet;
            // Held bytes the connection will not take (an answer came
            // early) must not hold back the news that no more will come.
            if i.eof && !i.eof_reported && !i.dead && (i.buf.is_empty() || !wants_upstream) {
                i.eof_reported = true;
                self.conn.handle_upstream_eof(now, up.id);
                return true;
            }
        }
        false
    }

    fn plan_wait(&mut self) -> Planned<S> {
        let client = self.client.readable();
        let client_dead = self.client.dead;
        let upstream = self
            .upstream
            .as_ref()
            .filter(|u| !u.released && u.inlet.readable())
            .map(|u| UpstreamWait {
                id: u.id,
                forward: if u.inlet.buf.is_empty() && !client_dead {
                    self.conn.forwardable_upstream()
                } else {
                    0
                },
            });
        // A deadline the connection left in place after handling it
        // (it never should) is retried gently instead of in a spin.
        let deadline = self.conn.poll_timeout().map(|d| match self.fired_at {
            Some(f) if d <= f => f + TIMER_BACKOFF,
            _ => d,
        });
        if !client && upstream.is_none() && deadline.is_none() {
            // Nothing can happen any more; the connection never leaves
            // itself so, but waiting would be forever.
            debug_assert!(false, "nothing to wait for in {:?}", self.conn);
            self.state = State::Done;
            return Planned::Done;
        }
        Planned::Wait(Wait {
            client,
            upstream,
            deadline,
        })
    }

    // ----- recording --------------------------------------------------------

    fn record_input(&mut self, at: Instant, input: impl FnOnce() -> Input) {
        if let Some(t) = self.trace.as_mut() {
            t.steps.push(Step {
                at,
                input: input(),
                ops: Vec::new(),
            });
        }
    }

    fn record_output(&mut self, planned: &Planned<S>) {
        if self.trace.is_none() {
            return;
        }
        let output = match planned {
            Planned::Write { to, body } => {
                let mut bytes = self.out.clone();
                match body {
                    Body::Passed(from, range) => {
                        bytes.extend_from_slice(self.bytes_of(*from, range.clone()))
                    }
                    Body::Stored(stored, range) => {
                        bytes.extend_from_slice(stored.get(range.clone()).unwrap_or_default())
                    }
                    Body::None => {}
                }
                Output::Write(*to, Bytes(bytes))
            }
            Planned::Resolve(q, host) => Output::Resolve(*q, host.clone()),
            Planned::Connect(upstream, addr, allow_pooled) => Output::Connect {
                upstream: *upstream,
                addr: *addr,
                allow_pooled: *allow_pooled,
            },
            Planned::Release(id, reuse) => Output::Release(*id, *reuse),
            Planned::Relay(r) => Output::Relay {
                upstream: r.upstream,
                idle_timeout: r.idle_timeout,
                to_upstream: Bytes::from(r.to_upstream.bytes()),
                to_client: Bytes::from(r.to_client.bytes()),
            },
            Planned::Verify(job) => Output::Verify(job.user().to_owned()),
            Planned::Log(record) => Output::Log(record.clone()),
            Planned::Close(reason) => Output::Close(*reason),
            Planned::Wait(w) => Output::Wait {
                client: w.client,
                upstream: w.upstream.map(|u| (u.id, u.forward)),
                deadline: w.deadline,
            },
            Planned::Done => Output::Done(self.linger()),
        };
        if let Some(t) = self.trace.as_mut() {
            match t.steps.last_mut() {
                Some(step) => step.ops.push(output),
                None => t.opening.push(output),
            }
        }
    }
}
