//! In-process origin servers on loopback, each on its own threads:
//! a scriptable HTTP/1.1 origin, a raw one that writes whatever a test
//! says, and a TCP echo server for tunnels.

use crate::client::{find_all, find_header, find_subslice};
use crate::IO_TIMEOUT;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an origin connection may sit idle before the origin drops it,
/// so no thread outlives its test for long.
const ORIGIN_IDLE: Duration = Duration::from_secs(30);

/// A request as the origin received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: String,
    /// The request target, as sent (should be origin-form).
    pub target: String,
    /// `HTTP/1.x` minor version.
    pub minor: u8,
    /// Header fields in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// The body came chunked.
    pub chunked: bool,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
    /// Which accepted TCP connection it came on (0-based).
    pub conn: usize,
    /// The raw head bytes.
    pub raw_head: Vec<u8>,
}

impl Request {
    /// The first value of `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// Every value of `name`.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        find_all(&self.headers, name)
    }

    /// Whether a field called `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// How the origin delimits a response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// `Content-Length` (for HEAD: the length, no body).
    Length,
    /// Chunked in pieces of at most `chunk` bytes, then these trailers.
    Chunked {
        /// Largest chunk.
        chunk: usize,
        /// Trailer fields.
        trailers: Vec<(String, String)>,
    },
    /// No length; the origin closes the connection after the body.
    Close,
    /// Neither length nor body (1xx, 204, 304): only the given headers.
    NoBody,
}

/// The body to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// These bytes.
    Bytes(Vec<u8>),
    /// This many bytes of [`pattern`], generated on the fly.
    Pattern(u64),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Pattern(n) => *n,
        }
    }
}

/// Length of the repeating test pattern; odd so it never lines up with
/// buffer sizes.
pub const PATTERN_LEN: usize = 65_521;

/// Two periods of the test pattern, so any window of up to
/// [`PATTERN_LEN`] bytes starting at `offset % PATTERN_LEN` is one slice.
pub fn pattern() -> &'static [u8] {
    static P: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    P.get_or_init(|| {
        (0..2 * PATTERN_LEN)
            .map(|i| {
                ((i % PATTERN_LEN) as u32)
                    .wrapping_mul(2_654_435_761)
                    .to_be_bytes()[0]
            })
            .collect()
    })
}

/// Whether `data`, found at body offset `offset`, is the test pattern.
/// Slices of up to [`PATTERN_LEN`] bytes.
pub fn matches_pattern(offset: u64, data: &[u8]) -> bool {
    let mut offset = offset;
    data.chunks(PATTERN_LEN).all(|piece| {
        let start = (offset % PATTERN_LEN as u64) as usize;
        offset += piece.len() as u64;
        pattern()[start..start + piece.len()] == *piece
    })
}

/// What the origin answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header fields (framing fields are added according to `framing`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
    /// How it is delimited.
    pub framing: Framing,
    /// 1xx heads to send first.
    pub interim: Vec<(u16, Vec<(String, String)>)>,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Close the connection after this response.
    pub close: bool,
    /// After a 101, send this, then echo every byte received until EOF.
    pub upgrade_greeting: Option<Vec<u8>>,
}

