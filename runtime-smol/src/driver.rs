//! One client connection: the async loop around a [`Traced`] connection.
//!
//! The loop follows the contract in `proxy_core::Connection`'s docs: after
//! every input, drain `poll_action` and perform each action in order;
//! results of actions (a resolved name, a finished connect, a failed
//! write, a tunnel's end) are queued and fed back only once the drain is
//! over. Then offer held bytes again while the core wants them, and
//! otherwise wait for the client, the upstream or the core's deadline.
//!
//! Each wait also listens for the next lifecycle stage
//! (`proxy_host::lifecycle`): when shutdown begins the connection gets
//! `begin_shutdown` (an idle one closes, an exchange in flight finishes
//! with `Connection: close`); when the grace period ends, a tunnel's relay
//! ends (`TunnelEndReason::Shutdown`, logged) and an exchange still in
//! flight is cut off.

use crate::net::{self, Stream};
use crate::relay;
use futures_lite::future::{self, poll_fn};
use proxy_core::trace::{Trace, Traced};
use proxy_core::{
    Action, ConnId, ConnectError, Connected, Instant, QueryId, ResolveError, Role, Side, TunnelEnd,
    TunnelEndReason, UpstreamId,
};
use proxy_host::buf::InBuf;
use proxy_host::io_error::connect_error;
use proxy_host::lifecycle::{ConnGuard, EventListener, Lifecycle, Stage};
use proxy_host::pool::Pool;
use proxy_host::{Clock, Settings};
use smol::Timer;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::{mpsc, Arc};
use std::task::Poll;
use std::time::Duration;

/// Most unconsumed bytes held per side; a side is not read while its
/// buffer is this full.
const BUF_CAP: usize = 64 * 1024;

/// The largest `Write` buffer a connection keeps between drains.
const OUT_KEEP: usize = 4 * 1024;

/// Events handled in a row before yielding to other tasks.
const EVENTS_PER_YIELD: u32 = 64;

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) settings: Arc<Settings>,
    pub(crate) clock: Clock,
    pub(crate) pool: Pool<Stream>,
    /// Finished traces go to the trace writer thread, when recording,
    /// each with a live-count guard so shutdown waits until it is saved.
    pub(crate) traces: Option<mpsc::Sender<(Trace, ConnGuard)>>,
    /// Shutdown state.
    pub(crate) life: Lifecycle,
}

/// Serves one accepted client until the core closes the connection.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    client: Stream,
    peer: SocketAddr,
    id: ConnId,
    role: Role,
    // Counts the connection as live until this future is dropped, done or
    // not (a panic included).
    _guard: ConnGuard,
) {
    let _ = client.get_ref().set_nodelay(true);
    let settings = &shared.settings;
    let traced = Traced::new(
        id,
        peer,
        settings.shared.clone(),
        shared.clock.anchor(),
        shared.clock.now(),
        settings.record.is_some(),
        role,
    );
    let write_stall = settings.config().timeouts.transfer_idle;
    let mut driver = Driver {
        shared: shared.clone(),
        traced,
        client,
        client_buf: InBuf::default(),
        client_consumed: 0,
        client_eof: false,
        client_eof_reported: false,
        client_dead: false,
        client_stalled: false,
        upstream: None,
        upstream_consumed: 0,
        out: Vec::new(),
        pending: VecDeque::new(),
        closed: false,
        timer: Timer::never(),
        armed: None,
        last_fired: None,
        write_stall,
        upstream_first: false,
        shutdown_begun: false,
        life_listener: None,
        tunnel_next: None,
    };
    driver.run().await;

    let Driver {
        traced,
        client,
        upstream,
        closed,
        client_eof,
        client_dead,
        ..
    } = driver;
    // Close the upstream (if any) before the slow parts below.
    drop(upstream);
    if let (Some(traces), Some(trace)) = (&shared.traces, traced.into_trace()) {
        // Only fails if the writer thread is gone; nothing to do then.
        let _ = traces.send((trace, shared.life.track()));
    }
    if closed && !client_eof && !client_dead {
        // Not past the end of the grace period, though.
        future::or(net::linger_close(&client), shared.life.stopping()).await;
    }
}

