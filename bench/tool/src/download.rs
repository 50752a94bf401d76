//! The 10 MiB download figure, with our own client rather than wrk (whose
//! Lua check copies every body into Lua, which bounded even direct to about
//! 300 MB/s): a few threads, each with one keep-alive connection, GET the
//! file again and again, parse each response head, read exactly the
//! announced body into a reused buffer (counted, not stored) and compare
//! every byte with the file's, as it arrives (a memory compare runs at
//! several times the proxies' rates, so it does not bound the figure).
//!
//! A target that closes the connection between responses (tinyproxy closes
//! after every response without saying so) is reconnected to, for every
//! target: a close before any byte of the next response is fine on a
//! connection that has already served one; a close anywhere else, a bad
//! status, a missing or wrong Content-Length, a chunked body, a wrong byte
//! or any other I/O error fails the figure.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{bail, Context, Error, Result};
use crate::fetch::status_code;

/// The reused read buffer, one per connection.
const CHUNK: usize = 256 * 1024;
/// The longest a connection may stall before the figure fails.
const STALL: Duration = Duration::from_secs(10);
/// A response head longer than this is a bad response.
const MAX_HEAD: usize = 64 * 1024;

/// One download run.
pub(crate) struct Load<'a> {
    /// Where the clients connect: the proxy, or the origin for `direct`.
    pub(crate) connect_to: SocketAddr,
    /// The origin (nginx), named in the request.
    pub(crate) origin: SocketAddr,
    /// Absolute-form request target (through a proxy) or origin-form.
    pub(crate) proxied: bool,
    pub(crate) path: &'a str,
    /// The file's exact content: every body is compared with it.
    pub(crate) body: &'a [u8],
    pub(crate) connections: usize,
    pub(crate) duration: Duration,
}

/// What a clean run measured.
#[derive(Debug, PartialEq)]
pub(crate) struct Outcome {
    /// Checked body bytes ÷ elapsed seconds, in 10^6 bytes per second.
    pub(crate) mb_per_sec: f64,
    /// Complete, checked responses.
    pub(crate) responses: u64,
    /// Connections opened, the first of each thread included.
    pub(crate) connections: u64,
}

/// One thread's tally.
#[derive(Default)]
struct Tally {
    responses: u64,
    bytes: u64,
    connections: u64,
}

/// Runs the load: all connections are opened first, then every thread
/// requests until the duration is over, finishing the response under way.
/// The time is from the common start until the last thread is done.
pub(crate) fn run(load: &Load) -> Result<Outcome> {
    if load.body.is_empty() {
        bail!("the file to download is empty");
    }
    let target = if load.proxied {
        format!("http://{}{}", load.origin, load.path)
    } else {
        load.path.to_string()
    };
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: proxy-bench\r\n\r\n",
        load.origin
    );
    let barrier = Barrier::new(load.connections + 1);
    let (start, results) = thread::scope(|scope| {
        let handles: Vec<_> = (0..load.connections)
            .map(|_| {
                let (barrier, request) = (&barrier, request.as_bytes());
                scope.spawn(move || -> Result<(Tally, Instant)> {
                    let first = connect(load.connect_to);
                    barrier.wait();
                    let until = Instant::now() + load.duration;
                    let tally = client(load, request, first?, until)?;
                    Ok((tally, Instant::now()))
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::new("a download thread panicked")))
            })
            .collect();
        (start, results)
    });
    let mut total = Tally::default();
    let mut end = start;
    for result in results {
        let (tally, done) = result?;
        total.responses += tally.responses;
        total.bytes += tally.bytes;
        total.connections += tally.connections;
        end = end.max(done);
    }
    let secs = end.duration_since(start).as_secs_f64();
    if total.responses == 0 || secs == 0.0 {
        bail!("no response completed");
    }
    Ok(Outcome {
        mb_per_sec: total.bytes as f64 / secs / 1e6,
        responses: total.responses,
        connections: total.connections,
    })
}

fn connect(to: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&to, STALL).context(format!("connecting to {to}"))?;
    stream
        .set_read_timeout(Some(STALL))
        .context("setting a read timeout")?;
    stream
        .set_write_timeout(Some(STALL))
        .context("setting a write timeout")?;
    Ok(stream)
}

/// One thread: requests on `stream` until `until`, reconnecting when the
/// target closed the connection between two responses.
fn client(load: &Load, request: &[u8], first: TcpStream, until: Instant) -> Result<Tally> {
    let mut buf = vec![0u8; CHUNK];
    let mut tally = Tally {
        connections: 1,
        ..Tally::default()
    };
    // The connection and how many responses it has served.
    let mut conn = Some((first, 0u64));
    while Instant::now() < until {
        let (mut stream, served) = match conn.take() {
            Some(c) => c,
            None => {
                tally.connections += 1;
                (connect(load.connect_to)?, 0)
            }
        };
        let exchange = exchange(&mut stream, request, load.body, &mut buf).map_err(|e| {
            Error::new(format!(
                "response {} (the connection's {}): {e}",
                tally.responses + 1,
                served + 1
            ))
        })?;
        match exchange {
            Exchange::Complete { keep_alive } => {
                tally.responses += 1;
                tally.bytes += load.body.len() as u64;
                if keep_alive {
                    conn = Some((stream, served + 1));
                }
            }
            Exchange::Closed if served > 0 => {} // reconnect
            Exchange::Closed => bail!(
                "the connection closed before any response (after {} responses on other connections)",
                tally.responses
            ),
        }
    }
    Ok(tally)
}

