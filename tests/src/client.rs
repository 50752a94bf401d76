//! A raw HTTP/1.1 client: write exactly the bytes a test wants, read
//! responses with a small parser that knows Content-Length, chunked and
//! close-delimited bodies and the responses that have none.

use crate::IO_TIMEOUT;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// `HTTP/1.x` minor version.
    pub minor: u8,
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// Header fields in order.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        find_all(&self.headers, name)
    }
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The final head.
    pub head: Head,
    /// Interim (1xx) heads received before it.
    pub interim: Vec<Head>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
    /// The body was chunked.
    pub chunked: bool,
    /// The body was delimited by the connection closing.
    pub close_delimited: bool,
    /// Bytes this response took on the wire: interim heads, head, body
    /// and its framing.
    pub wire_len: u64,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// Every value of `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.head.header_all(name)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts this is an error page from the proxy: `status`, a
    /// `Proxy-Status` naming `proxy-rs` and `error`, HTML, and a body
    /// containing `says`.
    pub fn assert_error(&self, status: u16, error: &str, says: &str) {
        assert_eq!(self.status(), status, "status of {self:#?}");
        let ps = self
            .header("proxy-status")
            .unwrap_or_else(|| panic!("no Proxy-Status in {self:#?}"));
        assert!(
            ps.starts_with("proxy-rs") && ps.contains(&format!("error={error}")),
            "Proxy-Status {ps:?} should name proxy-rs and error={error}"
        );
        assert!(
            ps.contains("details=\""),
            "Proxy-Status {ps:?} should have details"
        );
        let ct = self.header("content-type").unwrap_or("");
        assert!(ct.starts_with("text/html"), "Content-Type {ct:?}");
        let text = self.text();
        assert!(
            text.contains(says),
            "error page should say {says:?}; got {text:?}"
        );
    }
}

pub(crate) fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub(crate) fn find_all<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A client connection with a read buffer, so pipelined responses and
/// bytes after a 101 are not lost between calls.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
    /// Bytes read from the socket so far.
    received: u64,
}