/// A result of an action, or an event, waiting to be fed to the core.
enum Input {
    ClientEof,
    ClientError,
    Resolved(QueryId, Result<Vec<IpAddr>, ResolveError>),
    Connected(UpstreamId, Result<Connected, ConnectError>),
    UpstreamEof(UpstreamId),
    UpstreamError(UpstreamId),
    /// Response body bytes that went from the upstream to the client
    /// without the core (`Connection::forwardable_upstream`).
    #[cfg(target_os = "linux")]
    UpstreamForwarded(UpstreamId, u64),
    TunnelEnd(TunnelEnd),
    Timeout,
}

/// What a wait ended with.
enum Event {
    /// A read from the client: bytes appended to the buffer, 0 at end of
    /// stream.
    Client(io::Result<usize>),
    /// Likewise from the current upstream.
    Upstream(io::Result<usize>),
    /// Response body bytes went from the upstream to the client by
    /// splice(2): how many, and how writing them to the client went.
    #[cfg(target_os = "linux")]
    Forwarded(u64, io::Result<()>),
    /// The core's deadline passed.
    Deadline,
    /// The lifecycle moved to a later stage.
    Lifecycle,
}

/// What a wait's poll found: an event, or response body bytes spliced
/// from the upstream into a pipe, still to go to the client.
enum Woke {
    Event(Event),
    #[cfg(target_os = "linux")]
    Spliced(proxy_host::splice::Pipe),
}

/// The upstream connection currently held.
struct Upstream {
    id: UpstreamId,
    addr: SocketAddr,
    stream: Stream,
    /// Unconsumed bytes read from it (plus, during a drain, the consumed
    /// prefix `Pass` actions refer to).
    buf: InBuf,
    eof: bool,
    /// A read or write failed; it is neither read nor written again.
    dead: bool,
    stalled: bool,
    /// Nothing can have arrived yet: the next wait registers for
    /// readiness without trying a read first.
    skip_read: bool,
}

struct Driver {
    shared: Arc<Shared>,
    traced: Traced,
    client: Stream,
    /// Unconsumed client bytes (plus, during a drain, the consumed prefix
    /// `Pass` actions refer to).
    client_buf: InBuf,
    /// How much of `client_buf` the input being drained consumed; dropped
    /// when the drain is over.
    client_consumed: usize,
    /// The client's read side reached end of stream.
    client_eof: bool,
    client_eof_reported: bool,
    /// A read from or write to the client failed.
    client_dead: bool,
    /// The core took nothing of the last offer; wait for news before
    /// offering again (the core promises this never happens while it
    /// wants data; this keeps a broken promise from spinning).
    client_stalled: bool,
    upstream: Option<Upstream>,
    upstream_consumed: usize,
    /// The core's `Write` bytes, reused across drains.
    out: Vec<u8>,
    pending: VecDeque<Input>,
    /// The core asked to close.
    closed: bool,
    timer: Timer,
    /// The deadline `timer` is set for: the core's, or an earlier one the
    /// core has since moved on from (see `arm_timer`). `None` once fired.
    armed: Option<Instant>,
    /// When the timer last fired, to back off from a deadline the core
    /// leaves in the past.
    last_fired: Option<Instant>,
    /// A write that makes no progress for this long fails.
    write_stall: Duration,
    /// Which socket the next wait polls first, alternating so a busy side
    /// cannot starve the other.
    upstream_first: bool,
    /// `begin_shutdown` was called (shutdown began).
    shutdown_begun: bool,
    /// Notified at the next lifecycle stage; kept across waits (one
    /// listener per stage, not one per wait).
    life_listener: Option<EventListener>,
    /// A tunnel the drain stopped at, to relay before draining on.
    tunnel_next: Option<(UpstreamId, Duration)>,
}

impl Driver {
    fn now(&self) -> Instant {
        self.shared.clock.now()
    }

