//! Turning a received head into the one we forward (RFC 9110 §7.6): drop
//! hop-by-hop fields and whatever `Connection` names, speak our own
//! version, add `Via`, and on requests replace the absolute form with the
//! origin form and a `Host` from the URI.

use super::head::{Fields, RequestHead, ResponseHead};
use super::page::WriteVec;
use std::fmt::Write;

/// Fields that describe one connection, never the message (RFC 9110
/// §7.6.1, plus the de-facto `Proxy-Connection` and `Keep-Alive`).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// Whether `name` must not be forwarded, given the message's fields.
fn is_hop_by_hop(name: &str, fields: &Fields) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || fields
            .list("connection")
            .any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
}

fn write_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What to forward a request as.
#[derive(Debug, Clone)]
pub struct RequestRewrite<'a> {
    /// Origin-form target (`/path?query`, or `*` for server-wide OPTIONS).
    pub target: &'a str,
    /// The `Host` value, from the URI authority.
    pub host: &'a str,
    /// Our pseudonym for `Via`.
    pub proxy_name: &'a str,
    /// The decremented `Max-Forwards`, when it applies (TRACE, OPTIONS).
    pub max_forwards: Option<u64>,
    /// Keep `Upgrade` and ask the origin to switch protocols.
    pub upgrade: bool,
}

impl RequestRewrite<'_> {
    /// Appends the forwarded request head to `out`.
    pub fn write(&self, head: &RequestHead, out: &mut Vec<u8>) {
        out.extend_from_slice(head.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(b"\r\n");
        for f in &head.fields.0 {
            let name = f.name.as_str();
            if name.eq_ignore_ascii_case("host") {
                continue;
            }
            if self.max_forwards.is_some() && name.eq_ignore_ascii_case("max-forwards") {
                continue;
            }
            if self.upgrade && name.eq_ignore_ascii_case("upgrade") {
                write_field(out, name, &f.value);
                continue;
            }
            if is_hop_by_hop(name, &head.fields) {
                continue;
            }
            write_field(out, name, &f.value);
        }
        if let Some(n) = self.max_forwards {
            let _ = write!(WriteVec(out), "Max-Forwards: {n}\r\n");
        }
        let _ = write!(
            WriteVec(out),
            "Via: {} {}\r\n",
            head.version.via_token(),
            self.proxy_name
        );
        if self.upgrade {
            out.extend_from_slice(b"Connection: upgrade\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
}

/// How the response's connection handling is announced to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientConnection {
    /// HTTP/1.1 persistence: nothing to say.
    KeepAlive11,
    /// An HTTP/1.0 client that asked for keep-alive and gets it.
    KeepAlive10,
    /// The proxy closes after this response.
    Close,
    /// A 101: the connection switches protocols.
    Upgrade,
}

/// What to forward a response as.
#[derive(Debug, Clone)]
pub struct ResponseRewrite<'a> {
    /// Our pseudonym for `Via`.
    pub proxy_name: &'a str,
    /// A `Date` to add if the origin sent none (RFC 9110 §6.6.1).
    pub date: &'a str,
    /// How the client connection continues.
    pub connection: ClientConnection,
    /// The body is being de-chunked (HTTP/1.0 client): drop
    /// `Transfer-Encoding`, the close delimits it.
    pub dechunk: bool,
}

impl ResponseRewrite<'_> {
    /// Appends the forwarded response head to `out`.
    pub fn write(&self, head: &ResponseHead, out: &mut Vec<u8>) {
        let _ = write!(
            WriteVec(out),
            "HTTP/1.1 {} {}\r\n",
            head.status,
            head.reason
        );
        let upgrade = self.connection == ClientConnection::Upgrade;
        let mut has_date = false;
        for f in &head.fields.0 {
            let name = f.name.as_str();
            if upgrade && name.eq_ignore_ascii_case("upgrade") {
                write_field(out, name, &f.value);
                continue;
            }
            if is_hop_by_hop(name, &head.fields) {
                continue;
            }
            if self.dechunk && name.eq_ignore_ascii_case("transfer-encoding") {
                continue;
            }
            has_date |= name.eq_ignore_ascii_case("date");
            write_field(out, name, &f.value);
        }
        if !has_date && head.status >= 200 {
            let _ = write!(WriteVec(out), "Date: {}\r\n", self.date);
        }
        let _ = write!(
            WriteVec(out),
            "Via: {} {}\r\n",
            head.version.via_token(),
            self.proxy_name
        );
        match self.connection {
            ClientConnection::KeepAlive11 => {}
            ClientConnection::KeepAlive10 => out.extend_from_slice(b"Connection: keep-alive\r\n"),
            ClientConnection::Close => out.extend_from_slice(b"Connection: close\r\n"),
            ClientConnection::Upgrade => out.extend_from_slice(b"Connection: upgrade\r\n"),
        }
        out.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::head::{parse_request, parse_response};

    #[test]
    fn request_rewrite_drops_hop_by_hop_and_adds_via() {
        let head = parse_request(
            b"GET http://a.test/x HTTP/1.1\r\nHost: wrong\r\nConnection: close, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nProxy-Connection: keep-alive\r\nProxy-Authorization: Basic Zm9v\r\nTE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nAccept: */*\r\nVia: 1.1 other\r\n\r\n",
            50,
            1000,
        )
        .unwrap();
        let mut out = Vec::new();
        RequestRewrite {
            target: "/x",
            host: "a.test",
            proxy_name: "me",
            max_forwards: None,
            upgrade: false,
        }
        .write(&head, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /x HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\nVia: 1.1 other\r\nVia: 1.1 me\r\n\r\n"
        );
    }

    #[test]
    fn upgrade_request_keeps_upgrade() {
        let head = parse_request(b"GET http://a/ HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 50, 1000).unwrap();
        let mut out = Vec::new();
        RequestRewrite {
            target: "/",
            host: "a",
            proxy_name: "me",
            max_forwards: Some(3),
            upgrade: true,
        }
        .write(&head, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Upgrade: websocket\r\n"));
        assert!(text.contains("Connection: upgrade\r\n"));
        assert!(text.contains("Max-Forwards: 3\r\n"));
    }

    #[test]
    fn response_rewrite_adds_date_via_and_connection() {
        let head = parse_response(b"HTTP/1.0 200 OK\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n", 50).unwrap();
        let mut out = Vec::new();
        ResponseRewrite {
            proxy_name: "me",
            date: "D",
            connection: ClientConnection::Close,
            dechunk: true,
        }
        .write(&head, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: D\r\nVia: 1.0 me\r\nConnection: close\r\n\r\n"
        );
    }
}
