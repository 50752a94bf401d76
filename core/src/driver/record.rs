//! What a recording driver keeps: a [`Trace`] of every input and op.
//! Replaying one is [`crate::trace::replay`].

use super::{Accepted, Bytes, Input};
use crate::config::Config;
use crate::id::{QueryId, UpstreamId};
use crate::io::{CloseReason, Side};
use crate::log::AccessRecord;
use crate::policy::Sources;
use crate::time::Instant;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// An [`Op`](crate::driver::Op) as recorded: writes and relays carry
/// their bytes, so a trace shows exactly what went on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Output {
    /// A write, head and body together.
    Write(Side, Bytes),
    /// A name to resolve.
    Resolve(QueryId, String),
    /// A connection to make.
    Connect {
        /// The id.
        upstream: UpstreamId,
        /// The address.
        addr: SocketAddr,
        /// Whether pooled connections may serve.
        allow_pooled: bool,
    },
    /// An upstream connection released: reused or not.
    Release(UpstreamId, bool),
    /// A relay, with what each side had already sent.
    Relay {
        /// The upstream.
        upstream: UpstreamId,
        /// The idle timeout.
        #[serde(with = "crate::units::duration")]
        idle_timeout: Duration,
        /// Client bytes held, to go upstream first.
        to_upstream: Bytes,
        /// Upstream bytes held, to go to the client first.
        to_client: Bytes,
    },
    /// A password check, for this user.
    Verify(String),
    /// An access-log record.
    Log(Box<AccessRecord>),
    /// The client's side closed.
    Close(CloseReason),
    /// A wait: for the client, the upstream (and how much may be
    /// forwarded unread), a deadline.
    Wait {
        /// Read the client.
        client: bool,
        /// Read the upstream; forwardable bytes.
        upstream: Option<(UpstreamId, u64)>,
        /// Wake up then.
        deadline: Option<Instant>,
    },
    /// Finished; whether to linger.
    Done(bool),
}

/// One input, when it came, and the ops polled after it until the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// When (the runtime's `now`).
    pub at: Instant,
    /// What came in.
    pub input: Input,
    /// The ops polled afterwards, in order.
    #[serde(default)]
    pub ops: Vec<Output>,
}

/// Everything that happened to one connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// What the recording was: a short free-form note.
    #[serde(default)]
    pub note: String,
    /// The configuration in force.
    pub config: Config,
    /// The text of the files the policy names (lists, htpasswd).
    #[serde(default, skip_serializing_if = "Sources::is_empty")]
    pub sources: Sources,
    /// The connection as accepted.
    pub accepted: Accepted,
    /// The ops polled before any input (a refusal over a cap, the first
    /// wait).
    #[serde(default)]
    pub opening: Vec<Output>,
    /// The inputs, in order.
    pub steps: Vec<Step>,
}

impl Trace {
    /// Parses a trace from RON.
    pub fn from_ron(text: &str) -> Result<Trace, ron::error::SpannedError> {
        ron::from_str(text)
    }

    /// Pretty RON, as stored in `testdata/traces/`.
    pub fn to_ron(&self) -> String {
        let pretty = ron::ser::PrettyConfig::default().struct_names(false);
        ron::ser::to_string_pretty(self, pretty).expect("traces always serialise")
    }
}