    async fn run(&mut self) {
        let mut events = 0u32;
        // A connection over a cap is refused from birth: its 503 and its
        // log record are queued already.
        self.drain_boxed().await;
        loop {
            if self.closed || self.traced.conn().is_closed() {
                return;
            }
            if let Some(input) = self.pending.pop_front() {
                self.feed(input);
                self.drain_boxed().await;
                continue;
            }
            // After the pending inputs, so a tunnel's end is logged first.
            match self.shared.life.stage() {
                Stage::Running => {}
                Stage::Draining if self.shutdown_begun => {}
                Stage::Draining => {
                    self.shutdown_begun = true;
                    let now = self.now();
                    self.traced.begin_shutdown(now);
                    self.drain_boxed().await;
                    continue;
                }
                // The grace period is over and an exchange is still in
                // flight: cut it off, logged.
                Stage::Stopping => {
                    let now = self.shared.clock.now();
                    self.traced.force_shutdown(now);
                    self.drain_boxed().await;
                    return;
                }
            }
            if self.offer_client() || self.offer_upstream() {
                self.drain_boxed().await;
                continue;
            }
            if self.client_eof && !self.client_eof_reported && self.client_buf.is_empty() {
                self.client_eof_reported = true;
                self.pending.push_back(Input::ClientEof);
                continue;
            }
            events += 1;
            if events % EVENTS_PER_YIELD == 0 {
                future::yield_now().await;
            }
            match self.wait().await {
                Some(event) => self.on_event(event),
                // Nothing can happen any more: no socket to read, no timer.
                None => return,
            }
        }
    }

    /// Offers held client bytes if the core wants them. True if it did.
    fn offer_client(&mut self) -> bool {
        if self.client_buf.is_empty()
            || self.client_stalled
            || !self.traced.conn().wants_client_data()
        {
            return false;
        }
        let now = self.now();
        let n = self.traced.handle_client_data(now, self.client_buf.bytes());
        self.client_consumed = n.min(self.client_buf.len());
        self.client_stalled = n == 0;
        true
    }

    /// Offers held upstream bytes if the core wants them. True if it did.
    fn offer_upstream(&mut self) -> bool {
        let Some(up) = self.upstream.as_mut() else {
            return false;
        };
        if up.buf.is_empty() || up.stalled || !self.traced.conn().wants_upstream_data() {
            return false;
        }
        let now = self.shared.clock.now();
        let n = self.traced.handle_upstream_data(now, up.id, up.buf.bytes());
        self.upstream_consumed = n.min(up.buf.len());
        up.stalled = n == 0;
        true
    }

    fn feed(&mut self, input: Input) {
        let now = self.now();
        let t = &mut self.traced;
        match input {
            Input::ClientEof => t.handle_client_eof(now),
            Input::ClientError => t.handle_client_error(now),
            Input::Resolved(query, result) => {
                t.handle_resolved(now, query, result.as_deref().map_err(Clone::clone))
            }
            Input::Connected(id, result) => t.handle_connected(now, id, result),
            Input::UpstreamEof(id) => t.handle_upstream_eof(now, id),
            Input::UpstreamError(id) => t.handle_upstream_error(now, id, ConnectError::Reset),
            #[cfg(target_os = "linux")]
            Input::UpstreamForwarded(id, n) => t.handle_upstream_forwarded(now, id, n),
            Input::TunnelEnd(end) => t.handle_tunnel_end(now, end),
            Input::Timeout => {
                t.handle_timeout(now);
                self.last_fired = Some(now);
            }
        }
        // Things changed: offers that were refused may be taken now.
        self.client_stalled = false;
        if let Some(up) = self.upstream.as_mut() {
            up.stalled = false;
        }
    }

    fn on_event(&mut self, event: Event) {
        self.client_stalled = false;
        if let Some(up) = self.upstream.as_mut() {
            up.stalled = false;
        }
        match event {
            // A signal cut a read short: nothing happened.
            Event::Client(Err(e)) | Event::Upstream(Err(e))
                if e.kind() == io::ErrorKind::Interrupted => {}
            Event::Client(Ok(0)) => self.client_eof = true,
            Event::Client(Ok(_)) => {}
            Event::Client(Err(_)) => self.client_failed(),
            Event::Upstream(result) => {
                let Some(up) = self.upstream.as_mut() else {
                    return;
                };
                match result {
                    Ok(0) => {
                        up.eof = true;
                        self.pending.push_back(Input::UpstreamEof(up.id));
                    }
                    Ok(_) => {}
                    Err(_) => self.upstream_failed(),
                }
            }
            #[cfg(target_os = "linux")]
            Event::Forwarded(n, result) => {
                if let Some(up) = self.upstream.as_ref() {
                    self.pending.push_back(Input::UpstreamForwarded(up.id, n));
                }
                if result.is_err() {
                    if self.shared.life.is_stopping() {
                        // Cut off at the end of the shutdown grace period.
                        self.closed = true;
                    } else {
                        self.client_failed();
                    }
                }
            }
            Event::Deadline => {
                self.armed = None;
                self.pending.push_back(Input::Timeout);
            }
            // `run` looks at the stage.
            Event::Lifecycle => {}
        }
    }

