//! One client connection: a task that performs the ops of its
//! `proxy_core::Driver` with async sockets, and reports what came of them.
//! Every decision, and all the bookkeeping between the sockets and the
//! protocol, is the driver's; this file is I/O.
//!
//! Each wait also listens for the next lifecycle stage
//! (`proxy_host::lifecycle`), which the driver hears of as `Shutdown`
//! (finish what is in flight) and `ForceShutdown` (the grace period is
//! over); a tunnel's relay watches for the end of the grace period itself.

use crate::net::{self, Stream};
use crate::relay;
use futures_lite::future::{self, poll_fn};
use proxy_core::driver::{Accepted, Driver, Input, Op, Relay, Wait};
use proxy_core::trace::Trace;
use proxy_core::{
    ConnId, Connected, Instant, QueryId, Role, Side, TunnelEnd, TunnelEndReason, UpstreamId,
};
use proxy_host::buf::Pooled;
use proxy_host::io_error::connect_error;
use proxy_host::lifecycle::{ConnGuard, EventListener, Lifecycle, Stage};
use proxy_host::pool::Pool;
use proxy_host::{Clock, Settings};
use std::future::Future;
use std::net::{Shutdown, SocketAddr};
use std::pin::Pin;
use std::sync::{mpsc, Arc};
use std::task::Poll;
use std::time::Duration;

/// Waits in a row before yielding to other tasks.
const WAITS_PER_YIELD: u32 = 64;

/// What every connection shares.
pub(crate) struct Shared {
    pub(crate) settings: Arc<Settings>,
    pub(crate) clock: Clock,
    /// Idle upstream connections, a pool per executor thread (by index).
    /// A connection is put back into its thread's pool and taken from it
    /// first: a socket another thread takes up moves its registration to
    /// that thread's reactor (two system calls). Only when its own pool
    /// has none for the address does a thread take another's.
    pub(crate) pools: Box<[Pool<Stream>]>,
    /// Finished traces go to the trace writer thread, when recording,
    /// each with a live-count guard so shutdown waits until it is saved.
    pub(crate) traces: Option<mpsc::Sender<(Trace, ConnGuard)>>,
    /// Shutdown state.
    pub(crate) life: Lifecycle,
}

/// Serves one accepted client until its driver is done.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    worker: usize,
    client: Stream,
    peer: SocketAddr,
    id: ConnId,
    role: Role,
    // Counts the connection as live until this future is dropped, done or
    // not (a panic included).
    _guard: ConnGuard,
) {
    let accepted = Accepted {
        conn: id,
        client: peer,
        role,
        anchor: shared.clock.anchor(),
        at: shared.clock.now(),
    };
    let settings = &shared.settings;
    let mut conn = Conn {
        driver: Driver::new(accepted, settings.shared.clone(), settings.record.is_some()),
        write_stall: settings.config().timeouts.transfer_idle,
        shared: shared.clone(),
        worker,
        client,
        upstream: None,
        alarm: net::Alarm::default(),
        told: Stage::Running,
        life_listener: None,
        upstream_first: false,
        client_shut: false,
    };
    let linger = conn.run().await;

    let Conn {
        driver,
        client,
        upstream,
        client_shut,
        ..
    } = conn;
    // Close the upstream (if any) before the slow parts below.
    drop(upstream);
    if let (Some(traces), Some(trace)) = (&shared.traces, driver.into_trace()) {
        // Only fails if the writer thread is gone; nothing to do then.
        let _ = traces.send((trace, shared.life.track()));
    }
    if linger {
        // Not past the end of the grace period, though.
        future::or(
            net::linger_close(&client, client_shut),
            shared.life.stopping(),
        )
        .await;
    }
}

/// The upstream connection held.
struct Held {
    id: UpstreamId,
    addr: SocketAddr,
    stream: Stream,
}

struct Conn {
    shared: Arc<Shared>,
    /// The executor thread's index (its pool in `Shared::pools`).
    worker: usize,
    driver: Driver<Pooled>,
    client: Stream,
    upstream: Option<Held>,
    /// A write that makes no progress for this long fails.
    write_stall: Duration,
    /// Fires for the driver's deadline.
    alarm: net::Alarm,
    /// The lifecycle stage the driver was last told of.
    told: Stage,
    /// Notified at the next lifecycle stage; kept across waits.
    life_listener: Option<EventListener>,
    /// Which socket a wait tries first, alternating so a busy side
    /// cannot starve the other.
    upstream_first: bool,
    /// The client's sending side was shut down (`Op::Close`).
    client_shut: bool,
}

/// What [`Conn::turn`] came to.
enum Turn {
    /// Wait for this.
    Wait(Wait),
    /// The driver is done; whether to linger.
    Done(bool),
    /// An op was performed: poll again.
    Again,
}

