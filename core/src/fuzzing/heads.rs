//! The head parsers, on their own and inside a connection. The first
//! input byte chooses where to split the rest; the bytes are then parsed
//! and also fed to a connection whole and in two pieces: the two runs
//! must give the peers the same bytes and log the same records
//! (chunking invariance), whatever the bytes are.

use super::connection::{Event, Transcript, World};
use crate::config::{ClientAddressField, Config, ForwardedHeaders};
use crate::http::framing::{request_framing, response_framing};
use crate::http::head::{find_head_end, parse_request, parse_response, Version};
use crate::http::rewrite::{ClientAddress, ClientConnection, RequestRewrite, ResponseRewrite};
use crate::http::target::{AbsoluteUri, Authority};
use crate::shared::Shared;
use crate::time::Instant;

/// An origin's answer to whatever is asked.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
/// A client's request to an origin given by address (no resolving).
const GET: &[u8] = b"GET http://192.0.2.1/x HTTP/1.1\r\nHost: 192.0.2.1\r\n\r\n";

/// The split point the first byte names, and the rest.
fn split(data: &[u8]) -> Option<(usize, &[u8])> {
    let (&cut, bytes) = data.split_first()?;
    Some((usize::from(cut) * bytes.len() / 255, bytes))
}

/// A head is found at the same place however it arrives.
fn scan_in_two(bytes: &[u8], at: usize) -> Option<usize> {
    let whole = find_head_end(bytes, 0);
    match find_head_end(&bytes[..at], 0) {
        Some(end) => assert_eq!(Some(end), whole, "found early, elsewhere"),
        None => assert_eq!(find_head_end(bytes, at), whole, "resumed scan disagrees"),
    }
    whole
}

/// A connection given `pieces` from the client, with every resolve and
/// connect answered and every request answered 200.
fn serve_client(pieces: &[&[u8]]) -> Transcript {
    let mut w = World::new(Shared::allow_all(Config::default()), Instant::ZERO);
    for piece in pieces {
        w.client_sends(piece);
    }
    for _ in 0..16 {
        match w.asked() {
            (true, _) => w.apply(&Event::Resolve(true)),
            (_, true) => w.apply(&Event::Connect(0)),
            _ if w.waits_for_upstream() => w.upstream_sends(OK),
            _ => break,
        }
    }
    w.finish();
    w.transcript()
}

/// A connection whose request is answered with `pieces` from the
/// origin, which then closes.
fn serve_origin(pieces: &[&[u8]]) -> Transcript {
    let mut w = World::new(Shared::allow_all(Config::default()), Instant::ZERO);
    w.client_sends(GET);
    w.apply(&Event::Connect(0));
    for piece in pieces {
        w.upstream_sends(piece);
    }
    w.apply(&Event::UpstreamEof);
    w.finish();
    w.transcript()
}

/// Request heads: scanning, parsing, framing, the target, the forwarded
/// head (which must parse again), and a connection fed them whole and
/// split.
pub fn request_head(data: &[u8]) {
    let Some((at, bytes)) = split(data) else {
        return;
    };
    if let Some(end) = scan_in_two(bytes, at) {
        if let Ok(head) = parse_request(&bytes[..end], 64, 8192) {
            assert!(head.fields.0.len() <= 64 && head.target.len() <= 8192);
            let _ = request_framing(&head);
            let _ = Authority::parse(head.target, None);
            if let Ok(uri) = AbsoluteUri::parse(head.target) {
                let mut out = Vec::new();
                let host = uri.authority.host_field(80);
                RequestRewrite {
                    target: if uri.path_and_query.is_empty() {
                        "/"
                    } else {
                        &uri.path_and_query
                    },
                    host: &host,
                    proxy_name: "fuzz",
                    max_forwards: Some(1),
                    upgrade: false,
                    validators: None,
                    client: Some(ClientAddress {
                        ip: "2001:db8::1".parse().expect("an address"),
                        fields: &ForwardedHeaders {
                            x_forwarded_for: ClientAddressField::Append,
                            forwarded: ClientAddressField::Append,
                        },
                    }),
                }
                .write(&head, &mut out);
                let again = parse_request(&out, 128, 1 << 20).unwrap_or_else(|e| {
                    panic!(
                        "a forwarded head does not parse ({e}): {:?}",
                        String::from_utf8_lossy(&out)
                    )
                });
                assert_eq!(again.method, head.method);
                assert_eq!(again.version, Version::Http11);
                assert!(
                    again
                        .fields
                        .get("x-forwarded-for")
                        .is_some_and(|v| v.ends_with(b"2001:db8::1")),
                    "our hop is the last of X-Forwarded-For"
                );
            }
        }
    }
    assert_eq!(
        serve_client(&[bytes]),
        serve_client(&[&bytes[..at], &bytes[at..]]),
        "a request split at {at} was served differently"
    );
}

/// Response heads: scanning, parsing, framing for every kind of request,
/// the forwarded head (which must parse again), and a connection fed them
/// whole and split.
pub fn response_head(data: &[u8]) {
    let Some((at, bytes)) = split(data) else {
        return;
    };
    if let Some(end) = scan_in_two(bytes, at) {
        if let Ok(head) = parse_response(&bytes[..end], 64) {
            assert!(head.fields.0.len() <= 64);
            for method in ["GET", "HEAD", "CONNECT", "POST"] {
                let _ = response_framing(method, &head);
            }
            let mut out = Vec::new();
            ResponseRewrite {
                proxy_name: "fuzz",
                date: "Sun, 06 Nov 1994 08:49:37 GMT",
                connection: ClientConnection::KeepAlive11,
                dechunk: false,
                cache_status: Some("fuzz; fwd=uri-miss"),
            }
            .write(&head, &mut out);
            let again = parse_response(&out, 128).unwrap_or_else(|e| {
                panic!(
                    "a forwarded head does not parse ({e:?}): {:?}",
                    String::from_utf8_lossy(&out)
                )
            });
            assert_eq!(again.status, head.status);
        }
    }
    assert_eq!(
        serve_origin(&[bytes]),
        serve_origin(&[&bytes[..at], &bytes[at..]]),
        "a response split at {at} was forwarded differently"
    );
}