    fn client_failed(&mut self) {
        if !self.client_dead {
            self.client_dead = true;
            self.pending.push_back(Input::ClientError);
        }
    }

    fn upstream_failed(&mut self) {
        if let Some(up) = self.upstream.as_mut() {
            if !up.dead {
                up.dead = true;
                self.pending.push_back(Input::UpstreamError(up.id));
            }
        }
    }

    // ----- performing actions ----------------------------------------------

    /// [`drain`](Driver::drain), boxed: its state (the writes, connects
    /// and tunnels it may wait on) is needed only while actions are
    /// performed, and inline it would make the task of every connection,
    /// busy or idle, a third bigger. One small allocation per drain is
    /// the price.
    ///
    /// A tunnel the core asks for is relayed here, between drains, not
    /// inside one: a tunnel lasts, and the drain's state need not last
    /// with it. Whatever the core queued after the tunnel is performed
    /// once it is over, as it would have been inside the drain.
    async fn drain_boxed(&mut self) {
        Box::pin(self.drain()).await;
        while let Some((id, idle)) = self.tunnel_next.take() {
            self.tunnel(id, idle).await;
            Box::pin(self.drain()).await;
        }
    }

    /// Drains and performs every queued action, then drops the consumed
    /// prefixes of the input buffers.
    async fn drain(&mut self) {
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        // Consecutive writes to one side go out together: `out[start..]`
        // holds the bytes not yet written, all for `side`.
        let mut held: Option<(Side, usize)> = None;
        loop {
            let before = out.len();
            let Some(action) = self.traced.poll_action(&mut out) else {
                break;
            };
            match action {
                // This write's bytes are `out[before..]`.
                Action::Write { to, .. } => match held {
                    Some((side, _)) if side == to => {}
                    Some((side, start)) => {
                        self.send(side, &out[start..before], &[]).await;
                        held = Some((to, before));
                    }
                    None => held = Some((to, before)),
                },
                Action::Pass { from, offset, len } => {
                    let to = match from {
                        Side::Client => Side::Upstream,
                        Side::Upstream => Side::Client,
                    };
                    // Held bytes for the same side go out in the same
                    // (vectored) write, ahead of the passed bytes.
                    let mut head_start = out.len();
                    if let Some((side, start)) = held.take() {
                        if side == to {
                            head_start = start;
                        } else {
                            self.send(side, &out[start..], &[]).await;
                        }
                    }
                    self.pass(from, to, &out[head_start..], offset, len).await;
                    out.clear();
                }
                other => {
                    if let Some((side, start)) = held.take() {
                        self.send(side, &out[start..], &[]).await;
                    }
                    out.clear();
                    self.perform(other).await;
                    if self.tunnel_next.is_some() {
                        // The rest waits for the tunnel's end.
                        break;
                    }
                }
            }
        }
        if let Some((side, start)) = held {
            self.send(side, &out[start..], &[]).await;
        }
        out.clear();
        // Kept for the next drain, unless a rare large write (a status
        // page, say) grew it: then it would stay that big for the life
        // of the connection.
        if out.capacity() <= OUT_KEEP {
            self.out = out;
        }

        self.client_buf.consume(self.client_consumed);
        self.client_consumed = 0;
        if let Some(up) = self.upstream.as_mut() {
            up.buf.consume(self.upstream_consumed);
        }
        self.upstream_consumed = 0;
    }

    /// Writes `a` then `b` to `side`, unless that side is gone; a failure
    /// is queued for after the drain.
    async fn send(&mut self, side: Side, a: &[u8], b: &[u8]) {
        if a.is_empty() && b.is_empty() {
            return;
        }
        let result = match side {
            Side::Client if self.client_dead => return,
            Side::Client => {
                net::write_all(&self.client, a, b, self.write_stall, &self.shared.life).await
            }
            Side::Upstream => match &self.upstream {
                Some(up) if !up.dead => {
                    net::write_all(&up.stream, a, b, self.write_stall, &self.shared.life).await
                }
                _ => return,
            },
        };
        if result.is_err() {
            if self.shared.life.is_stopping() {
                // Cut off at the end of the shutdown grace period.
                self.closed = true;
                return;
            }
            match side {
                Side::Client => self.client_failed(),
                Side::Upstream => self.upstream_failed(),
            }
        }
    }

