//! One client connection: any number of requests on it, each forwarded to
//! an upstream, or one CONNECT tunnel.
//!
//! # Driving a connection
//!
//! A [`Connection`] has four kinds of methods, in the manner of quinn-proto:
//!
//! - **getters** on `&self`: [`wants_client_data`](Connection::wants_client_data),
//!   [`wants_upstream_data`](Connection::wants_upstream_data),
//!   [`is_closed`](Connection::is_closed);
//! - **inputs** `handle_*(now, ..)`: bytes, end of stream, errors, resolution
//!   and connect results, tunnel ends, timeouts;
//! - **commands**: [`begin_shutdown`](Connection::begin_shutdown);
//! - **outputs**: [`poll_action`](Connection::poll_action) and
//!   [`poll_timeout`](Connection::poll_timeout).
//!
//! The contract, after every input:
//!
//! 1. Drain [`poll_action`](Connection::poll_action) until it returns `None`,
//!    performing each [`Action`] in order. `Pass` actions refer to the slice
//!    given to the most recent `handle_*_data` call for their side, so keep
//!    that slice until the drain is done; then drop the consumed prefix.
//! 2. If you hold unconsumed bytes from a side and the connection
//!    [wants](Connection::wants_client_data) that side's data, offer them
//!    again (a new call with all unconsumed bytes). While it wants a side's
//!    data, the connection consumes at least one byte of any non-empty
//!    input, so this loop ends.
//! 3. Arm one timer for [`poll_timeout`](Connection::poll_timeout) and call
//!    [`handle_timeout`](Connection::handle_timeout) when it fires (spurious
//!    calls are harmless).
//!
//! Report the client's end of stream with
//! [`handle_client_eof`](Connection::handle_client_eof) only once every
//! byte read before it has been consumed, so the connection knows no
//! pipelined request is still waiting in your buffer.
//!
//! # Moving response bodies without the core
//!
//! While a response body streams, the core has nothing to do with its
//! bytes but count them. When you hold no unconsumed upstream bytes,
//! [`forwardable_upstream`](Connection::forwardable_upstream) says how
//! many of the upstream's next bytes you may send straight to the client
//! without reading them into memory (with splice(2), say); report what
//! you moved with
//! [`handle_upstream_forwarded`](Connection::handle_upstream_forwarded),
//! an input like any other. Offering the same bytes with
//! `handle_upstream_data` instead is always correct too: the two give the
//! same bytes to the client, the same records and the same state.
//!
//! ```
//! use proxy_core::{Action, Config, ConnId, Connection, Instant, Shared, Side, WallAnchor};
//!
//! // The default policy: loopback clients, no private destinations
//! // (192.0.2.7 is documentation space, not private, so it may go).
//! let (shared, _report) = Shared::new(Config::default(), Default::default()).unwrap();
//! let mut conn = Connection::new(
//!     ConnId(1),
//!     "127.0.0.1:40000".parse().unwrap(),
//!     shared,
//!     WallAnchor::default(),
//!     Instant::ZERO,
//! );
//! let request = b"GET http://192.0.2.7/ HTTP/1.1\r\nHost: 192.0.2.7\r\n\r\n";
//! let consumed = conn.handle_client_data(Instant::from_micros(10), request);
//! assert_eq!(consumed, request.len());
//! let mut out = Vec::new();
//! let mut actions = Vec::new();
//! while let Some(action) = conn.poll_action(&mut out) {
//!     actions.push(action);
//! }
//! // An IP literal needs no resolution: the core asks for a connection.
//! assert!(matches!(actions[0], Action::Connect { .. }));
//! assert!(conn.poll_timeout().is_some());
//! ```
//!
//! # States
//!
//! ```text
//!            +--------------------------------------------+
//!            v                                            |
//!   Head --(head)--> Exchange: Resolving -> Connecting -> Forwarding --(done, persistent)
//!    |                  |                       |             |
//!    |                  |             (CONNECT) +--> Tunnel   +--(101)--> Tunnel
//!    |                  +--(error page)--> Head or Closed      |
//!    +--(eof, idle timeout, bad head)--> Closed                 +--(not persistent)--> Closed
//! ```
//!
//! All transitions live in `state.rs`.

