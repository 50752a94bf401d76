//! # proxy-core: the sans-IO brain of an HTTP/1.1 forward proxy
//!
//! Everything the proxy decides is decided here, and nothing here touches a
//! socket, a file, a thread, DNS or a clock. A runtime makes a
//! [`Driver`](driver::Driver) for each accepted connection, tells it what
//! happened ([`Input`](driver::Input): bytes, an end of stream, a resolved
//! name, a finished connect, a passed deadline) with the current
//! [`Instant`], and performs the [`Op`](driver::Op)s it asks for: write
//! these bytes, resolve this name, connect there, relay a tunnel, release
//! an upstream connection, log this record, wait for this.
//!
//! The same inputs give the same ops however the bytes were split, which
//! is what lets `proxy-std` (threads) and `proxy-smol` (async) behave the
//! same on the wire, and lets recorded traces be replayed here (see
//! [`trace`]). The protocol itself is in the crate-private `conn` module;
//! the driver is its only way in.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod buf;
pub mod cache;
pub mod config;
mod conn;
pub mod driver;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod http;
pub mod id;
pub mod io;
pub mod log;
pub mod metrics;
pub mod policy;
pub mod proxy_protocol;
pub mod reason;
pub mod routing;
pub mod shared;
pub mod time;
pub mod tls;
pub mod trace;
pub mod units;

pub use config::Config;
pub use driver::{Accepted, Driver, Input, Op};
pub use error::{ProxyError, RequestError, UpstreamError};
pub use id::{ConnId, QueryId, UpstreamId};
pub use io::{
    CloseReason, ConnectError, Connected, ResolveError, Role, Side, TunnelEnd, TunnelEndReason,
};
pub use log::{AccessRecord, ExchangeKind};
pub use reason::{Decision, ErrorType};
pub use shared::{Shared, Snapshot};
pub use time::{Instant, UnixTime, WallAnchor};
