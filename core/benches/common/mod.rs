//! A minimal runtime around one [`Driver`], shared by the `request` and
//! `chunked` benchmarks: it answers every `Resolve` with one address,
//! every `Connect` at once (from its one-slot idle pool when the core
//! allows it), and counts what the driver writes instead of sending it
//! anywhere. No sockets, no clock: time is a fixed [`Instant`] moved
//! forward by hand. Bytes are read into the driver's buffers as a runtime
//! reads them from a socket, [`READ`] at a time.

use proxy_core::driver::{Accepted, Driver, Input, Op};
use proxy_core::{
    ConnId, Connected, Instant, Role, Shared, Side, UnixTime, UpstreamId, WallAnchor,
};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// How much a runtime reads from a socket at once.
pub(crate) const READ: usize = 16 * 1024;

/// What every name resolves to: TEST-NET-1 documentation space, which
/// the default policy does not count as private. Nothing is ever sent
/// there; the benchmarks do no I/O.
pub(crate) const ORIGIN: [u8; 4] = [192, 0, 2, 7];

/// What one exchange did, as the runtime saw it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Trip {
    /// Bytes written or passed to the client.
    pub(crate) to_client: usize,
    /// Bytes written or passed to the upstream.
    pub(crate) to_upstream: usize,
    /// The status in the exchange's access record (0: no record).
    pub(crate) status: u16,
    /// Names the core asked to resolve.
    pub(crate) resolves: usize,
    /// The upstream connection came from the idle pool.
    pub(crate) reused: bool,
    /// The core released the upstream for reuse.
    pub(crate) released_for_reuse: bool,
}

/// Copies of the bytes each side received, for checking one exchange.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    pub(crate) to_client: Vec<u8>,
    pub(crate) to_upstream: Vec<u8>,
}

pub(crate) struct World {
    driver: Driver,
    now: Instant,
    addrs: Vec<IpAddr>,
    /// The runtime holds an idle upstream connection it may hand out.
    pooled: bool,
    upstream: Option<UpstreamId>,
    capture: Option<Capture>,
}

impl World {
    /// A keep-alive client connection from loopback (which the default
    /// policy admits).
    pub(crate) fn new(shared: Arc<Shared>) -> World {
        let accepted = Accepted {
            conn: ConnId(1),
            client: "127.0.0.1:40000".parse().unwrap(),
            role: Role::Proxy,
            anchor: WallAnchor {
                unix_at_zero: UnixTime(1_795_270_203_000_000),
            },
            at: Instant::ZERO,
        };
        let mut world = World {
            driver: Driver::new(accepted, shared, false),
            now: Instant::ZERO,
            addrs: vec![IpAddr::from(ORIGIN)],
            pooled: false,
            upstream: None,
            capture: None,
        };
        let waiting_for_client = world.run(&mut Trip::default());
        assert!(waiting_for_client, "a new connection waits for its client");
        world
    }

    /// One whole exchange: the client sends `request` (a head, no body),
    /// the runtime answers whatever the core asks, then the upstream sends
    /// `response`, read [`READ`] bytes at a time. Panics unless the
    /// connection ends up idle again, waiting for the next request.
    pub(crate) fn exchange(&mut self, request: &[u8], response: &[u8]) -> Trip {
        self.now = self.now + Duration::from_micros(50);
        let mut trip = Trip::default();
        self.read(Side::Client, request);
        self.run(&mut trip);
        assert!(self.upstream.is_some(), "the core asked for no upstream");
        let mut waiting_for_client = false;
        for chunk in response.chunks(READ) {
            assert!(!waiting_for_client, "response not wanted");
            self.read(Side::Upstream, chunk);
            waiting_for_client = self.run(&mut trip);
        }
        assert!(
            waiting_for_client,
            "the connection is not idle after the exchange"
        );
        trip
    }

    /// [`exchange`](World::exchange), keeping a copy of what each side got.
    pub(crate) fn exchange_captured(&mut self, request: &[u8], response: &[u8]) -> (Trip, Capture) {
        self.capture = Some(Capture::default());
        let trip = self.exchange(request, response);
        (trip, self.capture.take().unwrap())
    }

    /// `bytes` arrive on `side` and are read into the driver's buffer.
    fn read(&mut self, side: Side, bytes: &[u8]) {
        let read = self.driver.read_from(self.now, side, |room| {
            room[..bytes.len()].copy_from_slice(bytes);
            Ok(bytes.len())
        });
        assert_eq!(read.ok(), Some(bytes.len()));
    }

    /// Performs ops until the driver waits; true if it waits for the
    /// client alone (idle between requests).
    fn run(&mut self, trip: &mut Trip) -> bool {
        loop {
            let input = match self.driver.poll() {
                Op::Write { to, head, body } => {
                    deliver(&mut self.capture, to, head, trip);
                    deliver(&mut self.capture, to, body, trip);
                    continue;
                }
                Op::Resolve { query, .. } => {
                    trip.resolves += 1;
                    Input::Resolved(query, Ok(self.addrs.clone()))
                }
                Op::Connect {
                    upstream,
                    addr,
                    allow_pooled,
                    ..
                } => {
                    assert_eq!(addr.ip(), IpAddr::from(ORIGIN));
                    let reused = allow_pooled && std::mem::take(&mut self.pooled);
                    trip.reused = reused;
                    self.upstream = Some(upstream);
                    Input::Connected(upstream, Ok(Connected { reused }))
                }
                Op::Release { upstream, reuse } => {
                    assert_eq!(Some(upstream), self.upstream);
                    self.upstream = None;
                    self.pooled = reuse;
                    trip.released_for_reuse = reuse;
                    continue;
                }
                Op::Log(record) => {
                    trip.status = record.status;
                    continue;
                }
                Op::Wait(w) => return w.client && w.upstream.is_none(),
                Op::Close(reason) => panic!("connection closed: {reason:?}"),
                Op::Relay(_) => panic!("unexpected tunnel"),
                Op::Verify(_) => panic!("no authentication in the benchmarks"),
                Op::Done { .. } => panic!("connection done"),
            };
            self.driver.handle(self.now, input);
        }
    }
}

/// Stands for a socket write: counts the bytes, and copies them when
/// capturing.
fn deliver(capture: &mut Option<Capture>, to: Side, bytes: &[u8], trip: &mut Trip) {
    let (count, copy) = match to {
        Side::Client => (
            &mut trip.to_client,
            capture.as_mut().map(|c| &mut c.to_client),
        ),
        Side::Upstream => (
            &mut trip.to_upstream,
            capture.as_mut().map(|c| &mut c.to_upstream),
        ),
    };
    *count += bytes.len();
    if let Some(copy) = copy {
        copy.extend_from_slice(bytes);
    }
}