mod exchange;
mod state;
#[cfg(test)]
mod tests;

use crate::config::Config;
use crate::http::date::DateCache;
use crate::io::{Action, ConnId, Role, Side};
use crate::metrics::UpstreamInUse;
use crate::policy::caps::ConnPermit;
use crate::policy::Policy;
use crate::shared::Shared;
use crate::time::{Instant, TimerTable, WallAnchor};
use exchange::Exchange;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

/// The state machine for one client connection. See the module docs for
/// how to drive it.
#[derive(Debug)]
pub struct Connection {
    id: ConnId,
    client: SocketAddr,
    shared: Arc<Shared>,
    /// The configuration and policy in force for the current request,
    /// refreshed from `shared` at a request head after a reload.
    config: Arc<Config>,
    policy: Arc<Policy>,
    /// The [`Shared::generation`] they came from.
    generation: u64,
    /// This connection's place under the connection caps.
    _permit: Option<ConnPermit>,
    /// What the listener it came in on is for.
    role: Role,
    /// Counts the upstream connection serving the exchange, from its
    /// connect to the exchange's log record.
    upstream_in_use: Option<UpstreamInUse>,
    anchor: WallAnchor,
    phase: Phase,
    /// The request head being read, copied out of the runtime's buffer
    /// only when it arrives in pieces.
    head: HeadBuf,
    timers: TimerTable,
    outbox: Outbox,
    /// The `Date` for responses that come without one.
    dates: DateCache,
    next_upstream: u64,
    next_query: u64,
    /// The client sent FIN and every byte before it has been consumed.
    client_eof: bool,
    /// Finish what is in flight, then close.
    shutting_down: bool,
    /// Scratch space for body segments, kept to avoid an allocation per read.
    segments: Vec<crate::http::framing::Segment>,
}

#[derive(Debug)]
enum Phase {
    /// Waiting for, or reading, a request head.
    Head,
    /// Serving one request.
    Exchange(Box<Exchange>),
    /// The runtime is relaying bytes both ways; waiting for its report.
    Tunnel(Box<Exchange>),
    /// A `Close` has been queued; nothing more happens.
    Closed,
}

#[derive(Debug, Default)]
struct HeadBuf {
    buf: Vec<u8>,
    /// How far `find_head_end` already searched.
    scanned: usize,
    /// When the first byte of this head arrived.
    started: Option<Instant>,
}

/// The actions queued for the runtime. Kept apart from the rest of the
/// connection so that a head can be written straight into it while it
/// borrows the configuration and the exchange.
#[derive(Debug, Default)]
struct Outbox {
    queue: VecDeque<Queued>,
    /// Bytes of queued `Write`s, in queue order, from `staged_pos` on.
    staged: Vec<u8>,
    staged_pos: usize,
}

#[derive(Debug)]
enum Queued {
    Action(Action),
    Write { to: Side, len: usize },
}

impl Connection {
    /// A new connection from `client`, accepted at `now`. `anchor` ties
    /// `now` to the calendar for the `Date` header. Over a connection cap,
    /// the connection answers 503 at once and closes: drain its actions.
    pub fn new(
        id: ConnId,
        client: SocketAddr,
        shared: Arc<Shared>,
        anchor: WallAnchor,
        now: Instant,
    ) -> Self {
        Connection::with_role(id, client, shared, anchor, now, Role::Proxy)
    }

