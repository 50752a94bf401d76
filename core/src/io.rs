//! What crosses the boundary between the core and a runtime: handles, the
//! results a runtime reports, and the [`Action`]s the core asks for.

pub use crate::id::{ConnId, QueryId, UpstreamId};
use crate::log::AccessRecord;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// What a listener is for, and so what its connections may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Role {
    /// A proxy port: forwards, tunnels, and answers the proxy's own pages.
    #[default]
    Proxy,
    /// The admin listener (`admin.listen`): the proxy's own pages only,
    /// never forwarding anything; 404 for anything else.
    Admin,
}

/// One end of the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// The client connection the proxy accepted.
    Client,
    /// The connection the proxy opened to the origin.
    Upstream,
}

/// Why a name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ResolveError {
    /// The name does not exist or has no addresses.
    #[error("no such host")]
    NotFound,
    /// The resolver failed for another reason.
    #[error("resolver failure: {0}")]
    Failed(String),
}

/// Why an upstream connection could not be established or was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ConnectError {
    /// The destination refused the connection.
    #[error("connection refused")]
    Refused,
    /// The destination is unreachable (no route, network down).
    #[error("destination unreachable")]
    Unreachable,
    /// The connection was reset.
    #[error("connection reset")]
    Reset,
    /// Any other socket error.
    #[error("socket error")]
    Other,
}

/// A successful connect: fresh, or taken from the runtime's idle pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connected {
    /// The connection was an idle pooled one, not a new one. A reused
    /// connection may turn out to have been closed by the origin; the core
    /// retries such a failure once on a fresh connection when that is safe.
    pub reused: bool,
}

/// How a tunnel relay ended, reported by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelEnd {
    /// Bytes relayed from client to upstream, including any the runtime had
    /// buffered when the tunnel began.
    pub to_upstream: u64,
    /// Bytes relayed from upstream to client, likewise.
    pub to_client: u64,
    /// Why the relay stopped.
    pub reason: TunnelEndReason,
}

/// Why a tunnel relay stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TunnelEndReason {
    /// Both directions reached end of stream.
    Closed,
    /// Nothing moved in either direction for the idle timeout.
    IdleTimeout,
    /// A socket error on either side.
    Error,
    /// The proxy is shutting down.
    Shutdown,
}

/// Why the core closes a connection. Goes into traces and makes golden
/// diffs readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CloseReason {
    /// The client closed its end and nothing is left to answer.
    ClientDone,
    /// The exchange asked for it (`Connection: close`, HTTP/1.0, or a
    /// response delimited by close).
    NotPersistent,
    /// A request could not be framed safely; the rest of the stream is
    /// untrustworthy.
    BadRequest,
    /// An error answer was sent and the connection cannot continue.
    AfterError,
    /// A response was cut off midway; the client must see it as incomplete.
    Aborted,
    /// The client was idle for the keep-alive timeout.
    IdleTimeout,
    /// A tunnel or upgraded connection finished.
    TunnelDone,
    /// The proxy is shutting down.
    Shutdown,
}

/// What the core asks a runtime to do. Drain them with
/// [`Connection::poll_action`](crate::Connection::poll_action) after every
/// `handle_*` call and perform them in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// Resolve `host`; answer with `handle_resolved(query, ..)`.
    Resolve {
        /// Echo this in the answer.
        query: QueryId,
        /// A DNS name (never an IP literal: those are not resolved).
        host: String,
    },
    /// Open a TCP connection to `addr`, or take an idle pooled connection
    /// to it; answer with `handle_connected(upstream, ..)`.
    Connect {
        /// Names the connection in later actions and reports.
        upstream: UpstreamId,
        /// Where to connect.
        addr: SocketAddr,
        /// Whether an idle pooled connection to `addr` may be used. False
        /// when retrying after a pooled connection turned out to be stale.
        allow_pooled: bool,
    },
    /// Write the `len` bytes the core appended to the caller's `out` buffer
    /// in this `poll_action` call.
    Write {
        /// Which socket.
        to: Side,
        /// How many bytes, at the end of `out`.
        len: usize,
    },
    /// Forward bytes verbatim without the core copying them: `len` bytes at
    /// `offset` in the slice given to the most recent `handle_*_data` call
    /// for `from` (always inside the prefix that call consumed).
    Pass {
        /// Whose input the bytes are in.
        from: Side,
        /// Offset into that input slice.
        offset: usize,
        /// How many bytes.
        len: usize,
    },
    /// Relay both directions between the client and `upstream` until both
    /// are done, then report `handle_tunnel_end`. First forward whatever the
    /// runtime holds unconsumed from each side to the other.
    Tunnel {
        /// The upstream connection to relay with.
        upstream: UpstreamId,
        /// Close the relay after this long without a byte either way.
        idle_timeout: Duration,
    },
    /// Done with `upstream`: return it to the idle pool if `reuse`, close it
    /// otherwise. The core never mentions this id again.
    Release {
        /// Which connection.
        upstream: UpstreamId,
        /// Whether it may carry another request.
        reuse: bool,
    },
    /// Flush pending writes, then close the client connection. The core is
    /// finished; [`Connection::is_closed`](crate::Connection::is_closed) is
    /// now true.
    Close {
        /// Why.
        reason: CloseReason,
    },
    /// Emit this access-log record (boxed: it is much larger than the
    /// other actions).
    Log(Box<AccessRecord>),
}

/// Addresses a name resolved to, as the runtime reports them.
pub type Resolved<'a> = Result<&'a [IpAddr], ResolveError>;
