//! CONNECT tunnels: opening one (also used by the idle-tunnel figure), and
//! the throughput of several in parallel, upload to the sink or download
//! from the source. The client always speaks first, since a proxy may
//! wait for the first bytes (a TLS ClientHello) before relaying. Both
//! directions carry the checked pattern (`pattern.rs`): an upload counts
//! what the sink says it received intact, a download what the client
//! checked.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{bail, Context, Error, Result};
use crate::fetch::{read_head, status_code};
use crate::pattern::{Checker, Pattern, MAX_PIECE};

const CHUNK: usize = MAX_PIECE;
/// The longest a tunnel may stall before the run counts as failed.
const STALL: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Direction {
    Upload,
    Download,
}

/// Connects to `dest`, through a CONNECT tunnel when `proxy` is given, and
/// returns once the proxy has answered 2xx (its head fully read).
pub(crate) fn open(proxy: Option<SocketAddr>, dest: SocketAddr) -> Result<TcpStream> {
    let Some(proxy) = proxy else {
        return TcpStream::connect_timeout(&dest, STALL).context(format!("connecting to {dest}"));
    };
    let mut stream = TcpStream::connect_timeout(&proxy, STALL)
        .context(format!("connecting to the proxy at {proxy}"))?;
    stream
        .set_read_timeout(Some(STALL))
        .context("setting a read timeout")?;
    let request = format!("CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .context("sending CONNECT")?;
    let head = read_head(&mut stream).context("reading the CONNECT response")?;
    match status_code(&head) {
        Some(code) if (200..300).contains(&code) => Ok(stream),
        _ => bail!(
            "CONNECT {dest} answered {:?}",
            head.lines().next().unwrap_or("")
        ),
    }
}

/// Throughput in MB/s (10^6 bytes per second) of `streams` tunnels in
/// parallel for `secs` seconds, in one direction.
pub(crate) fn throughput(
    proxy: Option<SocketAddr>,
    dest: SocketAddr,
    direction: Direction,
    streams: usize,
    secs: u32,
) -> Result<f64> {
    // Tunnels are opened first, then all start together.
    let barrier = Arc::new(Barrier::new(streams + 1));
    let handles: Vec<_> = (0..streams)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || -> Result<(u64, Instant)> {
                let opened = open(proxy, dest);
                barrier.wait();
                let mut stream = opened?;
                let until = Instant::now() + Duration::from_secs(secs.into());
                match direction {
                    Direction::Upload => upload(&mut stream, until),
                    Direction::Download => download(&mut stream, until),
                }
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut bytes = 0;
    let mut end = start;
    for handle in handles {
        let (n, done) = handle
            .join()
            .map_err(|_| Error::new("a tunnel thread panicked"))??;
        bytes += n;
        end = end.max(done);
    }
    let secs = end.duration_since(start).as_secs_f64();
    if bytes == 0 || secs == 0.0 {
        bail!("no bytes went through");
    }
    Ok(bytes as f64 / secs / 1e6)
}

/// `streams` tunnels to the sink in parallel for `secs` seconds, each
/// writing `chunk` bytes of the pattern every `pause` (a steady trickle,
/// not a flood): the bytes the sink received intact, in all.
pub(crate) fn trickle(
    proxy: SocketAddr,
    sink: SocketAddr,
    streams: usize,
    secs: u32,
    chunk: usize,
    pause: Duration,
) -> Result<u64> {
    let handles: Vec<_> = (0..streams)
        .map(|_| {
            thread::spawn(move || -> Result<u64> {
                let mut stream = open(Some(proxy), sink)?;
                let until = Instant::now() + Duration::from_secs(secs.into());
                upload_paced(&mut stream, until, chunk.min(CHUNK), Some(pause)).map(|(n, _)| n)
            })
        })
        .collect();
    let mut bytes = 0;
    for handle in handles {
        bytes += handle
            .join()
            .map_err(|_| Error::new("a tunnel thread panicked"))??;
    }
    Ok(bytes)
}

/// Writes the pattern until `until`, then half-closes and waits for the
/// sink's report and EOF: the bytes count once they have all been read
/// and checked at the other end.
fn upload(stream: &mut TcpStream, until: Instant) -> Result<(u64, Instant)> {
    upload_paced(stream, until, CHUNK, None)
}

/// [`upload`] in writes of `chunk` bytes, with `pause` between them.
fn upload_paced(
    stream: &mut TcpStream,
    until: Instant,
    chunk: usize,
    pause: Option<Duration>,
) -> Result<(u64, Instant)> {
    stream
        .set_write_timeout(Some(STALL))
        .context("setting a write timeout")?;
    stream
        .set_read_timeout(Some(STALL))
        .context("setting a read timeout")?;
    let pattern = Pattern::new();
    let mut sent = 0u64;
    while Instant::now() < until {
        stream
            .write_all(pattern.at(sent, chunk))
            .context(format!("uploading after {sent} bytes"))?;
        sent += chunk as u64;
        if let Some(p) = pause {
            thread::sleep(p);
        }
    }
    stream
        .shutdown(Shutdown::Write)
        .context("half-closing the upload")?;
    let mut report = Vec::new();
    let mut rest = [0u8; 256];
    loop {
        match stream.read(&mut rest) {
            Ok(0) => break,
            Ok(n) if report.len() + n <= 256 => report.extend_from_slice(&rest[..n]),
            Ok(_) => bail!("the sink's side sent more than its report"),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => bail!("waiting for the end of the upload: {e}"),
        }
    }
    let done = Instant::now();
    let report = String::from_utf8_lossy(&report);
    if report != format!("ok {sent}\n") {
        bail!("sent {sent} bytes; the sink says {:?}", report.trim_end());
    }
    Ok((sent, done))
}

/// Asks the source to start, then reads until `until`.
fn download(stream: &mut TcpStream, until: Instant) -> Result<(u64, Instant)> {
    stream
        .set_read_timeout(Some(STALL))
        .context("setting a read timeout")?;
    stream.write_all(b"go\n").context("starting the download")?;
    let mut buf = vec![0u8; CHUNK];
    let mut checker = Checker::new();
    while Instant::now() < until {
        match stream.read(&mut buf) {
            Ok(0) => bail!("the download ended early, after {} bytes", checker.received),
            Ok(n) => checker.check(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => bail!("downloading after {} bytes: {e}", checker.received),
        }
    }
    if let Some(at) = checker.first_bad {
        bail!("downloaded byte {at} is not the one the source sent");
    }
    Ok((checker.received, Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::{accept_each, discard, pour};
    use std::net::TcpListener;

    fn serve(handle: fn(TcpStream)) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let at = listener.local_addr().unwrap();
        thread::spawn(move || accept_each(listener, handle));
        at
    }

    #[test]
    fn both_directions_are_checked_and_counted() {
        let sink = serve(discard);
        let source = serve(pour);
        assert!(throughput(None, sink, Direction::Upload, 2, 1).unwrap() > 0.0);
        assert!(throughput(None, source, Direction::Download, 2, 1).unwrap() > 0.0);
    }

    /// A sink that loses a byte along the way, as a broken relay would.
    fn lossy(mut stream: TcpStream) {
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let forward = thread::spawn(move || discard_from(&mut b));
        let mut buf = vec![0u8; 4096];
        let mut dropped = false;
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) if !dropped && n > 1 => {
                    dropped = true;
                    a.write_all(&buf[1..n]).unwrap();
                }
                Ok(n) => a.write_all(&buf[..n]).unwrap(),
            }
        }
        drop(a);
        let report = forward.join().unwrap();
        let _ = stream.write_all(report.as_bytes());
    }

    fn discard_from(from: &mut std::os::unix::net::UnixStream) -> String {
        let mut checker = Checker::new();
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            checker.check(&buf[..n]);
        }
        checker.report()
    }

    #[test]
    fn an_upload_that_loses_a_byte_fails() {
        let sink = serve(lossy);
        let err = throughput(None, sink, Direction::Upload, 1, 1).unwrap_err();
        assert!(err.to_string().contains("the sink says \"bad"), "{err}");
    }
}
