//! The state of one request in flight: what was asked, where it goes, and
//! how far each direction has got.

use crate::http::framing::BodyReader;
use crate::http::head::Version;
use crate::http::target::Authority;
use crate::id::{QueryId, UpstreamId};
use crate::io::ConnectError;
use crate::log::ExchangeKind;
use crate::policy::auth::VerifyJob;
use crate::time::Instant;
use crate::tls::client_hello::{ClientHelloInfo, HelloPeeker};
use std::net::{IpAddr, SocketAddr};

#[derive(Debug)]
pub(super) struct Exchange {
    pub(super) started: Instant,
    pub(super) method: String,
    /// The target as the client sent it, for the log.
    pub(super) target: String,
    pub(super) version: Version,
    pub(super) kind: ExchangeKind,
    pub(super) authority: Authority,
    /// The client allows the connection to persist after this exchange.
    pub(super) client_keep_alive: bool,
    /// The rewritten request head, written once connected.
    pub(super) forward_head: Vec<u8>,
    /// The client asked to switch protocols.
    pub(super) upgrade: bool,
    /// The request has no body, so a stale pooled connection can be
    /// replaced and the request sent again.
    pub(super) retry_safe: bool,
    pub(super) retried: bool,
    pub(super) stage: Stage,
    pub(super) addrs: Vec<IpAddr>,
    pub(super) next_addr: usize,
    pub(super) last_connect_error: Option<ConnectError>,
    pub(super) upstream: Option<UpstreamId>,
    pub(super) upstream_addr: Option<SocketAddr>,
    pub(super) reused: bool,
    /// The request body still flowing, if any.
    pub(super) req_body: Option<BodyReader>,
    pub(super) resp: Resp,
    /// The client connection closes after this response.
    pub(super) close_after: bool,
    /// The upstream connection may carry another request afterwards.
    pub(super) upstream_reusable: bool,
    /// The status sent to the client, 0 until a final head is written.
    pub(super) status: u16,
    pub(super) bytes_to_client: u64,
    pub(super) bytes_from_client: u64,
    /// The authenticated user.
    pub(super) user: Option<String>,
    /// The policy's refusal, when it refused.
    pub(super) denial: Option<crate::policy::Denial>,
    /// Request body bytes seen, against `max_body_bytes`.
    pub(super) body_bytes: u64,
    /// Reading a tunnel's first bytes (the TLS ClientHello), and what they
    /// were: kept to forward once the tunnel is allowed.
    pub(super) peeker: Option<HelloPeeker>,
    /// What the ClientHello said, for the record.
    pub(super) hello: Option<ClientHelloInfo>,
    /// Set while `Stage::Verifying`.
    pub(super) pending_auth: Option<Box<PendingAuth>>,
    /// What the cache knows of this exchange, when caching is on.
    pub(super) cache: Option<Box<super::caching::CacheExchange>>,
    /// `Referer` and `User-Agent`, for the record.
    pub(super) agent: Option<Box<crate::log::Agent>>,
    /// The parent proxies this exchange goes through, in order of
    /// preference; empty when it goes direct.
    pub(super) parents: Vec<crate::routing::Parent>,
    /// Which of them is being tried.
    pub(super) parent: usize,
}

/// A request waiting for its credential's bcrypt run: what to take it up
/// again with.
#[derive(Debug)]
pub(super) struct PendingAuth {
    /// The request head, to go through policy again once verified.
    pub(super) raw: Vec<u8>,
    /// What was asked, to take the answer.
    pub(super) job: VerifyJob,
    /// The snapshot it was asked under: a reload meanwhile means asking
    /// again under the new one.
    pub(super) generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// The credential is being verified (a bcrypt run, by the runtime).
    Verifying,
    /// A CONNECT tunnel's `200` is sent and its first bytes are being
    /// read; `connected` once the upstream is already there (policy
    /// `delay_connect` off).
    Peeking {
        connected: bool,
    },
    /// Waiting for another connection's fetch of the same resource to be
    /// stored (request collapsing); `Timer::Collapse` says when to look.
    Collapsing,
    Resolving(QueryId),
    Connecting(UpstreamId),
    /// A CONNECT sent on to a parent proxy, waiting for its answer.
    ParentConnect(UpstreamId),
    /// Connected, request head written: bodies flow.
    Forwarding,
}

#[derive(Debug)]
pub(super) enum Resp {
    /// Reading the response head (after any 1xx).
    AwaitHead {
        buf: Vec<u8>,
        scanned: usize,
        /// Any byte at all came from this upstream for this request.
        got_bytes: bool,
    },
    /// Passing the body to the client.
    Body {
        reader: BodyReader,
        /// Strip chunk framing (HTTP/1.0 client); the close delimits.
        dechunk: bool,
    },
    Done,
}

impl Exchange {
    pub(super) fn wants_client_data(&self) -> bool {
        match self.stage {
            Stage::Peeking { .. } => true,
            Stage::Forwarding => self.req_body.is_some(),
            _ => false,
        }
    }

    pub(super) fn wants_upstream_data(&self) -> bool {
        match self.stage {
            // A server speaking first ends the wait for a ClientHello.
            Stage::Peeking { connected } => connected,
            Stage::Forwarding => !matches!(self.resp, Resp::Done),
            Stage::ParentConnect(_) => true,
            _ => false,
        }
    }

    /// The parent proxy being tried, when the exchange goes through one.
    pub(super) fn via_parent(&self) -> Option<&crate::routing::Parent> {
        self.parents.get(self.parent)
    }

    /// See [`Connection::forwardable_upstream`](super::Connection::forwardable_upstream).
    /// Nothing while the body is being stored, or only refreshes the
    /// store: the cache must see it.
    pub(super) fn forwardable_response(&self) -> u64 {
        if super::Connection::storing(self) || super::Connection::background(self) {
            return 0;
        }
        match (&self.stage, &self.resp) {
            (Stage::Forwarding, Resp::Body { reader, .. }) => reader.verbatim_run(),
            _ => 0,
        }
    }

    pub(super) fn req_done(&self) -> bool {
        self.req_body.is_none()
    }

    pub(super) fn resp_done(&self) -> bool {
        matches!(self.resp, Resp::Done)
    }

    /// No final response head has reached the client yet, so an error
    /// page can still be sent instead (1xx heads are only interim).
    pub(super) fn response_unstarted(&self) -> bool {
        self.status == 0
    }

    pub(super) fn is_connect(&self) -> bool {
        self.kind == ExchangeKind::Tunnel
    }
}
