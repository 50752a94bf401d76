//! One client connection's protocol state machine: any number of
//! requests on it, each forwarded to an upstream, or one CONNECT tunnel.
//!
//! A [`Connection`] knows HTTP and policy and nothing of buffers, sockets
//! or time beyond the `now` it is given. It is driven by exactly one
//! thing, the [`Driver`](crate::driver::Driver), which owns the input
//! buffers and the rest of the bookkeeping and is what runtimes, replay,
//! tests and the fuzzer use. Its methods come in four kinds, in the
//! manner of quinn-proto:
//!
//! - **getters** on `&self`: [`wants_client_data`](Connection::wants_client_data),
//!   [`wants_upstream_data`](Connection::wants_upstream_data),
//!   [`forwardable_upstream`](Connection::forwardable_upstream),
//!   [`is_closed`](Connection::is_closed);
//! - **inputs** `handle_*(now, ..)`: bytes, end of stream, errors, resolution
//!   and connect results, tunnel ends, timeouts;
//! - **commands**: [`begin_shutdown`](Connection::begin_shutdown),
//!   [`force_shutdown`](Connection::force_shutdown);
//! - **outputs**: [`poll_action`](Connection::poll_action) and
//!   [`poll_timeout`](Connection::poll_timeout).
//!
//! After every input the driver drains `poll_action` and performs each
//! [`Action`] in order. `Pass` actions name a range of the slice given to
//! the latest `handle_*_data` call for their side, which the driver holds
//! until the drain is over; then it drops the consumed prefix. While the
//! connection wants a side's data it consumes at least one byte of any
//! non-empty input. `handle_client_eof` comes only once every byte read
//! before the end of stream has been consumed, so the connection knows no
//! pipelined request is still waiting.
//!
//! While a response body streams the connection has nothing to do with
//! its bytes but count them: [`forwardable_upstream`](Connection::forwardable_upstream)
//! says how many may go to the client unread, and
//! [`handle_upstream_forwarded`](Connection::handle_upstream_forwarded)
//! reports them. Offering the same bytes with `handle_upstream_data`
//! instead gives the same bytes to the client, the same records and the
//! same state.
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

mod action;
mod caching;
mod exchange;
mod state;
#[cfg(test)]
mod tests;

use crate::config::Config;
use crate::http::date::DateCache;
use crate::id::ConnId;
use crate::io::{Role, Side};
use crate::metrics::UpstreamInUse;
use crate::policy::caps::{CapExceeded, ConnPermit};
use crate::policy::Policy;
use crate::shared::Shared;
use crate::time::{Instant, Timer, TimerTable, WallAnchor};
pub(crate) use action::Action;
use exchange::Exchange;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

/// The state machine for one client connection. See the module docs.
#[derive(Debug)]
pub(crate) struct Connection {
    id: ConnId,
    client: SocketAddr,
    shared: Arc<Shared>,
    /// The configuration and policy in force for the current request,
    /// refreshed from `shared` at a request head after a reload.
    config: Arc<Config>,
    policy: Arc<Policy>,
    /// Where requests go: direct, or through parents.
    routes: Arc<crate::routing::Routes>,
    /// The HTTP cache, when it is on.
    cache: Option<Arc<crate::cache::Cache>>,
    /// The [`Shared::generation`] they came from.
    generation: u64,
    /// This connection's place under the connection caps.
    _permit: Option<ConnPermit>,
    /// What the listener it came in on is for.
    role: Role,
    /// The balancer that named `client` in a PROXY header, for records.
    balancer: Option<Box<crate::log::Balancer>>,
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
    /// Reading the PROXY protocol header a balancer sends first (a
    /// [`Role::Balanced`] listener), in `head.buf`.
    ProxyHeader,
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

/// The kind of the next queued action (see `Connection::peek_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// A `Write` to this side.
    Write(Side),
    /// A `Pass` of this side's bytes.
    Pass(Side),
    /// A stored body for the client.
    Stored,
    /// Anything else.
    Other,
}