impl Client {
    /// Connects to `addr` with [`IO_TIMEOUT`] on reads and writes.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Client::over(stream)
    }

    /// A client over a connected `stream`, with [`IO_TIMEOUT`] on reads
    /// and writes and Nagle off.
    fn over(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
            eof: false,
            received: 0,
        }
    }

    /// Connects to `addr` from `source` (any loopback address, say
    /// 127.0.0.2: several clients with addresses of their own).
    pub fn connect_from(source: std::net::IpAddr, addr: SocketAddr) -> Client {
        use rustix::net::{AddressFamily, SocketType};
        let family = match source {
            std::net::IpAddr::V4(_) => AddressFamily::INET,
            std::net::IpAddr::V6(_) => AddressFamily::INET6,
        };
        let socket = rustix::net::socket(family, SocketType::STREAM, None)
            .unwrap_or_else(|e| panic!("socket: {e}"));
        rustix::net::bind(&socket, &SocketAddr::new(source, 0))
            .unwrap_or_else(|e| panic!("bind {source}: {e}"));
        rustix::net::connect(&socket, &addr)
            .unwrap_or_else(|e| panic!("connect from {source} to {addr}: {e}"));
        Client::over(TcpStream::from(socket))
    }

    /// The socket, for tests that need it directly.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Our local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream
            .write_all(bytes.as_ref())
            .unwrap_or_else(|e| panic!("write to proxy: {e}"));
    }

    /// Writes all of `bytes`, reporting failure instead of panicking.
    pub fn try_send(&mut self, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
        self.stream.write_all(bytes.as_ref())
    }

    /// Closes our sending side (half-close).
    pub fn shutdown_write(&self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }

    /// Sends `GET url` in absolute form with a matching Host and reads the
    /// response.
    pub fn get(&mut self, url: &str) -> Response {
        let host = host_of(url);
        self.send(format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        self.read_response("GET")
    }

    /// Reads more bytes into the buffer; false at end of stream.
    fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut chunk = [0u8; 32 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                self.received += n as u64;
                true
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                self.eof = true;
                false
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!(
                    "timed out reading from the proxy; have {} unparsed bytes: {:?}",
                    self.buf.len(),
                    String::from_utf8_lossy(&self.buf)
                )
            }
            Err(e) => panic!("read from proxy: {e}"),
        }
    }

    /// Reads one response head (interim or final).
    pub fn read_head(&mut self) -> Head {
        self.try_read_head().unwrap_or_else(|| {
            panic!(
                "connection closed before a response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            )
        })
    }

    /// Reads one response head, or `None` if the connection ends first.
    pub fn try_read_head(&mut self) -> Option<Head> {
        loop {
            if let Some(end) = find_subslice(&self.buf, b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..end + 4).collect();
                return Some(parse_head(&raw));
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Reads a whole response to a `method` request, collecting 1xx heads
    /// (a 101 is final and has no body).
    pub fn read_response(&mut self, method: &str) -> Response {
        let start = self.consumed();
        let mut interim = Vec::new();
        let head = loop {
            let h = self.read_head();
            if (100..200).contains(&h.status) && h.status != 101 {
                interim.push(h);
            } else {
                break h;
            }
        };
        let mut resp = Response {
            head,
            interim,
            body: Vec::new(),
            trailers: Vec::new(),
            chunked: false,
            close_delimited: false,
            wire_len: 0,
        };
        self.read_body_into(method, &mut resp, &mut |body, data| {
            body.extend_from_slice(data)
        });
        resp.wire_len = self.consumed() - start;
        resp
    }

    /// Bytes read and parsed so far (received minus still buffered).
    fn consumed(&self) -> u64 {
        self.received - self.buf.len() as u64
    }

    /// Reads a response, passing body bytes to `sink` instead of keeping
    /// them (for large downloads). Returns the response with an empty body
    /// and the number of body bytes.
    pub fn read_response_streaming(
        &mut self,
        method: &str,
        mut sink: impl FnMut(&[u8]),
    ) -> (Response, u64) {
        let start = self.consumed();
        let head = loop {
            let h = self.read_head();
            if !(100..200).contains(&h.status) || h.status == 101 {
                break h;
            }
        };
        let mut resp = Response {
            head,
            interim: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
            chunked: false,
            close_delimited: false,
            wire_len: 0,
        };
        let mut total = 0u64;
        self.read_body_into(method, &mut resp, &mut |_, data| {
            total += data.len() as u64;
            sink(data)
        });
        resp.wire_len = self.consumed() - start;
        (resp, total)
    }

    fn read_body_into(
        &mut self,
        method: &str,
        resp: &mut Response,
        sink: &mut dyn FnMut(&mut Vec<u8>, &[u8]),
    ) {
        let status = resp.head.status;
        if method == "HEAD" || (100..200).contains(&status) || status == 204 || status == 304 {
            return;
        }
        let mut body = Vec::new();
        let te = resp.head.header("transfer-encoding").map(str::to_owned);
        if let Some(te) = te {
            assert!(
                te.to_ascii_lowercase().trim().ends_with("chunked"),
                "unexpected Transfer-Encoding {te:?}"
            );
            resp.chunked = true;
            loop {
                let line = self.read_line();
                let size_text = line.split(';').next().unwrap().trim();
                let size = u64::from_str_radix(size_text, 16)
                    .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
                if size == 0 {
                    break;
                }
                self.read_n(size, &mut |d| sink(&mut body, d));
                let crlf = self.read_line();
                assert!(crlf.is_empty(), "chunk data not followed by CRLF: {crlf:?}");
            }
            loop {
                let line = self.read_line();
                if line.is_empty() {
                    break;
                }
                let (n, v) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("bad trailer line {line:?}"));
                resp.trailers.push((n.to_owned(), v.trim().to_owned()));
            }
        } else if let Some(cl) = resp.head.header("content-length") {
            let n: u64 = cl
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("bad Content-Length {cl:?}"));
            self.read_n(n, &mut |d| sink(&mut body, d));
        } else {
            resp.close_delimited = true;
            loop {
                if !self.buf.is_empty() {
                    let data = std::mem::take(&mut self.buf);
                    sink(&mut body, &data);
                }
                if !self.fill() {
                    break;
                }
            }
        }
        resp.body = body;
    }

    fn read_n(&mut self, mut n: u64, sink: &mut dyn FnMut(&[u8])) {
        while n > 0 {
            if self.buf.is_empty() && !self.fill() {
                panic!("connection closed with {n} body bytes still expected");
            }
            let take = (self.buf.len() as u64).min(n) as usize;
            sink(&self.buf[..take]);
            self.buf.drain(..take);
            n -= take as u64;
        }
    }

    /// Reads a CRLF-terminated line (without the CRLF).
    pub fn read_line(&mut self) -> String {
        loop {
            if let Some(i) = find_subslice(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            if !self.fill() {
                panic!(
                    "connection closed in the middle of a line: {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
    }

    /// Reads exactly `n` raw bytes.
    pub fn read_exact_bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if !self.fill() {
                panic!(
                    "connection closed after {} of {n} bytes: {:?}",
                    self.buf.len(),
                    String::from_utf8_lossy(&self.buf)
                );
            }
        }
        self.buf.drain(..n).collect()
    }

    /// Reads exactly `n` raw bytes, or `None` if the connection ends first.
    pub fn try_read_exact(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill() {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// Reads everything until the peer closes.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.buf)
    }

    /// Whether the peer closes (or resets) the connection within `within`,
    /// with no further bytes. Panics if bytes arrive instead.
    pub fn closes_within(&mut self, within: Duration) -> bool {
        if self.eof {
            assert!(
                self.buf.is_empty(),
                "unexpected bytes before close: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            return true;
        }
        assert!(
            self.buf.is_empty(),
            "unexpected buffered bytes: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
        let deadline = Instant::now() + within;
        let mut one = [0u8; 1024];
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut one) {
                Ok(0) => break true,
                Ok(n) => panic!(
                    "expected the connection to close, got bytes {:?}",
                    String::from_utf8_lossy(&one[..n])
                ),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    break false
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => panic!("read: {e}"),
            }
        };
        self.stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        if result {
            self.eof = true;
        }
        result
    }

    /// Asserts the proxy closes the connection within [`IO_TIMEOUT`].
    pub fn assert_closed(&mut self) {
        assert!(
            self.closes_within(IO_TIMEOUT),
            "the proxy kept the connection open"
        );
    }

    /// Asserts the connection stays open (no close, no bytes) for `d`.
    pub fn assert_open_for(&mut self, d: Duration) {
        assert!(
            !self.closes_within(d),
            "the proxy closed the connection unexpectedly"
        );
    }
}

/// `host[:port]` of an `http://` URL.
pub fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    &rest[..end]
}

pub(crate) fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(raw: &[u8]) -> Head {
    let mut headers = vec![httparse::EMPTY_HEADER; 256];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        other => panic!(
            "invalid response head ({other:?}): {:?}",
            String::from_utf8_lossy(raw)
        ),
    }
    Head {
        minor: resp.version.unwrap_or(0),
        status: resp.code.unwrap_or(0),
        reason: resp.reason.unwrap_or("").to_owned(),
        headers: owned_fields(resp.headers),
    }
}

/// Parsed header fields as owned (name, value) pairs, values lossily UTF-8.
pub(crate) fn owned_fields(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}
