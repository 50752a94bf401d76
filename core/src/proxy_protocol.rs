//! The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1
//! and 2) a load balancer sends first on a connection, naming the client
//! it accepted: read before the first request head on listeners that
//! require it, from senders that are trusted to send it.
//!
//! Written here rather than taken from the `ppp` crate: the core needs an
//! incremental parser over a byte prefix that says "need more", and only
//! the source address out of it; v1 is one line and v2 a fixed header and
//! a length, so the whole of it is this page.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// The v2 signature.
const SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (the spec's bound).
const V1_MAX: usize = 107;
/// The longest v2 header accepted: the addresses and room for the TLVs
/// balancers send (unique id, SSL details).
pub const V2_MAX: usize = 16 + 2048;

/// The PROXY protocol as configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyProtocolConfig {
    /// Every connection to a proxy listener must begin with a PROXY
    /// header (v1 or v2); one without it is refused. Also
    /// `--proxy-protocol`.
    pub required: bool,
    /// Only these listeners (each one of `listen`) require the header,
    /// with `required: false`: a port for the balancer beside one for
    /// clients that connect directly. A listener never guesses: one that
    /// requires the header refuses a connection without it, the others
    /// read HTTP from the first byte.
    pub listeners: Vec<SocketAddr>,
    /// Senders (the balancers) allowed to send one, as CIDRs; a
    /// connection from anywhere else is refused.
    pub trusted: Vec<String>,
    /// How long the header may take to arrive.
    #[serde(with = "crate::units::duration")]
    pub timeout: Duration,
}

impl Default for ProxyProtocolConfig {
    fn default() -> Self {
        ProxyProtocolConfig {
            required: false,
            listeners: Vec::new(),
            trusted: vec!["127.0.0.0/8".to_owned(), "::1/128".to_owned()],
            timeout: Duration::from_secs(3),
        }
    }
}

impl ProxyProtocolConfig {
    /// Whether connections to the proxy listener `addr` must begin with a
    /// header.
    pub fn requires(&self, addr: SocketAddr) -> bool {
        self.required || self.listeners.contains(&addr)
    }
}

/// What a buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A header may still complete: read on.
    Incomplete,
    /// A whole header of `consumed` bytes. `source` is the client it
    /// names; `None` for v2 LOCAL (the balancer's own health check), v1
    /// UNKNOWN and families without addresses: the connection is the
    /// sender's own.
    Done {
        /// Bytes of the header.
        consumed: usize,
        /// The client, when named.
        source: Option<SocketAddr>,
    },
    /// Not a PROXY header, or a broken one.
    Invalid(&'static str),
}

/// Reads a header at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let n = buf.len().min(SIGNATURE.len());
    if buf[..n] == SIGNATURE[..n] {
        return if n < SIGNATURE.len() {
            Parsed::Incomplete
        } else {
            parse_v2(buf)
        };
    }
    let n = buf.len().min(6);
    if buf[..n] == b"PROXY "[..n] {
        return if n < 6 {
            Parsed::Incomplete
        } else {
            parse_v1(buf)
        };
    }
    Parsed::Invalid("no PROXY protocol header")
}

fn parse_v1(buf: &[u8]) -> Parsed {
    let Some(end) = buf.windows(2).take(V1_MAX - 1).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Parsed::Invalid("PROXY v1 line too long")
        } else {
            Parsed::Incomplete
        };
    };
    let consumed = end + 2;
    let Ok(line) = std::str::from_utf8(&buf[6..end]) else {
        return Parsed::Invalid("PROXY v1 line is not text");
    };
    let parts: Vec<&str> = line.split(' ').collect();
    match parts.as_slice() {
        ["UNKNOWN", ..] => Parsed::Done {
            consumed,
            source: None,
        },
        [family @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: Option<IpAddr> = match *family {
                "TCP4" => src.parse::<Ipv4Addr>().ok().map(IpAddr::V4),
                _ => src.parse::<Ipv6Addr>().ok().map(IpAddr::V6),
            };
            let port = sport
                .parse::<u16>()
                .ok()
                .filter(|_| !sport.starts_with('0') || *sport == "0");
            match (ip, port) {
                (Some(ip), Some(port)) => Parsed::Done {
                    consumed,
                    source: Some(SocketAddr::new(ip, port)),
                },
                _ => Parsed::Invalid("PROXY v1 address or port is malformed"),
            }
        }
        _ => Parsed::Invalid("PROXY v1 line is malformed"),
    }
}

