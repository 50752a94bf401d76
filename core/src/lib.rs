//! # proxy-core: the sans-IO brain of an HTTP/1.1 forward proxy
//!
//! Everything the proxy decides is decided here, and nothing here touches a
//! socket, a file, a thread, DNS or a clock. A runtime feeds a
//! [`Connection`] what happened (bytes, end of stream, a resolved name, a
//! finished connect, a fired timer) together with the current [`Instant`],
//! and drains the [`Action`]s it asks for: resolve this name, connect there,
//! write these bytes, pass those body bytes through, relay a tunnel, release
//! an upstream connection, close, log this record.
//!
//! The same inputs give the same actions however the bytes were split, which
//! is what lets `proxy-std` (threads) and `proxy-smol` (async) behave the
//! same on the wire, and lets recorded traces be replayed here (see
//! [`trace`]).
//!
//! See [`Connection`] for the drive loop and its contract.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
mod conn;
pub mod error;
pub mod http;
pub mod id;
pub mod io;
pub mod log;
pub mod metrics;
pub mod policy;
pub mod reason;
pub mod shared;
pub mod time;
pub mod tls;
pub mod trace;
pub mod units;

pub use config::Config;
pub use conn::Connection;
pub use error::{ProxyError, RequestError, UpstreamError};
pub use io::{
    Action, CloseReason, ConnId, ConnectError, Connected, QueryId, ResolveError, Role, Side,
    TunnelEnd, TunnelEndReason, UpstreamId,
};
pub use log::{AccessRecord, ExchangeKind};
pub use reason::{Decision, ErrorType};
pub use shared::{Shared, Snapshot};
pub use time::{Instant, UnixTime, WallAnchor};
