//! Turning a received head into the one we forward (RFC 9110 §7.6): drop
//! hop-by-hop fields and whatever `Connection` names, speak our own
//! version, add `Via`, and on requests replace the absolute form with the
//! origin form and a `Host` from the URI.

use super::head::{Fields, RequestHead, ResponseHead, Version};
use crate::config::{ClientAddressField, ForwardedHeaders};
use std::net::IpAddr;

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

/// Whether `name` must not be forwarded. `connection` is the message's
/// fields if it has a `Connection` field, whose options are hop-by-hop
/// too (most messages have none, and then there is nothing to look up).
fn is_hop_by_hop(name: &str, connection: Option<&Fields>) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        || connection.is_some_and(|fields| {
            fields
                .list("connection")
                .any(|token| token.eq_ignore_ascii_case(name.as_bytes()))
        })
}

/// The fields to hand [`is_hop_by_hop`] for a message with `fields`.
fn connection_options<'f, 'a>(fields: &'f Fields<'a>) -> Option<&'f Fields<'a>> {
    fields.contains("connection").then_some(fields)
}

fn write_field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// `Via: <version> <proxy_name>`, our hop (RFC 9110 §7.6.3).
fn write_via(out: &mut Vec<u8>, version: Version, proxy_name: &str) {
    out.extend_from_slice(b"Via: ");
    out.extend_from_slice(version.via_token().as_bytes());
    out.push(b' ');
    out.extend_from_slice(proxy_name.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal. Heads are written by hand rather than with
/// `write!`, whose machinery costs more than the rest of a head.
pub(crate) fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Forwards `Content-Length` once. Framing has already refused a message
/// whose lengths differ, so repeated lines or a list (`3, 3`) all say one
/// value; RFC 9110 §8.6 lets a recipient take it, and a proxy that passed
/// the repeats on would leave the next hop to guess the same way.
#[derive(Default)]
struct OneLength {
    written: bool,
}

impl OneLength {
    /// Whether the field is taken care of here: a `Content-Length` is
    /// written the first time, as its one value, and skipped after.
    fn skip(&mut self, out: &mut Vec<u8>, name: &str, value: &[u8]) -> bool {
        if !name.eq_ignore_ascii_case("content-length") {
            return false;
        }
        if !self.written {
            let first = value.split(|&b| b == b',').next().unwrap_or(value);
            write_field(out, "Content-Length", first.trim_ascii());
            self.written = true;
        }
        true
    }
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
    /// A stored response's validators: the request becomes the cache's
    /// own conditional request, in place of any the client sent (RFC 9111
    /// §4.3.1). The client's are answered from the refreshed entry.
    pub validators: Option<Conditionals<'a>>,
    /// The client, for `X-Forwarded-For` and `Forwarded` as configured;
    /// `None` passes both as they are.
    pub client: Option<ClientAddress<'a>>,
}

/// The client a request came from and what the origin is told of it.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddress<'a> {
    /// The client's address (the one a PROXY header named, behind a
    /// balancer).
    pub ip: IpAddr,
    /// What to do with each field.
    pub fields: &'a ForwardedHeaders,
}

/// One field that names clients, as it is being rewritten: what the
/// client sent of it is gathered while the head is copied, and the field
/// is written once, after the others, in its new form.
struct AddressField {
    name: &'static str,
    how: ClientAddressField,
    /// The client's values, comma-joined, when they are kept.
    sent: Vec<u8>,
}

impl AddressField {
    fn new(name: &'static str, how: ClientAddressField) -> Self {
        AddressField {
            name,
            how,
            sent: Vec::new(),
        }
    }

    /// Whether the field `name` is taken care of here.
    fn take(&mut self, name: &str, value: &[u8]) -> bool {
        if self.how == ClientAddressField::Pass || !name.eq_ignore_ascii_case(self.name) {
            return false;
        }
        if self.how == ClientAddressField::Append {
            if !self.sent.is_empty() {
                self.sent.extend_from_slice(b", ");
            }
            self.sent.extend_from_slice(value);
        }
        true
    }

    /// Writes the field, with `element` (the client's) where it goes.
    fn write(&self, out: &mut Vec<u8>, element: impl FnOnce(&mut Vec<u8>)) {
        if matches!(
            self.how,
            ClientAddressField::Pass | ClientAddressField::Remove
        ) {
            return;
        }
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(b": ");
        if !self.sent.is_empty() {
            out.extend_from_slice(&self.sent);
            out.extend_from_slice(b", ");
        }
        element(out);
        out.extend_from_slice(b"\r\n");
    }
}

/// `for=192.0.2.1;proto=http`, an RFC 7239 element for a client that
/// asked for plain HTTP; an IPv6 address is bracketed and quoted (§6).
fn forwarded_element(out: &mut Vec<u8>, ip: IpAddr) {
    use std::io::Write as _;
    let _ = match ip {
        IpAddr::V4(v4) => write!(out, "for={v4};proto=http"),
        IpAddr::V6(v6) => write!(out, "for=\"[{v6}]\";proto=http"),
    };
}

/// The validators of a stored response being revalidated.
#[derive(Debug, Clone, Copy)]
pub struct Conditionals<'a> {
    /// Sent as `If-None-Match`.
    pub etag: Option<&'a [u8]>,
    /// Sent as `If-Modified-Since`.
    pub last_modified: Option<&'a [u8]>,
}