/// What a wait ended with.
enum Woke {
    /// A read happened (and was reported), or the lifecycle moved on.
    Handled,
    /// The deadline passed.
    Deadline,
    /// Response body bytes were spliced from the upstream into this pipe,
    /// still to go to the client.
    #[cfg(target_os = "linux")]
    Spliced(proxy_host::splice::Pipe),
}

impl Conn {
    fn now(&self) -> Instant {
        self.shared.clock.now()
    }

    /// Performs ops until the driver is done; says whether to linger.
    async fn run(&mut self) -> bool {
        let mut waits = 0u32;
        loop {
            self.tell_lifecycle();
            // One op at a time in a future of its own: the wait that ends
            // most turns, where an idle connection's task spends its life,
            // does not keep any other op's state beside its own.
            let wait = match self.turn().await {
                Turn::Wait(wait) => wait,
                Turn::Done(linger) => return linger,
                Turn::Again => continue,
            };
            self.wait(wait).await;
            waits += 1;
            if waits % WAITS_PER_YIELD == 0 {
                future::yield_now().await;
            }
        }
    }

    /// Performs the driver's next op, unless it is a wait or the end.
    async fn turn(&mut self) -> Turn {
        match self.driver.poll() {
            Op::Wait(wait) => return Turn::Wait(wait),
            Op::Done { linger } => return Turn::Done(linger),
            Op::Write { to, head, body } => {
                let life = &self.shared.life;
                let result = match (to, &self.upstream) {
                    (Side::Client, _) => {
                        net::write_all(&self.client, head, body, self.write_stall, life).await
                    }
                    (Side::Upstream, Some(up)) => {
                        net::write_all(&up.stream, head, body, self.write_stall, life).await
                    }
                    (Side::Upstream, None) => Ok(()),
                };
                if result.is_err() {
                    self.failed(to);
                }
            }
            Op::Resolve {
                query,
                host,
                deadline,
            } => {
                // Boxed, as are connects and relays: only some ops
                // need this state, and inline it would make every
                // connection's task bigger, idle ones included.
                let input = Box::pin(self.resolve(query, host, deadline)).await;
                self.driver.handle(self.now(), input);
            }
            Op::Connect {
                upstream,
                addr,
                allow_pooled,
                deadline,
            } => {
                let input = Box::pin(self.connect(upstream, addr, allow_pooled, deadline)).await;
                self.driver.handle(self.now(), input);
            }
            Op::Release { upstream, reuse } => {
                if let Some(up) = self.upstream.take() {
                    if up.id != upstream {
                        self.upstream = Some(up);
                    } else if reuse {
                        self.shared.pools[self.worker].put(up.addr, up.stream);
                    }
                }
            }
            Op::Relay(relay) => {
                let end = Box::pin(self.relay(relay)).await;
                self.driver.handle(self.now(), Input::TunnelEnded(end));
            }
            Op::Verify(job) => {
                let ok = proxy_host::hashing::verify(job).get().await;
                self.driver.handle(self.now(), Input::Verified(ok));
            }
            Op::Log(record) => self.shared.settings.access_log.write(&record),
            // Everything before it was written: send the end of
            // stream now, not after the trace is saved.
            Op::Close(_) => {
                let _ = self.client.get_ref().shutdown(Shutdown::Write);
                self.client_shut = true;
            }
        }
        Turn::Again
    }

