//! The actions a connection queues for its driver.

use crate::id::{QueryId, UpstreamId};
use crate::io::{CloseReason, Side};
use crate::log::AccessRecord;
use crate::policy::auth::VerifyJob;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// What a [`Connection`](super::Connection) asks its driver to do, drained
/// with `poll_action` after every `handle_*` call and performed in order
/// (the driver turns them into the runtime's [`Op`](crate::driver::Op)s).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
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
    /// Write part of a stored response body to the client, after the
    /// `Write`s before it (the cache shares it; nothing is copied).
    Stored {
        /// The whole body.
        body: Arc<[u8]>,
        /// The part to write.
        range: Range<usize>,
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
    /// finished; `Connection::is_closed` is
    /// now true.
    Close {
        /// Why.
        reason: CloseReason,
    },
    /// Run this password check (bcrypt) away from other connections;
    /// answer with `handle_verified`.
    Verify(VerifyJob),
    /// Emit this access-log record (boxed: it is much larger than the
    /// other actions).
    Log(Box<AccessRecord>),
}