impl Reply {
    /// `status` with an empty Content-Length body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            reason: reason(status).to_owned(),
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
            framing: Framing::Length,
            interim: Vec::new(),
            delay: Duration::ZERO,
            close: false,
            upgrade_greeting: None,
        }
    }

    /// 200 with `body`, `Content-Type: text/plain`, Content-Length.
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply::status(200)
            .header("Content-Type", "text/plain")
            .body(body)
    }

    /// Adds a header field.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = Body::Bytes(body.into());
        self
    }

    /// A generated body of `len` pattern bytes.
    pub fn pattern_body(mut self, len: u64) -> Reply {
        self.body = Body::Pattern(len);
        self
    }

    /// Chunked, in chunks of at most `chunk` bytes, with `trailers`.
    pub fn chunked(mut self, chunk: usize, trailers: &[(&str, &str)]) -> Reply {
        self.framing = Framing::Chunked {
            chunk,
            trailers: trailers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        };
        self
    }

    /// Delimited by closing the connection.
    pub fn close_delimited(mut self) -> Reply {
        self.framing = Framing::Close;
        self
    }

    /// No framing fields and no body.
    pub fn no_body(mut self) -> Reply {
        self.framing = Framing::NoBody;
        self.body = Body::Bytes(Vec::new());
        self
    }

    /// Sends a 1xx head first.
    pub fn interim(mut self, status: u16, headers: &[(&str, &str)]) -> Reply {
        self.interim.push((
            status,
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        ));
        self
    }

    /// Waits before answering.
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }

    /// Closes after answering (and says so).
    pub fn close(mut self) -> Reply {
        self.close = true;
        self
    }

    /// A `101 Switching Protocols` to `protocol` that then sends
    /// `greeting` and echoes.
    pub fn upgrade(protocol: &str, greeting: &[u8]) -> Reply {
        let mut r = Reply::status(101)
            .header("Upgrade", protocol)
            .header("Connection", "Upgrade")
            .no_body();
        r.upgrade_greeting = Some(greeting.to_vec());
        r
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Whatever",
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

#[derive(Debug, Default)]
struct Stats {
    accepted: AtomicUsize,
    /// Connections the peer closed (EOF while waiting for a request).
    peer_closed: AtomicUsize,
    stop: AtomicBool,
}

fn spawn_listener(
    listener: TcpListener,
    stats: Arc<Stats>,
    serve: impl Fn(TcpStream, usize) + Send + Sync + 'static,
) {
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stats.stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(stream) = stream else { continue };
            let index = stats.accepted.fetch_add(1, Ordering::SeqCst);
            let serve = Arc::clone(&serve);
            std::thread::spawn(move || serve(stream, index));
        }
    });
}

fn stop_listener(stats: &Stats, addr: SocketAddr) {
    stats.stop.store(true, Ordering::SeqCst);
    // Wake the accept loop so it sees the flag.
    let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
}

fn bind(ip: IpAddr) -> TcpListener {
    TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind origin on loopback")
}

/// A scriptable HTTP/1.1 origin. Keeps connections alive, answers
/// `Expect: 100-continue`, reads Content-Length and chunked bodies, and
/// records every request.
pub struct Origin {
    addr: SocketAddr,
    stats: Arc<Stats>,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl std::fmt::Debug for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Origin").field("addr", &self.addr).finish()
    }
}

impl Origin {
    /// An origin on 127.0.0.1 answering with `handler`.
    pub fn start(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Origin {
        Origin::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), handler)
    }

    /// An origin on `ip` (a loopback address).
    pub fn start_on(
        ip: IpAddr,
        handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
    ) -> Origin {
        let listener = bind(ip);
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let (s, r) = (Arc::clone(&stats), Arc::clone(&requests));
        spawn_listener(listener, Arc::clone(&stats), move |stream, index| {
            serve_http(stream, index, &*handler, &s, &r)
        });
        Origin {
            addr,
            stats,
            requests,
        }
    }

    /// An origin that answers `200 OK` with the request target as body.
    pub fn echo_target() -> Origin {
        Origin::start(|r| Reply::ok(r.target.clone()))
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `<addr>` as a Host value.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived, and returns them all.
    pub fn wait_requests(&self, n: usize) -> Vec<Request> {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "origin got {} requests, expected {n}: {got:#?}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.accepted.load(Ordering::SeqCst)
    }

    /// Connections the peer (the proxy) closed while idle.
    pub fn peer_closes(&self) -> usize {
        self.stats.peer_closed.load(Ordering::SeqCst)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        stop_listener(&self.stats, self.addr);
    }
}

