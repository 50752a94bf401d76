//! Message heads: finding where one ends in a stream, parsing it with
//! httparse under our limits, and the strictness checks httparse leaves to
//! us (obsolete line folding, whitespace before a colon).

use crate::error::RequestError;
use serde::{Deserialize, Serialize};

/// The HTTP version a peer spoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

impl Version {
    fn from_minor(minor: u8) -> Version {
        if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }

    /// As it appears in `Via`'s received-protocol.
    pub fn via_token(self) -> &'static str {
        match self {
            Version::Http10 => "1.0",
            Version::Http11 => "1.1",
        }
    }
}

/// One header field line, name as sent, value with surrounding whitespace
/// trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field name, case preserved.
    pub name: String,
    /// The raw value bytes (may be non-UTF-8 obs-text).
    pub value: Vec<u8>,
}

/// The fields of a head, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<Field>);

impl Fields {
    /// Values of every line named `name` (case-insensitive).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.0
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value.as_slice())
    }

    /// The value of the first line named `name`.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value.as_slice())
    }

    /// Whether any line named `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Comma-separated list elements of every line named `name`, trimmed,
    /// empty elements skipped (RFC 9110 §5.6.1).
    pub fn list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.get_all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim)
            .filter(|e| !e.is_empty())
    }

    /// Whether the list field `name` has `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.list(name)
            .any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
    }
}

/// Trims optional whitespace from both ends.
pub fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method token, case preserved (methods are case-sensitive).
    pub method: String,
    /// The request target as sent.
    pub target: String,
    /// The client's version.
    pub version: Version,
    /// The header fields.
    pub fields: Fields,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The origin's version.
    pub version: Version,
    /// The status code.
    pub status: u16,
    /// The reason phrase, possibly empty.
    pub reason: String,
    /// The header fields.
    pub fields: Fields,
}

/// Finds the end of a head in `buf`: the index just past the empty line
/// that ends it. `from` is how far an earlier call already searched, so
/// that a head arriving a byte at a time costs O(n), not O(n²). Bare LF
/// line endings are recognised here (httparse then decides if they are
/// acceptable).
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(2);
    let mut i = start;
    while let Some(pos) = buf[i..].iter().position(|&b| b == b'\n') {
        let lf = i + pos;
        match buf.get(lf + 1) {
            Some(b'\n') => return Some(lf + 2),
            Some(b'\r') if buf.get(lf + 2) == Some(&b'\n') => return Some(lf + 3),
            _ => i = lf + 1,
        }
    }
    None
}

/// Strictness checks over a complete head that httparse does not make:
/// folding and whitespace before colons are request-smuggling vectors.
fn check_field_lines(head: &[u8]) -> Result<(), LineProblem> {
    let mut lines = head.split(|&b| b == b'\n');
    lines.next(); // the start line
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            return Err(LineProblem::ObsFold);
        }
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            if colon > 0 && matches!(line[colon - 1], b' ' | b'\t') {
                return Err(LineProblem::SpaceBeforeColon);
            }
        }
    }
    Ok(())
}

enum LineProblem {
    ObsFold,
    SpaceBeforeColon,
}

fn collect_fields(headers: &[httparse::Header<'_>]) -> Fields {
    Fields(
        headers
            .iter()
            .map(|h| Field {
                name: h.name.to_owned(),
                value: h.value.to_vec(),
            })
            .collect(),
    )
}

/// Parses a complete request head (as delimited by [`find_head_end`]).
pub fn parse_request(
    head: &[u8],
    max_headers: usize,
    max_uri: usize,
) -> Result<RequestHead, RequestError> {
    // The URI limit is checked on the raw line first so that an over-long
    // target gets 414 whatever else is wrong with it.
    let first = head.split(|&b| b == b'\n').next().unwrap_or(head);
    let mut parts = first.split(|&b| b == b' ');
    parts.next();
    if parts.next().is_some_and(|t| t.len() > max_uri) {
        return Err(RequestError::UriTooLong(max_uri));
    }
    check_field_lines(head).map_err(|p| match p {
        LineProblem::ObsFold => RequestError::ObsFold,
        LineProblem::SpaceBeforeColon => RequestError::SpaceBeforeColon,
    })?;
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(RequestError::Malformed("incomplete head")),
        Err(e) => {
            return Err(match e {
                httparse::Error::TooManyHeaders => RequestError::TooManyHeaders(max_headers),
                // Only a well-formed `HTTP/x.y` of another version is 505;
                // anything else in that place is not HTTP at all.
                httparse::Error::Version if names_http_version(first) => RequestError::Version,
                httparse::Error::Version => RequestError::Malformed("invalid request line"),
                httparse::Error::HeaderName => RequestError::Malformed("invalid header field name"),
                httparse::Error::HeaderValue => {
                    RequestError::Malformed("invalid header field value")
                }
                httparse::Error::NewLine => RequestError::Malformed("invalid line ending"),
                httparse::Error::Token => RequestError::Malformed("invalid method"),
                _ => RequestError::Malformed("invalid request line"),
            });
        }
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(RequestError::Malformed("invalid request line"));
    };
    Ok(RequestHead {
        method: method.to_owned(),
        target: target.to_owned(),
        version: Version::from_minor(minor),
        fields: collect_fields(req.headers),
    })
}