    /// Performs a `Pass`: `head` (held `Write` bytes for the same side)
    /// then `len` bytes at `offset` of `from`'s latest input go to `to`.
    async fn pass(&mut self, from: Side, to: Side, head: &[u8], offset: usize, len: usize) {
        let range = offset..offset.saturating_add(len);
        let source = match from {
            Side::Client => Some(self.client_buf.bytes()),
            Side::Upstream => self.upstream.as_ref().map(|u| u.buf.bytes()),
        };
        let Some(bytes) = source.and_then(|s| s.get(range)) else {
            // The core pointed outside its input: a core bug. Fail the
            // destination rather than send something else.
            self.send(to, head, &[]).await;
            match to {
                Side::Client => self.client_failed(),
                Side::Upstream => self.upstream_failed(),
            }
            return;
        };
        let result = match to {
            Side::Client if self.client_dead => return,
            Side::Client => {
                net::write_all(
                    &self.client,
                    head,
                    bytes,
                    self.write_stall,
                    &self.shared.life,
                )
                .await
            }
            Side::Upstream => match &self.upstream {
                Some(up) if !up.dead => {
                    net::write_all(&up.stream, head, bytes, self.write_stall, &self.shared.life)
                        .await
                }
                _ => return,
            },
        };
        if result.is_err() {
            if self.shared.life.is_stopping() {
                // Cut off at the end of the shutdown grace period.
                self.closed = true;
                return;
            }
            match to {
                Side::Client => self.client_failed(),
                Side::Upstream => self.upstream_failed(),
            }
        }
    }

    async fn perform(&mut self, action: Action) {
        match action {
            Action::Resolve { query, host } => self.resolve(query, host).await,
            Action::Connect {
                upstream,
                addr,
                allow_pooled,
            } => self.connect(upstream, addr, allow_pooled).await,
            Action::Tunnel {
                upstream,
                idle_timeout,
            } => self.tunnel_next = Some((upstream, idle_timeout)),
            Action::Release { upstream, reuse } => self.release(upstream, reuse),
            Action::Close { .. } => {
                // Everything before this was written: send the FIN now, not
                // after the trace is saved. The socket itself is dropped
                // only after `net::linger_close`.
                self.closed = true;
                if !self.client_dead {
                    let _ = self.client.get_ref().shutdown(Shutdown::Write);
                }
            }
            Action::Log(record) => self.shared.settings.access_log.write(&record),
            // Handled by `drain`.
            Action::Write { .. } | Action::Pass { .. } => {}
        }
    }

    async fn resolve(&mut self, query: QueryId, host: String) {
        let answer = match self.shared.settings.resolver.lookup_static(&host) {
            Some(answer) => Some(answer),
            None => {
                let lookup = smol::unblock(move || proxy_host::resolver::system_resolve(&host));
                // Boxed, as is a connect: only a lookup needs this state,
                // and inline it would make every connection's task bigger.
                Box::pin(self.before_deadline(lookup)).await
            }
        };
        self.pending.push_back(match answer {
            Some(result) => Input::Resolved(query, result),
            None => Input::Timeout,
        });
    }

    /// Runs `fut` until the core's deadline; `None` if the deadline came
    /// first.
    async fn before_deadline<T>(&self, fut: impl Future<Output = T>) -> Option<T> {
        match self.traced.poll_timeout() {
            None => Some(fut.await),
            Some(deadline) => {
                let at = self.shared.clock.to_std(deadline);
                future::or(async { Some(fut.await) }, async {
                    Timer::at(at).await;
                    None
                })
                .await
            }
        }
    }

    async fn connect(&mut self, id: UpstreamId, addr: SocketAddr, allow_pooled: bool) {
        // Whatever was held before is finished with.
        self.upstream = None;
        self.upstream_consumed = 0;
        if allow_pooled {
            while let Some(stream) = self.shared.pool.take(addr) {
                if net::is_alive(&stream) {
                    self.hold(id, addr, stream);
                    self.pending
                        .push_back(Input::Connected(id, Ok(Connected { reused: true })));
                    return;
                }
            }
        }
        // Boxed, as is a lookup: only a new upstream connection needs this
        // state, and inline it would make every connection's task bigger.
        let input = match Box::pin(self.before_deadline(net::connect(addr))).await {
            Some(Ok(stream)) => {
                self.hold(id, addr, stream);
                Input::Connected(id, Ok(Connected { reused: false }))
            }
            Some(Err(e)) => Input::Connected(id, Err(connect_error(&e))),
            // The core's Connect timer answers this one (504).
            None => Input::Timeout,
        };
        self.pending.push_back(input);
    }