fn parse_v2(buf: &[u8]) -> Parsed {
    if buf.len() < 16 {
        return Parsed::Incomplete;
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Parsed::Invalid("PROXY v2 header with another version");
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Parsed::Invalid("PROXY v2 command is neither LOCAL nor PROXY"),
    };
    let family = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let consumed = 16 + len;
    if consumed > V2_MAX {
        return Parsed::Invalid("PROXY v2 header too large");
    }
    if buf.len() < consumed {
        return Parsed::Incomplete;
    }
    let body = &buf[16..consumed];
    let source = match family >> 4 {
        // AF_INET: source, destination (4 bytes each), then the ports.
        1 if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Some(SocketAddr::new(IpAddr::V4(ip), port))
        }
        // AF_INET6: 16 bytes each, then the ports.
        2 if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let port = u16::from_be_bytes([body[32], body[33]]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port))
        }
        1 | 2 if !local => return Parsed::Invalid("PROXY v2 addresses are cut short"),
        // AF_UNSPEC, AF_UNIX: nothing to take the place of the peer.
        _ => None,
    };
    Parsed::Done {
        consumed,
        source: if local { None } else { source },
    }
}

/// The v2 TLV that carries the balancer's id for the connection.
const PP2_TYPE_UNIQUE_ID: u8 = 0x05;
/// The spec's bound on a unique id.
const UNIQUE_ID_MAX: usize = 128;

/// The unique id (`PP2_TYPE_UNIQUE_ID`) in `header`, a whole v2 header
/// as [`parse`] found it, when there is one and it can go into a log line
/// as it is (visible ASCII, no quote): HAProxy's `unique-id-format`
/// makes such ids, and anything else is not worth escaping.
pub fn unique_id(header: &[u8]) -> Option<&str> {
    if header.len() < 16 || header[..12] != SIGNATURE[..] {
        return None;
    }
    let addresses = match header[13] >> 4 {
        1 => 12,
        2 => 36,
        3 => 216,
        _ => 0,
    };
    let mut tlvs = header.get(16 + addresses..)?;
    while let [kind, hi, lo, rest @ ..] = tlvs {
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        let value = rest.get(..len)?;
        if *kind == PP2_TYPE_UNIQUE_ID {
            let printable = value
                .iter()
                .all(|b| (0x21..=0x7e).contains(b) && *b != b'"');
            return (printable && !value.is_empty() && len <= UNIQUE_ID_MAX)
                .then(|| std::str::from_utf8(value).ok())
                .flatten();
        }
        tlvs = &rest[len..];
    }
    None
}

