//! Recording and replaying a connection's life: every input the runtime
//! gave it and every output it gave back.
//!
//! Runtimes drive a [`Traced`] connection, which is a [`Connection`] plus,
//! when recording, a [`Trace`] of each step. A trace is plain data
//! (serialisable to RON), so a real exchange recorded by a binary can be
//! replayed through the core alone with [`replay`], on any target, and the
//! outputs compared: the golden tests in `tests/` do exactly that.

use crate::config::Config;
use crate::io::{
    Action, CloseReason, ConnId, ConnectError, Connected, QueryId, ResolveError, Role, Side,
    TunnelEnd, UpstreamId,
};
use crate::log::AccessRecord;
use crate::policy::{PolicyError, Sources};
use crate::shared::Shared;
use crate::time::{Instant, WallAnchor};
use crate::Connection;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Bytes that serialise as text when they are UTF-8 (so traces read like
/// the HTTP they hold) and as hex otherwise.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                use serde::ser::SerializeMap;
                let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("hex", &hex)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, or {\"hex\": \"...\"}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Bytes, E> {
                Ok(Bytes(v.as_bytes().to_vec()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Bytes, A::Error> {
                let mut out = None;
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    if k != "hex" || v.len() % 2 != 0 {
                        return Err(serde::de::Error::custom(
                            "expected {\"hex\": \"even-length hex\"}",
                        ));
                    }
                    let bytes: Result<Vec<u8>, _> = (0..v.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&v[i..i + 2], 16))
                        .collect();
                    out = Some(bytes.map_err(serde::de::Error::custom)?);
                }
                out.map(Bytes)
                    .ok_or_else(|| serde::de::Error::custom("missing hex"))
            }
        }
        d.deserialize_any(V)
    }
}

/// One input to a connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Input {
    /// `Connection::new`: the connection was accepted (a connection over
    /// a cap is answered here).
    Accepted,
    /// `handle_client_data`
    ClientData(Bytes),
    /// `handle_client_eof`
    ClientEof,
    /// `handle_client_error`
    ClientError,
    /// `handle_resolved`
    Resolved(QueryId, Result<Vec<IpAddr>, ResolveError>),
    /// `handle_connected`
    Connected(UpstreamId, Result<Connected, ConnectError>),
    /// `handle_upstream_data`
    UpstreamData(UpstreamId, Bytes),
    /// `handle_upstream_forwarded`: how many body bytes went straight to
    /// the client (the core never saw them, so neither does the trace).
    UpstreamForwarded(UpstreamId, u64),
    /// `handle_upstream_eof`
    UpstreamEof(UpstreamId),
    /// `handle_upstream_error`
    UpstreamError(UpstreamId, ConnectError),
    /// `handle_tunnel_end`
    TunnelEnd(TunnelEnd),
    /// `handle_timeout`
    Timeout,
    /// `begin_shutdown`
    Shutdown,
    /// `force_shutdown`
    ForceShutdown,
}

/// An action as recorded: `Write` and `Pass` carry the bytes themselves,
/// so a trace shows exactly what went on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Output {
    /// [`Action::Resolve`]
    Resolve(QueryId, String),
    /// [`Action::Connect`]
    Connect {
        /// The id.
        upstream: UpstreamId,
        /// The address.
        addr: SocketAddr,
        /// Whether pooled connections may serve.
        allow_pooled: bool,
    },
    /// [`Action::Write`] with the bytes.
    Write(Side, Bytes),
    /// [`Action::Pass`] with the bytes passed through.
    Pass(Side, Bytes),
    /// [`Action::Tunnel`]
    Tunnel(
        UpstreamId,
        #[serde(with = "crate::units::duration")] Duration,
    ),
    /// [`Action::Release`]
    Release(UpstreamId, bool),
    /// [`Action::Close`]
    Close(CloseReason),
    /// [`Action::Log`]
    Log(Box<AccessRecord>),
}

/// One input, when it came, and everything the connection did about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// When (the runtime's `now`).
    pub at: Instant,
    /// What came in.
    pub input: Input,
    /// For data inputs, how many bytes were consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed: Option<usize>,
    /// The actions drained afterwards, in order.
    #[serde(default)]
    pub outputs: Vec<Output>,
    /// `poll_timeout()` after the drain.
    #[serde(default)]
    pub timeout: Option<Instant>,
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
    /// The listener's role (a proxy port unless said otherwise).
    #[serde(default, skip_serializing_if = "is_proxy")]
    pub role: Role,
    /// The connection id.
    pub conn: ConnId,
    /// The client's address.
    pub client: SocketAddr,
    /// The wall-clock anchor.
    pub anchor: WallAnchor,
    /// When the connection was accepted.
    pub accepted: Instant,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