#[derive(Debug, PartialEq)]
enum Exchange {
    /// A complete, checked response; `keep_alive` is false if it said
    /// `Connection: close`.
    Complete { keep_alive: bool },
    /// The connection was closed (or reset) before the response's first
    /// byte: the peer closed it after the previous response.
    Closed,
}

/// Whether an I/O error means the peer had closed the connection: writing
/// to (or reading from) a socket the peer closed resets it.
fn closed_by_peer(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    )
}

/// Sends one request and reads its response: head, then exactly
/// Content-Length body bytes into `buf`, checked against `body`.
fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    body: &[u8],
    buf: &mut [u8],
) -> Result<Exchange> {
    match stream.write_all(request) {
        Ok(()) => {}
        Err(e) if closed_by_peer(e.kind()) => return Ok(Exchange::Closed),
        Err(e) => bail!("sending the request: {e}"),
    }

    // The head, and whatever part of the body came with it.
    let mut filled: usize = 0;
    let head_end = loop {
        let searched_from = filled.saturating_sub(3);
        let n = match stream.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(Exchange::Closed),
            Ok(0) => bail!(
                "connection closed during the response head ({:?})",
                String::from_utf8_lossy(&buf[..filled])
            ),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if filled == 0 && closed_by_peer(e.kind()) => return Ok(Exchange::Closed),
            Err(e) => bail!("reading the response head: {e}"),
        };
        filled += n;
        if let Some(at) = find_blank_line(&buf[searched_from..filled]) {
            break searched_from + at;
        }
        if filled > MAX_HEAD {
            bail!("no end of the response head in {filled} bytes");
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let keep_alive = check_head(&head, body.len())?;

    let first = head_end + 4;
    let mut received = filled - first;
    if received > body.len() {
        bail!(
            "{} bytes after the {}-byte body",
            received - body.len(),
            body.len()
        );
    }
    if let Some(at) = first_difference(body, 0, &buf[first..filled]) {
        bail!("body byte {at} differs from the file's");
    }
    while received < body.len() {
        let want = (body.len() - received).min(buf.len());
        match stream.read(&mut buf[..want]) {
            Ok(0) => bail!(
                "connection closed after {received} of {} body bytes",
                body.len()
            ),
            Ok(n) => {
                if let Some(at) = first_difference(body, received, &buf[..n]) {
                    bail!("body byte {at} differs from the file's");
                }
                received += n;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => bail!("reading the body after {received} bytes: {e}"),
        }
    }
    Ok(Exchange::Complete { keep_alive })
}

/// Where `\r\n\r\n` starts.
fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Checks a response head (without its blank line) for status 200 and a
/// body of exactly `size` bytes announced by Content-Length; returns
/// whether the connection may be kept (no `Connection: close`).
fn check_head(head: &str, size: usize) -> Result<bool> {
    let status_line = head.lines().next().unwrap_or("");
    match status_code(head) {
        Some(200) => {}
        _ => bail!("expected status 200, got {status_line:?}"),
    }
    let mut length = None;
    let mut keep_alive = true;
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            bail!("bad header line {line:?}");
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .context(format!("bad Content-Length {value:?}"))?;
            if length.is_some_and(|l| l != n) {
                bail!("conflicting Content-Length headers");
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("Transfer-Encoding {value:?}: a body of exactly {size} bytes with Content-Length was expected");
        } else if name.eq_ignore_ascii_case("connection")
            && value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("close"))
        {
            keep_alive = false;
        }
    }
    match length {
        Some(n) if n == size => Ok(keep_alive),
        Some(n) => bail!("Content-Length {n}, expected {size}"),
        None => bail!("no Content-Length (expected {size})"),
    }
}

