//! Message heads: finding where one ends in a stream, parsing it with
//! httparse under our limits, and the strictness checks httparse leaves to
//! us (obsolete line folding, whitespace before a colon).

use crate::error::RequestError;
use serde::{Deserialize, Serialize};
use std::mem::MaybeUninit;

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
/// trimmed. Both borrow the head they were parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field name, case preserved.
    pub name: &'a str,
    /// The raw value bytes (may be non-UTF-8 obs-text).
    pub value: &'a [u8],
}

/// The fields of a head, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields<'a>(pub Vec<Field<'a>>);

impl<'a> Fields<'a> {
    /// Values of every line named `name` (case-insensitive).
    pub fn get_all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.0
            .iter()
            .filter(move |f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value)
    }

    /// The value of the first line named `name`.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        self.0
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value)
    }

    /// Whether any line named `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Comma-separated list elements of every line named `name`, trimmed,
    /// empty elements skipped (RFC 9110 §5.6.1).
    pub fn list<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.get_all(name)
            .flat_map(|v| v.split(|&b| b == b','))
            .map(trim)
            .filter(|e| !e.is_empty())
    }

    /// Whether the list field `name` has `token` (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        // `list` spelled out: nested loops cost less than its flat_map.
        self.get_all(name).any(|v| {
            v.split(|&b| b == b',').any(|e| {
                let e = trim(e);
                !e.is_empty() && e.eq_ignore_ascii_case(token.as_bytes())
            })
        })
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

/// A parsed request head, borrowing the bytes it was parsed from: a head
/// is looked at while its exchange is set up and then dropped, so copying
/// every field out would be work for nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead<'a> {
    /// The method token, case preserved (methods are case-sensitive).
    pub method: &'a str,
    /// The request target as sent.
    pub target: &'a str,
    /// The client's version.
    pub version: Version,
    /// The header fields.
    pub fields: Fields<'a>,
}

/// A parsed response head, borrowing the bytes it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead<'a> {
    /// The origin's version.
    pub version: Version,
    /// The status code.
    pub status: u16,
    /// The reason phrase, possibly empty.
    pub reason: &'a str,
    /// The header fields.
    pub fields: Fields<'a>,
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

/// Whether [`check_field_lines`] is sure to pass `head`, given whether
/// httparse took it whole, so the second pass over it can be skipped.
///
/// It is when httparse took it (with the strict defaults we use): every
/// field line it takes is a name token directly followed by a colon, so
/// none is folded or has space before its colon. Unless empty lines come
/// first: httparse skips them, while the checks take the first of them
/// for the start line and check the real one as a field line. The checks
/// still decide which error a refused head gets, so they run for those.
fn passes_field_line_checks(head: &[u8], httparse_took_it: bool) -> bool {
    httparse_took_it && !matches!(head.first(), Some(b'\r' | b'\n'))
}

fn collect_fields<'b>(headers: &[httparse::Header<'b>]) -> Fields<'b> {
    Fields(
        headers
            .iter()
            .map(|h| Field {
                name: h.name,
                value: h.value,
            })
            .collect(),
    )
}

/// Room for this many header fields lives on the stack, uninitialised and
/// so free to set up; it covers the heads real clients and origins send.
const STACK_FIELDS: usize = 64;