fn is_proxy(role: &Role) -> bool {
    *role == Role::Proxy
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

/// A [`Connection`] that can record what happens to it. Same methods, same
/// behaviour; with recording off it costs a branch per call.
#[derive(Debug)]
pub struct Traced {
    conn: Connection,
    trace: Option<Box<Trace>>,
    /// Copies of the latest data input per side, to resolve `Pass` into
    /// bytes. Kept only while recording.
    last_client: Vec<u8>,
    last_upstream: Vec<u8>,
}

impl Traced {
    /// A new connection; records a trace when `record` is true.
    pub fn new(
        id: ConnId,
        client: SocketAddr,
        shared: Arc<Shared>,
        anchor: WallAnchor,
        now: Instant,
        record: bool,
        role: Role,
    ) -> Self {
        let trace = record.then(|| {
            let snapshot = shared.snapshot();
            Box::new(Trace {
                note: String::new(),
                config: (*snapshot.config).clone(),
                sources: (*snapshot.sources).clone(),
                role,
                conn: id,
                client,
                anchor,
                accepted: now,
                steps: vec![Step {
                    at: now,
                    input: Input::Accepted,
                    consumed: None,
                    outputs: Vec::new(),
                    timeout: None,
                }],
            })
        });
        Traced {
            conn: Connection::with_role(id, client, shared, anchor, now, role),
            trace,
            last_client: Vec::new(),
            last_upstream: Vec::new(),
        }
    }

    /// The connection itself, for getters.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The recorded trace, if recording.
    pub fn into_trace(self) -> Option<Trace> {
        self.trace.map(|t| *t)
    }

    fn begin(&mut self, at: Instant, input: Input) {
        if let Some(t) = self.trace.as_mut() {
            t.steps.push(Step {
                at,
                input,
                consumed: None,
                outputs: Vec::new(),
                timeout: None,
            });
        }
    }

    fn consumed(&mut self, n: usize) {
        if let Some(step) = self.trace.as_mut().and_then(|t| t.steps.last_mut()) {
            step.consumed = Some(n);
        }
    }

    /// See [`Connection::handle_client_data`].
    pub fn handle_client_data(&mut self, now: Instant, data: &[u8]) -> usize {
        if self.trace.is_some() {
            self.begin(now, Input::ClientData(Bytes(data.to_vec())));
            self.last_client = data.to_vec();
        }
        let n = self.conn.handle_client_data(now, data);
        self.consumed(n);
        n
    }

    /// See [`Connection::handle_client_eof`].
    pub fn handle_client_eof(&mut self, now: Instant) {
        self.begin(now, Input::ClientEof);
        self.conn.handle_client_eof(now);
    }

    /// See [`Connection::handle_client_error`].
    pub fn handle_client_error(&mut self, now: Instant) {
        self.begin(now, Input::ClientError);
        self.conn.handle_client_error(now);
    }

    /// See [`Connection::handle_resolved`].
    pub fn handle_resolved(
        &mut self,
        now: Instant,
        query: QueryId,
        result: Result<&[IpAddr], ResolveError>,
    ) {
        if self.trace.is_some() {
            self.begin(
                now,
                Input::Resolved(query, result.clone().map(<[IpAddr]>::to_vec)),
            );
        }
        self.conn.handle_resolved(now, query, result);
    }

    /// See [`Connection::handle_connected`].
    pub fn handle_connected(
        &mut self,
        now: Instant,
        upstream: UpstreamId,
        result: Result<Connected, ConnectError>,
    ) {
        self.begin(now, Input::Connected(upstream, result));
        self.conn.handle_connected(now, upstream, result);
    }

    /// See [`Connection::handle_upstream_data`].
    pub fn handle_upstream_data(
        &mut self,
        now: Instant,
        upstream: UpstreamId,
        data: &[u8],
    ) -> usize {
        if self.trace.is_some() {
            self.begin(now, Input::UpstreamData(upstream, Bytes(data.to_vec())));
            self.last_upstream = data.to_vec();
        }
        let n = self.conn.handle_upstream_data(now, upstream, data);
        self.consumed(n);
        n
    }

    /// See [`Connection::handle_upstream_forwarded`].
    pub fn handle_upstream_forwarded(&mut self, now: Instant, upstream: UpstreamId, n: u64) {
        self.begin(now, Input::UpstreamForwarded(upstream, n));
        self.conn.handle_upstream_forwarded(now, upstream, n);
    }

    /// See [`Connection::handle_upstream_eof`].
    pub fn handle_upstream_eof(&mut self, now: Instant, upstream: UpstreamId) {
        self.begin(now, Input::UpstreamEof(upstream));
        self.conn.handle_upstream_eof(now, upstream);
    }

    /// See [`Connection::handle_upstream_error`].
    pub fn handle_upstream_error(
        &mut self,
        now: Instant,
        upstream: UpstreamId,
        error: ConnectError,
    ) {
        self.begin(now, Input::UpstreamError(upstream, error));
        self.conn.handle_upstream_error(now, upstream, error);
    }

    /// See [`Connection::handle_tunnel_end`].
    pub fn handle_tunnel_end(&mut self, now: Instant, end: TunnelEnd) {
        self.begin(now, Input::TunnelEnd(end));
        self.conn.handle_tunnel_end(now, end);
    }

    /// See [`Connection::handle_timeout`]. Only calls that find a timer
    /// due are recorded, so traces do not depend on spurious wake-ups.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.conn.poll_timeout().is_some_and(|t| t <= now) {
            self.begin(now, Input::Timeout);
        }
        self.conn.handle_timeout(now);
    }

    /// See [`Connection::begin_shutdown`].
    pub fn begin_shutdown(&mut self, now: Instant) {
        self.begin(now, Input::Shutdown);
        self.conn.begin_shutdown(now);
    }

    /// See [`Connection::force_shutdown`].
    pub fn force_shutdown(&mut self, now: Instant) {
        self.begin(now, Input::ForceShutdown);
        self.conn.force_shutdown(now);
    }

    /// See [`Connection::poll_action`].
    #[must_use]
    pub fn poll_action(&mut self, out: &mut Vec<u8>) -> Option<Action> {
        let before = out.len();
        let action = self.conn.poll_action(out);
        match (&action, self.trace.as_mut()) {
            (None, Some(t)) => {
                if let Some(step) = t.steps.last_mut() {
                    step.timeout = self.conn.poll_timeout();
                }
            }
            (Some(a), Some(t)) => {
                let output = match a {
                    Action::Resolve { query, host } => Output::Resolve(*query, host.clone()),
                    Action::Connect {
                        upstream,
                        addr,
                        allow_pooled,
                    } => Output::Connect {
                        upstream: *upstream,
                        addr: *addr,
                        allow_pooled: *allow_pooled,
                    },
                    Action::Write { to, len } => {
                        Output::Write(*to, Bytes(out[before..before + len].to_vec()))
                    }
                    Action::Pass { from, offset, len } => {
                        let src = if *from == Side::Client {
                            &self.last_client
                        } else {
                            &self.last_upstream
                        };
                        Output::Pass(*from, Bytes(src[*offset..offset + len].to_vec()))
                    }
                    Action::Tunnel {
                        upstream,
                        idle_timeout,
                    } => Output::Tunnel(*upstream, *idle_timeout),
                    Action::Release { upstream, reuse } => Output::Release(*upstream, *reuse),
                    Action::Close { reason } => Output::Close(*reason),
                    Action::Log(r) => Output::Log(r.clone()),
                };
                if let Some(step) = t.steps.last_mut() {
                    step.outputs.push(output);
                }
            }
            _ => {}
        }
        action
    }

    /// See [`Connection::poll_timeout`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout()
    }
}

