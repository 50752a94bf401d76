//! Stories of whole exchanges, driven by a small simulated world: a
//! scripted client, scripted upstreams and a resolver, all on virtual time.
//! The world drives its connection through the production [`Driver`], as
//! the runtimes do.

use crate::config::Config;
use crate::driver::{Accepted, Driver, Input, Op, Wait};
use crate::id::{ConnId, QueryId, UpstreamId};
use crate::io::{
    CloseReason, ConnectError, Connected, ResolveError, Role, Side, TunnelEnd, TunnelEndReason,
};
use crate::log::{AccessRecord, ExchangeKind};
use crate::time::{Instant, UnixTime, WallAnchor};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

mod cache;

/// A world around one connection. Inputs go in through its methods; what
/// the connection does lands in the public fields.
pub(crate) struct Sim {
    driver: Driver,
    pub(crate) now: Instant,
    /// Everything written or passed to each upstream, by id.
    pub(crate) to_upstream: Vec<(UpstreamId, Vec<u8>)>,
    pub(crate) to_client: Vec<u8>,
    pub(crate) logs: Vec<AccessRecord>,
    pub(crate) resolves: Vec<(QueryId, String)>,
    pub(crate) connects: Vec<(UpstreamId, SocketAddr, bool)>,
    pub(crate) releases: Vec<(UpstreamId, bool)>,
    pub(crate) tunnels: Vec<UpstreamId>,
    pub(crate) closed: Option<CloseReason>,
    /// The upstream the connection is talking to.
    pub(crate) upstream: Option<UpstreamId>,
    /// Send response body bytes straight to the client whenever the
    /// driver allows it, as a splicing runtime would.
    pub(crate) forward: bool,
    /// Bytes sent that way.
    pub(crate) forwarded: u64,
    /// What the driver last said to wait for.
    wait: Option<Wait>,
    /// Password checks (bcrypt runs) the driver asked for.
    pub(crate) verifies: usize,
}

impl Sim {
    pub(crate) fn new(config: Config) -> Sim {
        Sim::with_shared(crate::Shared::allow_all(config))
    }

    /// A world whose connection compiles `config`'s own policy.
    pub(crate) fn with_policy(config: Config, sources: &[(&str, &str)]) -> Sim {
        let sources = sources
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (shared, _) = crate::Shared::new(config, sources).expect("policy compiles");
        Sim::with_shared(shared)
    }

    pub(crate) fn with_shared(shared: Arc<crate::Shared>) -> Sim {
        Sim::with_shared_at(shared, Instant::ZERO)
    }

    /// A world whose clock starts at `now`, around a connection accepted
    /// then.
    pub(crate) fn with_shared_at(shared: Arc<crate::Shared>, now: Instant) -> Sim {
        let accepted = Accepted {
            conn: ConnId(7),
            client: "127.0.0.1:40000".parse().unwrap(),
            role: Role::Proxy,
            anchor: WallAnchor {
                unix_at_zero: UnixTime(1_795_270_203_000_000),
            },
            at: now,
        };
        let mut sim = Sim::accepted(shared, accepted);
        sim.now = now;
        sim
    }

    /// A world around a connection accepted as `accepted` says.
    pub(crate) fn accepted(shared: Arc<crate::Shared>, accepted: Accepted) -> Sim {
        let mut sim = Sim {
            driver: Driver::new(accepted, shared, false),
            now: Instant::ZERO,
            to_upstream: Vec::new(),
            to_client: Vec::new(),
            logs: Vec::new(),
            resolves: Vec::new(),
            connects: Vec::new(),
            releases: Vec::new(),
            tunnels: Vec::new(),
            closed: None,
            upstream: None,
            forward: false,
            forwarded: 0,
            wait: None,
            verifies: 0,
        };
        sim.pump();
        sim
    }

    pub(crate) fn default() -> Sim {
        Sim::new(Config::default())
    }

    /// The connection, for its getters.
    pub(crate) fn conn(&self) -> &super::Connection {
        self.driver.conn()
    }

    /// Performs the driver's ops until it waits.
    fn pump(&mut self) {
        loop {
            match self.driver.poll() {
                Op::Write { to, head, body } => {
                    let bytes = [head, body].concat();
                    self.deliver(to, &bytes);
                }
                Op::Resolve { query, host, .. } => self.resolves.push((query, host)),
                Op::Connect {
                    upstream,
                    addr,
                    allow_pooled,
                    ..
                } => self.connects.push((upstream, addr, allow_pooled)),
                Op::Release { upstream, reuse } => {
                    self.releases.push((upstream, reuse));
                    if self.upstream == Some(upstream) {
                        self.upstream = None;
                    }
                }
                Op::Relay(relay) => {
                    self.tunnels.push(relay.upstream);
                    self.wait = None;
                    return;
                }
                Op::Log(r) => self.logs.push(*r),
                // A runtime runs it on another thread; the answer comes
                // back as an input.
                Op::Verify(job) => {
                    self.verifies += 1;
                    let ok = job.run();
                    self.driver.handle(self.now, Input::Verified(ok));
                }
                Op::Close(reason) => {
                    assert!(self.closed.is_none(), "closed twice");
                    self.closed = Some(reason);
                }
                Op::Wait(w) => {
                    self.wait = Some(w);
                    return;
                }
                Op::Done { .. } => {
                    self.wait = None;
                    return;
                }
            }
        }
    }

    fn input(&mut self, input: Input) {
        self.driver.handle(self.now, input);
        self.pump();
    }

    pub(crate) fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        if self
            .wait
            .and_then(|w| w.deadline)
            .is_some_and(|t| t <= self.now)
        {
            self.input(Input::Timeout);
        }
    }

    fn deliver(&mut self, to: Side, bytes: &[u8]) {
        match to {
            Side::Client => self.to_client.extend_from_slice(bytes),
            Side::Upstream => {
                let id = self.upstream.expect("write to upstream without one");
                match self.to_upstream.iter_mut().find(|(u, _)| *u == id) {
                    Some((_, v)) => v.extend_from_slice(bytes),
                    None => self.to_upstream.push((id, bytes.to_vec())),
                }
            }
        }
    }

    pub(crate) fn client_sends(&mut self, bytes: &[u8]) {
        self.input(Input::Read(Side::Client, bytes.into()));
    }

    pub(crate) fn client_eof(&mut self) {
        self.input(Input::Eof(Side::Client));
    }

    pub(crate) fn resolve(&mut self, addrs: &[&str]) {
        let (q, _) = self
            .resolves
            .last()
            .cloned()
            .expect("a resolve was asked for");
        let ips: Vec<IpAddr> = addrs.iter().map(|a| a.parse().unwrap()).collect();
        self.input(Input::Resolved(q, Ok(ips)));
    }

    pub(crate) fn resolve_err(&mut self, e: ResolveError) {
        let (q, _) = self
            .resolves
            .last()
            .cloned()
            .expect("a resolve was asked for");
        self.input(Input::Resolved(q, Err(e)));
    }

    pub(crate) fn connect_ok(&mut self, reused: bool) {
        let (id, _, _) = *self.connects.last().expect("a connect was asked for");
        self.upstream = Some(id);
        self.input(Input::Connected(id, Ok(Connected { reused })));
    }

    pub(crate) fn connect_err(&mut self, e: ConnectError) {
        let (id, _, _) = *self.connects.last().expect("a connect was asked for");
        self.input(Input::Connected(id, Err(e)));
    }

    /// The upstream sends `bytes`. With `forward`, body bytes the driver
    /// lets go unread go straight to the client, as splice(2) would.
    pub(crate) fn upstream_sends(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let forward = self.wait.and_then(|w| w.upstream).map_or(0, |u| u.forward);
            if !self.forward || forward == 0 {
                self.input(Input::Read(Side::Upstream, bytes.into()));
                return;
            }
            let n = forward.min(bytes.len() as u64) as usize;
            self.to_client.extend_from_slice(&bytes[..n]);
            self.forwarded += n as u64;
            bytes = &bytes[n..];
            self.input(Input::Forwarded(n as u64));
        }
    }

    pub(crate) fn upstream_eof(&mut self) {
        self.input(Input::Eof(Side::Upstream));
    }

    /// A runtime reports `n` bytes forwarded, whatever the driver allowed.
    pub(crate) fn forwarded(&mut self, n: u64) {
        self.input(Input::Forwarded(n));
    }

    pub(crate) fn shutdown(&mut self) {
        self.input(Input::Shutdown);
    }

    pub(crate) fn force_shutdown(&mut self) {
        self.input(Input::ForceShutdown);
    }

    pub(crate) fn tunnel_end(&mut self, to_upstream: u64, to_client: u64) {
        self.input(Input::TunnelEnded(TunnelEnd {
            to_upstream,
            to_client,
            reason: TunnelEndReason::Closed,
        }));
    }

    pub(crate) fn sent_upstream(&self) -> String {
        self.to_upstream
            .iter()
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    pub(crate) fn client_text(&self) -> String {
        String::from_utf8_lossy(&self.to_client).into_owned()
    }

    pub(crate) fn take_client_text(&mut self) -> String {
        let t = self.client_text();
        self.to_client.clear();
        t
    }
}

const GET: &[u8] =
    b"GET http://origin.test/a?b=1 HTTP/1.1\r\nHost: origin.test\r\nUser-Agent: t\r\n\r\n";
const OK_HELLO: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\nhello";

/// Drives GET to origin.test through resolve and connect.
fn connected_get(sim: &mut Sim) {
    sim.client_sends(GET);
    assert_eq!(sim.resolves, vec![(QueryId(0), "origin.test".to_owned())]);
    sim.resolve(&["192.0.2.1"]);
    assert_eq!(
        sim.connects.last().unwrap().1,
        "192.0.2.1:80".parse().unwrap()
    );
    sim.connect_ok(false);
}

