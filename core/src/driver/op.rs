//! What a [`Driver`](super::Driver) asks a runtime to do: [`Op`], one at a
//! time, from [`Driver::poll`](super::Driver::poll).

use crate::buf::{Heap, InBuf, Storage};
use crate::id::{QueryId, UpstreamId};
use crate::io::{CloseReason, Side};
use crate::log::AccessRecord;
use crate::policy::auth::VerifyJob;
use crate::time::Instant;
use std::net::SocketAddr;
use std::time::Duration;

/// One I/O operation for the runtime. Perform it, report what came of it
/// as the op says, and poll again; [`Op::Wait`] is the only op that asks
/// for waiting, [`Op::Done`] the last.
#[must_use = "every op must be performed before the next poll"]
#[derive(Debug)]
pub enum Op<'a, S: Storage = Heap> {
    /// Write all of `head` then all of `body` to `to` (one vectored
    /// write when both are there). On failure report
    /// [`Input::Failed(to)`](super::Input::Failed); success needs no
    /// report.
    Write {
        /// Which socket.
        to: Side,
        /// Bytes the proxy made (heads, error pages).
        head: &'a [u8],
        /// Bytes passed through from the other side.
        body: &'a [u8],
    },
    /// Resolve `host`; report [`Input::Resolved`](super::Input::Resolved),
    /// or [`Input::Timeout`](super::Input::Timeout) if `deadline` passes
    /// first.
    Resolve {
        /// Echo it in the answer.
        query: QueryId,
        /// A DNS name (never an IP literal).
        host: String,
        /// When the core stops waiting.
        deadline: Option<Instant>,
    },
    /// Take an idle pooled connection to `addr` (if `allow_pooled`) or
    /// open one; report [`Input::Connected`](super::Input::Connected), or
    /// [`Input::Timeout`](super::Input::Timeout) if `deadline` passes
    /// first. Any upstream connection held before is finished with: drop
    /// it.
    Connect {
        /// Names the connection in later ops.
        upstream: UpstreamId,
        /// Where.
        addr: SocketAddr,
        /// Whether a pooled connection may serve (not when retrying after
        /// a pooled one turned out to be stale).
        allow_pooled: bool,
        /// When the core stops waiting.
        deadline: Option<Instant>,
    },
    /// Done with `upstream`: back to the idle pool if `reuse`, closed
    /// otherwise. `reuse` already accounts for unread bytes and ends of
    /// stream.
    Release {
        /// Which connection.
        upstream: UpstreamId,
        /// Whether it may carry another request.
        reuse: bool,
    },
    /// Relay both ways between the client and the upstream until both
    /// directions end; report [`Input::TunnelEnded`](super::Input::TunnelEnded).
    /// (Boxed: the rare large op would make every op, and so every async
    /// task that holds one across an await, bigger.)
    Relay(Box<Relay<S>>),
    /// Check a password (bcrypt, slow on purpose) where it holds up no
    /// other connection: run [`VerifyJob::run`] on another thread and
    /// report [`Input::Verified`](super::Input::Verified) with its answer.
    Verify(VerifyJob),
    /// Write this access-log record.
    Log(Box<AccessRecord>),
    /// The core is finished with the client: everything it had to say
    /// was written; send the end of stream (shut down the write side).
    /// Ops may still follow (a last record); then [`Op::Done`].
    Close(CloseReason),
    /// Nothing to do until one of these happens.
    Wait(Wait),
    /// Finished: drop the sockets. If `linger`, first read and discard
    /// what the client still sends, for a short while, so the kernel
    /// does not reset the connection before it has read the answer.
    Done {
        /// Read and discard before closing.
        linger: bool,
    },
}

/// What to wait for: readable sockets, or a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Read the client ([`Driver::read_from`](super::Driver::read_from)).
    pub client: bool,
    /// Read the upstream, or forward from it.
    pub upstream: Option<UpstreamWait>,
    /// Report [`Input::Timeout`](super::Input::Timeout) once this passes.
    pub deadline: Option<Instant>,
}

/// Waiting on the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamWait {
    /// Which connection.
    pub id: UpstreamId,
    /// When readable, up to this many bytes (response body the core only
    /// counts) may go to the client as they are, without being read
    /// (splice(2)); report [`Input::Forwarded`](super::Input::Forwarded).
    /// Zero: read them with `read_from`. Reading is always correct.
    pub forward: u64,
}

/// A tunnel to relay, with what each side had already sent.
#[derive(Debug)]
pub struct Relay<S: Storage = Heap> {
    /// The upstream connection.
    pub upstream: UpstreamId,
    /// End the relay after this long without a byte either way.
    pub idle_timeout: Duration,
    /// Client bytes already read: they go upstream first.
    pub to_upstream: InBuf<S>,
    /// Upstream bytes already read: they go to the client first.
    pub to_client: InBuf<S>,
    /// The client already ended its sending side.
    pub client_eof: bool,
    /// The upstream already ended its sending side.
    pub upstream_eof: bool,
}