/// Reads until a blank line; `None` on EOF before any byte. The head and
/// whatever followed it are returned separately.
fn read_raw_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = find_subslice(buf, b"\r\n\r\n") {
            return Some(buf.drain(..end + 4).collect());
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn fill_to(stream: &mut TcpStream, buf: &mut Vec<u8>, n: usize) -> bool {
    let mut chunk = [0u8; 32 * 1024];
    while buf.len() < n {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
    true
}

fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(i) = find_subslice(buf, b"\r\n") {
            let line: Vec<u8> = buf.drain(..i + 2).collect();
            return Some(String::from_utf8_lossy(&line[..i]).into_owned());
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn serve_http(
    mut stream: TcpStream,
    conn: usize,
    handler: &Handler,
    stats: &Stats,
    requests: &Mutex<Vec<Request>>,
) {
    let _ = stream.set_read_timeout(Some(ORIGIN_IDLE));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let Some(raw) = read_raw_head(&mut stream, &mut buf) else {
            if buf.is_empty() {
                stats.peer_closed.fetch_add(1, Ordering::SeqCst);
            }
            return;
        };
        let mut headers = vec![httparse::EMPTY_HEADER; 256];
        let mut parsed = httparse::Request::new(&mut headers);
        if !matches!(parsed.parse(&raw), Ok(httparse::Status::Complete(_))) {
            let _ = stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nbad request",
            );
            return;
        }
        let mut req = Request {
            method: parsed.method.unwrap_or("").to_owned(),
            target: parsed.path.unwrap_or("").to_owned(),
            minor: parsed.version.unwrap_or(1),
            headers: crate::client::owned_fields(parsed.headers),
            body: Vec::new(),
            chunked: false,
            trailers: Vec::new(),
            conn,
            raw_head: raw.clone(),
        };
        let chunked = req
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        let length: usize = req
            .header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let has_body = chunked || length > 0;
        if has_body
            && req
                .header("expect")
                .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
            && stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
        {
            return;
        }
        if chunked {
            req.chunked = true;
            loop {
                let Some(line) = read_line(&mut stream, &mut buf) else {
                    return;
                };
                let size_text = line.split(';').next().unwrap_or("").trim();
                let Ok(size) = usize::from_str_radix(size_text, 16) else {
                    return;
                };
                if size == 0 {
                    break;
                }
                if !fill_to(&mut stream, &mut buf, size + 2) {
                    return;
                }
                req.body.extend(buf.drain(..size));
                buf.drain(..2);
            }
            loop {
                let Some(line) = read_line(&mut stream, &mut buf) else {
                    return;
                };
                if line.is_empty() {
                    break;
                }
                if let Some((n, v)) = line.split_once(':') {
                    req.trailers.push((n.to_owned(), v.trim().to_owned()));
                }
            }
        } else if length > 0 {
            if !fill_to(&mut stream, &mut buf, length) {
                return;
            }
            req.body = buf.drain(..length).collect();
        }
        let client_close = req.minor == 0
            || req
                .header("connection")
                .is_some_and(|c| c.to_ascii_lowercase().contains("close"));
        let method = req.method.clone();
        requests.lock().unwrap().push(req.clone());

        let reply = handler(&req);
        if !reply.delay.is_zero() {
            std::thread::sleep(reply.delay);
        }
        if write_reply(&mut stream, &method, &reply).is_err() {
            return;
        }
        if let Some(greeting) = &reply.upgrade_greeting {
            let _ = stream.write_all(greeting);
            let _ = stream.write_all(&buf);
            echo_until_eof(&mut stream);
            return;
        }
        if reply.close || client_close || reply.framing == Framing::Close {
            let _ = stream.shutdown(Shutdown::Write);
            // Drain briefly so the close is a FIN, not a reset.
            drain_briefly(&mut stream);
            return;
        }
    }
}

fn drain_briefly(stream: &mut TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    while let Ok(n) = stream.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
}

fn write_reply(stream: &mut TcpStream, method: &str, reply: &Reply) -> std::io::Result<()> {
    for (status, headers) in &reply.interim {
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(*status));
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
    }
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reply.reason);
    for (n, v) in &reply.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    match &reply.framing {
        Framing::Length => head.push_str(&format!("Content-Length: {}\r\n", reply.body.len())),
        Framing::Chunked { .. } => head.push_str("Transfer-Encoding: chunked\r\n"),
        Framing::Close | Framing::NoBody => {}
    }
    if reply.close || reply.framing == Framing::Close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if method == "HEAD" || reply.framing == Framing::NoBody {
        return stream.flush();
    }
    match &reply.framing {
        Framing::Chunked { chunk, trailers } => {
            let chunk = (*chunk).max(1);
            let mut err = Ok(());
            let mut emit = |data: &[u8]| {
                if err.is_ok() {
                    for piece in data.chunks(chunk) {
                        let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
                        framed.extend_from_slice(piece);
                        framed.extend_from_slice(b"\r\n");
                        if let Err(e) = stream.write_all(&framed) {
                            err = Err(e);
                            return;
                        }
                    }
                }
            };
            write_body(&reply.body, &mut emit);
            err?;
            let mut end = String::from("0\r\n");
            for (n, v) in trailers {
                end.push_str(&format!("{n}: {v}\r\n"));
            }
            end.push_str("\r\n");
            stream.write_all(end.as_bytes())?;
        }
        _ => {
            let mut err = Ok(());
            write_body(&reply.body, &mut |data| {
                if err.is_ok() {
                    if let Err(e) = stream.write_all(data) {
                        err = Err(e);
                    }
                }
            });
            err?;
        }
    }
    stream.flush()
}

