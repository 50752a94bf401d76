//! A minimal runtime around one [`Connection`], shared by the `request` and
//! `chunked` benchmarks: it answers every `Resolve` with one address,
//! every `Connect` at once (from its one-slot idle pool when the core
//! allows it), and counts what the core writes and passes instead of
//! sending it anywhere. No sockets, no clock: time is a fixed [`Instant`]
//! moved forward by hand.

use proxy_core::{
    Action, ConnId, Connected, Connection, Instant, QueryId, Shared, Side, UnixTime, UpstreamId,
    WallAnchor,
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
    conn: Connection,
    now: Instant,
    addrs: Vec<IpAddr>,
    /// `Write` bytes land here; cleared after each drain.
    out: Vec<u8>,
    /// The runtime holds an idle upstream connection it may hand out.
    pooled: bool,
    resolve: Option<QueryId>,
    connect: Option<(UpstreamId, bool)>,
    upstream: Option<UpstreamId>,
    capture: Option<Capture>,
}

impl World {
    /// A keep-alive client connection from loopback (which the default
    /// policy admits).
    pub(crate) fn new(shared: Arc<Shared>) -> World {
        let anchor = WallAnchor {
            unix_at_zero: UnixTime(1_795_270_203_000_000),
        };
        let client = "127.0.0.1:40000".parse().unwrap();
        World {
            conn: Connection::new(ConnId(1), client, shared, anchor, Instant::ZERO),
            now: Instant::ZERO,
            addrs: vec![IpAddr::from(ORIGIN)],
            out: Vec::with_capacity(4096),
            pooled: false,
            resolve: None,
            connect: None,
            upstream: None,
            capture: None,
        }
    }

    /// One whole exchange: the client sends `request` (a head, no body),
    /// the runtime answers whatever the core asks, then the upstream sends
    /// `response`, read [`READ`] bytes at a time. Panics unless the
    /// connection ends up idle again, waiting for the next request.
    pub(crate) fn exchange(&mut self, request: &[u8], response: &[u8]) -> Trip {
        self.now = self.now + Duration::from_micros(50);
        let now = self.now;
        let mut trip = Trip::default();

        assert!(self.conn.wants_client_data(), "not waiting for a request");
        let n = self.conn.handle_client_data(now, request);
        assert_eq!(n, request.len(), "request head not consumed whole");
        self.drain(Side::Client, request, &mut trip);
        loop {
            if let Some(query) = self.resolve.take() {
                trip.resolves += 1;
                self.conn.handle_resolved(now, query, Ok(&self.addrs));
            } else if let Some((upstream, allow_pooled)) = self.connect.take() {
                let reused = allow_pooled && std::mem::take(&mut self.pooled);
                trip.reused = reused;
                self.upstream = Some(upstream);
                self.conn
                    .handle_connected(now, upstream, Ok(Connected { reused }));
            } else {
                break;
            }
            self.drain(Side::Client, &[], &mut trip);
        }

        let upstream = self.upstream.expect("the core asked for no upstream");
        let mut pos = 0;
        while pos < response.len() {
            assert!(self.conn.wants_upstream_data(), "response not wanted");
            let end = response.len().min(pos + READ);
            let slice = &response[pos..end];
            let n = self.conn.handle_upstream_data(now, upstream, slice);
            assert!(n > 0, "wanted upstream data but consumed none");
            self.drain(Side::Upstream, slice, &mut trip);
            pos += n;
        }
        assert!(
            self.conn.wants_client_data() && !self.conn.is_closed(),
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

    /// Performs every queued action. `data` is the slice of the latest
    /// `handle_*_data` call for side `from` (what `Pass` refers to).
    fn drain(&mut self, from: Side, data: &[u8], trip: &mut Trip) {
        while let Some(action) = self.conn.poll_action(&mut self.out) {
            match action {
                Action::Resolve { query, .. } => self.resolve = Some(query),
                Action::Connect {
                    upstream,
                    addr,
                    allow_pooled,
                } => {
                    assert_eq!(addr.ip(), IpAddr::from(ORIGIN));
                    self.connect = Some((upstream, allow_pooled));
                }
                Action::Write { to, len } => {
                    let bytes = &self.out[self.out.len() - len..];
                    deliver(&mut self.capture, to, bytes, trip);
                }
                Action::Pass {
                    from: source,
                    offset,
                    len,
                } => {
                    assert_eq!(source, from, "pass from a side not just read");
                    let to = match source {
                        Side::Client => Side::Upstream,
                        Side::Upstream => Side::Client,
                    };
                    deliver(&mut self.capture, to, &data[offset..offset + len], trip);
                }
                Action::Release { upstream, reuse } => {
                    assert_eq!(Some(upstream), self.upstream);
                    self.upstream = None;
                    self.pooled = reuse;
                    trip.released_for_reuse = reuse;
                }
                Action::Log(record) => trip.status = record.status,
                Action::Close { reason } => panic!("connection closed: {reason:?}"),
                Action::Tunnel { .. } => panic!("unexpected tunnel"),
            }
        }
        self.out.clear();
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