/// The fuzz target's checks: a header found is found again in exactly
/// its own bytes and in no prefix of them; an input refused is never a
/// header in any prefix; nothing panics.
#[cfg(feature = "fuzzing")]
pub fn fuzz_parse(data: &[u8]) {
    let whole = parse(data);
    match whole {
        Parsed::Done { consumed, .. } => {
            assert!(consumed <= data.len() && consumed <= V2_MAX.max(V1_MAX));
            if let Some(id) = unique_id(&data[..consumed]) {
                assert!(!id.is_empty() && id.len() <= UNIQUE_ID_MAX);
            }
            assert_eq!(parse(&data[..consumed]), whole, "the header alone");
            for cut in [0, consumed / 2, consumed.saturating_sub(1)] {
                if cut < consumed {
                    assert_eq!(parse(&data[..cut]), Parsed::Incomplete, "cut at {cut}");
                }
            }
        }
        Parsed::Invalid(_) => {
            for cut in [data.len() / 2, data.len().saturating_sub(1)] {
                assert!(
                    !matches!(parse(&data[..cut]), Parsed::Done { .. }),
                    "a prefix of a refused input parsed"
                );
            }
        }
        Parsed::Incomplete => assert!(data.len() < V2_MAX, "incomplete past the largest header"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn v1_names_the_client() {
        let h = b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 3128\r\nGET http://a/ HTTP/1.1\r\n";
        assert_eq!(
            parse(h),
            Parsed::Done {
                consumed: 45,
                source: Some("203.0.113.7:51234".parse().unwrap())
            }
        );
        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 3128\r\n";
        assert!(
            matches!(parse(h), Parsed::Done { source: Some(a), .. } if a == "[2001:db8::7]:4000".parse().unwrap())
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Done {
                consumed: 15,
                source: None
            }
        );
    }

    #[test]
    fn v2_names_the_client_or_the_balancer_itself() {
        let mut body = vec![203, 0, 113, 7, 192, 0, 2, 1];
        body.extend_from_slice(&51234u16.to_be_bytes());
        body.extend_from_slice(&3128u16.to_be_bytes());
        // A TLV after the addresses (a unique id) is skipped.
        body.extend_from_slice(&[0x05, 0x00, 0x02, b'i', b'd']);
        let h = v2(1, 0x11, &body);
        assert_eq!(
            parse(&h),
            Parsed::Done {
                consumed: h.len(),
                source: Some("203.0.113.7:51234".parse().unwrap())
            }
        );
        let local = v2(0, 0x00, &[]);
        assert_eq!(
            parse(&local),
            Parsed::Done {
                consumed: 16,
                source: None
            }
        );
        let mut body6 = vec![0u8; 36];
        body6[15] = 7;
        body6[32..34].copy_from_slice(&9u16.to_be_bytes());
        assert!(
            matches!(parse(&v2(1, 0x21, &body6)), Parsed::Done { source: Some(a), .. } if a == "[::7]:9".parse().unwrap())
        );
    }

    #[test]
    fn the_unique_id_is_read_from_the_tlvs_when_it_can_be_logged() {
        let mut addresses = vec![203, 0, 113, 7, 192, 0, 2, 1];
        addresses.extend_from_slice(&51234u16.to_be_bytes());
        addresses.extend_from_slice(&3128u16.to_be_bytes());
        let with = |tlvs: &[u8]| {
            let mut body = addresses.clone();
            body.extend_from_slice(tlvs);
            v2(1, 0x11, &body)
        };
        // After another TLV (ALPN), as HAProxy sends them.
        let h = with(&[
            0x01, 0, 2, b'h', b'2', 0x05, 0, 6, b'a', b'b', b'-', b'1', b'2', b'3',
        ]);
        assert!(matches!(parse(&h), Parsed::Done { consumed, .. } if consumed == h.len()));
        assert_eq!(unique_id(&h), Some("ab-123"));
        assert_eq!(unique_id(&with(&[0x01, 0, 2, b'h', b'2'])), None);
        // Not loggable as it is, longer than the spec allows, or cut short.
        assert_eq!(unique_id(&with(&[0x05, 0, 3, b'a', b' ', b'b'])), None);
        let long = [&[0x05, 0, 129][..], &[b'x'; 129]].concat();
        assert_eq!(unique_id(&with(&long)), None);
        assert_eq!(unique_id(&with(&[0x05, 0, 9, b'a'])), None);
        // v1 has no TLVs.
        assert_eq!(
            unique_id(b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 3128\r\n"),
            None
        );
    }

    #[test]
    fn listeners_require_the_header_when_named_or_all_when_required() {
        let a: SocketAddr = "0.0.0.0:3128".parse().unwrap();
        let b: SocketAddr = "0.0.0.0:3129".parse().unwrap();
        let mut c = ProxyProtocolConfig::default();
        assert!(!c.requires(a) && !c.requires(b));
        c.listeners = vec![b];
        assert!(!c.requires(a) && c.requires(b));
        c.listeners.clear();
        c.required = true;
        assert!(c.requires(a) && c.requires(b));
    }

    #[test]
    fn any_prefix_of_a_header_needs_more_and_anything_else_is_refused() {
        let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 3128\r\n";
        let mut body = vec![0u8; 12];
        body[8..10].copy_from_slice(&80u16.to_be_bytes());
        let v2h = v2(1, 0x11, &body);
        for h in [&v1[..], &v2h] {
            for cut in 0..h.len() {
                assert_eq!(parse(&h[..cut]), Parsed::Incomplete, "{cut}");
            }
        }
        for bad in [
            &b"GET http://a/ HTTP/1.1\r\n"[..],
            b"PROXY TCP4 300.0.0.1 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 99999 2\r\n",
            b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n",
            b"PROXY TCP4 1.2.3.4\r\n",
        ] {
            assert!(
                matches!(parse(bad), Parsed::Invalid(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(parse(&[b'P'; 1][..]), Parsed::Incomplete));
        assert_eq!(
            parse(&[b'X'; 200]),
            Parsed::Invalid("no PROXY protocol header")
        );
        let long = [&b"PROXY TCP4 "[..], &[b'1'; 120]].concat();
        assert_eq!(parse(&long), Parsed::Invalid("PROXY v1 line too long"));
        let mut huge = v2(1, 0x11, &[]);
        huge[14..16].copy_from_slice(&5000u16.to_be_bytes());
        assert_eq!(parse(&huge), Parsed::Invalid("PROXY v2 header too large"));
        assert!(matches!(
            parse(&v2(1, 0x11, &[1, 2, 3])),
            Parsed::Invalid(_)
        ));
        let mut v3 = v2(1, 0x11, &body);
        v3[12] = 0x31;
        assert!(matches!(parse(&v3), Parsed::Invalid(_)));
    }
}