    fn hold(&mut self, id: UpstreamId, addr: SocketAddr, stream: Stream) {
        self.upstream = Some(Upstream {
            id,
            addr,
            stream,
            buf: InBuf::default(),
            eof: false,
            dead: false,
            stalled: false,
            // A new or pooled connection has nothing to read before our
            // request goes out (a pooled one was just checked, see
            // `net::is_alive`), so the first wait registers for readiness
            // rather than trying a read that would only come up empty.
            skip_read: true,
        });
    }

    fn release(&mut self, id: UpstreamId, reuse: bool) {
        if self.upstream.as_ref().map(|u| u.id) != Some(id) {
            return;
        }
        let Some(up) = self.upstream.take() else {
            return;
        };
        let unconsumed = up.buf.len().saturating_sub(self.upstream_consumed);
        self.upstream_consumed = 0;
        if reuse && unconsumed == 0 && !up.eof && !up.dead {
            self.shared.pool.put(up.addr, up.stream);
        }
    }

    async fn tunnel(&mut self, id: UpstreamId, idle: Duration) {
        // No more reading the client in this loop: the relay owns it now.
        self.client_eof_reported = true;
        // Nor waiting here: the relay has its own timer and listener, and
        // these would only hold reactor and lifecycle entries meanwhile.
        self.timer = Timer::never();
        self.armed = None;
        self.life_listener = None;
        if self.pending.is_empty() {
            // Its storage, from the inputs so far, is not needed while
            // relaying.
            self.pending = VecDeque::new();
        }
        // The unconsumed bytes go to the relay with their buffers (the
        // drain that asked for the tunnel dropped the consumed ones).
        let to_upstream = std::mem::take(&mut self.client_buf);
        let end = match self.upstream.as_mut() {
            Some(up) if up.id == id && !up.dead && !self.client_dead => {
                let start = relay::Start {
                    to_upstream,
                    to_client: std::mem::take(&mut up.buf),
                    client_eof: self.client_eof,
                    upstream_eof: up.eof,
                };
                // Boxed: a tunnel's state is needed only by tunnels, and
                // inline it would make every connection's task bigger.
                let life = &self.shared.life;
                Box::pin(relay::relay(&self.client, &up.stream, start, idle, life)).await
            }
            _ => TunnelEnd {
                to_upstream: 0,
                to_client: 0,
                reason: TunnelEndReason::Error,
            },
        };
        self.client_eof = true;
        if let Some(up) = self.upstream.as_mut() {
            up.buf.clear();
            up.eof = true;
        }
        self.upstream_consumed = 0;
        self.pending.push_back(Input::TunnelEnd(end));
    }

    // ----- waiting ---------------------------------------------------------

    /// The core's deadline, as the core's and as a std instant, and makes
    /// sure the timer fires no later than it.
    ///
    /// The timer is moved only when the deadline comes *earlier* than the
    /// one it is set for: every move costs the reactor a wake-up (a timer
    /// change is a notification to the thread polling epoll), and the
    /// deadline changes several times per request (head read, response,
    /// transfer, client idle). A later deadline just lets the timer fire
    /// early; `wait` then sets it again, at most once per timeout period.
    fn arm_timer(&mut self) -> Option<(Instant, std::time::Instant)> {
        let mut deadline = self.traced.poll_timeout()?;
        // A deadline still due right after firing would spin; the core
        // should never leave one, but if it does, retry it gently.
        if let Some(fired) = self.last_fired {
            if deadline <= fired {
                deadline = fired + Duration::from_millis(50);
            }
        }
        let at = self.shared.clock.to_std(deadline);
        if self.armed.map_or(true, |armed| deadline < armed) {
            self.timer.set_at(at);
            self.armed = Some(deadline);
        }
        Some((deadline, at))
    }