/// Where `chunk`, found at `offset` in the body, first differs from
/// `body` (an offset in the body); `None` when it is the same. The caller
/// keeps `offset + chunk.len()` within the body.
fn first_difference(body: &[u8], offset: usize, chunk: &[u8]) -> Option<usize> {
    let expected = &body[offset..offset + chunk.len()];
    if expected == chunk {
        return None;
    }
    let at = expected.iter().zip(chunk).position(|(a, b)| a != b);
    Some(offset + at.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn checks_heads() {
        let ok = "HTTP/1.1 200 OK\r\nServer: x\r\ncontent-length: 1024";
        assert!(check_head(ok, 1024).unwrap());
        let close = "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nConnection: keep-alive, Close";
        assert!(!check_head(close, 1024).unwrap());
        for bad in [
            "HTTP/1.1 404 Not Found\r\nContent-Length: 1024",
            "HTTP/1.1 200 OK\r\nContent-Length: 1023",
            "HTTP/1.1 200 OK\r\nServer: x",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked",
            "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nContent-Length: 1000",
            "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nno colon",
            "SSH-2.0 hello",
        ] {
            assert!(check_head(bad, 1024).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn compares_every_byte() {
        let body = pattern(1000);
        assert_eq!(first_difference(&body, 0, &body), None);
        assert_eq!(first_difference(&body, 10, &body[10..990]), None);
        for at in [0, 63, 500, 936, 999] {
            let mut wrong = body.clone();
            wrong[at] ^= 1;
            assert_eq!(first_difference(&body, 0, &wrong), Some(at));
            // Read in pieces: the piece holding it says where.
            let found = (0..1000)
                .step_by(50)
                .find_map(|i| first_difference(&body, i, &wrong[i..i + 50]));
            assert_eq!(found, Some(at));
        }
        // A byte dropped shifts everything after it.
        let shifted = [&body[..400], &body[401..]].concat();
        assert!(first_difference(&body, 0, &shifted).is_some_and(|at| at >= 400));
    }

    /// What a test origin does on each connection.
    #[derive(Clone, Copy)]
    enum Serve {
        KeepAlive,
        /// One response, then close without saying so (like tinyproxy).
        OneThenClose,
        /// Content-Length right, then half the body and close.
        Truncate,
        /// The last byte of the body changed.
        WrongLastByte,
        /// The byte in the middle changed.
        WrongMiddleByte,
        Chunked,
    }

    /// A server on a free port that answers every request with `body`.
    fn origin(body: Vec<u8>, serve: Serve) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = listener.local_addr().unwrap();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let (mut stream, body) = (stream.unwrap(), body.clone());
                thread::spawn(move || {
                    let mut request = Vec::new();
                    let mut byte = [0u8; 1];
                    loop {
                        request.clear();
                        while !request.ends_with(b"\r\n\r\n") {
                            match stream.read(&mut byte) {
                                Ok(1) => request.push(byte[0]),
                                _ => return,
                            }
                        }
                        let head = match serve {
                            Serve::Chunked => {
                                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_string()
                            }
                            _ => {
                                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                            }
                        };
                        let mut response = head.into_bytes();
                        match serve {
                            Serve::Truncate => response.extend_from_slice(&body[..body.len() / 2]),
                            Serve::WrongLastByte => {
                                response.extend_from_slice(&body);
                                *response.last_mut().unwrap() ^= 1;
                            }
                            Serve::WrongMiddleByte => {
                                let middle = response.len() + body.len() / 2;
                                response.extend_from_slice(&body);
                                response[middle] ^= 1;
                            }
                            _ => response.extend_from_slice(&body),
                        }
                        if stream.write_all(&response).is_err() {
                            return;
                        }
                        if !matches!(serve, Serve::KeepAlive) {
                            return;
                        }
                    }
                });
            }
        });
        at
    }

    fn load<'a>(at: SocketAddr, body: &'a [u8]) -> Load<'a> {
        Load {
            connect_to: at,
            origin: at,
            proxied: false,
            path: "/file",
            body,
            connections: 2,
            duration: Duration::from_millis(200),
        }
    }

    #[test]
    fn downloads_on_kept_connections() {
        // Over the buffer's size, so that the body takes several reads.
        let body = pattern(600 * 1024);
        let at = origin(body.clone(), Serve::KeepAlive);
        let out = run(&load(at, &body)).unwrap();
        assert!(out.responses > 2, "{out:?}");
        assert_eq!(out.connections, 2);
        assert!(out.mb_per_sec > 0.0);
    }

    #[test]
    fn reconnects_after_a_close_between_responses() {
        let body = pattern(100 * 1024);
        let at = origin(body.clone(), Serve::OneThenClose);
        let out = run(&load(at, &body)).unwrap();
        assert!(out.responses > 2, "{out:?}");
        assert!(out.connections >= out.responses, "{out:?}");
    }

    #[test]
    fn bad_responses_fail_the_run() {
        let body = pattern(300 * 1024);
        for (serve, expected) in [
            (Serve::Truncate, "connection closed after"),
            (Serve::WrongLastByte, "body byte 307199 differs"),
            (Serve::WrongMiddleByte, "body byte 153600 differs"),
            (Serve::Chunked, "Transfer-Encoding"),
        ] {
            let at = origin(body.clone(), serve);
            let err = run(&load(at, &body)).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = closed.local_addr().unwrap();
        drop(closed);
        assert!(run(&load(at, &body)).is_err());
    }
}