#[test]
fn get_is_rewritten_forwarded_and_logged() {
    let mut sim = Sim::default();
    connected_get(&mut sim);
    assert_eq!(
        sim.sent_upstream(),
        "GET /a?b=1 HTTP/1.1\r\nHost: origin.test\r\nUser-Agent: t\r\nVia: 1.1 proxy-rs\r\n\r\n"
    );
    sim.now = Instant::from_micros(12_000);
    sim.upstream_sends(OK_HELLO);
    assert_eq!(
        sim.client_text(),
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nVia: 1.1 proxy-rs\r\n\r\nhello"
    );
    assert_eq!(sim.releases, vec![(UpstreamId(0), true)]);
    assert_eq!(sim.logs.len(), 1);
    let log = &sim.logs[0];
    assert_eq!(
        (log.method.as_str(), log.target.as_str(), log.status),
        ("GET", "http://origin.test/a?b=1", 200)
    );
    assert_eq!(log.upstream, Some("192.0.2.1:80".parse().unwrap()));
    assert_eq!(log.bytes_from_client, GET.len() as u64);
    assert_eq!(log.bytes_to_client, sim.to_client.len() as u64);
    assert_eq!(log.duration, Duration::from_millis(12));
    assert!(sim.closed.is_none());
    assert!(
        sim.conn().wants_client_data(),
        "idle and ready for the next request"
    );
}

#[test]
fn keep_alive_serves_a_second_request_on_the_same_client_connection() {
    let mut sim = Sim::default();
    connected_get(&mut sim);
    sim.upstream_sends(OK_HELLO);
    sim.take_client_text();
    sim.client_sends(b"GET http://192.0.2.9:8080/x HTTP/1.1\r\nHost: ignored\r\n\r\n");
    // An IP literal skips resolution.
    assert_eq!(sim.resolves.len(), 1);
    assert_eq!(
        sim.connects.last().unwrap().1,
        "192.0.2.9:8080".parse().unwrap()
    );
    sim.connect_ok(true);
    assert!(sim
        .sent_upstream()
        .ends_with("GET /x HTTP/1.1\r\nHost: 192.0.2.9:8080\r\nVia: 1.1 proxy-rs\r\n\r\n"));
    sim.upstream_sends(b"HTTP/1.1 204 No Content\r\n\r\n");
    assert!(sim
        .take_client_text()
        .starts_with("HTTP/1.1 204 No Content\r\n"));
    assert_eq!(sim.logs.len(), 2);
    assert!(sim.closed.is_none());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut sim = Sim::default();
    let two = [
        GET,
        b"HEAD http://origin.test/2 HTTP/1.1\r\nHost: origin.test\r\n\r\n",
    ]
    .concat();
    sim.client_sends(&two);
    sim.resolve(&["192.0.2.1"]);
    sim.connect_ok(false);
    // The second request waits while the first is in flight.
    assert_eq!(sim.resolves.len(), 1);
    sim.upstream_sends(OK_HELLO);
    assert_eq!(
        sim.resolves.len(),
        2,
        "second request starts after the first response"
    );
    sim.resolve(&["192.0.2.1"]);
    sim.connect_ok(true);
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
    let text = sim.client_text();
    let first = text.find("hello").unwrap();
    let second = text.find("Content-Length: 100").unwrap();
    assert!(first < second);
    assert_eq!(
        sim.logs
            .iter()
            .map(|l| l.method.as_str())
            .collect::<Vec<_>>(),
        ["GET", "HEAD"]
    );
}