/// Runs a trace's inputs through a fresh connection with the production
/// drain loop and returns what it records: equal to the input trace when
/// the core behaves as it did when the trace was made. Fails only if the
/// trace's policy no longer compiles.
pub fn replay(trace: &Trace) -> Result<Trace, PolicyError> {
    let (shared, _) = Shared::new(trace.config.clone(), trace.sources.clone())?;
    let mut t = Traced::new(
        trace.conn,
        trace.client,
        shared,
        trace.anchor,
        trace.accepted,
        true,
        trace.role,
    );
    let mut out = Vec::new();
    let drain = |t: &mut Traced, out: &mut Vec<u8>| {
        out.clear();
        while t.poll_action(out).is_some() {}
    };
    drain(&mut t, &mut out);
    for step in &trace.steps {
        let now = step.at;
        match &step.input {
            // Connection::new above.
            Input::Accepted => continue,
            Input::ClientData(b) => {
                let _ = t.handle_client_data(now, &b.0);
            }
            Input::ClientEof => t.handle_client_eof(now),
            Input::ClientError => t.handle_client_error(now),
            Input::Resolved(q, r) => t.handle_resolved(now, *q, r.as_deref().map_err(Clone::clone)),
            Input::Connected(u, r) => t.handle_connected(now, *u, *r),
            Input::UpstreamData(u, b) => {
                let _ = t.handle_upstream_data(now, *u, &b.0);
            }
            Input::UpstreamForwarded(u, n) => t.handle_upstream_forwarded(now, *u, *n),
            Input::UpstreamEof(u) => t.handle_upstream_eof(now, *u),
            Input::UpstreamError(u, e) => t.handle_upstream_error(now, *u, *e),
            Input::TunnelEnd(e) => t.handle_tunnel_end(now, *e),
            Input::Timeout => t.handle_timeout(now),
            Input::Shutdown => t.begin_shutdown(now),
            Input::ForceShutdown => t.force_shutdown(now),
        }
        drain(&mut t, &mut out);
    }
    let mut replayed = t.into_trace().expect("recording was on");
    replayed.note = trace.note.clone();
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_serialise_as_text_or_hex() {
        let text = Bytes(b"GET / HTTP/1.1\r\n".to_vec());
        let s = ron::to_string(&text).unwrap();
        assert_eq!(s, "\"GET / HTTP/1.1\\r\\n\"");
        assert_eq!(ron::from_str::<Bytes>(&s).unwrap(), text);
        let bin = Bytes(vec![0x16, 0x03, 0xff]);
        let s = ron::to_string(&bin).unwrap();
        assert!(s.contains("1603ff"), "{s}");
        assert_eq!(ron::from_str::<Bytes>(&s).unwrap(), bin);
    }
}