/// Whether a request line ends in something shaped like `HTTP/d.d`.
fn names_http_version(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(line);
    matches!(version, [b'H', b'T', b'T', b'P', b'/', a, b'.', b] if a.is_ascii_digit() && b.is_ascii_digit())
}

/// Why a response head is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseHeadError {
    /// Not valid HTTP/1.x, with a short reason.
    Malformed(&'static str),
}

/// Parses a complete response head.
pub fn parse_response(head: &[u8], max_headers: usize) -> Result<ResponseHead, ResponseHeadError> {
    check_field_lines(head).map_err(|p| {
        ResponseHeadError::Malformed(match p {
            LineProblem::ObsFold => "obsolete line folding",
            LineProblem::SpaceBeforeColon => "whitespace before colon",
        })
    })?;
    let mut headers = vec![httparse::EMPTY_HEADER; max_headers];
    let mut res = httparse::Response::new(&mut headers);
    match res.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Err(ResponseHeadError::Malformed("incomplete head"))
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ResponseHeadError::Malformed("too many header fields"))
        }
        Err(_) => {
            return Err(ResponseHeadError::Malformed(
                "invalid status line or header",
            ))
        }
    }
    let (Some(status), Some(minor)) = (res.code, res.version) else {
        return Err(ResponseHeadError::Malformed("invalid status line"));
    };
    if !(100..=999).contains(&status) {
        return Err(ResponseHeadError::Malformed("invalid status code"));
    }
    Ok(ResponseHead {
        version: Version::from_minor(minor),
        status,
        reason: res.reason.unwrap_or("").to_owned(),
        fields: collect_fields(res.headers),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_is_found_across_calls_and_line_endings() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        assert_eq!(find_head_end(buf, 0), Some(27));
        // Resuming part-way finds the same end.
        for from in 0..27 {
            assert_eq!(find_head_end(buf, from), Some(27), "from {from}");
        }
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nHost: a\n\nx", 0), Some(24));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n", 0), None);
    }

    #[test]
    fn request_parses_with_fields_in_order() {
        let h = parse_request(
            b"POST http://a/ HTTP/1.1\r\nHost: a\r\nX-A: 1 \r\nx-a:2\r\n\r\n",
            10,
            100,
        )
        .unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.target, "http://a/");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(
            h.fields.get_all("x-a").collect::<Vec<_>>(),
            vec![&b"1"[..], b"2"]
        );
    }

    #[test]
    fn smuggling_shapes_are_rejected() {
        let fold = b"GET http://a/ HTTP/1.1\r\nHost: a\r\nX: 1\r\n  continued\r\n\r\n";
        assert_eq!(parse_request(fold, 10, 100), Err(RequestError::ObsFold));
        let space = b"GET http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n";
        assert_eq!(
            parse_request(space, 10, 100),
            Err(RequestError::SpaceBeforeColon)
        );
        let tab = b"GET http://a/ HTTP/1.1\r\nHost\t: a\r\n\r\n";
        assert_eq!(
            parse_request(tab, 10, 100),
            Err(RequestError::SpaceBeforeColon)
        );
    }

    #[test]
    fn limits_map_to_their_statuses() {
        let many = b"GET http://a/ HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        assert_eq!(
            parse_request(many, 2, 100),
            Err(RequestError::TooManyHeaders(2))
        );
        let long = b"GET http://a/aaaaaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n";
        assert_eq!(
            parse_request(long, 2, 10),
            Err(RequestError::UriTooLong(10))
        );
        assert_eq!(
            parse_request(b"GET / HTTP/2.0\r\n\r\n", 2, 10),
            Err(RequestError::Version)
        );
        assert!(matches!(
            parse_request(b"G@T / HTTP/1.1\r\n\r\n", 2, 10),
            Err(RequestError::Malformed(_))
        ));
    }

    #[test]
    fn response_parses_and_rejects_folding() {
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\nA: b\r\n\r\n", 10).unwrap();
        assert_eq!(
            (r.status, r.reason.as_str(), r.version),
            (404, "Not Found", Version::Http10)
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", 10).is_err());
        assert!(parse_response(b"HTTP/1.1 2000 OK\r\n\r\n", 10).is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", 10).is_err());
    }

    #[test]
    fn list_fields_split_on_commas() {
        let h = parse_request(b"GET http://a/ HTTP/1.1\r\nConnection: keep-alive, X-Foo\r\nConnection: ,close\r\n\r\n", 10, 100).unwrap();
        assert!(h.fields.has_token("connection", "CLOSE"));
        assert!(h.fields.has_token("Connection", "x-foo"));
        assert_eq!(h.fields.list("connection").count(), 3);
    }
}