    /// A new connection accepted on a listener with `role`.
    pub fn with_role(
        id: ConnId,
        client: SocketAddr,
        shared: Arc<Shared>,
        anchor: WallAnchor,
        now: Instant,
        role: Role,
    ) -> Self {
        let generation = shared.generation();
        let snapshot = shared.snapshot();
        let permit = shared.caps().try_acquire(client.ip());
        let mut conn = Connection {
            id,
            client,
            config: snapshot.config.clone(),
            policy: snapshot.policy.clone(),
            generation,
            shared,
            _permit: None,
            role,
            upstream_in_use: None,
            anchor,
            phase: Phase::Head,
            head: HeadBuf::default(),
            timers: TimerTable::default(),
            outbox: Outbox::default(),
            dates: DateCache::default(),
            next_upstream: 0,
            next_query: 0,
            client_eof: false,
            shutting_down: false,
            segments: Vec::new(),
        };
        match permit {
            Ok(p) => {
                conn._permit = Some(p);
                conn.enter_idle(now);
            }
            Err(exceeded) => conn.refuse_over_cap(now, exceeded),
        }
        conn
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Whether the connection would consume client bytes now. While true,
    /// any non-empty input is at least partly consumed.
    pub fn wants_client_data(&self) -> bool {
        match &self.phase {
            Phase::Head => true,
            Phase::Exchange(ex) => ex.wants_client_data(),
            Phase::Tunnel(_) | Phase::Closed => false,
        }
    }

    /// Whether the connection would consume upstream bytes now.
    pub fn wants_upstream_data(&self) -> bool {
        match &self.phase {
            Phase::Exchange(ex) => ex.wants_upstream_data(),
            _ => false,
        }
    }

    /// How many of the current upstream's next bytes the runtime may send
    /// to the client as they are, without offering them to
    /// [`handle_upstream_data`](Connection::handle_upstream_data): the
    /// rest of a response body's current run of payload (the remaining
    /// Content-Length, the rest of the current chunk's data, or
    /// `u64::MAX` for a body that ends at end of stream). Zero when the
    /// core must see the next byte, or while actions are queued. Valid
    /// only when the runtime holds no unconsumed upstream bytes (they come
    /// first); report the bytes moved with
    /// [`handle_upstream_forwarded`](Connection::handle_upstream_forwarded).
    pub fn forwardable_upstream(&self) -> u64 {
        match &self.phase {
            Phase::Exchange(ex) if self.outbox.queue.is_empty() => ex.forwardable_response(),
            _ => 0,
        }
    }

    /// Whether the connection is finished (a `Close` action was queued).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// The next action for the runtime, or `None` when there is nothing
    /// left to do until the next input. `Write` bytes are appended to `out`.
    #[must_use]
    pub fn poll_action(&mut self, out: &mut Vec<u8>) -> Option<Action> {
        self.outbox.poll(out)
    }

    /// When [`handle_timeout`](Connection::handle_timeout) should next be
    /// called, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    fn debug_assert_drained(&self) {
        debug_assert!(
            self.outbox.queue.is_empty(),
            "drain poll_action after every input before the next one"
        );
    }
}

impl Outbox {
    fn poll(&mut self, out: &mut Vec<u8>) -> Option<Action> {
        match self.queue.pop_front()? {
            Queued::Action(a) => Some(a),
            Queued::Write { to, len } => {
                out.extend_from_slice(&self.staged[self.staged_pos..self.staged_pos + len]);
                self.staged_pos += len;
                if self.staged_pos == self.staged.len() {
                    self.staged.clear();
                    self.staged_pos = 0;
                }
                Some(Action::Write { to, len })
            }
        }
    }

    fn push(&mut self, action: Action) {
        self.queue.push_back(Queued::Action(action));
    }

    /// Queues a write of the bytes `fill` appends.
    fn write_with(&mut self, to: Side, fill: impl FnOnce(&mut Vec<u8>)) -> usize {
        let before = self.staged.len();
        fill(&mut self.staged);
        let len = self.staged.len() - before;
        if len > 0 {
            self.queue.push_back(Queued::Write { to, len });
        }
        len
    }

    fn pass(&mut self, from: Side, offset: usize, len: usize) {
        if len == 0 {
            return;
        }
        // Adjacent passes merge, so chunk framing passed verbatim costs
        // the runtime one write, not three.
        if let Some(Queued::Action(Action::Pass {
            from: f,
            offset: o,
            len: l,
        })) = self.queue.back_mut()
        {
            if *f == from && *o + *l == offset {
                *l += len;
                return;
            }
        }
        self.push(Action::Pass { from, offset, len });
    }
}