    /// Tells the driver of lifecycle stages reached since it was last told.
    fn tell_lifecycle(&mut self) {
        for input in self.shared.life.news(&mut self.told) {
            self.driver.handle(self.shared.clock.now(), input);
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

    async fn resolve(&self, query: QueryId, host: String, deadline: Option<Instant>) -> Input {
        let at = deadline.map(|d| self.shared.clock.to_std(d));
        match net::resolve(&self.shared.settings.resolver, host, at).await {
            Some(result) => Input::Resolved(query, result),
            None => Input::Timeout,
        }
    }

    async fn connect(
        &mut self,
        id: UpstreamId,
        addr: SocketAddr,
        allow_pooled: bool,
        deadline: Option<Instant>,
    ) -> Input {
        // Whatever was held before is finished with.
        self.upstream = None;
        let pools = allow_pooled.then_some((&*self.shared.pools, self.worker));
        let at = deadline.map(|d| self.shared.clock.to_std(d));
        match net::connect_or_reuse(pools, addr, at).await {
            Some(Ok((stream, reused))) => {
                self.upstream = Some(Held { id, addr, stream });
                Input::Connected(id, Ok(Connected { reused }))
            }
            Some(Err(e)) => Input::Connected(id, Err(connect_error(&e))),
            // The core's timer answers (504).
            None => Input::Timeout,
        }
    }

    async fn relay(&mut self, r: Box<Relay<Pooled>>) -> TunnelEnd {
        // The relay has its own timer and listener: these would only hold
        // reactor and lifecycle entries meanwhile.
        self.alarm = net::Alarm::default();
        self.life_listener = None;
        match &self.upstream {
            Some(up) if up.id == r.upstream => {
                relay::relay(&self.client, &up.stream, *r, &self.shared.life).await
            }
            _ => TunnelEnd {
                to_upstream: 0,
                to_client: 0,
                reason: TunnelEndReason::Error,
            },
        }
    }

    /// Waits for what `w` names, and reports it.
    async fn wait(&mut self, w: Wait) {
        let clock = &self.shared.clock;
        let deadline = w.deadline.map(|d| (d, self.alarm.arm(d, clock.to_std(d))));
        if self.life_listener.is_none() {
            // Listen first, then look, so a change in between is not lost.
            self.life_listener = Some(self.shared.life.changed());
            if self.shared.life.stage() > self.told {
                self.life_listener = None;
                return;
            }
        }
        let Conn {
            shared,
            driver,
            client,
            upstream,
            alarm,
            life_listener,
            upstream_first,
            ..
        } = self;
        let clock = &shared.clock;
        let first = *upstream_first;
        *upstream_first = !first;
        let mut up = upstream
            .as_mut()
            .filter(|u| w.upstream.is_some_and(|wu| wu.id == u.id));
        #[cfg(target_os = "linux")]
        let forward = w
            .upstream
            .map_or(0, |u| usize::try_from(u.forward).unwrap_or(usize::MAX));
        // A read that returns Pending has taken nothing, so trying one
        // socket and then the other never loses bytes.
        let woke = poll_fn(move |cx| {
            for turn in 0..2 {
                if (turn == 0) == first {
                    let Some(up) = up.as_mut() else { continue };
                    #[cfg(target_os = "linux")]
                    if forward > 0 {
                        match net::poll_splice_in(cx, &up.stream, forward) {
                            Poll::Ready(Ok(Some(pipe))) => return Poll::Ready(Woke::Spliced(pipe)),
                            Poll::Ready(Err(_)) => {
                                driver.handle(clock.now(), Input::Failed(Side::Upstream));
                                return Poll::Ready(Woke::Handled);
                            }
                            Poll::Pending => continue,
                            // No pipe to be had: read instead.
                            Poll::Ready(Ok(None)) => {}
                        }
                    }
                    let read = up.stream.poll_read_with(cx, |s| {
                        driver.read_from(clock.now(), Side::Upstream, |room| s.read_some(room))
                    });
                    if read.is_ready() {
                        return Poll::Ready(Woke::Handled);
                    }
                } else if w.client {
                    let read = client.poll_read_with(cx, |s| {
                        driver.read_from(clock.now(), Side::Client, |room| s.read_some(room))
                    });
                    if read.is_ready() {
                        return Poll::Ready(Woke::Handled);
                    }
                }
            }
            if let Some((due, at)) = deadline {
                if alarm.poll(cx, due, at) {
                    return Poll::Ready(Woke::Deadline);
                }
            }
            if let Some(listener) = life_listener.as_mut() {
                if Pin::new(listener).poll(cx).is_ready() {
                    *life_listener = None;
                    return Poll::Ready(Woke::Handled);
                }
            }
            Poll::Pending
        })
        .await;
        match woke {
            Woke::Handled => {}
            Woke::Deadline => self.driver.handle(self.now(), Input::Timeout),
            #[cfg(target_os = "linux")]
            // Boxed: only spliced bodies need this state, and inline it
            // would make every waiting connection bigger.
            Woke::Spliced(pipe) => Box::pin(self.forward(pipe)).await,
        }
    }

    /// Splices response body bytes from `pipe` (just filled from the
    /// upstream) into the client, and reports them.
    #[cfg(target_os = "linux")]
    async fn forward(&mut self, mut pipe: proxy_host::splice::Pipe) {
        let n = pipe.len() as u64;
        if n == 0 {
            // The upstream's end of stream.
            proxy_host::splice::PIPES.put(pipe);
            self.driver.handle(self.now(), Input::Eof(Side::Upstream));
            return;
        }
        let life = &self.shared.life;
        let sent = net::splice_out(&self.client, &mut pipe, self.write_stall, life).await;
        // Closed rather than pooled if the client did not take it all.
        proxy_host::splice::PIPES.put(pipe);
        self.driver.handle(self.now(), Input::Forwarded(n));
        if sent.is_err() {
            self.failed(Side::Client);
        }
    }
}