/// The request fields a cache's own conditional request replaces.
const CONDITIONALS: &[&str] = &[
    "if-none-match",
    "if-modified-since",
    "if-match",
    "if-unmodified-since",
    "if-range",
];

impl RequestRewrite<'_> {
    /// Appends the forwarded request head to `out`.
    pub fn write(&self, head: &RequestHead, out: &mut Vec<u8>) {
        // Room for the whole head at once: what is kept of it is at most
        // its fields, plus the request line, Host and Via we write.
        let fields: usize = (head.fields.0.iter())
            .map(|f| f.name.len() + f.value.len() + 4)
            .sum();
        let ours = head.method.len() + self.target.len() + self.host.len() + self.proxy_name.len();
        out.reserve(fields + ours + 96);
        let connection = connection_options(&head.fields);
        out.extend_from_slice(head.method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(self.host.as_bytes());
        out.extend_from_slice(b"\r\n");
        let mut length = OneLength::default();
        let mut addresses = self.client.map(|c| {
            [
                AddressField::new("X-Forwarded-For", c.fields.x_forwarded_for),
                AddressField::new("Forwarded", c.fields.forwarded),
            ]
        });
        for f in &head.fields.0 {
            let name = f.name;
            if name.eq_ignore_ascii_case("host") || length.skip(out, name, f.value) {
                continue;
            }
            if self.max_forwards.is_some() && name.eq_ignore_ascii_case("max-forwards") {
                continue;
            }
            if self.upgrade && name.eq_ignore_ascii_case("upgrade") {
                write_field(out, name, f.value);
                continue;
            }
            if is_hop_by_hop(name, connection) {
                continue;
            }
            if let Some([xff, fwd]) = &mut addresses {
                if xff.take(name, f.value) || fwd.take(name, f.value) {
                    continue;
                }
            }
            if self.validators.is_some()
                && CONDITIONALS.iter().any(|c| name.eq_ignore_ascii_case(c))
            {
                continue;
            }
            write_field(out, name, f.value);
        }
        if let Some(v) = self.validators {
            if let Some(etag) = v.etag {
                write_field(out, "If-None-Match", etag);
            }
            if let Some(date) = v.last_modified {
                write_field(out, "If-Modified-Since", date);
            }
        }
        if let (Some([xff, fwd]), Some(client)) = (&addresses, self.client) {
            let ip = crate::policy::cidr::canonical(client.ip);
            xff.write(out, |out| out.extend_from_slice(ip.to_string().as_bytes()));
            fwd.write(out, |out| forwarded_element(out, ip));
        }
        if let Some(n) = self.max_forwards {
            out.extend_from_slice(b"Max-Forwards: ");
            write_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        write_via(out, head.version, self.proxy_name);
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
    /// `Cache-Status` for our hop, when the cache is on (RFC 9211).
    pub cache_status: Option<&'a str>,
}

impl ResponseRewrite<'_> {
    /// Appends the forwarded response head to `out`.
    pub fn write(&self, head: &ResponseHead, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        write_decimal(out, head.status.into());
        out.push(b' ');
        out.extend_from_slice(head.reason.as_bytes());
        out.extend_from_slice(b"\r\n");
        let connection = connection_options(&head.fields);
        let upgrade = self.connection == ClientConnection::Upgrade;
        let mut has_date = false;
        let mut length = OneLength::default();
        // No Content-Length in a 1xx or 204 (RFC 9110 §8.6: MUST NOT);
        // an origin's is not passed on for a client to misread.
        let bodiless = head.status < 200 || head.status == 204;
        for f in &head.fields.0 {
            let name = f.name;
            if bodiless && name.eq_ignore_ascii_case("content-length") {
                continue;
            }
            if length.skip(out, name, f.value) {
                continue;
            }
            if upgrade && name.eq_ignore_ascii_case("upgrade") {
                write_field(out, name, f.value);
                continue;
            }
            if is_hop_by_hop(name, connection) {
                continue;
            }
            if self.dechunk && name.eq_ignore_ascii_case("transfer-encoding") {
                continue;
            }
            has_date |= name.eq_ignore_ascii_case("date");
            write_field(out, name, f.value);
        }
        if !has_date && head.status >= 200 {
            write_field(out, "Date", self.date.as_bytes());
        }
        if let Some(status) = self.cache_status {
            write_field(out, "Cache-Status", status.as_bytes());
        }
        write_via(out, head.version, self.proxy_name);
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
            validators: None,
            client: None,
        }
        .write(&head, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /x HTTP/1.1\r\nHost: a.test\r\nAccept: */*\r\nVia: 1.1 other\r\nVia: 1.1 me\r\n\r\n"
        );
    }

    /// A request head forwarded plainly (no Max-Forwards, upgrade or
    /// validators) to `/` at a.test by proxy `me`.
    fn forwarded_request(raw: &[u8]) -> String {
        let head = parse_request(raw, 50, 1000).unwrap();
        let mut out = Vec::new();
        RequestRewrite {
            target: "/",
            host: "a.test",
            proxy_name: "me",
            max_forwards: None,
            upgrade: false,
            validators: None,
            client: None,
        }
        .write(&head, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// A response head forwarded to a keep-alive HTTP/1.1 client.
    fn forwarded_response(raw: &[u8]) -> String {
        let head = parse_response(raw, 50).unwrap();
        let mut out = Vec::new();
        ResponseRewrite {
            proxy_name: "me",
            date: "D",
            connection: ClientConnection::KeepAlive11,
            dechunk: false,
            cache_status: None,
        }
        .write(&head, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn repeated_content_lengths_are_forwarded_once() {
        for raw in [
            &b"POST http://a.test/ HTTP/1.1\r\nContent-Length: 3\r\nX: 1\r\nContent-Length: 3\r\n\r\n"[..],
            b"POST http://a.test/ HTTP/1.1\r\nContent-Length: 3 , 3\r\nX: 1\r\n\r\n",
        ] {
            assert_eq!(
                forwarded_request(raw),
                "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\nX: 1\r\nVia: 1.1 me\r\n\r\n"
            );
        }
        let text = forwarded_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\n",
        );
        assert_eq!(text.matches("Content-Length").count(), 1, "{text}");
        assert!(text.contains("\r\nContent-Length: 2\r\n"), "{text}");
    }

    #[test]
    fn no_content_length_in_a_204_or_1xx() {
        for raw in [
            &b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX: 1\r\n\r\n"[..],
            b"HTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\nX: 1\r\n\r\n",
        ] {
            let text = forwarded_response(raw);
            assert!(!text.contains("Content-Length"), "{text}");
            assert!(text.contains("\r\nX: 1\r\n"), "{text}");
        }
    }

    #[test]
    fn revalidation_replaces_the_clients_conditionals() {
        let head = parse_request(
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\nIf-None-Match: \"client\"\r\nIf-Modified-Since: x\r\nAccept: */*\r\n\r\n",
            50,
            1000,
        )
        .unwrap();
        let mut out = Vec::new();
        RequestRewrite {
            target: "/",
            host: "a",
            proxy_name: "me",
            max_forwards: None,
            upgrade: false,
            validators: Some(Conditionals {
                etag: Some(b"\"stored\""),
                last_modified: None,
            }),
            client: None,
        }
        .write(&head, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\nIf-None-Match: \"stored\"\r\nVia: 1.1 me\r\n\r\n"
        );
    }

    /// The request a client at `ip` sent as `raw`, forwarded with the
    /// two fields set to `xff` and `fwd`.
    fn with_client_fields(
        raw: &[u8],
        ip: &str,
        xff: ClientAddressField,
        fwd: ClientAddressField,
    ) -> String {
        let head = parse_request(raw, 50, 1000).unwrap();
        let fields = ForwardedHeaders {
            x_forwarded_for: xff,
            forwarded: fwd,
        };
        let mut out = Vec::new();
        RequestRewrite {
            target: "/",
            host: "a",
            proxy_name: "me",
            max_forwards: None,
            upgrade: false,
            validators: None,
            client: Some(ClientAddress {
                ip: ip.parse().unwrap(),
                fields: &fields,
            }),
        }
        .write(&head, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn client_address_fields_are_passed_appended_replaced_or_removed() {
        use ClientAddressField::*;
        let sent = b"GET http://a/ HTTP/1.1\r\nX-Forwarded-For: 10.0.0.1\r\nAccept: */*\r\nx-forwarded-for: 10.0.0.2, 10.0.0.3\r\nForwarded: for=10.0.0.1\r\n\r\n";
        let head = |fields: &str| {
            format!("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n{fields}Via: 1.1 me\r\n\r\n")
        };
        // The default: as sent, in place.
        assert_eq!(
            with_client_fields(sent, "192.0.2.7", Pass, Pass),
            "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\nAccept: */*\r\nx-forwarded-for: 10.0.0.2, 10.0.0.3\r\nForwarded: for=10.0.0.1\r\nVia: 1.1 me\r\n\r\n"
        );
        // Every line of the field joined, in order, then our hop's.
        assert_eq!(
            with_client_fields(sent, "192.0.2.7", Append, Append),
            head("X-Forwarded-For: 10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.7\r\nForwarded: for=10.0.0.1, for=192.0.2.7;proto=http\r\n")
        );
        assert_eq!(
            with_client_fields(sent, "192.0.2.7", Replace, Remove),
            head("X-Forwarded-For: 192.0.2.7\r\n")
        );
        assert_eq!(
            with_client_fields(sent, "192.0.2.7", Remove, Remove),
            head("")
        );
        // Added when the client sent none; IPv6 bracketed and quoted in
        // `Forwarded`, an IPv4-mapped address written as IPv4.
        let plain = b"GET http://a/ HTTP/1.1\r\nAccept: */*\r\n\r\n";
        assert_eq!(
            with_client_fields(plain, "2001:db8::1", Append, Append),
            head("X-Forwarded-For: 2001:db8::1\r\nForwarded: for=\"[2001:db8::1]\";proto=http\r\n")
        );
        assert_eq!(
            with_client_fields(plain, "::ffff:192.0.2.9", Append, Pass),
            head("X-Forwarded-For: 192.0.2.9\r\n")
        );
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 10, 101, 65535, u64::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
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
            validators: None,
            client: None,
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
            cache_status: None,
        }
        .write(&head, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: D\r\nVia: 1.0 me\r\nConnection: close\r\n\r\n"
        );
    }
}
