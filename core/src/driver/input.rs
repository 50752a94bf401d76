//! What a runtime tells a [`Driver`](super::Driver): [`Input`], the one
//! type every event comes in as, and [`Bytes`], which lets a recorded
//! input read like the HTTP it carries.

use crate::id::{QueryId, UpstreamId};
use crate::io::{ConnectError, Connected, ResolveError, Side, TunnelEnd};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// Something that happened to a connection. Feed it with
/// [`Driver::handle`](super::Driver::handle); bytes read from a socket
/// come in place through [`Driver::read_from`](super::Driver::read_from),
/// which is the same as `Read` without the copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Input {
    /// Bytes arrived from `Side` (from the current upstream, for
    /// `Upstream`).
    Read(Side, Bytes),
    /// That side reached end of stream.
    Eof(Side),
    /// Reading from or writing to that side failed; it is not used
    /// again.
    Failed(Side),
    /// Response body bytes went from the upstream to the client without
    /// being read (the `forward` of a [`Wait`](super::Wait)).
    Forwarded(u64),
    /// The answer to an [`Op::Resolve`](super::Op::Resolve).
    Resolved(QueryId, Result<Vec<IpAddr>, ResolveError>),
    /// The answer to an [`Op::Connect`](super::Op::Connect).
    Connected(UpstreamId, Result<Connected, ConnectError>),
    /// A [`Relay`](super::Relay) ended.
    TunnelEnded(TunnelEnd),
    /// The answer of an [`Op::Verify`](super::Op::Verify)'s job.
    Verified(bool),
    /// The deadline of a [`Wait`](super::Wait) (or of a resolve or
    /// connect) passed.
    Timeout,
    /// The proxy is shutting down: finish what is in flight, take no new
    /// request. Repeats are ignored.
    Shutdown,
    /// The shutdown grace period is over: cut off what is still in
    /// flight. Repeats are ignored.
    ForceShutdown,
}

/// Bytes that serialise as text when they are UTF-8 (so traces read like
/// the HTTP they hold) and as hex otherwise.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

impl From<&[u8]> for Bytes {
    fn from(b: &[u8]) -> Self {
        Bytes(b.to_vec())
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