#[derive(Debug)]
enum Queued {
    Action(Action),
    Write { to: Side, len: usize },
}

impl Connection {
    /// A new connection from `client`, accepted at `now` on a listener
    /// with `role`. `anchor` ties `now` to the calendar for the `Date`
    /// header. Over a connection cap, the connection answers 503 at once
    /// and closes: drain its actions.
    pub(crate) fn new(
        id: ConnId,
        client: SocketAddr,
        shared: Arc<Shared>,
        anchor: WallAnchor,
        now: Instant,
        role: Role,
    ) -> Self {
        let generation = shared.generation();
        let snapshot = shared.snapshot();
        let mut conn = Connection {
            id,
            client,
            config: snapshot.config.clone(),
            policy: snapshot.policy.clone(),
            routes: snapshot.routes.clone(),
            cache: snapshot.cache.clone(),
            generation,
            shared,
            _permit: None,
            role,
            balancer: None,
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
        let pp = &conn.config.proxy_protocol;
        if role == Role::Balanced {
            // The peer is a balancer: the client it names takes the caps.
            let trusted = pp.trusted.iter().any(|t| {
                crate::policy::cidr::parse_net(t)
                    .is_ok_and(|n| n.contains(&crate::policy::cidr::canonical(client.ip())))
            });
            if trusted {
                conn.phase = Phase::ProxyHeader;
                let deadline = now + conn.config.proxy_protocol.timeout;
                conn.timers.set(Timer::HeadRead, deadline);
            } else {
                conn.refuse_proxy_header(now, 0, "sender not in proxy_protocol.trusted");
            }
            return conn;
        }
        let permit = conn.shared.caps().try_acquire(client.ip());
        conn.admit(now, permit);
        conn
    }

    /// Whether the connection would consume client bytes now. While true,
    /// any non-empty input is at least partly consumed.
    /// Takes the connection's place under the caps, then waits for its
    /// first request; over a cap, answers 503 and closes.
    fn admit(&mut self, now: Instant, permit: Result<ConnPermit, CapExceeded>) {
        match permit {
            Ok(p) => {
                self._permit = Some(p);
                self.await_first_request(now);
            }
            Err(exceeded) => self.refuse_over_cap(now, exceeded),
        }
    }

    pub(crate) fn wants_client_data(&self) -> bool {
        match &self.phase {
            Phase::Head | Phase::ProxyHeader => true,
            Phase::Exchange(ex) => ex.wants_client_data(),
            Phase::Tunnel(_) | Phase::Closed => false,
        }
    }

    /// Whether the connection would consume upstream bytes now.
    pub(crate) fn wants_upstream_data(&self) -> bool {
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
    pub(crate) fn forwardable_upstream(&self) -> u64 {
        match &self.phase {
            Phase::Exchange(ex) if self.outbox.queue.is_empty() => ex.forwardable_response(),
            _ => 0,
        }
    }

    /// Whether the connection is finished (a `Close` action was queued).
    pub(crate) fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// The next action for the runtime, or `None` when there is nothing
    /// left to do until the next input. `Write` bytes are appended to `out`.
    #[must_use]
    pub(crate) fn poll_action(&mut self, out: &mut Vec<u8>) -> Option<Action> {
        self.outbox.poll(out)
    }

    /// When [`handle_timeout`](Connection::handle_timeout) should next be
    /// called, if ever.
    #[must_use]
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// What the next [`poll_action`](Connection::poll_action) would give,
    /// without taking it: lets the driver gather consecutive writes to one
    /// side (and the body bytes after them) into one write.
    pub(crate) fn peek_action(&self) -> Option<Next> {
        Some(match self.outbox.queue.front()? {
            Queued::Write { to, .. } => Next::Write(*to),
            Queued::Action(Action::Pass { from, .. }) => Next::Pass(*from),
            Queued::Action(Action::Stored { .. }) => Next::Stored,
            Queued::Action(_) => Next::Other,
        })
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