/// Runs `parse` with room for `max_headers` fields. A head with more than
/// [`STACK_FIELDS`] is parsed again with room on the heap, which gives the
/// same result as having had that room from the start: httparse only
/// looks at the room when a field does not fit.
fn with_field_room<'b, T>(
    max_headers: usize,
    mut parse: impl FnMut(&mut [MaybeUninit<httparse::Header<'b>>]) -> Result<T, httparse::Error>,
) -> Result<T, httparse::Error> {
    let mut stack = [MaybeUninit::uninit(); STACK_FIELDS];
    if max_headers <= STACK_FIELDS {
        return parse(&mut stack[..max_headers]);
    }
    match parse(&mut stack) {
        Err(httparse::Error::TooManyHeaders) => {
            parse(&mut vec![MaybeUninit::uninit(); max_headers])
        }
        other => other,
    }
}

/// Parses a complete request head (as delimited by [`find_head_end`]).
pub fn parse_request(
    head: &[u8],
    max_headers: usize,
    max_uri: usize,
) -> Result<RequestHead<'_>, RequestError> {
    // The URI limit is checked on the raw line first so that an over-long
    // target gets 414 whatever else is wrong with it.
    if raw_target(head).is_some_and(|t| t.len() > max_uri) {
        return Err(RequestError::UriTooLong(max_uri));
    }
    let parsed = with_field_room(max_headers, |room| {
        let mut req = httparse::Request::new(&mut []);
        Ok(match req.parse_with_uninit_headers(head, room)? {
            httparse::Status::Complete(_) => Some((
                req.method,
                req.path,
                req.version,
                collect_fields(req.headers),
            )),
            httparse::Status::Partial => None,
        })
    });
    if !passes_field_line_checks(head, parsed.as_ref().is_ok_and(Option::is_some)) {
        check_field_lines(head).map_err(|p| match p {
            LineProblem::ObsFold => RequestError::ObsFold,
            LineProblem::SpaceBeforeColon => RequestError::SpaceBeforeColon,
        })?;
    }
    let (method, target, minor, fields) = match parsed {
        Ok(Some((Some(method), Some(target), Some(minor), fields))) => {
            (method, target, minor, fields)
        }
        Ok(Some(_)) => return Err(RequestError::Malformed("invalid request line")),
        Ok(None) => return Err(RequestError::Malformed("incomplete head")),
        Err(e) => {
            return Err(match e {
                httparse::Error::TooManyHeaders => RequestError::TooManyHeaders(max_headers),
                // A target with whitespace in it (`GET /x y HTTP/1.1`)
                // leaves the version looking wrong, but it is the target
                // that is: 400, not 505.
                httparse::Error::Version if spaces_in_target(first_line(head)) => {
                    RequestError::Malformed("whitespace in the request target")
                }
                // Only a well-formed `HTTP/x.y` of another version is 505;
                // anything else in that place is not HTTP at all.
                httparse::Error::Version if names_http_version(first_line(head)) => {
                    RequestError::Version
                }
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
    };
    Ok(RequestHead {
        method,
        target,
        version: Version::from_minor(minor),
        fields,
    })
}

/// The second space-separated word of the first line, where a request
/// line has its target; `None` if the line has no space.
fn raw_target(head: &[u8]) -> Option<&[u8]> {
    let space = head.iter().position(|&b| b == b' ' || b == b'\n')?;
    if head[space] == b'\n' {
        return None;
    }
    let rest = &head[space + 1..];
    let end = (rest.iter())
        .position(|&b| b == b' ' || b == b'\n')
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fn first_line(head: &[u8]) -> &[u8] {
    head.split(|&b| b == b'\n').next().unwrap_or(head)
}

/// Whether a request line ends in something shaped like `HTTP/d.d`.
/// A request line with more than the two spaces that separate method,
/// target and version.
fn spaces_in_target(line: &[u8]) -> bool {
    line.iter().filter(|&&b| b == b' ' || b == b'\t').count() > 2
}

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
pub fn parse_response(
    head: &[u8],
    max_headers: usize,
) -> Result<ResponseHead<'_>, ResponseHeadError> {
    let parsed = with_field_room(max_headers, |room| {
        let mut res = httparse::Response::new(&mut []);
        let status = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, head, room)?;
        Ok(match status {
            httparse::Status::Complete(_) => Some((
                res.code,
                res.version,
                res.reason,
                collect_fields(res.headers),
            )),
            httparse::Status::Partial => None,
        })
    });
    if !passes_field_line_checks(head, parsed.as_ref().is_ok_and(Option::is_some)) {
        check_field_lines(head).map_err(|p| {
            ResponseHeadError::Malformed(match p {
                LineProblem::ObsFold => "obsolete line folding",
                LineProblem::SpaceBeforeColon => "whitespace before colon",
            })
        })?;
    }
    let (code, minor, reason, fields) = match parsed {
        Ok(Some(parts)) => parts,
        Ok(None) => return Err(ResponseHeadError::Malformed("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(ResponseHeadError::Malformed("too many header fields"))
        }
        Err(_) => {
            return Err(ResponseHeadError::Malformed(
                "invalid status line or header",
            ))
        }
    };
    let (Some(status), Some(minor)) = (code, minor) else {
        return Err(ResponseHeadError::Malformed("invalid status line"));
    };
    if !(100..=999).contains(&status) {
        return Err(ResponseHeadError::Malformed("invalid status code"));
    }
    Ok(ResponseHead {
        version: Version::from_minor(minor),
        status,
        reason: reason.unwrap_or(""),
        fields,
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
        // Whitespace in the target is the target's fault: 400, not 505.
        for line in [
            &b"GET http://a.test/x y HTTP/1.1\r\n\r\n"[..],
            b"GET /a b c HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                parse_request(line, 2, 100),
                Err(RequestError::Malformed("whitespace in the request target")),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(matches!(
            parse_request(b"GET http://a.test/x\ty HTTP/1.1\r\n\r\n", 2, 100),
            Err(RequestError::Malformed(_))
        ));
    }

    #[test]
    fn heads_with_more_fields_than_the_stack_room_parse_up_to_the_limit() {
        let mut text = String::from("GET http://a/ HTTP/1.1\r\n");
        for i in 0..STACK_FIELDS + 6 {
            text.push_str(&format!("X-{i}: {i}\r\n"));
        }
        text.push_str("\r\n");
        let n = STACK_FIELDS + 6;
        let h = parse_request(text.as_bytes(), n, 100).unwrap();
        assert_eq!(h.fields.0.len(), n);
        assert_eq!(h.fields.get("x-69"), Some(&b"69"[..]));
        assert_eq!(
            parse_request(text.as_bytes(), n - 1, 100),
            Err(RequestError::TooManyHeaders(n - 1))
        );
        let response = text.replacen("GET http://a/ HTTP/1.1", "HTTP/1.1 200 OK", 1);
        assert_eq!(
            parse_response(response.as_bytes(), n)
                .unwrap()
                .fields
                .0
                .len(),
            n
        );
        assert_eq!(
            parse_response(response.as_bytes(), n - 1),
            Err(ResponseHeadError::Malformed("too many header fields"))
        );
    }

    #[test]
    fn the_raw_target_is_the_second_word_of_the_first_line() {
        for head in [
            &b"GET /x HTTP/1.1\r\n\r\n"[..],
            b"GET /x\r\nA: b c\r\n\r\n",
            b"GET\r\nA: b c\r\n\r\n",
            b"GET  /x HTTP/1.1\n\n",
            b"GET /x",
            b"GET",
            b"",
        ] {
            let mut words = first_line(head).split(|&b| b == b' ');
            words.next();
            assert_eq!(raw_target(head), words.next(), "{head:?}");
        }
    }

    #[test]
    fn response_parses_and_rejects_folding() {
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\nA: b\r\n\r\n", 10).unwrap();
        assert_eq!(
            (r.status, r.reason, r.version),
            (404, "Not Found", Version::Http10)
        );
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", 10).is_err());
        assert!(parse_response(b"HTTP/1.1 2000 OK\r\n\r\n", 10).is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", 10).is_err());
    }

    mod skipped_checks {
        use super::*;
        use proptest::prelude::*;

        /// Heads close to the edges the line checks look at: empty lines
        /// first, folding, space or tab before a colon, colons in the
        /// start line.
        const HEAD: &str = "(\r?\n)?\
                            (GET :8 HTTP/1.1|GET http://a/ HTTP/1.1|HTTP/1.1 200 a :b|[A-Z :/]{0,8})\
                            \r?\n([ \t]?[A-Za-z]{0,3}[ \t]?:?[ \ta-z:]{0,4}\r?\n){0,4}\r?\n";

        #[test]
        fn heads_starting_with_an_empty_line_are_still_checked() {
            assert_eq!(
                parse_request(b"\r\nGET :8 HTTP/1.1\r\n\r\n", 10, 100),
                Err(RequestError::SpaceBeforeColon)
            );
            assert_eq!(
                parse_response(b"\nHTTP/1.1 200 a :b\n\n", 10),
                Err(ResponseHeadError::Malformed("whitespace before colon"))
            );
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Running the line checks only when httparse refused a head
            /// answers as running them first, always, would.
            #[test]
            fn the_line_checks_decide_as_if_always_run(head in HEAD) {
                let head = head.as_bytes();
                let request = match check_field_lines(head) {
                    // The URI limit is checked before the lines.
                    _ if parse_request(head, 10, 8) == Err(RequestError::UriTooLong(8)) => {
                        Err(RequestError::UriTooLong(8))
                    }
                    Err(LineProblem::ObsFold) => Err(RequestError::ObsFold),
                    Err(LineProblem::SpaceBeforeColon) => Err(RequestError::SpaceBeforeColon),
                    Ok(()) => parse_request(head, 10, 8),
                };
                prop_assert_eq!(parse_request(head, 10, 8), request);
                let response = match check_field_lines(head) {
                    Err(LineProblem::ObsFold) => {
                        Err(ResponseHeadError::Malformed("obsolete line folding"))
                    }
                    Err(LineProblem::SpaceBeforeColon) => {
                        Err(ResponseHeadError::Malformed("whitespace before colon"))
                    }
                    Ok(()) => parse_response(head, 10),
                };
                prop_assert_eq!(parse_response(head, 10), response);
            }
        }
    }

    #[test]
    fn list_fields_split_on_commas() {
        let h = parse_request(b"GET http://a/ HTTP/1.1\r\nConnection: keep-alive, X-Foo\r\nConnection: ,close\r\n\r\n", 10, 100).unwrap();
        assert!(h.fields.has_token("connection", "CLOSE"));
        assert!(h.fields.has_token("Connection", "x-foo"));
        assert_eq!(h.fields.list("connection").count(), 3);
    }
}