#[test]
fn chunked_request_body_passes_verbatim() {
    let mut sim = Sim::default();
    sim.client_sends(
        b"POST http://192.0.2.1/up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    sim.connect_ok(false);
    sim.client_sends(b"4\r\nwiki\r\n5;e=1\r\npedia\r\n0\r\nT: v\r\n\r\n");
    assert!(sim
        .sent_upstream()
        .ends_with("\r\n\r\n4\r\nwiki\r\n5;e=1\r\npedia\r\n0\r\nT: v\r\n\r\n"));
    assert!(sim
        .sent_upstream()
        .contains("Transfer-Encoding: chunked\r\n"));
    sim.upstream_sends(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(sim.logs[0].status, 201);
    assert_eq!(sim.releases, vec![(UpstreamId(0), true)]);
}

#[test]
fn chunked_response_is_dechunked_for_http10_clients_and_closes() {
    let mut sim = Sim::default();
    sim.client_sends(b"GET http://192.0.2.1/ HTTP/1.0\r\n\r\n");
    sim.connect_ok(false);
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n");
    let text = sim.client_text();
    assert!(text.contains("Connection: close\r\n"));
    assert!(!text.contains("Transfer-Encoding"));
    assert!(text.ends_with("\r\n\r\nabcde"));
    assert_eq!(sim.closed, Some(CloseReason::NotPersistent));
    assert_eq!(sim.releases, vec![(UpstreamId(0), true)]);
}

#[test]
fn close_delimited_response_ends_at_upstream_eof() {
    let mut sim = Sim::default();
    connected_get(&mut sim);
    sim.upstream_sends(b"HTTP/1.0 200 OK\r\n\r\npart one ");
    sim.upstream_sends(b"part two");
    assert!(sim.logs.is_empty());
    sim.upstream_eof();
    assert!(sim.client_text().ends_with("part one part two"));
    assert!(sim.client_text().contains("Connection: close\r\n"));
    assert_eq!(sim.releases, vec![(UpstreamId(0), false)]);
    assert_eq!(sim.closed, Some(CloseReason::NotPersistent));
    assert_eq!(sim.logs.len(), 1);
}

#[test]
fn ambiguous_request_framing_gets_400_and_close() {
    for bad in [
        &b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        b"POST http://a.test/ HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nX: a\r\n b\r\n\r\n",
        b"GET http://a.test/ HTTP/1.1\r\nHost : a.test\r\n\r\n",
        b"GET http://a.test/ HTTP/1.1\r\n\r\n",
        b"GET http://a.test/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /just/a/path HTTP/1.1\r\nHost: a.test\r\n\r\n",
    ] {
        let mut sim = Sim::default();
        sim.client_sends(bad);
        let text = sim.client_text();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("Proxy-Status: proxy-rs; error=http_request_error; details="), "{text}");
        assert!(text.contains("Connection: close\r\n"));
        assert_eq!(sim.closed, Some(CloseReason::BadRequest));
        assert!(sim.connects.is_empty() && sim.resolves.is_empty(), "nothing goes upstream");
        assert_eq!(sim.logs.len(), 1);
        assert_eq!(sim.logs[0].status, 400);
        assert_eq!(sim.logs[0].error.map(crate::ErrorType::as_str), Some("http_request_error"));
    }
}

#[test]
fn bad_chunk_in_request_body_gets_400_and_drops_the_upstream() {
    let mut sim = Sim::default();
    sim.client_sends(
        b"POST http://192.0.2.1/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    sim.connect_ok(false);
    sim.client_sends(b"zz\r\n");
    assert!(sim.client_text().starts_with("HTTP/1.1 400 "));
    assert!(sim.client_text().contains("malformed chunked body"));
    assert_eq!(sim.releases, vec![(UpstreamId(0), false)]);
    assert_eq!(sim.closed, Some(CloseReason::BadRequest));
}

#[test]
fn ambiguous_response_framing_gets_502_and_nothing_of_it_passes() {
    let mut sim = Sim::default();
    connected_get(&mut sim);
    sim.upstream_sends(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello",
    );
    let text = sim.client_text();
    assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
    assert!(text.contains("error=http_protocol_error"));
    assert!(!text.contains("hello"));
    assert_eq!(sim.releases, vec![(UpstreamId(0), false)]);
    // The client's request was whole, so its connection survives.
    assert!(sim.closed.is_none());
}

#[test]
fn unresolvable_and_refused_get_502_with_proxy_status() {
    let mut sim = Sim::default();
    sim.client_sends(GET);
    sim.resolve_err(ResolveError::NotFound);
    assert!(sim.client_text().contains("error=dns_error"));
    assert!(sim.client_text().starts_with("HTTP/1.1 502 "));

    let mut sim = Sim::default();
    sim.client_sends(GET);
    sim.resolve(&["192.0.2.1", "192.0.2.2"]);
    sim.connect_err(ConnectError::Refused);
    // The next address is tried before giving up.
    assert_eq!(sim.connects.len(), 2);
    assert_eq!(sim.connects[1].1, "192.0.2.2:80".parse().unwrap());
    sim.connect_err(ConnectError::Refused);
    assert!(sim.client_text().contains("error=connection_refused"));
    assert_eq!(
        sim.logs[0].error.map(crate::ErrorType::as_str),
        Some("connection_refused")
    );
}

#[test]
fn timeouts_answer_408_504_and_close_idle_clients() {
    let cfg = Config::default();
    let t = cfg.timeouts.clone();

    let mut sim = Sim::default();
    sim.client_sends(b"GET http://a.test/ HTTP/1.1\r\nHo");
    sim.advance(t.head_read);
    assert!(sim
        .client_text()
        .starts_with("HTTP/1.1 408 Request Timeout\r\n"));
    assert_eq!(sim.closed, Some(CloseReason::BadRequest));

    let mut sim = Sim::default();
    connected_get(&mut sim);
    sim.advance(t.response - Duration::from_millis(1));
    assert!(sim.client_text().is_empty());
    sim.advance(Duration::from_millis(1));
    assert!(sim
        .client_text()
        .starts_with("HTTP/1.1 504 Gateway Timeout\r\n"));
    assert!(sim.client_text().contains("error=http_response_timeout"));

    let mut sim = Sim::default();
    sim.client_sends(GET);
    sim.resolve(&["192.0.2.1"]);
    sim.advance(t.connect);
    assert!(sim.client_text().contains("error=connection_timeout"));
    assert!(
        sim.releases.is_empty(),
        "a connect that never finished leaves the runtime nothing to release"
    );

    // A connection that never sends anything has head_read, not the
    // keep-alive idle time, to begin: closed silently, nothing logged.
    let mut sim = Sim::default();
    assert!(t.head_read < t.client_idle);
    sim.advance(t.head_read - Duration::from_millis(1));
    assert_eq!(sim.closed, None);
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.closed, Some(CloseReason::IdleTimeout));
    assert!(sim.logs.is_empty() && sim.to_client.is_empty());

    // Between requests the keep-alive idle time applies.
    let mut sim = Sim::default();
    connected_get(&mut sim);
    sim.upstream_sends(b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(sim.logs.len(), 1);
    sim.advance(t.client_idle - Duration::from_millis(1));
    assert_eq!(sim.closed, None);
    sim.advance(Duration::from_millis(1));
    assert_eq!(sim.closed, Some(CloseReason::IdleTimeout));
}

/// A client that stops mid-body gets 408 after `body_read`, well before
/// `transfer_idle`, which still bounds responses.
#[test]
fn a_request_body_that_stalls_gets_408_after_body_read() {
    let t = Config::default().timeouts;
    assert!(t.body_read < t.transfer_idle);
    let mut sim = Sim::default();
    sim.client_sends(
        b"POST http://192.0.2.1/up HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n01234",
    );
    sim.connect_ok(false);
    sim.advance(t.body_read - Duration::from_millis(1));
    assert!(sim.client_text().is_empty());
    sim.advance(Duration::from_millis(1));
    assert!(
        sim.client_text().starts_with("HTTP/1.1 408 "),
        "{}",
        sim.client_text()
    );
}

/// An origin that answers before the upload ends (an early 413, say):
/// the client has its response, and the rest of its upload gets
/// `body_read` like any upload, not the response's `transfer_idle`.
#[test]
fn an_upload_left_after_an_early_answer_gets_body_read() {
    let t = Config::default().timeouts;
    let mut sim = Sim::default();
    sim.client_sends(
        b"POST http://192.0.2.1/up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n01234",
    );
    sim.connect_ok(false);
    sim.upstream_sends(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 2\r\n\r\nno");
    assert!(
        sim.client_text().starts_with("HTTP/1.1 413 "),
        "{}",
        sim.client_text()
    );
    assert!(
        sim.client_text().ends_with("\r\n\r\nno"),
        "{}",
        sim.client_text()
    );
    sim.advance(t.body_read - Duration::from_millis(1));
    assert_eq!(sim.closed, None);
    sim.advance(Duration::from_millis(1));
    assert!(sim.closed.is_some(), "closed at body_read");
    assert_eq!(sim.logs.len(), 1);
    assert_eq!(sim.logs[0].status, 413);
}

#[test]
fn connect_tunnel_answers_200_then_hands_over() {
    let mut sim = Sim::default();
    sim.client_sends(b"CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\n");
    sim.resolve(&["192.0.2.1"]);
    assert_eq!(sim.connects[0].1, "192.0.2.1:443".parse().unwrap());
    sim.connect_ok(false);
    assert_eq!(
        sim.client_text(),
        "HTTP/1.1 200 Connection established\r\n\r\n"
    );
    assert_eq!(sim.tunnels, vec![UpstreamId(0)]);
    assert!(!sim.conn().wants_client_data());
    sim.tunnel_end(100, 2000);
    let log = &sim.logs[0];
    assert_eq!(log.kind, ExchangeKind::Tunnel);
    assert_eq!(log.status, 200);
    assert_eq!(log.bytes_to_client, 2000 + 39);
    assert_eq!(sim.closed, Some(CloseReason::TunnelDone));
}

/// Through a parent proxy: plain HTTP in absolute form to the parent's
/// address (no resolving of the destination), CONNECT sent on as a
/// CONNECT whose answer may come in pieces, and a refusal a 502.
#[test]
fn requests_go_through_a_parent_when_routed_so() {
    let config = || Config {
        routing: crate::routing::RoutingConfig {
            parents: vec!["u:p@192.0.2.9:3128".into()],
            direct: vec![],
            ..crate::routing::RoutingConfig::default()
        },
        ..Config::default()
    };
    let mut sim = Sim::with_shared(crate::Shared::allow_all(config()));
    sim.client_sends(b"GET http://origin.test/x?q HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    assert!(
        sim.resolves.is_empty(),
        "the parent resolves the destination"
    );
    assert_eq!(sim.connects[0].1, "192.0.2.9:3128".parse().unwrap());
    sim.connect_ok(false);
    assert_eq!(
        sim.sent_upstream(),
        "GET http://origin.test/x?q HTTP/1.1\r\nHost: origin.test\r\nVia: 1.1 proxy-rs\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
    );
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    assert_eq!(
        sim.logs[0].upstream,
        Some("192.0.2.9:3128".parse().unwrap())
    );

    let mut sim = Sim::with_shared(crate::Shared::allow_all(config()));
    sim.client_sends(b"CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\n");
    sim.connect_ok(false);
    assert_eq!(
        sim.sent_upstream(),
        "CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
    );
    assert_eq!(sim.client_text(), "", "nothing before the parent says yes");
    sim.upstream_sends(b"HTTP/1.1 200 Conn");
    assert!(sim.tunnels.is_empty());
    sim.upstream_sends(b"ection established\r\n\r\n");
    assert_eq!(
        sim.client_text(),
        "HTTP/1.1 200 Connection established\r\n\r\n"
    );
    assert_eq!(sim.tunnels, vec![UpstreamId(0)]);

    let mut sim = Sim::with_shared(crate::Shared::allow_all(config()));
    sim.client_sends(b"CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\r\n");
    sim.connect_ok(false);
    sim.upstream_sends(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    assert!(sim
        .client_text()
        .starts_with("HTTP/1.1 502 Bad Gateway\r\n"));
    assert!(sim
        .client_text()
        .contains("parent proxy 192.0.2.9:3128 answered 403 Forbidden to CONNECT"));
    assert!(sim.tunnels.is_empty());
    assert_eq!(sim.logs[0].status, 502);

    // A parent that does not answer in time gives way to the next, and
    // is tried last by later requests for a while.
    let shared = crate::Shared::allow_all(Config {
        routing: crate::routing::RoutingConfig {
            parents: vec!["192.0.2.9:3128".into(), "192.0.2.10:3128".into()],
            direct: vec![],
            ..crate::routing::RoutingConfig::default()
        },
        ..Config::default()
    });
    let mut sim = Sim::with_shared(shared.clone());
    sim.client_sends(b"GET http://origin.test/x HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    sim.advance(Config::default().timeouts.connect);
    assert_eq!(sim.connects.len(), 2, "{:?}", sim.connects);
    assert_eq!(sim.connects[1].1, "192.0.2.10:3128".parse().unwrap());
    sim.connect_ok(false);
    sim.upstream_sends(b"HTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!(
        sim.logs[0].upstream,
        Some("192.0.2.10:3128".parse().unwrap())
    );
    assert!(sim.logs[0].parent);
    let later = sim.now;
    let mut sim = Sim::with_shared_at(shared.clone(), later);
    sim.client_sends(b"GET http://origin.test/y HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    assert_eq!(
        sim.connects[0].1,
        "192.0.2.10:3128".parse().unwrap(),
        "the one that answered first"
    );
    let mut sim = Sim::with_shared_at(shared, later + crate::routing::DOWN_FOR);
    sim.client_sends(b"GET http://origin.test/z HTTP/1.1\r\nHost: origin.test\r\n\r\n");
    assert_eq!(
        sim.connects[0].1,
        "192.0.2.9:3128".parse().unwrap(),
        "given another chance"
    );
}

#[test]
fn upgrade_switches_to_a_relay_after_101() {
    let mut sim = Sim::default();
    sim.client_sends(b"GET http://192.0.2.1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    sim.connect_ok(false);
    assert!(sim
        .sent_upstream()
        .contains("Upgrade: websocket\r\nVia: 1.1 proxy-rs\r\nConnection: upgrade\r\n"));
    sim.upstream_sends(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nFRAME");
    assert!(sim
        .client_text()
        .starts_with("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"));
    assert!(sim.client_text().contains("Connection: upgrade\r\n"));
    assert!(
        !sim.client_text().contains("FRAME"),
        "bytes after the head are the relay's"
    );
    assert_eq!(sim.tunnels, vec![UpstreamId(0)]);
    sim.tunnel_end(5, 5);
    assert_eq!(sim.logs[0].kind, ExchangeKind::Upgrade);
    assert_eq!(sim.logs[0].status, 101);
}

#[test]
fn stale_pooled_connection_is_retried_once_on_a_fresh_one() {
    let mut sim = Sim::default();
    sim.client_sends(GET);
    sim.resolve(&["192.0.2.1"]);
    assert!(sim.connects[0].2, "pooled connections allowed at first");
    sim.connect_ok(true);
    sim.upstream_eof();
    assert_eq!(sim.releases, vec![(UpstreamId(0), false)]);
    assert_eq!(sim.connects.len(), 2);
    assert_eq!(
        sim.connects[1],
        (UpstreamId(1), "192.0.2.1:80".parse().unwrap(), false)
    );
    sim.connect_ok(false);
    sim.upstream_sends(OK_HELLO);
    assert!(sim.client_text().ends_with("hello"));
    assert!(sim.to_upstream.len() == 2 && sim.to_upstream[0].1 == sim.to_upstream[1].1);
}

#[test]
fn interim_responses_reach_http11_clients() {
    let mut sim = Sim::default();
    sim.client_sends(b"PUT http://192.0.2.1/f HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
    sim.connect_ok(false);
    assert!(sim.sent_upstream().contains("Expect: 100-continue\r\n"));
    sim.upstream_sends(b"HTTP/1.1 100 Continue\r\n\r\n");
    assert_eq!(
        sim.take_client_text(),
        "HTTP/1.1 100 Continue\r\nVia: 1.1 proxy-rs\r\n\r\n"
    );
    sim.client_sends(b"abc");
    assert!(sim.sent_upstream().ends_with("\r\n\r\nabc"));
    sim.upstream_sends(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
    assert!(sim.client_text().starts_with("HTTP/1.1 201 Created\r\n"));
    assert_eq!(sim.logs[0].status, 201);
}

#[test]
fn head_response_has_no_body_despite_content_length() {
    let mut sim = Sim::default();
    sim.client_sends(b"HEAD http://192.0.2.1/ HTTP/1.1\r\nHost: x\r\n\r\n");
    sim.connect_ok(false);
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
    assert_eq!(sim.logs.len(), 1);
    assert_eq!(sim.releases, vec![(UpstreamId(0), true)]);
}

#[test]
fn trace_with_max_forwards_zero_is_answered_by_the_proxy() {
    let mut sim = Sim::default();
    sim.client_sends(b"TRACE http://a.test/ HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 0\r\nProxy-Authorization: Basic x\r\n\r\n");
    let text = sim.client_text();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(text.contains("Content-Type: message/http\r\n"));
    assert!(text.contains("TRACE http://a.test/ HTTP/1.1\r\n"));
    assert!(!text.contains("Proxy-Authorization"));
    assert!(sim.resolves.is_empty());
    assert_eq!(sim.logs[0].kind, ExchangeKind::Local);

    let mut sim = Sim::default();
    sim.client_sends(
        b"TRACE http://192.0.2.1/ HTTP/1.1\r\nHost: a.test\r\nMax-Forwards: 3\r\n\r\n",
    );
    sim.connect_ok(false);
    assert!(sim.sent_upstream().contains("Max-Forwards: 2\r\n"));
}

#[test]
fn a_request_that_already_passed_through_us_is_a_loop() {
    let mut sim = Sim::default();
    sim.client_sends(
        b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nVia: 1.0 fred, 1.1 proxy-rs\r\n\r\n",
    );
    assert!(sim
        .client_text()
        .starts_with("HTTP/1.1 508 Loop Detected\r\n"));
    assert!(sim.client_text().contains("error=proxy_loop_detected"));
}

#[test]
fn over_limit_heads_get_414_and_431() {
    let mut sim = Sim::default();
    let long = format!(
        "GET http://a.test/{} HTTP/1.1\r\nHost: a\r\n\r\n",
        "a".repeat(9000)
    );
    sim.client_sends(long.as_bytes());
    assert!(sim
        .client_text()
        .starts_with("HTTP/1.1 414 URI Too Long\r\n"));

    let mut sim = Sim::default();
    let big = format!(
        "GET http://a.test/ HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "b".repeat(70_000)
    );
    sim.client_sends(big.as_bytes());
    assert!(sim.client_text().starts_with("HTTP/1.1 431 "));
    assert_eq!(sim.closed, Some(CloseReason::BadRequest));
}

#[test]
fn response_body_cut_short_aborts_the_client() {
    let mut sim = Sim::default();
    connected_get(&mut sim);
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    sim.upstream_eof();
    assert_eq!(sim.closed, Some(CloseReason::Aborted));
    assert_eq!(
        sim.logs[0].error.map(crate::ErrorType::as_str),
        Some("http_response_incomplete")
    );
    assert_eq!(sim.releases, vec![(UpstreamId(0), false)]);
}

#[test]
fn client_half_close_after_a_whole_request_still_gets_the_answer() {
    let mut sim = Sim::default();
    connected_get(&mut sim);
    sim.client_eof();
    assert!(sim.closed.is_none());
    sim.upstream_sends(OK_HELLO);
    assert!(sim.client_text().ends_with("hello"));
    assert!(sim.client_text().contains("Connection: close\r\n"));
    assert_eq!(sim.closed, Some(CloseReason::NotPersistent));
}

/// Chunking invariance (the first property, after h11): the same client
/// and upstream bytes, split anywhere, give the same bytes out each way and
/// the same log records.
mod chunking {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Exchange {
        request: Vec<u8>,
        response: Vec<u8>,
        /// What the origin must get after the request head: the body as
        /// the generator framed it.
        origin_gets: Vec<u8>,
        /// What the client must get after the response heads (`heads` of
        /// them, interim ones included).
        client_gets: Vec<u8>,
        heads: usize,
    }

    impl Exchange {
        fn new(
            request: Vec<u8>,
            origin_gets: &[u8],
            response: Vec<u8>,
            client_gets: &[u8],
        ) -> Exchange {
            Exchange::interim(request, origin_gets, response, client_gets, 1)
        }

        fn interim(
            request: Vec<u8>,
            origin_gets: &[u8],
            response: Vec<u8>,
            client_gets: &[u8],
            heads: usize,
        ) -> Exchange {
            Exchange {
                request,
                response,
                origin_gets: origin_gets.to_vec(),
                client_gets: client_gets.to_vec(),
                heads,
            }
        }
    }

    /// The end of the head starting at `from` in `stream`.
    fn head_end(stream: &[u8], from: usize) -> usize {
        from + stream[from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| {
                panic!(
                    "no head at {from}: {:?}",
                    String::from_utf8_lossy(&stream[from..])
                )
            })
            + 4
    }

    /// What reached the origin and the client is, after each head, the
    /// body the generator produced, and nothing else.
    fn delivered_as_generated(
        exchanges: &[Exchange],
        outcome: &Outcome,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            outcome.0.len(),
            exchanges.len(),
            "one upstream per exchange"
        );
        let mut at = 0;
        for (e, upstream) in exchanges.iter().zip(&outcome.0) {
            let body = &upstream[head_end(upstream, 0)..];
            prop_assert_eq!(body, &e.origin_gets[..], "the request body as sent");
            for _ in 0..e.heads {
                at = head_end(&outcome.1, at);
            }
            let end = at + e.client_gets.len();
            prop_assert!(end <= outcome.1.len(), "the response body cut short");
            prop_assert_eq!(
                &outcome.1[at..end],
                &e.client_gets[..],
                "the response body as sent"
            );
            at = end;
        }
        prop_assert_eq!(at, outcome.1.len(), "nothing after the last response");
        Ok(())
    }

    fn exchange() -> impl Strategy<Value = Exchange> {
        let body = proptest::collection::vec(any::<u8>(), 0..300);
        (0usize..6, body, 1usize..40).prop_map(|(kind, body, chunk)| {
            let cl_response = [b"HTTP/1.1 200 OK\r\nContent-Length: ".to_vec(), body.len().to_string().into_bytes(), b"\r\nX-A: 1\r\n\r\n".to_vec(), body.clone()].concat();
            let chunked = |b: &[u8]| {
                let mut out = Vec::new();
                for piece in b.chunks(chunk) {
                    out.extend_from_slice(format!("{:x};ext\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\nTrailer-A: x\r\n\r\n");
                out
            };
            match kind {
                0 => Exchange::new(b"GET http://192.0.2.1/g HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\n\r\n".to_vec(), b"", cl_response, &body),
                1 => Exchange::new(
                    [format!("POST http://192.0.2.1/p HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes(), body.clone()].concat(),
                    &body,
                    b"HTTP/1.1 204 No Content\r\n\r\n".to_vec(),
                    b"",
                ),
                2 => Exchange::new(
                    [b"PUT http://192.0.2.1/c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), chunked(&body)].concat(),
                    &chunked(&body),
                    cl_response,
                    &body,
                ),
                3 => Exchange::new(
                    b"GET http://192.0.2.1/chunked HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
                    b"",
                    [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(), chunked(&body)].concat(),
                    &chunked(&body),
                ),
                4 => Exchange::new(
                    b"HEAD http://192.0.2.1/h HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
                    b"",
                    b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n".to_vec(),
                    b"",
                ),
                _ => Exchange::interim(
                    b"GET http://192.0.2.1/early HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
                    b"",
                    [b"HTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n".to_vec(), b"HTTP/1.1 304 Not Modified\r\n\r\n".to_vec()].concat(),
                    b"",
                    2,
                ),
            }
        })
    }

    fn split(bytes: &[u8], sizes: &[usize]) -> VecDeque<Vec<u8>> {
        let mut out = VecDeque::new();
        let mut i = 0;
        let mut k = 0;
        while i < bytes.len() {
            let n = if sizes.is_empty() {
                bytes.len()
            } else {
                sizes[k % sizes.len()].max(1)
            };
            k += 1;
            let end = (i + n).min(bytes.len());
            out.push_back(bytes[i..end].to_vec());
            i = end;
        }
        out
    }

    use std::collections::VecDeque;

    type Outcome = (
        Vec<Vec<u8>>,
        Vec<u8>,
        Vec<AccessRecord>,
        Option<CloseReason>,
    );

    fn run(exchanges: &[Exchange], client_sizes: &[usize], upstream_sizes: &[usize]) -> Outcome {
        run_with(exchanges, client_sizes, upstream_sizes, false)
    }

    fn run_with(
        exchanges: &[Exchange],
        client_sizes: &[usize],
        upstream_sizes: &[usize],
        forward: bool,
    ) -> Outcome {
        let mut sim = Sim::default();
        sim.forward = forward;
        let all: Vec<u8> = exchanges.iter().flat_map(|e| e.request.clone()).collect();
        let mut client = split(&all, client_sizes);
        let mut responses: VecDeque<&Exchange> = exchanges.iter().collect();
        let mut upstream_chunks: VecDeque<Vec<u8>> = VecDeque::new();
        let mut connects_answered = 0;
        for _ in 0..10_000 {
            if sim.connects.len() > connects_answered {
                connects_answered += 1;
                sim.connect_ok(false);
                let e = responses.pop_front().expect("one response per connect");
                upstream_chunks = split(&e.response, upstream_sizes);
                continue;
            }
            if sim.conn().wants_client_data() && !client.is_empty() {
                let c = client.pop_front().unwrap();
                sim.client_sends(&c);
                continue;
            }
            if sim.upstream.is_some() && !upstream_chunks.is_empty() {
                let c = upstream_chunks.pop_front().unwrap();
                sim.upstream_sends(&c);
                continue;
            }
            if let Some(c) = client.pop_front() {
                sim.client_sends(&c);
                continue;
            }
            break;
        }
        sim.client_eof();
        let upstream = sim.to_upstream.iter().map(|(_, v)| v.clone()).collect();
        (upstream, sim.to_client, sim.logs, sim.closed)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn any_split_gives_the_same_bytes_and_records(
            exchanges in proptest::collection::vec(exchange(), 1..4),
            client_sizes in proptest::collection::vec(1usize..50, 1..20),
            upstream_sizes in proptest::collection::vec(1usize..50, 1..20),
        ) {
            let whole = run(&exchanges, &[], &[]);
            prop_assert_eq!(whole.2.len(), exchanges.len(), "every exchange logged");
            prop_assert_eq!(whole.3, Some(CloseReason::ClientDone));
            delivered_as_generated(&exchanges, &whole)?;
            let split = run(&exchanges, &client_sizes, &upstream_sizes);
            prop_assert_eq!(&whole, &split);
            let byte_at_a_time = run(&exchanges, &[1], &[1]);
            prop_assert_eq!(&whole, &byte_at_a_time);
        }
    }

    proptest! {
        // Each case runs the exchange once per byte of both streams.
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Each stream cut in two at every point: the same bytes reach the
        /// origin and the client, and the same records, as when whole.
        #[test]
        fn every_split_point_gives_the_same_bytes_and_records(exchange in exchange()) {
            let exchanges = [exchange];
            let whole = run(&exchanges, &[], &[]);
            delivered_as_generated(&exchanges, &whole)?;
            let (request, response) = (exchanges[0].request.len(), exchanges[0].response.len());
            for at in 1..request {
                let cut = [at, request];
                prop_assert_eq!(&whole, &run(&exchanges, &cut, &[]), "request cut at {}", at);
            }
            for at in 1..response {
                let cut = [at, response];
                prop_assert_eq!(&whole, &run(&exchanges, &[], &cut), "response cut at {}", at);
            }
        }

        /// Body bytes sent straight to the client (as a splicing runtime
        /// does) instead of through `handle_upstream_data` change nothing
        /// the client or the log sees.
        #[test]
        fn forwarding_bodies_directly_changes_nothing(
            exchanges in proptest::collection::vec(exchange(), 1..4),
            client_sizes in proptest::collection::vec(1usize..50, 1..20),
            upstream_sizes in proptest::collection::vec(1usize..50, 1..20),
        ) {
            let fed = run(&exchanges, &client_sizes, &upstream_sizes);
            let forwarded = run_with(&exchanges, &client_sizes, &upstream_sizes, true);
            prop_assert_eq!(&fed.0, &forwarded.0);
            prop_assert_eq!(&fed.1, &forwarded.1);
            prop_assert_eq!(&fed.2, &forwarded.2);
            prop_assert_eq!(fed.3, forwarded.3);
        }
    }
}

#[test]
fn response_bodies_may_go_straight_to_the_client() {
    let mut sim = Sim::default();
    sim.forward = true;
    connected_get(&mut sim);
    assert_eq!(sim.conn().forwardable_upstream(), 0, "no response head yet");
    let body = vec![b'x'; 100_000];
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
    assert_eq!(sim.conn().forwardable_upstream(), 100_000);
    sim.upstream_sends(&body[..60_000]);
    assert_eq!(sim.forwarded, 60_000);
    assert_eq!(sim.conn().forwardable_upstream(), 40_000);
    assert!(sim.logs.is_empty());
    sim.upstream_sends(&body[60_000..]);
    assert_eq!(sim.conn().forwardable_upstream(), 0);
    assert_eq!(sim.releases, vec![(UpstreamId(0), true)], "kept for reuse");
    let log = &sim.logs[0];
    assert_eq!(log.bytes_to_client, sim.to_client.len() as u64);
    assert!(sim.take_client_text().ends_with(&"x".repeat(100_000)));

    // Chunked: only the current chunk's data may skip the core; the
    // framing around it is always read.
    sim.client_sends(b"GET http://192.0.2.1/c HTTP/1.1\r\nHost: a\r\n\r\n");
    sim.connect_ok(true);
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123");
    assert_eq!(
        sim.conn().forwardable_upstream(),
        12,
        "the rest of the chunk"
    );
    sim.upstream_sends(b"456789abcdef");
    assert_eq!(
        sim.conn().forwardable_upstream(),
        0,
        "the chunk's CRLF comes next"
    );
    // More than the chunk in one go: only its data is forwarded.
    sim.upstream_sends(b"\r\n3\r\nxyz\r\n0\r\n\r\n");
    assert_eq!(sim.logs.len(), 2);
    assert_eq!(
        sim.take_client_text(),
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nDate: Sat, 21 Nov 2026 14:10:03 GMT\r\nVia: 1.1 proxy-rs\r\n\r\n10\r\n0123456789abcdef\r\n3\r\nxyz\r\n0\r\n\r\n"
    );
    assert!(sim.conn().wants_client_data());
}

#[test]
fn early_response_then_upstream_close_ends_the_exchange() {
    let mut sim = Sim::default();
    sim.client_sends(
        b"POST http://192.0.2.1/big HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789",
    );
    sim.connect_ok(false);
    sim.upstream_sends(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\n\r\n");
    assert!(
        sim.client_text().contains("Connection: close\r\n"),
        "the unread body forces a close"
    );
    assert!(sim.logs.is_empty(), "still passing the body");
    sim.upstream_eof();
    assert_eq!(sim.logs[0].status, 413);
    assert_eq!(sim.closed, Some(CloseReason::NotPersistent));
    assert_eq!(sim.releases, vec![(UpstreamId(0), false)]);
}

/// Whatever happens, in whatever order, the connection neither panics nor
/// breaks its contract (the Sim asserts progress whenever data is wanted,
/// and that Close comes once).
mod robustness {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Client(Vec<u8>),
        Upstream(Vec<u8>),
        ClientEof,
        UpstreamEof,
        Resolve(bool),
        Connect(bool),
        TunnelEnd,
        Advance(u16),
        Shutdown,
        /// A runtime reports body bytes it sent on directly; any count,
        /// even more than the connection allowed.
        Forwarded(u64),
    }

    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            Just(b"GET http://a.test/ HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
            Just(
                b"POST http://192.0.2.1/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    .to_vec()
            ),
            Just(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
            Just(b"5\r\nhello\r\n0\r\n\r\n".to_vec()),
            Just(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc".to_vec()),
            Just(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
            Just(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => fragment().prop_map(Op::Client),
            3 => fragment().prop_map(Op::Upstream),
            1 => Just(Op::ClientEof),
            1 => Just(Op::UpstreamEof),
            2 => any::<bool>().prop_map(Op::Resolve),
            2 => any::<bool>().prop_map(Op::Connect),
            1 => Just(Op::TunnelEnd),
            1 => (0u16..400).prop_map(Op::Advance),
            1 => Just(Op::Shutdown),
            1 => prop_oneof![0u64..300, Just(u64::MAX)].prop_map(Op::Forwarded),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn arbitrary_events_never_panic(ops in proptest::collection::vec(op(), 1..40)) {
            let mut sim = Sim::default();
            let mut resolved = 0;
            let mut connected = 0;
            let mut eof = false;
            for op in ops {
                if sim.closed.is_some() {
                    break;
                }
                match op {
                    Op::Client(b) if !eof => sim.client_sends(&b),
                    Op::Client(_) => {}
                    Op::Upstream(b) => {
                        if sim.upstream.is_some() {
                            sim.upstream_sends(&b);
                        }
                    }
                    Op::ClientEof => {
                        if !eof {
                            eof = true;
                            sim.client_eof();
                        }
                    }
                    Op::UpstreamEof => {
                        if sim.upstream.is_some() {
                            sim.upstream_eof();
                        }
                    }
                    Op::Resolve(ok) => {
                        if sim.resolves.len() > resolved {
                            resolved = sim.resolves.len();
                            if ok {
                                sim.resolve(&["192.0.2.1", "2001:db8::1"]);
                            } else {
                                sim.resolve_err(ResolveError::NotFound);
                            }
                        }
                    }
                    Op::Connect(ok) => {
                        if sim.connects.len() > connected {
                            connected = sim.connects.len();
                            if ok { sim.connect_ok(false) } else { sim.connect_err(ConnectError::Refused) }
                        }
                    }
                    Op::TunnelEnd => {
                        if !sim.tunnels.is_empty() {
                            sim.tunnel_end(1, 1);
                        }
                    }
                    Op::Advance(s) => sim.advance(Duration::from_secs(u64::from(s))),
                    Op::Shutdown => {
                        sim.shutdown();
                    }
                    Op::Forwarded(n) => {
                        if sim.upstream.is_some() {
                            sim.forwarded(n);
                        }
                    }
                }
            }
            // A closed connection has no timers left and wants nothing.
            if sim.closed.is_some() {
                prop_assert!(sim.conn().is_closed());
                prop_assert_eq!(sim.conn().poll_timeout(), None);
                prop_assert!(!sim.conn().wants_client_data());
            } else {
                // Anything still open has a timer that will end it, or is
                // a tunnel the runtime owns.
                prop_assert!(sim.conn().poll_timeout().is_some() || !sim.tunnels.is_empty());
            }
        }
    }
}

#[test]
fn failed_connect_closes_so_early_tunnel_bytes_are_never_parsed() {
    let mut sim = Sim::default();
    sim.client_sends(
        b"CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: 192.0.2.1:443\r\n\r\n\x16\x03\x01\x00\x05hello",
    );
    sim.connect_err(ConnectError::Refused);
    assert!(sim.client_text().starts_with("HTTP/1.1 502 "));
    assert!(sim.client_text().contains("Connection: close\r\n"));
    assert_eq!(sim.closed, Some(CloseReason::AfterError));
    assert_eq!(sim.logs.len(), 1, "the early bytes make no second record");
}

/// Policy refusals: each is an HTTP answer with Proxy-Status, a log record
/// naming the decision and rule, and nothing sent upstream.
mod policy {
    use super::*;
    use crate::policy::PolicyConfig;

    fn config(policy: PolicyConfig) -> Config {
        Config {
            policy,
            ..Config::default()
        }
    }

    fn assert_refused(sim: &Sim, status: u16, proxy_status: &str, decision: &str) -> AccessRecord {
        let text = sim.client_text();
        assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
        assert!(
            text.contains(&format!(
                "Proxy-Status: proxy-rs; error={proxy_status}; details="
            )),
            "{text}"
        );
        let log = sim.logs.last().expect("a record").clone();
        assert_eq!(log.status, status);
        assert_eq!(log.decision.as_str(), decision);
        assert!(log.rule.is_some());
        assert!(sim.connects.is_empty(), "nothing was connected");
        log
    }

    #[test]
    fn denied_domain_names_its_rule_and_keeps_the_connection() {
        let cfg = config(PolicyConfig {
            deny_lists: vec!["block.txt".into()],
            ..Default::default()
        });
        let mut sim = Sim::with_policy(cfg, &[("block.txt", "# ads\nads.example  # all of it\n")]);
        sim.client_sends(b"GET http://cdn.ADS.example./x HTTP/1.1\r\nHost: a\r\n\r\n");
        let log = assert_refused(&sim, 403, "http_request_denied", "denied_domain");
        assert_eq!(log.rule.as_deref(), Some("deny ads.example (block.txt:2)"));
        assert!(sim.client_text().contains("block.txt:2"));
        assert!(sim.resolves.is_empty());
        assert!(sim.closed.is_none(), "a refusal leaves the stream usable");
    }

    #[test]
    fn a_reload_applies_from_the_next_request_on_an_open_connection() {
        let (shared, _) = crate::Shared::new(Config::default(), Default::default()).unwrap();
        let mut sim = Sim::with_shared(shared.clone());
        connected_get(&mut sim);
        sim.upstream_sends(OK_HELLO);
        assert!(sim.take_client_text().starts_with("HTTP/1.1 200 "));
        let cfg = config(PolicyConfig {
            deny_lists: vec!["block.txt".into()],
            ..Default::default()
        });
        let sources = [("block.txt".to_owned(), "origin.test\n".to_owned())];
        shared.reload(cfg, sources.into_iter().collect()).unwrap();
        sim.client_sends(GET);
        assert!(sim.take_client_text().starts_with("HTTP/1.1 403 "));
        let log = sim.logs.last().unwrap();
        assert_eq!(log.decision.as_str(), "denied_domain");
        assert_eq!(log.rule.as_deref(), Some("deny origin.test (block.txt:1)"));
        assert!(sim.closed.is_none());
    }

    #[test]
    fn private_ip_literals_are_refused_before_connecting() {
        for target in [
            "http://127.0.0.1/",
            "http://10.1.2.3:8080/",
            "http://[::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://169.254.169.254/latest/meta-data/",
        ] {
            let mut sim = Sim::with_policy(Config::default(), &[]);
            sim.client_sends(format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
            assert_refused(&sim, 403, "destination_ip_prohibited", "denied_address");
        }
    }

    #[test]
    fn a_name_resolving_to_a_private_address_is_refused_after_resolution() {
        let mut sim = Sim::with_policy(Config::default(), &[]);
        sim.client_sends(b"GET http://rebind.test/ HTTP/1.1\r\nHost: rebind.test\r\n\r\n");
        sim.resolve(&["93.184.216.34", "127.0.0.1"]);
        let log = assert_refused(&sim, 403, "destination_ip_prohibited", "denied_address");
        assert!(log
            .rule
            .unwrap()
            .starts_with("127.0.0.1: deny 127.0.0.0/8 (built-in private range; policy.allow_private_destinations or --dev-allow-private lifts it)"));
    }

    #[test]
    fn clients_outside_the_allowed_ranges_get_403() {
        let cfg = config(PolicyConfig {
            clients: vec!["10.0.0.0/8".into()],
            ..Default::default()
        });
        let mut sim = Sim::with_policy(cfg, &[]);
        sim.client_sends(b"GET http://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_refused(&sim, 403, "http_request_denied", "denied_client");
        assert!(sim.resolves.is_empty());
    }

    #[test]
    fn connect_only_to_allowed_ports_and_users_can_have_their_own() {
        use crate::policy::{auth, AuthConfig, UserRules};
        let _ = auth::parse_basic; // the header format is tested in auth.rs
        let mut users = std::collections::BTreeMap::new();
        users.insert(
            "admin".to_owned(),
            UserRules {
                connect_ports: Some(vec![22, 443]),
                ..Default::default()
            },
        );
        let cfg = config(PolicyConfig {
            users,
            auth: Some(AuthConfig {
                htpasswd: "users".into(),
                realm: "r".into(),
                allow_plaintext: true,
                failures: None,
            }),
            ..Default::default()
        });
        let sources = [("users", "admin:pw\nbob:pw\n")];
        let basic = |u: &str| {
            format!(
                "Proxy-Authorization: Basic {}\r\n",
                base64_encode(&format!("{u}:pw"))
            )
        };

        let mut sim = Sim::with_policy(cfg.clone(), &sources);
        sim.client_sends(
            format!(
                "CONNECT example.com:22 HTTP/1.1\r\nHost: x\r\n{}\r\n",
                basic("bob")
            )
            .as_bytes(),
        );
        let log = assert_refused(&sim, 403, "http_request_denied", "denied_port");
        assert_eq!(log.user.as_deref(), Some("bob"));

        let mut sim = Sim::with_policy(cfg, &sources);
        sim.client_sends(
            format!(
                "CONNECT example.com:22 HTTP/1.1\r\nHost: x\r\n{}\r\n",
                basic("admin")
            )
            .as_bytes(),
        );
        assert_eq!(sim.resolves.len(), 1, "admin may CONNECT to 22");
    }

    #[test]
    fn missing_or_wrong_credentials_get_407_with_a_challenge() {
        use crate::policy::AuthConfig;
        let cfg = config(PolicyConfig {
            auth: Some(AuthConfig {
                htpasswd: "users".into(),
                realm: "corp".into(),
                allow_plaintext: true,
                failures: None,
            }),
            ..Default::default()
        });
        let sources = [("users", "alice:secret\n")];
        for creds in [
            "",
            "Proxy-Authorization: Basic YWxpY2U6d3Jvbmc=\r\n",
            "Proxy-Authorization: Bearer x\r\n",
        ] {
            let mut sim = Sim::with_policy(cfg.clone(), &sources);
            sim.client_sends(
                format!("GET http://example.com/ HTTP/1.1\r\nHost: a\r\n{creds}\r\n").as_bytes(),
            );
            assert_refused(&sim, 407, "http_request_denied", "auth_required");
            assert!(sim
                .client_text()
                .contains("Proxy-Authenticate: Basic realm=\"corp\""));
            assert!(
                sim.closed.is_none(),
                "the client may retry with credentials"
            );
        }
        let mut sim = Sim::with_policy(cfg, &sources);
        sim.client_sends(b"GET http://example.com/ HTTP/1.1\r\nHost: a\r\nProxy-Authorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n");
        sim.resolve(&["93.184.216.34"]);
        sim.connect_ok(false);
        assert!(
            !sim.sent_upstream().contains("Proxy-Authorization"),
            "the credential is never forwarded"
        );
        sim.upstream_sends(OK_HELLO);
        assert_eq!(sim.logs[0].user.as_deref(), Some("alice"));
        assert_eq!(sim.logs[0].decision.as_str(), "allowed");
    }

    /// An auth world: `alice` with a bcrypt hash (cost 4, to be quick),
    /// `failures` as given.
    fn bcrypt_world(failures: Option<crate::policy::rate::RateConfig>) -> Sim {
        use crate::policy::AuthConfig;
        let cfg = config(PolicyConfig {
            auth: Some(AuthConfig {
                htpasswd: "users".into(),
                realm: "corp".into(),
                allow_plaintext: false,
                failures,
            }),
            ..Default::default()
        });
        let hash = bcrypt::hash("secret", 4).unwrap();
        Sim::with_policy(cfg, &[("users", &format!("alice:{hash}\n"))])
    }

    fn get_as(sim: &mut Sim, user: &str, password: &str) {
        sim.client_sends(
            format!(
                "GET http://example.com/ HTTP/1.1\r\nHost: a\r\nProxy-Authorization: Basic {}\r\n\r\n",
                base64_encode(&format!("{user}:{password}"))
            )
            .as_bytes(),
        );
    }

    #[test]
    fn a_bcrypt_check_is_asked_of_the_runtime_once_then_remembered() {
        let mut sim = bcrypt_world(None);
        get_as(&mut sim, "alice", "secret");
        assert_eq!(sim.verifies, 1, "the runtime runs the bcrypt job");
        assert_eq!(sim.resolves.len(), 1, "then the request goes on");
        sim.resolve(&["93.184.216.34"]);
        sim.connect_ok(false);
        assert!(!sim.sent_upstream().contains("Proxy-Authorization"));
        sim.upstream_sends(OK_HELLO);
        assert_eq!(sim.logs[0].user.as_deref(), Some("alice"));
        // Kept alive: the same credential again costs no bcrypt run.
        get_as(&mut sim, "alice", "secret");
        assert_eq!(sim.verifies, 1, "remembered");
        assert_eq!(sim.resolves.len(), 2, "and forwarded");

        // A wrong password and an unknown user both cost a run (so timing
        // tells nothing) and get 407.
        for (user, password) in [("alice", "wrong"), ("mallory", "secret")] {
            let mut sim = bcrypt_world(None);
            get_as(&mut sim, user, password);
            assert_eq!(sim.verifies, 1);
            assert_refused(&sim, 407, "http_request_denied", "auth_required");
            assert!(sim.resolves.is_empty());
        }
    }

    #[test]
    fn failed_logins_beyond_the_limit_get_429_without_a_check() {
        use crate::policy::rate::RateConfig;
        let mut sim = bcrypt_world(Some(RateConfig {
            requests: 1,
            per: Duration::from_secs(60),
            burst: Some(3),
        }));
        for _ in 0..3 {
            sim.take_client_text();
            get_as(&mut sim, "alice", "wrong");
            assert!(sim.client_text().starts_with("HTTP/1.1 407 "));
        }
        assert_eq!(sim.verifies, 3);
        // Out of failed logins: refused before any work, a wrong password
        // and the right one alike (it was never verified).
        for password in ["wrong", "secret"] {
            sim.take_client_text();
            get_as(&mut sim, "alice", password);
            let text = sim.client_text();
            assert!(text.starts_with("HTTP/1.1 429 "), "{text}");
            assert!(text.contains("Retry-After: "), "{text}");
        }
        assert_eq!(sim.verifies, 3, "no bcrypt run past the limit");
        let log = sim.logs.last().unwrap();
        assert_eq!(log.decision.as_str(), "rate_limited");
        assert!(log
            .rule
            .as_deref()
            .unwrap()
            .contains("policy.auth.failures"));
        // A minute later one more try is allowed, and the right password
        // passes.
        sim.advance(Duration::from_secs(61));
        let mut sim2 = bcrypt_world(None);
        get_as(&mut sim2, "alice", "secret");
        assert_eq!(sim2.resolves.len(), 1);
    }

    #[test]
    fn a_credential_verified_before_the_lockout_still_passes() {
        use crate::policy::rate::RateConfig;
        let cfg = Some(RateConfig {
            requests: 1,
            per: Duration::from_secs(60),
            burst: Some(2),
        });
        let mut sim = bcrypt_world(cfg);
        get_as(&mut sim, "alice", "secret");
        sim.resolve(&["93.184.216.34"]);
        sim.connect_ok(false);
        sim.upstream_sends(OK_HELLO);
        // Someone at the same address guesses until locked out...
        for _ in 0..3 {
            get_as(&mut sim, "alice", "guess");
        }
        assert!(sim.client_text().contains("HTTP/1.1 429 "));
        // ...and the verified credential still goes through.
        get_as(&mut sim, "alice", "secret");
        assert_eq!(sim.logs.last().unwrap().decision.as_str(), "rate_limited");
        assert_eq!(sim.resolves.len(), 2, "forwarded, not refused");
    }

    #[test]
    fn over_the_rate_limit_gets_429_with_retry_after() {
        use crate::policy::rate::RateConfig;
        let cfg = config(PolicyConfig {
            rate: Some(RateConfig {
                requests: 2,
                per: Duration::from_secs(10),
                burst: None,
            }),
            allow_private_destinations: true,
            ..Default::default()
        });
        let mut sim = Sim::with_policy(cfg, &[]);
        for _ in 0..2 {
            sim.client_sends(b"GET http://192.0.2.1/ HTTP/1.1\r\nHost: a\r\n\r\n");
            sim.connect_ok(false);
            sim.upstream_sends(b"HTTP/1.1 204 No Content\r\n\r\n");
        }
        sim.take_client_text();
        sim.client_sends(b"GET http://192.0.2.1/ HTTP/1.1\r\nHost: a\r\n\r\n");
        let text = sim.client_text();
        assert!(
            text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
            "{text}"
        );
        assert!(text.contains("Retry-After: 5\r\n"), "{text}");
        assert_eq!(sim.logs.last().unwrap().decision.as_str(), "rate_limited");
    }

    #[test]
    fn connections_over_the_cap_get_503_at_once() {
        let cfg = Config {
            limits: crate::config::Limits {
                max_connections_per_ip: Some(1),
                ..Default::default()
            },
            ..Config::default()
        };
        let (shared, _) = crate::Shared::new(cfg, Default::default()).unwrap();
        let first = Sim::with_shared(shared.clone());
        let second = Sim::with_shared(shared.clone());
        assert!(second
            .client_text()
            .starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(second
            .client_text()
            .contains("error=connection_limit_reached"));
        assert_eq!(second.closed, Some(CloseReason::AfterError));
        assert_eq!(second.logs[0].decision.as_str(), "connection_limit");
        assert!(first.closed.is_none());
        drop(first);
        drop(second);
        assert_eq!(shared.caps().active(), 0, "places are given back");
        let third = Sim::with_shared(shared);
        assert!(third.closed.is_none(), "a freed place can be taken again");
    }

    #[test]
    fn body_over_the_limit_gets_413() {
        let cfg = Config {
            limits: crate::config::Limits {
                max_body_bytes: Some(10),
                ..Default::default()
            },
            ..Config::default()
        };
        let mut sim = Sim::new(cfg.clone());
        sim.client_sends(
            b"POST http://192.0.2.1/ HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n",
        );
        assert!(sim.client_text().starts_with("HTTP/1.1 413 "));
        assert!(sim.connects.is_empty());

        let mut sim = Sim::new(cfg);
        sim.client_sends(
            b"POST http://192.0.2.1/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        sim.connect_ok(false);
        sim.client_sends(b"6\r\nabcdef\r\n6\r\nghijkl\r\n0\r\n\r\n");
        assert!(sim.client_text().starts_with("HTTP/1.1 413 "));
        assert_eq!(sim.releases, vec![(UpstreamId(0), false)]);
        assert_eq!(sim.closed, Some(CloseReason::BadRequest));
    }

    fn base64_encode(text: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(text)
    }
}

/// The proxy's own pages, `/_metrics` and `/_status`, and the counting
/// behind them.
mod admin {
    use super::*;
    use crate::policy::PolicyConfig;

    fn body(text: &str) -> &str {
        text.split_once("\r\n\r\n").map_or("", |(_, b)| b)
    }

    #[test]
    fn metrics_are_answered_locally_and_count_what_happened() {
        let mut sim = Sim::default();
        connected_get(&mut sim);
        sim.now = Instant::from_micros(12_000);
        sim.upstream_sends(OK_HELLO);
        sim.take_client_text();
        sim.now = Instant::from_micros(2_500_000);
        let req = b"GET /_metrics HTTP/1.1\r\nHost: proxy\r\n\r\n";
        sim.client_sends(req);
        let text = sim.take_client_text();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())));
        assert!(head.ends_with("\r\nCache-Control: no-store"));
        assert!(!head.contains("Connection: close"));
        // The forwarded GET is counted; this request is not yet.
        assert!(body.contains("proxy_requests_total{method=\"GET\",decision=\"allowed\"} 1\n"));
        assert!(body.contains("proxy_responses_total{class=\"2xx\"} 1\n"));
        assert!(body.contains("proxy_request_duration_seconds_sum{kind=\"http\"} 0.012\n"));
        assert!(body.contains("proxy_active_connections 1\n"));
        assert!(body.contains("proxy_active_upstream_connections 0\n"));
        assert!(body.contains("proxy_uptime_seconds 2.5\n"));
        assert!(
            sim.resolves.len() == 1 && sim.connects.len() == 1,
            "nothing forwarded"
        );
        let log = sim.logs.last().unwrap();
        assert_eq!(log.kind, ExchangeKind::Local);
        assert_eq!(
            (log.method.as_str(), log.target.as_str()),
            ("GET", "/_metrics")
        );
        assert_eq!((log.status, log.decision.as_str()), (200, "allowed"));
        assert_eq!(log.bytes_to_client, text.len() as u64);
        assert_eq!(log.bytes_from_client, req.len() as u64);
        assert!(sim.closed.is_none() && sim.conn().wants_client_data());

        // HEAD: the same head, no body; and now the scrape is counted.
        sim.client_sends(b"HEAD /_metrics?x=1 HTTP/1.1\r\nHost: proxy\r\n\r\n");
        let text = sim.take_client_text();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\n"));
        assert!(!text.contains("Content-Length: 0\r\n"));
        sim.client_sends(b"GET /_metrics HTTP/1.1\r\nHost: proxy\r\n\r\n");
        let text = sim.take_client_text();
        let scrape = text.split_once("\r\n\r\n").unwrap().1;
        assert!(scrape.contains("proxy_requests_total{method=\"GET\",decision=\"allowed\"} 2\n"));
        assert!(scrape.contains("proxy_requests_total{method=\"HEAD\",decision=\"allowed\"} 1\n"));
        assert!(scrape.contains("proxy_request_duration_seconds_count{kind=\"local\"} 2\n"));

        // `/metrics`, where Prometheus looks by default, is the same page.
        sim.client_sends(b"GET /metrics HTTP/1.1\r\nHost: proxy\r\n\r\n");
        let text = sim.take_client_text();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains("proxy_requests_total{method=\"GET\",decision=\"allowed\"} 3\n"));
        assert_eq!(sim.logs.last().unwrap().target, "/metrics");
    }

    #[test]
    fn status_page_is_html_and_closes_when_asked() {
        let mut sim = Sim::default();
        sim.client_sends(b"GET /_status HTTP/1.0\r\n\r\n");
        let text = sim.client_text();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Type: text/html; charset=utf-8\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(body(&text).starts_with("<!DOCTYPE html>"));
        assert!(body(&text).contains("<title>proxy-rs status</title>"));
        assert_eq!(sim.closed, Some(CloseReason::NotPersistent));
    }

    #[test]
    fn other_origin_form_targets_and_disabled_pages_stay_400() {
        for (req, enabled) in [
            (&b"GET /other HTTP/1.1\r\nHost: p\r\n\r\n"[..], true),
            (
                b"POST /_metrics HTTP/1.1\r\nHost: p\r\nContent-Length: 0\r\n\r\n",
                true,
            ),
            (b"GET /_metrics/x HTTP/1.1\r\nHost: p\r\n\r\n", true),
            (b"GET /_metrics HTTP/1.1\r\nHost: p\r\n\r\n", false),
        ] {
            let mut cfg = Config::default();
            cfg.admin.enabled = enabled;
            let mut sim = Sim::new(cfg);
            sim.client_sends(req);
            let text = sim.client_text();
            assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
            assert!(text.contains("origin-form request to a proxy"));
        }
    }

    #[test]
    fn the_client_acl_guards_the_pages() {
        let cfg = Config {
            policy: PolicyConfig {
                clients: vec!["10.0.0.0/8".into()],
                ..Default::default()
            },
            ..Config::default()
        };
        let mut sim = Sim::with_policy(cfg, &[]);
        sim.client_sends(b"GET /_metrics HTTP/1.1\r\nHost: p\r\n\r\n");
        assert!(sim.client_text().starts_with("HTTP/1.1 403 "));
        assert!(!sim.client_text().contains("proxy_requests_total"));
        assert_eq!(sim.logs[0].decision.as_str(), "denied_client");
        let refusals = sim.conn().shared.metrics().recent_refusals();
        assert_eq!(refusals[0].target, "/_metrics");
    }

    #[test]
    fn upstream_gauge_counts_connections_in_use() {
        let in_use = |sim: &Sim| {
            sim.conn()
                .shared
                .render_metrics(sim.now)
                .lines()
                .find_map(|l| l.strip_prefix("proxy_active_upstream_connections "))
                .unwrap()
                .to_owned()
        };
        let mut sim = Sim::default();
        connected_get(&mut sim);
        assert_eq!(in_use(&sim), "1");
        sim.upstream_sends(OK_HELLO);
        assert_eq!(in_use(&sim), "0");

        sim.client_sends(b"CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: x\r\n\r\n");
        sim.connect_ok(false);
        assert_eq!(in_use(&sim), "1");
        sim.tunnel_end(10, 20);
        assert_eq!(in_use(&sim), "0");
        let text = sim.conn().shared.render_metrics(sim.now);
        assert!(text.contains("proxy_tunnels_total{kind=\"connect\"} 1\n"));

        // A connection dropped mid-exchange gives its count back.
        let mut sim = Sim::default();
        connected_get(&mut sim);
        let shared = Arc::clone(&sim.conn().shared);
        drop(sim);
        assert!(shared
            .render_metrics(Instant::ZERO)
            .contains("proxy_active_upstream_connections 0\n"));
    }
}

#[test]
fn shutdown_lets_the_exchange_finish_then_force_cuts_it_off_with_a_record() {
    let mut sim = Sim::default();
    connected_get(&mut sim);
    sim.shutdown();
    assert!(sim.closed.is_none(), "in flight: it may finish");
    sim.upstream_sends(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
    assert!(sim.client_text().contains("Connection: close\r\n"));
    sim.force_shutdown();
    assert_eq!(sim.closed, Some(CloseReason::Aborted));
    assert_eq!(
        sim.logs[0].error.map(crate::ErrorType::as_str),
        Some("shutdown")
    );
    assert_eq!(sim.releases, vec![(UpstreamId(0), false)]);
}

#[test]
fn the_admin_listener_serves_only_the_proxy_pages() {
    let mut sim = Sim::accepted(
        crate::Shared::allow_all(Config::default()),
        Accepted {
            conn: ConnId(8),
            client: "192.0.2.50:40000".parse().unwrap(),
            role: Role::Admin,
            anchor: WallAnchor::default(),
            at: Instant::ZERO,
        },
    );
    sim.client_sends(b"GET /_metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = sim.take_client_text();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("# TYPE proxy_requests_total counter"));
    sim.client_sends(b"GET http://192.0.2.1/ HTTP/1.1\r\nHost: x\r\n\r\n");
    let text = sim.take_client_text();
    assert!(text.starts_with("HTTP/1.1 404 "), "{text}");
    assert!(
        sim.connects.is_empty() && sim.resolves.is_empty(),
        "the admin port never forwards"
    );
    sim.client_sends(b"CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(sim.client_text().starts_with("HTTP/1.1 404 "));
    assert!(sim.connects.is_empty());
}

/// The ClientHello peek on CONNECT under the default policy: 200 first,
/// the hello read and judged, and only then the origin.
mod tls_peek {
    use super::*;
    use crate::policy::{PolicyConfig, TlsAction, TlsPolicy};

    const CURL_HELLO: &[u8] = include_bytes!("../../../../testdata/tls/curl.bin");

    fn world(deny: &[&str], tls: TlsPolicy) -> Sim {
        let policy = PolicyConfig {
            deny: deny.iter().map(|d| d.to_string()).collect(),
            allow_private_destinations: true,
            connect_ports: vec![],
            tls,
            ..Default::default()
        };
        Sim::with_policy(
            Config {
                policy,
                ..Config::default()
            },
            &[],
        )
    }

    /// Reads the hello before connecting (`delay_connect`).
    fn delayed() -> TlsPolicy {
        TlsPolicy {
            delay_connect: true,
            ..TlsPolicy::default()
        }
    }

    fn sni_of_fixture() -> String {
        let mut p = crate::tls::client_hello::HelloPeeker::new(16 * 1024);
        match p.feed(CURL_HELLO).1 {
            crate::tls::client_hello::Peek::Hello(info) => {
                info.sni.expect("the fixture has an SNI")
            }
            other => panic!("fixture: {other:?}"),
        }
    }

    #[test]
    fn an_allowed_hello_is_forwarded_before_the_relay_starts() {
        let sni = sni_of_fixture();
        let mut sim = world(&[], delayed());
        sim.client_sends(
            format!("CONNECT {sni}:443 HTTP/1.1\r\nHost: {sni}:443\r\n\r\n").as_bytes(),
        );
        assert_eq!(
            sim.take_client_text(),
            "HTTP/1.1 200 Connection established\r\n\r\n"
        );
        assert!(
            sim.resolves.is_empty(),
            "nothing about the origin before the hello"
        );
        for b in CURL_HELLO {
            sim.client_sends(std::slice::from_ref(b));
        }
        assert_eq!(sim.resolves.len(), 1);
        sim.resolve(&["192.0.2.1"]);
        sim.connect_ok(false);
        assert_eq!(
            sim.to_upstream[0].1, CURL_HELLO,
            "the hello goes first, whole"
        );
        assert_eq!(sim.tunnels, vec![UpstreamId(0)]);
        sim.tunnel_end(0, 0);
        let log = &sim.logs[0];
        assert_eq!(
            log.tls.as_ref().and_then(|t| t.sni.clone()),
            Some(sni.clone())
        );
        assert!(log
            .human(crate::UnixTime(0))
            .contains(&format!(" sni={sni}")));
    }

    #[test]
    fn a_denied_sni_gets_an_alert_and_never_reaches_the_origin() {
        let sni = sni_of_fixture();
        let mut sim = world(&[&sni], delayed());
        sim.client_sends(b"CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: x\r\n\r\n");
        sim.take_client_text();
        sim.client_sends(CURL_HELLO);
        assert_eq!(
            sim.to_client,
            [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49],
            "a fatal access_denied alert"
        );
        assert!(sim.resolves.is_empty() && sim.connects.is_empty());
        assert_eq!(sim.closed, Some(CloseReason::Aborted));
        let log = &sim.logs[0];
        assert_eq!((log.status, log.decision.as_str()), (403, "denied_tls"));
        assert!(
            log.rule
                .as_deref()
                .unwrap()
                .starts_with(&format!("SNI {sni}: deny {sni}")),
            "{:?}",
            log.rule
        );
    }

    #[test]
    fn an_sni_other_than_the_connect_target_is_refused_unless_allowed() {
        assert_ne!(sni_of_fixture(), "allowed.test");
        let mut sim = world(&[], delayed());
        sim.client_sends(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: x\r\n\r\n");
        sim.client_sends(CURL_HELLO);
        assert!(sim.logs[0]
            .rule
            .as_deref()
            .unwrap()
            .contains("does not match CONNECT allowed.test"));
        assert!(sim.resolves.is_empty());

        let mut sim = world(
            &[],
            TlsPolicy {
                mismatch: TlsAction::Allow,
                ..delayed()
            },
        );
        sim.client_sends(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: x\r\n\r\n");
        sim.client_sends(CURL_HELLO);
        assert_eq!(sim.resolves.len(), 1, "log only: the tunnel goes on");
    }

    /// The fixture with its SNI replaced in place by `malformed`, which
    /// is padded with digits to the same length (`127.0.0.1:44333`...).
    fn hello_with_sni(prefix: &str) -> (Vec<u8>, String) {
        let sni = sni_of_fixture();
        assert!(prefix.len() < sni.len());
        let malformed = format!("{prefix}{}", "4".repeat(sni.len() - prefix.len()));
        let at = CURL_HELLO
            .windows(sni.len())
            .position(|w| w == sni.as_bytes())
            .expect("the SNI is in the hello");
        let mut hello = CURL_HELLO.to_vec();
        hello[at..at + sni.len()].copy_from_slice(malformed.as_bytes());
        (hello, malformed)
    }

    #[test]
    fn an_sni_that_is_not_a_host_name_is_judged_by_the_connect_authority() {
        // Go's net/http (hey) sends `host:port`; others send IP literals.
        for prefix in ["127.0.0.1:", "192.0.2.1."] {
            let (hello, sni) = hello_with_sni(prefix);
            let mut sim = world(&["blocked.test"], delayed());
            sim.client_sends(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: x\r\n\r\n");
            sim.take_client_text();
            sim.client_sends(&hello);
            assert_eq!(sim.resolves.len(), 1, "{sni}: allowed by default");
            sim.resolve(&["192.0.2.1"]);
            sim.connect_ok(false);
            assert_eq!(
                sim.to_upstream[0].1, hello,
                "{sni}: the hello goes on whole"
            );
            sim.tunnel_end(0, 0);
            let log = &sim.logs[0];
            let tls = log.tls.as_ref().unwrap();
            assert_eq!((tls.sni.as_deref(), tls.sni_malformed), (Some(&*sni), true));
            assert!(log
                .human(crate::UnixTime(0))
                .contains(&format!(" sni={sni} sni_malformed")));

            // The CONNECT authority still decides.
            let mut sim = world(&["blocked.test"], delayed());
            sim.client_sends(b"CONNECT blocked.test:443 HTTP/1.1\r\nHost: x\r\n\r\n");
            assert_eq!(sim.logs[0].status, 403, "{sni}");
            assert!(sim.resolves.is_empty());

            let mut sim = world(
                &[],
                TlsPolicy {
                    malformed_sni: TlsAction::Refuse,
                    ..delayed()
                },
            );
            sim.client_sends(b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: x\r\n\r\n");
            sim.take_client_text();
            sim.client_sends(&hello);
            assert_eq!(sim.to_client, [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49]);
            assert!(sim.resolves.is_empty());
            let rule = sim.logs[0].rule.clone().unwrap();
            assert!(rule.contains("policy.tls.malformed_sni"), "{rule}");
        }
    }

    #[test]
    fn other_protocols_and_silence_follow_not_tls() {
        let mut sim = world(
            &[],
            TlsPolicy {
                not_tls: TlsAction::Refuse,
                ..delayed()
            },
        );
        sim.client_sends(b"CONNECT a.test:80 HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n");
        let text = sim.client_text();
        assert_eq!(
            text, "HTTP/1.1 200 Connection established\r\n\r\n",
            "no alert for a non-TLS client"
        );
        assert_eq!(sim.logs[0].status, 403);
        assert_eq!(sim.closed, Some(CloseReason::Aborted));

        let mut sim = world(
            &[],
            TlsPolicy {
                not_tls: TlsAction::Refuse,
                ..delayed()
            },
        );
        sim.client_sends(b"CONNECT a.test:443 HTTP/1.1\r\nHost: x\r\n\r\n");
        sim.advance(TlsPolicy::default().hello_timeout);
        assert!(sim.logs[0]
            .rule
            .as_deref()
            .unwrap()
            .contains("nothing readable before the timeout"));

        let mut sim = world(&[], delayed());
        sim.client_sends(b"CONNECT a.test:443 HTTP/1.1\r\nHost: x\r\n\r\n");
        sim.advance(TlsPolicy::default().hello_timeout);
        assert_eq!(
            sim.resolves.len(),
            1,
            "silence is allowed by default: a server-speaks-first protocol"
        );
    }

    #[test]
    fn connect_first_when_the_connect_is_not_delayed() {
        let sni = sni_of_fixture();
        let mut sim = world(
            &[&sni],
            TlsPolicy {
                delay_connect: false,
                ..TlsPolicy::default()
            },
        );
        sim.client_sends(b"CONNECT 192.0.2.1:443 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            sim.client_text().is_empty(),
            "no 200 before the origin is connected"
        );
        sim.connect_ok(false);
        assert!(sim.client_text().starts_with("HTTP/1.1 200 "));
        sim.client_sends(CURL_HELLO);
        assert!(
            sim.to_upstream.is_empty(),
            "a refused hello never reaches the origin"
        );
        assert_eq!(sim.releases, vec![(UpstreamId(0), false)]);
        assert_eq!(sim.logs[0].status, 403);
    }

    #[test]
    fn by_default_the_origin_is_connected_first_and_may_speak_first() {
        let mut sim = world(&[], TlsPolicy::default());
        sim.client_sends(b"CONNECT 192.0.2.1:25 HTTP/1.1\r\nHost: x\r\n\r\n");
        sim.connect_ok(false);
        assert!(sim.client_text().starts_with("HTTP/1.1 200 "));
        assert!(
            sim.tunnels.is_empty(),
            "waiting for the client's first bytes"
        );
        sim.upstream_sends(b"220 mail.example ESMTP\r\n");
        assert_eq!(
            sim.tunnels,
            vec![UpstreamId(0)],
            "a server speaking first is not TLS: relay at once"
        );
        assert!(
            sim.client_text()
                .ends_with("\r\n\r\n220 mail.example ESMTP\r\n"),
            "its greeting goes first"
        );
    }
}