    /// Waits for client bytes, upstream bytes or the deadline, whichever
    /// comes first. `None` if there is nothing to wait for.
    async fn wait(&mut self) -> Option<Event> {
        let deadline = self.arm_timer();
        let read_client = !self.client_eof && !self.client_dead && self.client_buf.len() < BUF_CAP;
        let read_upstream = self
            .upstream
            .as_ref()
            .is_some_and(|u| !u.eof && !u.dead && u.buf.len() < BUF_CAP);
        if deadline.is_none() && !read_client && !read_upstream {
            return None;
        }
        if self.life_listener.is_none() {
            // Listen first, then look, so a change in between is not lost.
            self.life_listener = Some(self.shared.life.changed());
            let acted_on = if self.shutdown_begun {
                Stage::Draining
            } else {
                Stage::Running
            };
            if self.shared.life.stage() > acted_on {
                self.life_listener = None;
                return Some(Event::Lifecycle);
            }
        }
        let life_listener = &mut self.life_listener;

        // Response body bytes the core only counts go from the upstream to
        // the client by splice(2), never through a buffer.
        #[cfg(target_os = "linux")]
        let forward = match self.upstream.as_ref() {
            Some(up) if read_upstream && up.buf.is_empty() && !self.client_dead => {
                usize::try_from(self.traced.conn().forwardable_upstream()).unwrap_or(usize::MAX)
            }
            _ => 0,
        };
        let client = &*self.client;
        let mut client_buf = read_client.then_some(&mut self.client_buf);
        let mut upstream = self
            .upstream
            .as_mut()
            .filter(|_| read_upstream)
            .map(|u| (&*u.stream, &mut u.buf, &mut u.skip_read));
        let timer = &mut self.timer;
        let armed = &mut self.armed;
        let upstream_first = self.upstream_first;
        self.upstream_first = !upstream_first;
        // A read that returns Pending has taken nothing, so trying one
        // socket and then the other never loses bytes.
        let woke = poll_fn(|cx| {
            for turn in 0..2 {
                if (turn == 0) == upstream_first {
                    if let Some((stream, buf, skip_read)) = upstream.as_mut() {
                        #[cfg(target_os = "linux")]
                        if forward > 0 {
                            match net::poll_splice_in(cx, stream, forward, skip_read) {
                                Poll::Ready(Ok(Some(pipe))) => {
                                    return Poll::Ready(Woke::Spliced(pipe))
                                }
                                Poll::Ready(Err(e)) => {
                                    return Poll::Ready(Woke::Event(Event::Upstream(Err(e))))
                                }
                                Poll::Pending => continue,
                                // No pipe to be had: read instead.
                                Poll::Ready(Ok(None)) => {}
                            }
                        }
                        if let Poll::Ready(result) = net::poll_read_into(cx, stream, buf, skip_read)
                        {
                            return Poll::Ready(Woke::Event(Event::Upstream(result)));
                        }
                    }
                } else if let Some(buf) = client_buf.as_mut() {
                    if let Poll::Ready(result) = net::poll_read_into(cx, client, buf, &mut false) {
                        return Poll::Ready(Woke::Event(Event::Client(result)));
                    }
                }
            }
            if let Some((due, at)) = deadline {
                while Pin::new(&mut *timer).poll(cx).is_ready() {
                    if std::time::Instant::now() >= at {
                        *armed = None;
                        return Poll::Ready(Woke::Event(Event::Deadline));
                    }
                    // Set for an earlier deadline than the core has now.
                    timer.set_at(at);
                    *armed = Some(due);
                }
            }
            if let Some(listener) = life_listener.as_mut() {
                if Pin::new(listener).poll(cx).is_ready() {
                    *life_listener = None;
                    return Poll::Ready(Woke::Event(Event::Lifecycle));
                }
            }
            Poll::Pending
        })
        .await;
        match woke {
            Woke::Event(event) => Some(event),
            #[cfg(target_os = "linux")]
            Woke::Spliced(pipe) => Some(self.forward(pipe).await),
        }
    }

    /// Splices response body bytes from `pipe` (just filled from the
    /// upstream) into the client.
    #[cfg(target_os = "linux")]
    async fn forward(&mut self, mut pipe: proxy_host::splice::Pipe) -> Event {
        let n = pipe.len() as u64;
        if n == 0 {
            // The upstream's end of stream.
            net::PIPES.put(pipe);
            return Event::Upstream(Ok(0));
        }
        let life = &self.shared.life;
        let sent = net::splice_out(&self.client, &mut pipe, self.write_stall, life).await;
        // Closed rather than pooled if the client did not take it all.
        net::PIPES.put(pipe);
        Event::Forwarded(n, sent)
    }
}
