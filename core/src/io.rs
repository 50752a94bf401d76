//! The vocabulary runtimes and the core share: sides, listener roles, the
//! results a runtime reports (resolutions, connects, tunnel ends) and why
//! a connection closed.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// What a listener is for, and so what its connections may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Role {
    /// A proxy port: forwards, tunnels, and answers the proxy's own pages.
    #[default]
    Proxy,
    /// The admin listener (`admin.listen`): the proxy's own pages only,
    /// never forwarding anything; 404 for anything else.
    Admin,
    /// A proxy port behind a load balancer: every connection begins with
    /// a PROXY protocol header naming the client the balancer accepted
    /// (`proxy_protocol`), and is a proxy port's after it.
    Balanced,
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

/// Addresses a name resolved to, as the runtime reports them.
pub type Resolved<'a> = Result<&'a [IpAddr], ResolveError>;