fn write_body(body: &Body, emit: &mut dyn FnMut(&[u8])) {
    match body {
        Body::Bytes(b) => {
            if !b.is_empty() {
                emit(b)
            }
        }
        Body::Pattern(len) => {
            let p = pattern();
            let mut offset = 0u64;
            while offset < *len {
                let start = (offset % PATTERN_LEN as u64) as usize;
                let n = ((*len - offset) as usize).min(32 * 1024);
                emit(&p[start..start + n]);
                offset += n as u64;
            }
        }
    }
}

fn echo_until_eof(stream: &mut TcpStream) -> u64 {
    let mut chunk = [0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                if stream.write_all(&chunk[..n]).is_err() {
                    break;
                }
                total += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
    total
}

/// An origin whose every connection is handed to a script that reads and
/// writes raw bytes (malformed responses, delays, resets, upgrades).
pub struct RawOrigin {
    addr: SocketAddr,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for RawOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawOrigin")
            .field("addr", &self.addr)
            .finish()
    }
}

impl RawOrigin {
    /// Runs `script(stream, connection_index)` for every connection, on
    /// 127.0.0.1. The stream has [`IO_TIMEOUT`] on reads and writes.
    pub fn start(script: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> RawOrigin {
        RawOrigin::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST), script)
    }

    /// Like [`start`](RawOrigin::start), on `ip`.
    pub fn start_on(ip: IpAddr, script: impl Fn(TcpStream, usize) + Send + Sync + 'static) -> Self {
        let listener = bind(ip);
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        spawn_listener(listener, Arc::clone(&stats), move |stream, i| {
            let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
            let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
            let _ = stream.set_nodelay(true);
            script(stream, i)
        });
        RawOrigin { addr, stats }
    }

    /// An origin that reads one request head, then writes `response`
    /// verbatim and closes.
    pub fn respond(response: &'static [u8]) -> RawOrigin {
        RawOrigin::start(move |mut s, _| {
            if read_request_head(&mut s).is_some() {
                let _ = s.write_all(response);
                let _ = s.shutdown(Shutdown::Write);
                drain_briefly(&mut s);
            }
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.stats.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        stop_listener(&self.stats, self.addr);
    }
}

/// Reads a request head byte by byte (so nothing after it is consumed);
/// `None` on EOF or error first.
pub fn read_request_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// A TCP echo server for CONNECT tunnels: echoes every byte, and after
/// the peer's EOF half-closes its own side. Counts bytes echoed.
pub struct EchoServer {
    origin: RawOrigin,
    echoed: Arc<AtomicU64>,
}

impl std::fmt::Debug for EchoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoServer")
            .field("addr", &self.origin.addr)
            .finish()
    }
}

impl EchoServer {
    /// An echo server on 127.0.0.1.
    pub fn start() -> EchoServer {
        let echoed = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&echoed);
        let origin = RawOrigin::start(move |mut s, _| {
            let n = echo_until_eof(&mut s);
            count.fetch_add(n, Ordering::SeqCst);
        });
        EchoServer { origin, echoed }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.origin.addr()
    }

    /// Bytes echoed by finished connections.
    pub fn echoed(&self) -> u64 {
        self.echoed.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.origin.connections()
    }
}
